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


def test_the_readme_shows_the_shipped_models_chart_and_curve():
    links = relative_links((ROOT / "README.md").read_text())
    assert {"results/parameters.png", "results/accuracy.png"} <= set(links)


def test_the_chart_and_curve_are_drawn_from_the_exported_record(tmp_path):
    import json

    from app.config import ModelConfig
    from app.model import build_model
    from app.plots import shipped

    written = shipped(ROOT / "exported", tmp_path)
    assert [p.name for p in written] == ["parameters.png", "accuracy.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    metadata = json.loads((ROOT / "exported" / "metadata.json").read_text())
    run = metadata["run_metrics"]
    # The chart's model is the exported one: 7,862 parameters, 180 of them BatchNorm statistics.
    assert build_model(ModelConfig.from_dict(run["config"])).count_params() == metadata["parameters"]["total"]
    assert len(run["test_accuracy_per_epoch"]) == run["epochs"] == 20
    assert run["test_accuracy_per_epoch"][-1] == run["final_test_accuracy"]
