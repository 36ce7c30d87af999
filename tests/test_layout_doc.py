"""docs/architecture.md's "Where things live" map is the tree: every folder and module, with its one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.layout import PACKAGES, documented, render, summary

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def test_the_map_in_the_docs_is_the_tree() -> None:
    expected = render(ROOT)
    assert documented(DOC.read_text(encoding="utf-8")) == expected, (
        "docs/architecture.md 'Where things live' drifted from the tree; "
        "replace the map with the output of `python -m tests.support.layout`"
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_a_new_module_a_move_or_a_new_description_changes_the_map(tree: Path) -> None:
    before = render(tree)
    (tree / "keys" / "_jose" / "_extra.py").write_text('"""A module the map does not know yet."""\n')
    added = render(tree)
    assert "`_extra.py` — A module the map does not know yet." in added
    assert added != before
    (tree / "keys" / "_jose" / "_extra.py").rename(tree / "keys" / "_ring" / "_extra.py")
    moved = render(tree)
    assert moved not in (before, added)
    (tree / "keys" / "_ring" / "_extra.py").write_text('"""Said otherwise."""\n')
    assert render(tree) != moved


def test_a_module_without_a_docstring_cannot_be_mapped(tree: Path) -> None:
    (tree / "issuer" / "_nameless.py").write_text("X = 1\n")
    with pytest.raises(ValueError, match="no docstring"):
        render(tree)
    assert summary(tree / "issuer" / "__init__.py")


def test_a_document_without_the_markers_has_no_map() -> None:
    assert documented("# a page without the map\n") == ""
