"""The contract the code cites lives in the repo's own docs/, and every citation resolves."""

from __future__ import annotations

import re

from helpers import REPO

CITE = re.compile(r"docs/([\w-]+\.md)")


def _sources():
    for folder in ("featgraph", "tests", "bench", "scripts"):
        yield from (p for p in (REPO / folder).rglob("*.py"))
    yield REPO / "README.md"
    yield from (REPO / "docs").glob("*.md")


def test_every_cited_doc_exists_and_nothing_cites_an_outside_spec():
    cited = {}
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        assert path.name == "test_docs.py" or not re.search(r"\bSPEC\b", text), f"{path} cites a SPEC outside the repo: cite docs/ instead"
        for name in CITE.findall(text):
            cited.setdefault(name, path)
    assert {"maths.md", "run-directory.md", "formats.md"} <= set(cited)
    missing = {n: str(p) for n, p in cited.items() if not (REPO / "docs" / n).is_file()}
    assert not missing, f"cited but missing from docs/: {missing}"
