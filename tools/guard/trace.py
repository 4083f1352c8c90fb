"""What the reference answers legitimately use of the course library: the allowed helpers, traced.

    python -m tools.guard.trace [--overhead] [chapter ...]      (COURSE_FAST=1 for the fast profile)

Runs each chapter's solution, handed in as a student would (the release with the reference
answers filled in), under the guard with only ``allowed/_all.txt`` allowed, and prints what the
guard would have flagged: the course-library functions an answer calls, returns or is. Review
the list, then put what an answer may use in ``tools/guard/allowed/<chapter>.txt`` with a comment
saying why (usually: the object the test hands the answer, or a helper the chapter introduces).
Anything else printed after that is a false positive of the guard, or a leak of the reference.

With ``--overhead`` each chapter also runs in the same sandboxed kernel without the guard, and
the line prints both wall times and the kernel's CPU seconds: what the guard costs a chapter.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nbformat

from tools.guard import run, spec

REPO = Path(__file__).resolve().parents[2]


def solution_as_student(ch: str) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """(the notebook autograde would run for a student who handed in the solution, the solution)."""
    solution = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)
    by_id = {c.metadata["nbgrader"]["grade_id"]: c for c in solution.cells
             if isinstance(c.metadata.get("nbgrader"), dict) and "grade_id" in c.metadata["nbgrader"]}
    nb = nbformat.read(REPO / "chapters" / ch / f"{ch}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in by_id:
            cell.source = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n", "", by_id[gid].source)
    return nb, solution


def unguarded(ch: str) -> dict:
    """The same notebook in the same kernel without the guard: wall and kernel CPU seconds."""
    nb, _ = solution_as_student(ch)
    t0 = time.time()
    _, channel = run.run(nb, None)
    return {"seconds": time.time() - t0, "cpu": channel.get("kernel_cpu_s")}


def trace(ch: str) -> dict:
    nb, solution = solution_as_student(ch)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(spec.ALLOWED / "_all.txt", Path(tmp) / "_all.txt")
        part = spec.job_part(solution, ch, Path(tmp))
        t0 = time.time()
        nb, channel = run.run(nb, part)
    found = defaultdict(set)
    for f in run.records(channel, "flag"):
        found[f["what"]].add(f["cell"])
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    return {"seconds": time.time() - t0, "found": found, "errors": errors, "cpu": channel.get("kernel_cpu_s"),
            "passed": [f["test"] for f in run.records(channel, "pass")]}


def main(argv: list[str]) -> int:
    overhead = "--overhead" in argv
    argv = [a for a in argv if a != "--overhead"]
    chapters = argv or sorted(p.name for p in (REPO / "solutions").iterdir() if (p / f"{p.name}.ipynb").exists())
    for ch in chapters:
        r = trace(ch)
        print(f"== {ch} ({r['seconds']:.0f} s; tests passed under the guard: {len(r['passed'])})", flush=True)
        if overhead:
            u = unguarded(ch)
            cpu = (f"; kernel CPU {u['cpu']:.1f} s -> {r['cpu']:.1f} s (x{r['cpu'] / u['cpu']:.2f})"
                   if u["cpu"] and r["cpu"] else "")
            print(f"   guard overhead: wall {u['seconds']:.1f} s -> {r['seconds']:.1f} s "
                  f"(x{r['seconds'] / u['seconds']:.2f}){cpu}", flush=True)
        for what, cells in sorted(r["found"].items()):
            print(f"  {what:<90} in {', '.join(sorted(cells))}")
        for i, ename, evalue in r["errors"]:
            print(f"  ! cell {i}: {ename}: {(evalue or '')[:200]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
