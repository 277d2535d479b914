"""Relative links in the Markdown docs point at files that exist (results files get renamed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [
        REPO / "README.md",
        *(REPO / "docs").glob("*.md"),
        *(REPO / "benchmarks").glob("*.md"),
        *(REPO / "benchmarks" / "results").glob("*.md"),
        *(REPO / "benchmarks" / "studies" / "results").glob("*.md"),
    ]
)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(path: Path) -> list[str]:
    targets = (m.group(1).split("#")[0] for m in LINK.finditer(path.read_text()))
    return [t for t in targets if t and not re.match(r"^[a-z]+:", t)]


def test_link_pattern_finds_relative_links_only() -> None:
    text = "see [a](docs/a.md#x), [b](https://x.org/b.md) and [c](../c.md)"
    assert [t.split("#")[0] for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t)] == ["docs/a.md", "../c.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    missing = [t for t in relative_links(doc) if not (doc.parent / t).exists()]
    assert not missing, f"{doc.relative_to(REPO)} links to missing files: {missing}"
