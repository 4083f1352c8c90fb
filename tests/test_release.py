"""`chapters/` is exactly what nbgrader generates from `solutions/`, and leaks nothing."""

from __future__ import annotations

import filecmp
import json

import nbformat
import pytest
from nbgrader.nbgraderformat import MetadataValidator

from conftest import CHAPTERS, REPO, copy_course, run_nbgrader

FORBIDDEN = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
             "BEGIN MARK SCHEME", "Model answer", "Rubric")


def solution_cells(ch):
    return nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4).cells


def test_there_are_chapters():
    assert "01_superposition" in CHAPTERS


@pytest.mark.parametrize("ch", CHAPTERS)
def test_metadata_valid(ch):
    nb = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)
    MetadataValidator().validate_nb(nb)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "duplicate grade_id"
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    assert tests and all(c.metadata["nbgrader"]["locked"] for c in tests), "test cells must be locked"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "store solutions without outputs"


@pytest.mark.parametrize("ch", CHAPTERS)
def test_every_exercise_has_header_and_answer(ch):
    """Each graded test cell follows an answer cell, and a markdown header with goal, difficulty, time box."""
    cells = solution_cells(ch)
    for i, cell in enumerate(cells):
        md = cell.metadata.get("nbgrader", {})
        if not (md.get("grade") and cell.cell_type == "code"):
            continue
        before = cells[:i]
        assert any(c.metadata.get("nbgrader", {}).get("solution") for c in before[-3:]), \
            f"{md['grade_id']}: no answer cell right before the test"
        header = next(c for c in reversed(before) if c.cell_type == "markdown")
        for word in ("Goal", "Difficulty", "Time box"):
            assert word in header.source, f"{md['grade_id']}: exercise header lacks {word!r}"


def test_chapters_are_freshly_generated(tmp_path):
    course = copy_course(tmp_path / "course")
    for ch in CHAPTERS:
        run_nbgrader(course, "generate_assignment", ch, "--force", "--no-db")
        fresh = course / "chapters" / ch / f"{ch}.ipynb"
        assert filecmp.cmp(fresh, REPO / "chapters" / ch / f"{ch}.ipynb", shallow=False), \
            f"chapters/{ch} is stale: run `make release` and commit"
    extra = {p.name for p in (REPO / "chapters").iterdir()} - set(CHAPTERS)
    assert not extra, f"chapters/ holds folders with no solution: {extra}"


def test_no_solution_or_hidden_test_leaks():
    for path in sorted((REPO / "chapters").rglob("*")):
        if path.is_dir():
            continue
        text = path.read_text(errors="replace")
        for token in FORBIDDEN:
            assert token not in text, f"{path.relative_to(REPO)} contains {token!r}"
    for ch in CHAPTERS:
        released = nbformat.read(REPO / "chapters" / ch / f"{ch}.ipynb", as_version=4)
        body = json.dumps([c.source for c in released.cells])
        for cell in solution_cells(ch):
            md = cell.metadata.get("nbgrader", {})
            if md.get("solution") and cell.cell_type == "code":
                for line in cell.source.split("### BEGIN SOLUTION")[1:]:
                    answer = line.split("### END SOLUTION")[0].strip().splitlines()
                    for ln in answer:
                        if len(ln.strip()) > 25:
                            assert json.dumps(ln.strip())[1:-1] not in body, f"{ch}: solution line leaked: {ln}"
        for cell in released.cells:
            assert not cell.get("outputs")
            if cell.metadata.get("nbgrader", {}).get("solution"):
                assert "YOUR CODE HERE" in cell.source or "YOUR ANSWER HERE" in cell.source
