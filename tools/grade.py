"""`make grade`: autograde every submission in grading/submitted/, never stopping for one.

    grading/submitted/<student>/<chapter>/<any name>.ipynb   what students handed in (read only)
    grading/work/submitted/<student>/<chapter>/<chapter>.ipynb   normalised copies (tools.intake)
    grading/autograded/, grading/gradebook.db                 nbgrader's results (formgrader reads them)
    grading/feedback/<student>/<chapter>/<chapter>.html       feedback, hidden tests removed
    grading/grades.csv                                        one row per submission, with a status

Each student is autograded in a process of its own with a per-cell timeout and a memory limit,
so a kernel that dies or a notebook that loops costs that student one "needs a human" row and
nothing more.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tools.intake import take

REPO = Path(__file__).resolve().parents[1]
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)


@dataclass
class Row:
    student: str
    chapter: str
    file: str
    status: str = "graded"
    score: float | None = None
    max_score: float | None = None
    needs_manual: bool = False
    notes: list[str] = field(default_factory=list)


def nbgrader(root: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=timeout)


def chapters(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "solutions").iterdir() if (p / f"{p.name}.ipynb").exists())


def releases(root: Path) -> dict[str, nbformat.NotebookNode]:
    return {ch: nbformat.read(root / "chapters" / ch / f"{ch}.ipynb", as_version=4) for ch in chapters(root)}


def collect(root: Path) -> list[tuple[str, str | None, Path]]:
    """(student, chapter folder or None, file) for every file handed in."""
    found = []
    for student_dir in sorted(p for p in (root / "grading" / "submitted").glob("*") if p.is_dir()):
        for f in sorted(p for p in student_dir.rglob("*") if p.is_file()):
            if f.name == "timestamp.txt" or ".ipynb_checkpoints" in f.parts:
                continue
            folder = f.parent.name if f.parent != student_dir else None
            found.append((student_dir.name, folder, f))
    return found


def sanitise_for_feedback(nb: nbformat.NotebookNode) -> None:
    """Remove hidden tests, and any traceback or message that could quote them."""
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not md.get("grade") or md.get("solution"):
            continue
        visible = HIDDEN.sub("# (hidden tests ran here)\n", cell.source)
        cell.source = visible
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                keep = out["ename"] == "CheckFailed" or (out["evalue"] and out["evalue"] in visible)
                if out["ename"] != "AssertionError" and out["ename"] != "CheckFailed":
                    keep = True  # the student's own exception (NameError, NotImplementedError ...)
                out["evalue"] = out["evalue"] if keep else "a hidden test failed"
                out["traceback"] = [f"{out['ename']}: {out['evalue']}"]


def grade_one(root: Path, student: str, chapter: str, timeout: float) -> tuple[str | None, str]:
    """Autograde one student's chapter in its own process; (problem or None, log tail)."""
    dest = root / "grading" / "autograded" / student / chapter
    shutil.rmtree(dest, ignore_errors=True)
    try:
        p = nbgrader(root, "autograde", chapter, f"--student={student}", "--force", timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"grading took longer than {timeout:.0f} s", ""
    log = (p.stdout + p.stderr)[-2000:]
    if not (dest / f"{chapter}.ipynb").exists():
        reason = "kernel died (crash, os._exit or memory limit)" if "DeadKernel" in log or "died" in log \
            else "nbgrader could not grade it"
        return reason, log
    return None, log


def feedback(root: Path, student: str, chapter: str) -> None:
    """Feedback HTML from a sanitised copy of the autograded notebook."""
    src = root / "grading" / "autograded" / student / chapter
    safe_root = root / "grading" / "work" / "feedback-src"
    safe = safe_root / student / chapter
    shutil.rmtree(safe, ignore_errors=True)
    shutil.copytree(src, safe)
    nb = nbformat.read(safe / f"{chapter}.ipynb", as_version=4)
    sanitise_for_feedback(nb)
    nbformat.write(nb, safe / f"{chapter}.ipynb")
    rel = os.path.relpath(safe_root, root)
    nbgrader(root, "generate_feedback", chapter, f"--student={student}", "--force",
             f"--CourseDirectory.autograded_directory={rel}")
    html = root / "grading" / "feedback" / student / chapter / f"{chapter}.html"
    if html.exists():  # belt and braces: nbgrader renders the DB's copy of some cells too
        html.write_text(HIDDEN.sub("", html.read_text()))


def scores(root: Path, rows: list[Row]) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'grading' / 'gradebook.db'}", course_id="untangling-features") as gb:
        for row in rows:
            if row.status != "graded":
                continue
            try:
                sub = gb.find_submission(row.chapter, row.student)
            except MissingEntry:
                row.status = "needs a human: no gradebook entry after autograde"
                continue
            row.score, row.max_score = sub.score, sub.max_score
            row.needs_manual = bool(sub.needs_manual_grade)


def run(root: Path, timeout: float) -> list[Row]:
    rel = releases(root)
    work = root / "grading" / "work" / "submitted"
    shutil.rmtree(work, ignore_errors=True)
    rows: list[Row] = []
    for student, folder, path in collect(root):
        folder_ch = folder if folder in rel else None
        intake = take(path, folder_ch, rel)
        row = Row(student, intake.chapter or (folder or "?"), str(path.relative_to(root)), notes=intake.notes)
        rows.append(row)
        if intake.problem:
            row.status = f"needs a human: {intake.problem}"
            continue
        if any(r.student == student and r.chapter == intake.chapter and r is not row for r in rows):
            row.status = "needs a human: several files for this chapter"
            continue
        out = work / student / intake.chapter
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(intake.notebook, out / f"{intake.chapter}.ipynb")
        stamp = path.parent / "timestamp.txt"
        if stamp.exists():
            shutil.copy(stamp, out / "timestamp.txt")
    for ch in sorted({r.chapter for r in rows if r.status == "graded"}):
        p = nbgrader(root, "generate_assignment", ch, "--force")  # puts the chapter in the gradebook
        if p.returncode != 0:
            raise SystemExit(f"could not register {ch} in the gradebook:\n{p.stderr[-2000:]}")
    for row in rows:
        if row.status != "graded":
            continue
        problem, _ = grade_one(root, row.student, row.chapter, timeout)
        if problem:
            row.status = f"needs a human: {problem}"
            continue
        feedback(root, row.student, row.chapter)
    scores(root, rows)
    return rows


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "chapter", "status", "score", "max_score", "needs_manual_grade", "file", "notes"])
        for r in rows:
            w.writerow([r.student, r.chapter, r.status, "" if r.score is None else r.score,
                        "" if r.max_score is None else r.max_score, r.needs_manual, r.file, "; ".join(r.notes)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=REPO, help="course folder (default: this repository)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per student notebook")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    if not (root / "grading" / "submitted").is_dir():
        print(f"Nothing to grade: put submissions in {root / 'grading' / 'submitted'}/<student>/<chapter>/",
              file=sys.stderr)
        return 1
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    rows = run(root, args.timeout)
    out = root / "grading" / "grades.csv"
    write_csv(rows, out)
    width = max([len(r.student) for r in rows] + [7])
    for r in rows:
        score = "" if r.score is None else f"{r.score:g}/{r.max_score:g}"
        print(f"{r.student:<{width}}  {r.chapter:<22} {score:>8}  {r.status}")
    print(f"{len(rows)} submission(s); grades in {out.relative_to(root)}, feedback in grading/feedback/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
