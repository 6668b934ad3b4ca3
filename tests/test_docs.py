"""The documents: every relative link in README.md and docs/ points at a file of the repository."""

import re

from conftest import ROOT

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[str]:
    """The link targets of Markdown `[text](target)` and `![alt](target)` that are not URLs or anchors."""
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def test_links_are_found_and_urls_and_anchors_skipped():
    text = "see [a](docs/a.md#part), ![b](results/b.png), [c](https://x.org/y) and [d](#top)"
    assert relative_links(text) == ["docs/a.md#part", "results/b.png"]


def test_every_relative_link_of_the_documents_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    broken, checked = [], 0
    for page in pages:
        for target in relative_links(page.read_text()):
            checked += 1
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert checked >= 3  # the README's pictures at least
    assert broken == []
