"""Normalise a student's submission before nbgrader sees it (`make grade`, step 1).

What students hand in is rarely the file nbgrader expects: Colab renames it ("Copy of …",
"… (1).ipynb"), strips cell ids, loses or duplicates the nbgrader cell metadata, or deletes test
cells. Each function here returns a fixed copy and a list of notes; the original is never
touched. See ../shared/notes/nbgrader.md §5 for the failure modes these repair.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat


class NotANotebook(ValueError):
    """The file cannot be read as a Jupyter notebook."""


@dataclass
class Intake:
    chapter: str | None  # chapter id the notebook belongs to, or None when unknown
    notebook: nbformat.NotebookNode | None
    notes: list[str] = field(default_factory=list)  # what was repaired, for the grades CSV
    problem: str | None = None  # set when a human must look at it


def read_notebook(path: Path) -> nbformat.NotebookNode:
    raw = path.read_bytes()
    if not raw.strip():
        raise NotANotebook("the file is empty")
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as err:
        raise NotANotebook(f"not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict) or "cells" not in data:
        raise NotANotebook("JSON but not a notebook (no 'cells')")
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as err:  # nbformat raises several types on malformed notebooks
        raise NotANotebook(f"malformed notebook ({type(err).__name__}: {err})") from None
    return nb


def grade_ids(nb: nbformat.NotebookNode) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if isinstance(c.metadata.get("nbgrader"), dict) and "grade_id" in c.metadata["nbgrader"]]


def chapter_from_name(name: str, chapters: list[str]) -> str | None:
    """'Copy of 01_superposition (1).ipynb' -> '01_superposition'."""
    stem = re.sub(r"\.ipynb$", "", name, flags=re.I)
    stem = re.sub(r"^(copy of\s+)+", "", stem.strip(), flags=re.I)
    stem = re.sub(r"(\s*\(\d+\)|[-_ ]copy\d*|[-_ ]\d+)$", "", stem.strip(), flags=re.I)
    if stem in chapters:
        return stem
    hits = [ch for ch in chapters if ch in name]
    return hits[0] if len(hits) == 1 else None


def chapter_from_content(nb, releases: dict[str, nbformat.NotebookNode]) -> str | None:
    """The chapter whose grade ids (or, failing that, cell sources) the notebook shares most."""
    ids = set(grade_ids(nb))
    scores = {ch: len(ids & set(grade_ids(rel))) for ch, rel in releases.items()}
    best = max(scores, key=scores.get, default=None)
    if best is not None and scores[best] > 0:
        return best
    text = "\n".join(c.source for c in nb.cells)
    ratios = {ch: difflib.SequenceMatcher(None, text[:20000],
                                          "\n".join(c.source for c in rel.cells)[:20000]).quick_ratio()
              for ch, rel in releases.items()}
    best = max(ratios, key=ratios.get, default=None)
    return best if best is not None and ratios[best] > 0.6 else None


def _key(cell) -> tuple[str, str]:
    first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
    return cell.cell_type, first[:80]


def dedupe(nb) -> list[str]:
    """Keep nbgrader metadata on the last copy of a duplicated grade id only (nbgrader #1083)."""
    notes, seen = [], set()
    for cell in reversed(nb.cells):
        md = cell.metadata.get("nbgrader")
        if not isinstance(md, dict) or "grade_id" not in md:
            continue
        if md["grade_id"] in seen:
            del cell.metadata["nbgrader"]
            notes.append(f"duplicate cell {md['grade_id']} ignored")
        seen.add(md["grade_id"])
    return notes


def restore_metadata(nb, release) -> list[str]:
    """Re-attach nbgrader metadata that a notebook lost, by aligning its cells with the release.

    Locked cells keep their first line, so they align exactly; an answer cell lost between two
    aligned cells takes the metadata of the release's answer cell between the same two.
    """
    have = set(grade_ids(nb))
    missing = {gid for gid in grade_ids(release)} - have
    if not missing:
        return []
    s_keys, r_keys = [_key(c) for c in nb.cells], [_key(c) for c in release.cells]
    pairs = {}
    for block in difflib.SequenceMatcher(None, s_keys, r_keys, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            pairs[block.a + k] = block.b + k
    restored = []

    def attach(i, j):
        md = release.cells[j].metadata.get("nbgrader")
        if md and md.get("grade_id") in missing and "nbgrader" not in nb.cells[i].metadata:
            nb.cells[i].metadata["nbgrader"] = dict(md)
            missing.discard(md["grade_id"])
            restored.append(md["grade_id"])

    for i, j in pairs.items():
        attach(i, j)
    # answer cells: the student's text differs from the stub, so align them by position
    anchors = sorted(pairs.items())
    for (i0, j0), (i1, j1) in zip([(-1, -1)] + anchors, anchors + [(len(nb.cells), len(release.cells))]):
        s_gap = [i for i in range(i0 + 1, i1) if "nbgrader" not in nb.cells[i].metadata]
        r_gap = [j for j in range(j0 + 1, j1)
                 if release.cells[j].metadata.get("nbgrader", {}).get("grade_id") in missing]
        for i, j in zip(s_gap, r_gap):
            if nb.cells[i].cell_type == release.cells[j].cell_type:
                attach(i, j)
    return [f"restored metadata of {', '.join(restored)}"] if restored else []


def take(path: Path, folder_chapter: str | None, releases: dict[str, nbformat.NotebookNode]) -> Intake:
    """Read, identify and repair one submitted file."""
    chapters = sorted(releases)
    try:
        nb = read_notebook(path)
    except NotANotebook as err:
        return Intake(folder_chapter, None, problem=f"{path.name}: {err}")
    notes = []
    by_content = chapter_from_content(nb, releases)
    by_name = chapter_from_name(path.name, chapters)
    chapter = by_content or by_name or folder_chapter
    if chapter is None:
        return Intake(None, None, problem=f"{path.name}: cannot tell which chapter this is")
    if folder_chapter and chapter != folder_chapter:
        notes.append(f"handed in under {folder_chapter} but is {chapter}")
    if path.name != f"{chapter}.ipynb":
        notes.append(f"renamed {path.name!r}")
    notes += dedupe(nb)
    notes += restore_metadata(nb, releases[chapter])
    if not set(grade_ids(nb)) & set(grade_ids(releases[chapter])):
        return Intake(chapter, None, notes, problem=f"{path.name}: no gradable cells could be identified")
    for cell in nb.cells:  # Colab re-saves drop ids; nbformat 4.5 wants them
        cell.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    return Intake(chapter, nb, notes)
