"""Regenerate featgraph's snapshot of SAELens' SAE registry (featgraph/load/saelens_registry.json.gz).

    python scripts/saelens_registry.py [--version 6.54.12] [--wheel PATH]

Downloads the pinned sae-lens wheel from PyPI with pip (or takes --wheel), reads
`sae_lens/pretrained_saes.yaml` out of the zip — sae_lens is never imported (its import pulls TransformerLens) —
and writes every release's repo, model, conversion_func and config_overrides and every SAE's id, path, l0,
neuronpedia id and norm_scaling_factor, with the version and the sha256 of the wheel and of the yaml.
docs/formats.md says why featgraph ships a snapshot. Needs PyYAML (only here, not at run time).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PINNED = "6.54.12"
OUT = Path(__file__).resolve().parents[1] / "featgraph" / "load" / "saelens_registry.json.gz"
YAML_IN_WHEEL = "sae_lens/pretrained_saes.yaml"
SAE_FIELDS = ("id", "path", "l0", "neuronpedia", "norm_scaling_factor")


def download(version: str, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", f"sae-lens=={version}", "--no-deps", "--only-binary=:all:",
                    "-d", str(into), "-q"], check=True)
    wheels = sorted(into.glob(f"sae_lens-{version}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip left no sae_lens-{version} wheel in {into}")
    return wheels[0]


def snapshot(wheel: Path, version: str) -> dict:
    import yaml

    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(YAML_IN_WHEEL)
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    releases = {}
    for name, rel in data.items():
        saes = []
        for s in rel["saes"]:
            row = [s.get(k) for k in SAE_FIELDS]
            row[1] = str(row[1])  # SAELens stringifies integer paths
            while row and row[-1] is None:
                row.pop()
            saes.append(row)
        releases[name] = {"repo": rel["repo_id"], "model": rel["model"], "conversion": rel.get("conversion_func"),
                          "config_overrides": rel.get("config_overrides") or {}, "saes": saes}
    return {"source": f"sae-lens {version} {YAML_IN_WHEEL}", "sae_lens_version": version, "wheel": wheel.name,
            "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "yaml_sha256": hashlib.sha256(text).hexdigest(), "sae_fields": list(SAE_FIELDS), "releases": releases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", default=PINNED)
    ap.add_argument("--wheel", type=Path, help="a downloaded sae_lens wheel (default: pip download the version)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = a.wheel or download(a.version, Path(tmp))
        snap = snapshot(wheel, a.version)
    raw = json.dumps(snap, separators=(",", ":"), sort_keys=False).encode()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    n = sum(len(r["saes"]) for r in snap["releases"].values())
    print(f"{a.out}: {len(snap['releases'])} releases, {n} SAEs from sae-lens {a.version} ({a.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
