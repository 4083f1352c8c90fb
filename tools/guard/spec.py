"""Grader side: what a job's guard must know, and each chapter's allowed helpers.

Two steps, because the notebook the kernel runs exists only inside the worker (after nbgrader
put the locked cells back):

* :func:`job_part` (in ``make grade``, from the solution): the hashes of the locked cells'
  sources, the exercise (test cell) each graded cell belongs to, the answers' names, and the
  chapter's allowed helpers (``allowed/_all.txt`` + ``allowed/<chapter>.txt``);
* :func:`kernel_spec` (in the worker, from the notebook about to run): one record per code
  cell, named as ipykernel names its code (a hash of the source) and carrying the hash of the
  source IPython will compile, so the guard knows whose code every frame runs.

An allowed-helper file holds one pattern per line, ``<module>:<qualified name>`` with shell
wildcards (``utils.saes.*:*.encode``), and ``#`` comments saying why.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

ALLOWED = Path(__file__).parent / "allowed"
MARKERS = re.compile(r"[ \t]*### (BEGIN|END) SOLUTION\n?")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def allowed_patterns(chapter: str, folder: Path | None = None) -> list[str]:
    folder = folder or ALLOWED
    out = []
    for name in ("_all.txt", f"{chapter}.txt"):
        path = folder / name
        if path.exists():
            out += [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    return [p for p in out if p]


def _md(cell) -> dict:
    md = cell.metadata.get("nbgrader")
    return md if isinstance(md, dict) else {}


def _is_test(cell) -> bool:
    md = _md(cell)
    return cell.cell_type == "code" and bool(md.get("grade")) and not md.get("solution")


def exercises(nb) -> dict[str, str]:
    """grade id -> the test cell it belongs to: the first test cell at or after it."""
    out, pending = {}, []
    for cell in nb.cells:
        gid = _md(cell).get("grade_id")
        if gid:
            pending.append(gid)
        if _is_test(cell):
            out.update({g: gid for g in pending})
            pending = []
    return out


def answer_names(solution) -> dict[str, str]:
    """Top-level names the reference answers bind (def, class, assignment) -> their exercise."""
    ex, out = exercises(solution), {}
    for cell in solution.cells:
        md = _md(cell)
        if cell.cell_type != "code" or not md.get("solution") or md.get("grade_id") not in ex:
            continue
        try:
            tree = ast.parse(MARKERS.sub("", cell.source))
        except SyntaxError:
            continue
        for node in tree.body:
            targets = [node] if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) else (
                node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else [])
            for t in targets:
                name = getattr(t, "name", None) or getattr(t, "id", None)
                if name and not name.startswith("_"):
                    out[name] = ex[md["grade_id"]]
    return out


def job_part(solution, chapter: str, allowed_dir: Path | None = None) -> dict:
    """What the guard of any submission of `chapter` must know (written to guard-job.json)."""
    locked = {}
    for cell in solution.cells:
        md = _md(cell)
        if cell.cell_type == "code" and md.get("locked") and not md.get("solution"):
            locked[sha(cell.source)] = {"grade_id": md.get("grade_id"), "test": _is_test(cell)}
            if md.get("grade"):      # a graded cell the student deleted comes back from nbgrader as this
                locked[sha(restored(cell.source, md.get("grade_id")))] = locked[sha(cell.source)]
    return {"chapter": chapter, "exercises": exercises(solution),
            "answers": answer_names(solution), "allowed": allowed_patterns(chapter, allowed_dir), "locked": locked}


def restored(source: str, grade_id: str) -> str:
    """The source of a deleted graded code cell as nbgrader adds it back (OverwriteCells with
    add_missing_cells, nbgrader_config.py): its notice, as a comment, then the cell."""
    from nbgrader.preprocessors import OverwriteCells

    notice = OverwriteCells.missing_cell_notification.default_value.format(cell_id=grade_id)
    return "# " + notice + source


def transformed(source: str) -> str:
    """The text IPython compiles for a cell (InteractiveShell.transform_cell, default settings)."""
    from IPython.core.inputtransformer2 import TransformerManager

    cell = TransformerManager().transform_cell(source)
    if len(cell.splitlines()) == 1:      # IPython prefilters one-line cells; plain Python comes back as is
        cell = cell.rstrip("\n") + "\n"
    return cell


def kernel_spec(part: dict, nb) -> dict:
    """The guard's spec for the notebook `nb` about to run (the sandbox adds the channel's fd)."""
    from ipykernel.compiler import get_tmp_hash_seed, murmur2_x86

    cells, pending = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        gid = _md(cell).get("grade_id")
        lock = part["locked"].get(sha(cell.source))
        role = ("test" if lock["test"] else "readonly") if lock else ("answer" if _md(cell).get("solution") else "extra")
        rec = {"file": f"{murmur2_x86(cell.source, get_tmp_hash_seed())}.py", "sha": sha(transformed(cell.source)),
               "label": (lock or {}).get("grade_id") or gid or f"cell {index}", "trusted": bool(lock), "role": role,
               "exercise": part["exercises"].get((lock or {}).get("grade_id") or gid)}
        cells.append(rec)
        if rec["exercise"] is None:
            pending.append(rec)
        elif role == "test":                 # cells the exercise map does not know: the next test
            for r in pending:
                r["exercise"] = rec["exercise"]
            pending = []
    return {k: part[k] for k in ("chapter", "answers", "allowed")} | {"cells": cells}
