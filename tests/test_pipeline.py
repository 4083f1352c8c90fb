"""The real grading pipeline (`make grade` = tools.grade -> nbgrader) on simulated classes.

One class hands in every chapter and is graded by one parallel run. For every chapter: the
solution handed in as a student would (full autograded marks, no guard flag, and no error in
any cell, read-only ones included) and the untouched release (zero). Chapter 01 also gets
planted mistakes (partial credit, with the visible checks' messages in the feedback and in the
class report) and an answer that loops forever (stopped by the cell timeout while the rest of
the class is still graded). A small extra chapter, made here from chapter 01 with a `raise`
planted in a read-only cell, shows that such an error fails the check. This is make test's
execution of every released chapter with the reference answers filled in, in the `fast` profile
(the mistakes harness, tests/test_mistakes.py, executes every `solutions/` notebook).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from conftest import CHAPTERS, REPO, copy_course

pytestmark = pytest.mark.slow


def grade_cells(nb):
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


def as_student(ch: str, **answers: str) -> nbformat.NotebookNode:
    """The release with every answer cell filled in from the solution (minus the markers),
    then the given answers (grade_id -> source) swapped in."""
    sol = grade_cells(nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4))
    nb = nbformat.read(REPO / "chapters" / ch / f"{ch}.ipynb", as_version=4)
    for gid, cell in grade_cells(nb).items():
        if cell.metadata["nbgrader"]["solution"]:
            src = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n", "", sol[gid].source)
            cell.source = answers.get(gid, src)
    return nb


def submit(course: Path, student: str, ch: str, nb, name: str | None = None) -> Path:
    d = course / "grading" / "submitted" / student / ch
    d.mkdir(parents=True, exist_ok=True)
    path = d / (name or f"{ch}.ipynb")
    nbformat.write(nb, path)
    return path


def grade(course: Path, cell_timeout: int = 300) -> list[dict]:
    env = {**os.environ, "COURSE_FAST": "1", "COURSE_CELL_TIMEOUT": str(cell_timeout)}
    p = subprocess.run([sys.executable, "-m", "tools.grade", "--root", str(course)], cwd=course,
                       env=env, capture_output=True, text=True)
    print(p.stdout[-4000:], p.stderr[-4000:])
    assert p.returncode == 0, p.stderr[-4000:]
    with (course / "grading" / "grades.csv").open() as f:
        return list(csv.DictReader(f))


def cell_scores(course: Path, ch: str, student: str) -> dict[str, tuple]:
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}", course_id="untangling-features") as gb:
        sub = gb.find_submission(ch, student)
        return {g.name: (g.auto_score, g.max_score) for g in sub.notebooks[0].grades}


def points(ch: str) -> dict[str, float]:
    nb = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
            for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


CELL_TIMEOUT = 120  # per cell: an answer that loops forever costs this much, in one worker
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


PLANTED = "99_planted"    # chapter 01's first exercise, then a read-only cell that raises


def plant_chapter(course: Path) -> nbformat.NotebookNode:
    """Add PLANTED to the course copy; return its solution (handed in as is, as a student would)."""
    nb = nbformat.read(REPO / "solutions" / "01_superposition" / "01_superposition.ipynb", as_version=4)
    end = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "test_generate_batch")
    nb.cells = nb.cells[:end + 1] + [nbformat.v4.new_code_cell(
        'raise RuntimeError("planted in a read-only cell")',
        metadata={"nbgrader": {"grade": False, "grade_id": "planted_raise", "locked": True, "schema_version": 3,
                               "solution": False, "task": False}})]
    (course / "solutions" / PLANTED).mkdir()
    nbformat.write(nb, course / "solutions" / PLANTED / f"{PLANTED}.ipynb")
    return nb


def cell_errors(nb) -> list[str]:
    """Every code cell of an executed notebook that ended in an error: 'cell <id>: <error>'."""
    out = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                gid = cell.metadata.get("nbgrader", {}).get("grade_id") or f"#{i}"
                out.append(f"cell {gid!r} raised {o.get('ename')}: {(o.get('evalue') or '')[:300]}")
    return out


def autograded(course: Path, student: str, ch: str) -> nbformat.NotebookNode:
    return nbformat.read(course / "grading" / "autograded" / student / ch / f"{ch}.ipynb", as_version=4)


# planted mistakes in chapter 01, each left with ToyModel unanswered (its training cells then fail
# at once): with c_planted, a class whose class report has something to say
REPORT_CLASS = {
    "e_one_number": {"importance_weighted_loss": (
        "def importance_weighted_loss(out, x, importance):\n"
        "    return ((x - out).pow(2) * importance).sum(-1).mean()\n")},
    "f_averaged": {"importance_weighted_loss": (
        "def importance_weighted_loss(out, x, importance):\n"
        "    return ((x - out).pow(2) * importance).mean((0, 2))\n")},
}


def selected_chapters(session) -> list[str]:
    """The chapters whose tests this session runs (`-k 03_` grades chapter 03 only)."""
    here = [it for it in session.items if it.module.__name__ == __name__]
    chs = {it.callspec.params["ch"] for it in here if hasattr(it, "callspec") and "ch" in it.callspec.params}
    if any(it.name.startswith(("test_partial", "test_submitted", "test_class", "test_a_planted")) for it in here):
        chs.add("01_superposition")
    return sorted(chs)


@pytest.fixture(scope="module")
def graded(request, tmp_path_factory):
    """One class handing in every (selected) chapter, graded by one parallel `make grade` run: the
    solution (a_solution), the untouched release (b_blank) and, for chapter 01, a planted
    mistake (c_planted) and an answer that never returns (d_loop)."""
    course = copy_course(tmp_path_factory.mktemp("pipeline") / "course")
    chapters, ch1 = selected_chapters(request.session), "01_superposition"
    for ch in chapters:
        submit(course, "a_solution", ch, as_student(ch))
        submit(course, "b_blank", ch, nbformat.read(REPO / "chapters" / ch / f"{ch}.ipynb", as_version=4))
    if ch1 in chapters:
        submit(course, "c_planted", ch1, as_student(ch1, importance_weighted_loss=(
            "def importance_weighted_loss(out, x, importance):\n"
            "    return ((x - out).pow(2) * importance).mean((0, 2))\n")))
        submit(course, "d_loop", ch1, as_student(
            ch1, generate_batch="def generate_batch(*args, **kwargs):\n    while True:\n        pass\n"))
        for student, answers in REPORT_CLASS.items():
            submit(course, student, ch1, as_student(ch1, toy_model=STUB, **answers))
        submit(course, "a_solution", PLANTED, plant_chapter(course))
    before = digest(course / "grading" / "submitted")
    rows = grade(course, cell_timeout=CELL_TIMEOUT)
    return course, rows, before, chapters


def row(rows: list[dict], student: str, ch: str) -> dict:
    return next(r for r in rows if r["student"] == student and r["chapter"] == ch)


def test_submitted_untouched_and_one_row_each(graded):
    course, rows, before, chapters = graded
    assert digest(course / "grading" / "submitted") == before, "grading modified grading/submitted/"
    extra = ([(s, "01_superposition") for s in ("c_planted", "d_loop", *REPORT_CLASS)] + [("a_solution", PLANTED)]
             if "01_superposition" in chapters else [])
    assert sorted((r["student"], r["chapter"]) for r in rows) == sorted(
        [(s, ch) for s in ("a_solution", "b_blank") for ch in chapters] + extra)
    # every submission here is honest (blank, mistaken or looping): the guard flags none of them
    flagged = [(r["student"], r["chapter"], r["notes"]) for r in rows if r["status"].startswith("needs a human: tampering")]
    assert not flagged, flagged


@pytest.mark.parametrize("ch", CHAPTERS)
def test_solution_full_marks_release_zero(ch, graded):
    course, rows, _, _ = graded
    sol = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)
    want = points(ch)
    auto = {gid: p for gid, p in want.items()
            if not grade_cells(sol)[gid].metadata["nbgrader"]["solution"]}   # test cells, not written answers
    a = cell_scores(course, ch, "a_solution")
    assert {g: a[g] for g in auto} == {g: (p, p) for g, p in auto.items()}, a
    assert row(rows, "a_solution", ch)["status"] == "graded", row(rows, "a_solution", ch)   # no guard flag
    b = cell_scores(course, ch, "b_blank")
    assert all(score == 0 for score, _ in b.values()), b
    assert float(row(rows, "b_blank", ch)["score"]) == 0

    students = ("a_solution", "b_blank") + (("c_planted", "d_loop") if ch == "01_superposition" else ())
    for student in students:
        html = (course / "grading" / "feedback" / student / ch / f"{ch}.html").read_text()
        assert "HIDDEN TESTS" not in html, student
        for cell in grade_cells(sol).values():   # no line of a hidden test reaches the feedback
            hidden = cell.source.partition("### BEGIN HIDDEN TESTS")[2].partition("### END HIDDEN TESTS")[0]
            for line in filter(None, (ln.strip() for ln in hidden.splitlines())):
                if len(line) > 30 and not line.startswith("#"):
                    assert line not in html, f"{student}: hidden test line in feedback: {line}"
    blank = (course / "grading" / "feedback" / "b_blank" / ch / f"{ch}.html").read_text()
    assert "Model answer" not in blank and "Rubric" not in blank


def test_partial_credit_and_timeout(graded):
    """A planted mistake costs exactly its exercise, with the check's message in the feedback; an
    answer that never returns is stopped by the cell timeout and the rest of its notebook graded."""
    course, rows, _, _ = graded
    ch = "01_superposition"
    want = points(ch)
    c = cell_scores(course, ch, "c_planted")
    assert c["test_importance_weighted_loss"] == (0, want["test_importance_weighted_loss"])
    assert c["test_generate_batch"] == (want["test_generate_batch"],) * 2
    html = (course / "grading" / "feedback" / "c_planted" / ch / f"{ch}.html").read_text()
    assert "you averaged over features" in html
    d = cell_scores(course, ch, "d_loop")
    assert d["test_generate_batch"][0] == 0
    assert d["test_importance_weighted_loss"] == (want["test_importance_weighted_loss"],) * 2
    print({(r["student"], r["chapter"]): r["score"] for r in rows})


@pytest.mark.parametrize("ch", CHAPTERS)
def test_no_cell_of_a_solution_errors(ch, graded):
    """Every cell of the released chapter with the reference answers ran without an error after
    autograding, read-only cells included (the scores alone miss an error after the last test)."""
    course = graded[0]
    errors = cell_errors(autograded(course, "a_solution", ch))
    assert not errors, f"{ch}: " + "; ".join(errors)


def test_a_planted_raise_in_a_read_only_cell_is_caught(graded):
    """The check above, on a chapter whose only problem is a `raise` in a read-only cell: its
    tests all pass, and the check still names the chapter and the cell."""
    course, rows, _, _ = graded
    planted = autograded(course, "a_solution", PLANTED)
    assert float(row(rows, "a_solution", PLANTED)["score"]) == float(row(rows, "a_solution", PLANTED)["max_score"])
    assert cell_errors(planted) == ["cell 'planted_raise' raised RuntimeError: planted in a read-only cell"]


def test_class_report(graded):
    """grading/report.html: per exercise, the score distribution and the checks' most frequent
    messages; the exercises most students lost points on first; plotly inline (works offline)."""
    course, rows, _, _ = graded
    page = (course / "grading" / "report.html").read_text()
    # plotly.js inline (its own text names its CDN, so look for script tags that load anything)
    assert not re.search(r"<script[^>]*\bsrc=", page) and "Plotly.newPlot" in page and len(page) > 1_000_000
    from tools.grading import classreport
    from tools.grading.config import GradeConfig

    data = classreport.class_data(GradeConfig(root=course, jobs=1, timeout=1, memory=2),
                                  [_Row(r) for r in rows])["01_superposition"]
    loss = data["exercises"]["test_importance_weighted_loss"]
    messages = " | ".join(loss["examples"][m] for m, _ in loss["messages"].most_common(3))
    assert "you averaged over features" in messages and loss["messages"].most_common(1)[0][1] >= 2, messages
    assert "one loss per instance" in messages, messages
    graded_01 = [r for r in rows if r["chapter"] == "01_superposition" and r["score"]]
    assert len(loss["scores"]) == len(graded_01) and loss["max"] == points("01_superposition")[
        "test_importance_weighted_loss"]
    assert sorted(loss["scores"]) == sorted(cell_scores(course, "01_superposition", r["student"])
                                            ["test_importance_weighted_loss"][0] for r in graded_01)
    toy = data["exercises"]["test_toy_model"]
    assert "ToyModel" in toy["messages"].most_common(1)[0][0], toy["messages"]   # left unanswered by three
    for needle in ("01_superposition", "test_importance_weighted_loss", "you averaged over features",
                   "Students who lost points"):
        assert needle in page, needle


class _Row:
    """A grades.csv row as tools.grading reads it."""

    def __init__(self, r: dict):
        self.student, self.chapter, self.status = r["student"], r["chapter"], r["status"]
