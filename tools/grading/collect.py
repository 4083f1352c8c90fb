"""What was handed in: one Row per file, each notebook normalised and tied to one chapter.

    grading/submitted/<student>/<chapter>/<any name>.ipynb   (never modified)

Every file ends as a row of grades.csv: a notebook to grade, an identical copy that shares a
grade, or "needs a human: <reason>" (not a notebook, outside a student's folder, two different
files for one chapter, ...). The repairs themselves are tools.intake's.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tools.grading.config import GRADED, GradeConfig
from tools.intake import NotANotebook, read_notebook, take

IGNORED_NAMES = {"timestamp.txt", ".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass
class Row:
    """One file handed in, and what became of it (a row of grades.csv)."""

    student: str
    chapter: str
    file: str                                    # relative to grading/submitted/
    status: str = GRADED                         # "graded", or "needs a human: <reason>"
    score: float | None = None
    max_score: float | None = None
    needs_manual: bool = False                   # written answers (or flagged exercises) wait in formgrader
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None
    notebook: nbformat.NotebookNode | None = field(default=None, repr=False)   # the normalised notebook
    timestamp: str | None = None
    digest: str = ""                             # sha256 of the normalised notebook

    def need_human(self, reason: str) -> None:
        self.status = f"needs a human: {reason}"


def chapters(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "solutions").iterdir() if (p / f"{p.name}.ipynb").exists())


def course_config(root: Path, **overrides):
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    return cfg


def register(config: GradeConfig, wanted: list[str]) -> tuple[dict, dict[str, str]]:
    """Put each chapter in the master gradebook (nbgrader generate_assignment) and return the
    fresh releases. The release goes to grading/work/release/, never to the committed chapters/.
    A chapter that fails is reported, not fatal."""
    from nbgrader.apps import NbGraderAPI

    release = config.grading / "work" / "release"
    cfg = course_config(config.root, CourseDirectory__release_directory=os.path.relpath(release, config.root))
    api = NbGraderAPI(config=cfg)
    releases, failed = {}, {}
    for ch in wanted:
        r = api.generate_assignment(ch, force=True)
        path = release / ch / f"{ch}.ipynb"
        if r["success"] and path.exists():
            releases[ch] = nbformat.read(path, as_version=4)
        else:
            failed[ch] = (r.get("error") or r.get("log") or "generate_assignment failed").strip().splitlines()[-1][:200]
    return releases, failed


def _skip(path: Path, base: Path) -> bool:
    parts = path.relative_to(base).parts
    return (path.name in IGNORED_NAMES or any(p.startswith(".") or p == "__MACOSX" for p in parts)
            or ".ipynb_checkpoints" in parts)


def collect(config: GradeConfig, known: set[str]) -> tuple[list[Row], list[tuple]]:
    """One row per file handed in. Returns (rows, [(row, path, folder chapter or None, folder)])
    for the files that look like notebooks; `known` are the chapter ids."""
    base = config.grading / "submitted"
    rows, notebooks = [], []
    for entry in sorted(base.iterdir()):
        if entry.name.startswith(".") or entry.name in IGNORED_NAMES:
            continue
        if entry.is_file():
            row = Row("?", "?", str(entry.relative_to(base)))
            row.need_human("file is not inside a student's folder (grading/submitted/<student>/<chapter>/)")
            rows.append(row)
            continue
        files = sorted(p for p in entry.rglob("*") if p.is_file() and not _skip(p, base))
        student_rows, extras = [], []
        for f in files:
            looks_notebook = f.suffix.lower() == ".ipynb"
            if not looks_notebook and f.stat().st_size < 50_000_000:
                try:
                    read_notebook(f)
                    looks_notebook = True
                except (NotANotebook, OSError):
                    pass
            if not looks_notebook:
                extras.append(f)
                continue
            folder = f.parent.name if f.parent != entry else None
            row = Row(entry.name, folder or "?", str(f.relative_to(base)))
            if f.suffix.lower() != ".ipynb":
                row.notes.append(f"not named .ipynb ({f.name})")
            student_rows.append(row)
            notebooks.append((row, f, folder if folder in known else None, folder))
        if extras:
            names = ", ".join(str(p.relative_to(entry)) for p in extras)
            if student_rows:
                for row in student_rows:
                    row.notes.append(f"other files ignored: {names}")
            else:
                row = Row(entry.name, "?", str(entry.relative_to(base)))
                row.need_human(f"no notebook among the files handed in ({names})")
                student_rows.append(row)
        if not files:
            row = Row(entry.name, "?", str(entry.relative_to(base)))
            row.need_human("nothing handed in (empty folder)")
            student_rows.append(row)
        rows += student_rows
    return rows, notebooks


def normalise(root: Path, notebooks, releases: dict, failed: dict[str, str]) -> None:
    """Identify and repair each notebook (tools.intake.take) and give it the course's kernel."""
    known = dict(releases)
    for ch in failed:  # still recognise its files, to say why they cannot be graded
        committed = root / "chapters" / ch / f"{ch}.ipynb"
        if committed.exists():
            known[ch] = nbformat.read(committed, as_version=4)
    for row, path, folder_ch, folder in notebooks:
        intake = take(path, folder_ch, known)
        row.chapter = intake.chapter or row.chapter
        row.notes = intake.notes + row.notes
        if intake.chapter and folder and folder != intake.chapter and folder_ch is None:
            row.notes.append(f"handed in under {folder} but is {intake.chapter}")
        if intake.problem:
            row.need_human(intake.problem)
            continue
        if row.chapter in failed:
            row.need_human(f"chapter {row.chapter} could not be registered in the gradebook: {failed[row.chapter]}")
            continue
        # whatever kernel the file asks for, it runs in the course's sandboxed kernel
        intake.notebook.metadata["kernelspec"] = releases[row.chapter].metadata.get("kernelspec", {})
        row.notebook = intake.notebook
        stamp = path.parent / "timestamp.txt"
        row.timestamp = stamp.read_text(errors="replace")[:100] if stamp.is_file() else None
        row.digest = hashlib.sha256(nbformat.writes(row.notebook).encode()).hexdigest()


def pick_one_per_chapter(rows: list[Row]) -> None:
    """Two files for one chapter: grade one, and say which; an identical copy shares its grade."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        if r.status == GRADED and r.notebook is not None:
            groups.setdefault((r.student, r.chapter), []).append(r)
    for (_, ch), group in groups.items():
        if len(group) < 2:
            continue

        def preference(r: Row):
            p = Path(r.file)
            return (p.parent.name == ch and p.name == f"{ch}.ipynb", p.parent.name == ch, r.file)

        chosen = max(group, key=preference)
        for r in group:
            if r is chosen:
                continue
            if r.digest == chosen.digest:
                r.status = f"{GRADED} (identical copy of {chosen.file}; its score counts once, there)"
            else:
                r.need_human(f"{len(group)} different files for {ch}; graded {chosen.file} — check which one counts")
            r.notebook = None
        chosen.notes.append("also handed in: " + ", ".join(r.file for r in group if r is not chosen))
