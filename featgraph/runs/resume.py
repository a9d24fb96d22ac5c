"""Resumable extraction: each (head, circuit) is kept as it is finished, so an interrupted run loses at most one matrix.

While `extract … --out DIR` runs, every finished matrix's selected edges and moments are written (atomically)
into `.DIR.partial/` beside the output. A later `extract` with the same inputs and selection — checked by a
fingerprint of the weights' bytes, the model's config, the selection and the conventions, recorded in the
folder and in every part — picks them up and computes only the
rest; inputs that differ start afresh. The folder is removed once the run directory is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from featgraph.core.select import Selected
from featgraph.errors import BadInput
from featgraph.runs.files import staged_file, write_text

FINGERPRINT = "fingerprint.json"


def fingerprint(tensors: Iterable[torch.Tensor | None], settings: dict) -> str:
    """sha256 over the tensors' bytes (shape and dtype included) and the settings that decide the results."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        a = t.detach().cpu().contiguous()
        h.update(f"{tuple(a.shape)}{a.dtype}".encode())
        if a.numel():
            h.update(a.view(torch.uint8).numpy())  # the buffer itself: no copy of a multi-GB SAE
    return h.hexdigest()


class Parts:
    """The finished matrices of one output directory's extraction, on disk beside it."""

    def __init__(self, out: Path, key: str):
        self.dir = Path(out).parent / f".{Path(out).name}.partial"
        self.key = key

    def load(self, restart: bool = False) -> dict[tuple[int, str], dict]:
        """Matrices a previous, interrupted run of the same inputs finished: {(head, circuit): fields}."""
        if self.dir.is_symlink() or (self.dir.exists() and not self.dir.is_dir()):
            raise BadInput(f"{self.dir} is a link or a file, not the folder featgraph keeps finished matrices in: remove it")
        if self.dir.exists() and (restart or self._key() != self.key):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._key() != self.key:
            write_text(self.dir / FINGERPRINT, json.dumps({"fingerprint": self.key}))
        done = {}
        for f in sorted(self.dir.glob("head*.npz")):
            try:
                with np.load(f) as z:
                    meta = json.loads(str(z["meta"]))
                    if meta.get("fingerprint") != self.key:  # another run's part (another process, other inputs)
                        raise ValueError("made under other inputs")
                    done[(int(meta["head"]), str(meta["circuit"]))] = meta | {
                        "selected": Selected(z["src_idx"], z["dst_idx"], z["weight"])}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                f.unlink(missing_ok=True)  # a part cut short by a crash, or of other inputs: computed again
        return done

    def save(self, head: int, circuit: str, kv_head: int, selected: Selected, stats: dict) -> None:
        meta = {"head": head, "circuit": circuit, "kv_head": kv_head, "fingerprint": self.key} | stats
        with staged_file(self.dir / f"head{head}_{circuit}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, src_idx=selected.src_idx, dst_idx=selected.dst_idx, weight=selected.weight,
                         meta=np.array(json.dumps(meta)))

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _key(self) -> str | None:
        try:
            return json.loads((self.dir / FINGERPRINT).read_text())["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
