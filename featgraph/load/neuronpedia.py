"""Neuronpedia feature descriptions: the public S3 export, or local files.

Formats read:
- the current bulk export, `v1/{model}/{source}/explanations/batch-N.jsonl.gz`
  (one JSON object a line: modelId, layer = source id, index as a string,
  description, typeName, explanationModelName, …), as .jsonl or .jsonl.gz;
- the legacy `/api/explanation/export` JSON, `{"explanations": [...]}`.

When a feature has several explanations, the one kept is chosen by a fixed
rule: explanations whose `explanationModelName`/`autoInterpModel` appears in
`prefer` come first (in that order), then file order; empty descriptions never
win. Descriptions are stripped of surrounding whitespace.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from featgraph.core.schema import FEATURE_INDEX, upgrade_features
from featgraph.errors import BadInput, FeatgraphError
from featgraph.runs.files import staged_file

log = logging.getLogger(__name__)

S3_BASE = "https://neuronpedia-datasets.s3.amazonaws.com"
S3_ENV = "FEATGRAPH_NEURONPEDIA_S3"  # override (a mirror, or a test server)
# A label table: Neuronpedia's modelId, layer (the source id) and index as featgraph names them (core/schema.py).
LABEL_COLUMNS = ["model", "sae", FEATURE_INDEX, "description", "explainer"]


def cache_dir() -> Path:
    base = os.environ.get("FEATGRAPH_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "featgraph")
    return Path(base) / "neuronpedia"


# ---------------------------------------------------------------- parsing

def _records_from_file(path: Path) -> Iterator[dict]:
    name = path.name.lower()
    try:
        if name.endswith(".json"):
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "explanations" in data:
                yield from data["explanations"]
            elif isinstance(data, list):
                yield from data
            else:
                raise BadInput(f"{path}: not a Neuronpedia export (expected {{'explanations': [...]}})")
        elif name.endswith((".jsonl", ".jsonl.gz")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)
        else:
            raise BadInput(f"{path}: label files must be .json, .jsonl or .jsonl.gz")
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
        if isinstance(e, BadInput):
            raise
        raise BadInput(f"cannot read labels from {path} ({e.__class__.__name__}): is it a Neuronpedia export?") from None


def _files(source: Path) -> list[Path]:
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.is_file() and p.name.lower().endswith((".json", ".jsonl", ".jsonl.gz")))
    if source.is_file():
        return [source]
    raise BadInput(f"label source {source} not found: pass a Neuronpedia export file or directory")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(v):
    """A string with lone surrogates (JSON's "\\ud800" escapes, which no file or terminal can encode) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v


def read_records(records: Iterable[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        try:
            rows.append((_text(r.get("modelId")), _text(str(r["layer"])), int(r["index"]),
                         _text((r.get("description") or "").strip()),
                         _text(r.get("explanationModelName") or r.get("autoInterpModel"))))
        except (KeyError, TypeError, ValueError):
            continue  # not an explanation row
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def read_labels(sources: Iterable[Path]) -> pd.DataFrame:
    """All explanation rows of the given files/directories (LABEL_COLUMNS: model, sae, feature_index, description, explainer)."""
    frames = [read_records(_records_from_file(f)) for s in sources for f in _files(Path(s))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LABEL_COLUMNS)


def choose(labels: pd.DataFrame, prefer: tuple[str, ...] = ()) -> pd.DataFrame:
    """One description per (model, sae, feature_index) by the module's documented rule (a table naming the
    index `index`, as label tables did before the name was unified, is read the same)."""
    labels = upgrade_features(labels)
    df = labels[labels["description"].str.len() > 0].copy()
    pref = {m: i for i, m in enumerate(prefer)}
    df["_p"] = df["explainer"].map(lambda m: pref.get(m, len(pref)))
    df["_o"] = range(len(df))
    df = df.sort_values(["_p", "_o"], kind="stable").drop_duplicates(["model", "sae", FEATURE_INDEX])
    return df.drop(columns=["_p", "_o"]).sort_values(["sae", FEATURE_INDEX]).reset_index(drop=True)


# ---------------------------------------------------------------- download

def _get(url: str, timeout: float = 60) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "featgraph"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


def s3_base(base: str | None = None) -> str:
    """The export's base URL: the argument, else FEATGRAPH_NEURONPEDIA_S3, else Neuronpedia's public bucket."""
    return (base or os.environ.get(S3_ENV) or S3_BASE).rstrip("/")


def list_batches(model_id: str, source_id: str, base: str | None = None) -> list[str]:
    """Object keys of a source's explanation batches (S3 ListObjectsV2, paginated)."""
    base = s3_base(base)
    prefix = f"v1/{model_id}/{source_id}/explanations/"
    keys, token = [], None
    while True:
        q = {"list-type": "2", "prefix": prefix}
        if token:
            q["continuation-token"] = token
        root = ET.fromstring(_get(f"{base}/?{urllib.parse.urlencode(q)}"))
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        keys += [k.text for k in root.iter(f"{ns}Key") if k.text and k.text.endswith(".jsonl.gz")]
        token_el = root.find(f"{ns}NextContinuationToken")
        truncated = (root.findtext(f"{ns}IsTruncated") or "false").lower() == "true"
        if not truncated or token_el is None:
            break
        token = token_el.text
    return sorted(keys)


def download(model_id: str, source_id: str, base: str | None = None,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Fetch (or reuse from the cache) every batch of a source; returns the directory."""
    base = s3_base(base)
    dest = cache_dir() / model_id / source_id
    try:
        keys = list_batches(model_id, source_id, base)
    except (urllib.error.URLError, OSError, ET.ParseError) as e:
        if dest.is_dir() and any(dest.glob("*.jsonl.gz")):
            log.warning("Neuronpedia unreachable (%s); using cached labels in %s", e.__class__.__name__, dest)
            return dest
        raise FeatgraphError(
            f"cannot reach Neuronpedia's export for {model_id}/{source_id} ({e.__class__.__name__}): "
            "connect to the internet or attach local label exports (featgraph labels RUN --source FILE_OR_DIR)"
        ) from None
    if not keys:
        raise FeatgraphError(f"Neuronpedia has no explanations for {model_id}/{source_id}: check the SAE's Neuronpedia id")
    dest.mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(keys):
        target = dest / key.rsplit("/", 1)[-1]
        if not target.is_file():
            try:
                data = _get(f"{base}/{urllib.parse.quote(key)}")
                with staged_file(target) as tmp:  # a fresh name (O_EXCL), renamed into place: no link is followed
                    tmp.write_bytes(data)
            except (urllib.error.URLError, OSError) as e:
                raise FeatgraphError(f"download of {key} failed ({e.__class__.__name__}); re-run to resume") from None
        if progress:
            progress(i + 1, len(keys))
    return dest
