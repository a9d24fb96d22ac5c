"""Neuronpedia labels: the real legacy exports, the jsonl.gz bulk format, and the S3 download over real HTTP."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import threading
import urllib.parse
from pathlib import Path

import pytest

from featgraph.errors import BadInput, FeatgraphError
from featgraph.load import neuronpedia as L

from helpers import NEURONPEDIA


def _check_real_export(f, layer, rows):
    table = L.read_labels([f])
    assert len(table) == rows
    chosen = L.choose(table)
    assert len(chosen) == table["feature_index"].nunique()
    assert set(chosen["sae"]) == {f"{layer}-gemmascope-res-16k"}
    assert not chosen["description"].str.startswith(" ").any()
    if layer == 12:  # the post's head 0 feature
        assert chosen.set_index("feature_index").loc[8517, "description"].startswith("numerical patterns")


@pytest.mark.parametrize("layer", [12, 13])
def test_real_legacy_export_slices(layer):
    """Slices of the real exports kept in the repo (tests/data/README.md)."""
    _check_real_export(NEURONPEDIA / f"gemma-2-2b_{layer}-gemmascope-res-16k.json", layer, 303)


@pytest.mark.full_labels
@pytest.mark.parametrize("layer", [12, 13])
def test_real_legacy_exports_full(layer):
    """The whole exports (16,348 labels each), where FEATGRAPH_FULL_LABELS names their folder."""
    folder = os.environ.get("FEATGRAPH_FULL_LABELS")
    if not folder:
        pytest.skip("FEATGRAPH_FULL_LABELS is not set: the full Neuronpedia exports are not part of the repo")
    _check_real_export(Path(folder) / f"gemma-2-2b_{layer}-gemmascope-res-16k.json", layer, 16348)


def _jsonl_rows():
    return [
        {"id": "a", "modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "5", "description": " first",
         "typeName": "oai_token-act-pair", "explanationModelName": "gpt-4o-mini", "embedding": [0.1]},
        {"id": "b", "modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "5", "description": "second",
         "typeName": "oai_token-act-pair", "explanationModelName": "claude"},
        {"id": "c", "modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "10", "description": "   ",
         "explanationModelName": "gpt-4o-mini"},
        {"id": "d", "modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "100", "description": "hundred",
         "explanationModelName": "gpt-4o-mini"},
    ]


def _write_jsonl_gz(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


def test_jsonl_gz_rule(tmp_path):
    f = tmp_path / "batch-0.jsonl.gz"
    _write_jsonl_gz(f, _jsonl_rows())
    table = L.read_labels([tmp_path])
    default = L.choose(table).set_index("feature_index")["description"]
    assert default.to_dict() == {5: "first", 100: "hundred"}  # file order; empty description never wins
    preferred = L.choose(table, prefer=("claude",)).set_index("feature_index")["description"]
    assert preferred[5] == "second"


def test_bad_label_file(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{not json")
    with pytest.raises(BadInput, match="cannot read labels"):
        L.read_labels([f])
    with pytest.raises(BadInput, match="not found"):
        L.read_labels([tmp_path / "nope"])


class _S3(http.server.BaseHTTPRequestHandler):
    """A loopback S3 look-alike: ListObjectsV2 (paginated by one key) and object GETs."""

    objects: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        url = urllib.parse.urlparse(self.path)
        if url.path == "/":
            q = urllib.parse.parse_qs(url.query)
            keys = sorted(k for k in self.objects if k.startswith(q["prefix"][0]))
            start = int(q.get("continuation-token", ["0"])[0])
            page = keys[start : start + 1]
            more = start + 1 < len(keys)
            body = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    + "".join(f"<Contents><Key>{k}</Key></Contents>" for k in page)
                    + f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"
                    + (f"<NextContinuationToken>{start + 1}</NextContinuationToken>" if more else "")
                    + "</ListBucketResult>").encode()
        else:
            body = self.objects.get(urllib.parse.unquote(url.path.lstrip("/")))
            if body is None:
                self.send_error(404)
                return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def s3(tmp_path, monkeypatch):
    rows = _jsonl_rows()
    objs = {}
    for i, chunk in enumerate((rows[:2], rows[2:])):
        p = tmp_path / f"b{i}.jsonl.gz"
        _write_jsonl_gz(p, chunk)
        objs[f"v1/gemma-2-2b/12-gemmascope-res-16k/explanations/batch-{i}.jsonl.gz"] = p.read_bytes()
    _S3.objects, _S3.requests = objs, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _S3)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    monkeypatch.setenv(L.S3_ENV, f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("FEATGRAPH_CACHE", str(tmp_path / "cache"))
    yield _S3
    srv.shutdown()


def test_download_over_http_with_cache(s3, tmp_path, monkeypatch):
    d = L.download("gemma-2-2b", "12-gemmascope-res-16k")
    assert sorted(p.name for p in d.iterdir()) == ["batch-0.jsonl.gz", "batch-1.jsonl.gz"]
    chosen = L.choose(L.read_labels([d])).set_index("feature_index")["description"]
    assert chosen.to_dict() == {5: "first", 100: "hundred"}
    n = len(s3.requests)
    L.download("gemma-2-2b", "12-gemmascope-res-16k")  # cached: only the listing is asked again
    assert all(r.startswith("/?") for r in s3.requests[n:])
    # offline afterwards: the cache is used with a warning
    monkeypatch.setenv(L.S3_ENV, "http://127.0.0.1:9")
    assert L.download("gemma-2-2b", "12-gemmascope-res-16k") == d


def test_download_unreachable_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(L.S3_ENV, "http://127.0.0.1:9")
    monkeypatch.setenv("FEATGRAPH_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FeatgraphError, match="--source"):
        L.download("gemma-2-2b", "12-gemmascope-res-16k")
