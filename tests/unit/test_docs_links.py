"""Every relative link in the README and docs/ leads somewhere: the file exists and, with a #fragment, the
heading does (as GitHub makes anchors). Moving a section between docs breaks a test, not a reader's click."""

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "examples/web/README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: Path) -> set[str]:
    """GitHub's anchor of each heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", markdown.read_text(encoding="utf-8"), flags=re.DOTALL)
    headings = re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def relative_links(markdown: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", markdown.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("markdown", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(markdown: Path):
    broken = []
    for target in relative_links(markdown):
        path_part, _, fragment = target.partition("#")
        destination = (markdown.parent / path_part).resolve() if path_part else markdown
        if not destination.exists() or (destination.suffix == ".md" and fragment not in {"", *anchors(destination)}):
            broken.append(target)
    assert broken == []


def test_the_link_checker_sees_a_broken_anchor(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n## A section, with punctuation\n[ok](#a-section-with-punctuation) [bad](#nope)\n")
    assert "a-section-with-punctuation" in anchors(page)
    assert relative_links(page) == ["#a-section-with-punctuation", "#nope"]
