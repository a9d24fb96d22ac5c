"""`featgraph.sae_info`: what featgraph would use for SAE references, without downloading anything.

Each reference — a SAELens `release/sae_id`, a Hub path, an HF cache path or a local file or folder — resolves
through SAELens' registry (featgraph.load.registry, a snapshot of sae-lens's pretrained_saes.yaml) to its
release and id, repo and files, format, the hook point it reads (site and layer, and so which attention layer
it is the input or the OV output of), its width where a name or its files say, and its Neuronpedia id or why
there is none. A local file is read for its config and shapes (headers only); nothing is fetched.
"""

from __future__ import annotations

from collections.abc import Iterable


def sae_info(*refs: str | Iterable[str]) -> list[dict]:
    """One record per reference (`featgraph sae REF…`; the fields in docs/formats.md, "featgraph sae").

        fg.sae_info("gpt2-small-res-jb/blocks.8.hook_resid_pre", "llama_scope_lxr_8x/l15r_8x")
    """
    from featgraph.errors import BadInput

    flat: list[str] = []
    for r in refs:
        flat.extend([r] if isinstance(r, str) else list(r))
    if not flat:
        raise BadInput("name at least one SAE: a SAELens release/sae_id, a Hub path, or a local file or folder")
    out = []
    for r in flat:
        d = _registry_id(str(r))
        if d is None:  # paths and Hub paths: the SAE loaders (which import torch) resolve them
            from featgraph.load import sae as sae_io

            d = sae_io.info(str(r))
        out.append(d)
    return out


def _registry_id(ref: str) -> dict | None:
    """A `release/sae_id` the registry holds, described from the registry alone (no torch import: `featgraph sae`
    answers at once); the same record featgraph.load.sae.info gives. None for anything else."""
    from pathlib import Path

    from featgraph.load import registry

    head, _, rest = ref.partition("/")
    reg = registry.get()
    if head not in reg.releases or Path(ref).expanduser().exists():
        return None
    e = reg.lookup(head, rest.strip("/"))
    return None if e is None else {"input": ref, "matched_by": "release/sae_id"} | registry.describe(e, reg)


def format_info(d: dict) -> str:
    """A record as a few readable lines (the command's default output)."""
    name = d.get("ref") or d.get("input")
    lines = [f"{name}" + (f"  (from {d['input']})" if d.get("ref") and d.get("input") != d.get("ref") else "")]
    if d.get("repo"):
        lines.append(f"  repo      {d['repo']}  files: {', '.join(d.get('files') or [])}")
    if d.get("path"):
        lines.append(f"  path      {d['path']}")
    lines.append(f"  format    {d.get('format')}")
    hook = d.get("hook") or ("unknown (neither its files nor its name say)" if d.get("path") and d.get("d_in")
                             else "unknown (its config says when loaded)")
    pair = []
    if d.get("site") == "transcoder" and d.get("layer") is not None:  # decoder rows read by every later layer
        L = d["layer"]
        pair.append(f"decoder rows a source for layers {L + 1}+, encoder an OV output of layers ≤ {L}, through its pre-MLP norm")
    elif d.get("input_of_layer") is not None:
        pair.append(f"input of layer {d['input_of_layer']}")
    if d.get("output_of_layer") is not None and d.get("site") != "transcoder":
        pair.append(f"OV output of layer {d['output_of_layer']}")
    where = f"site {d.get('site')}, layer {d.get('layer')}" + (f"; {', '.join(pair)}" if pair else "")
    lines.append(f"  reads     {hook}" + (f"  ({where})" if d.get("hook") else ""))
    lines.append(f"  d_sae     {d.get('d_sae') if d.get('d_sae') is not None else 'unknown'}"
                 + (f"  ({d.get('d_sae_from')})" if d.get("d_sae_from") else ""))
    if d.get("neuronpedia_id"):
        lines.append(f"  neuronpedia {d.get('neuronpedia_model') or '?'}/{d['neuronpedia_id']}"
                     + (f"  (listed under its alias {d['neuronpedia_from']}: the same file)" if d.get("neuronpedia_from") else ""))
    else:
        lines.append(f"  neuronpedia none: {d.get('neuronpedia_note')}"
                     + (f"; featgraph names it {d['fallback_id']}" if d.get("fallback_id") else ""))
    if d.get("model_from_pretrained_kwargs"):
        lines.append(f"  model_from_pretrained_kwargs {d['model_from_pretrained_kwargs']}")
    return "\n".join(lines)
