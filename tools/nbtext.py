"""Edit a chapter as text: convert `solutions/NN/NN.ipynb` to a percent-format script and back.

The notebook in `solutions/` stays the single source; this is only a lossless lens on it for
authors and reviewers (diffs you can read, an editor you like). A cell starts with a line

    # %% [markdown] ROLE id=GRADE_ID points=N

`[markdown]` is optional (code otherwise). ROLE sets the nbgrader metadata:

| role       | nbgrader meaning                                   | cell kind      |
|------------|----------------------------------------------------|----------------|
| (none)     | ordinary cell, no nbgrader metadata                | code/markdown  |
| `readonly` | locked prompt or setup                             | code/markdown  |
| `solution` | autograded answer (BEGIN/END SOLUTION region)      | code           |
| `test`     | locked autograder test cell, needs `points`        | code           |
| `manual`   | manually graded answer, needs `points`             | markdown/code  |
| `task`     | manually graded task, needs `points`               | markdown       |

Markdown lines are stored behind `# `. Usage:

    python tools/nbtext.py to-py solutions/01_x/01_x.ipynb > /tmp/01_x.py
    python tools/nbtext.py to-nb /tmp/01_x.py solutions/01_x/01_x.ipynb
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROLES = {
    #            grade  solution locked task
    "readonly": (False, False, True, False),
    "solution": (False, True, False, False),
    "test": (True, False, True, False),
    "manual": (True, True, False, False),
    "task": (False, False, True, True),
}
HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?P<rest>.*)$")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _metadata(role: str | None, args: dict[str, str], n: int) -> tuple[dict, str]:
    if role is None:
        return {}, f"cell-{n:03d}"
    grade, solution, locked, task = ROLES[role]
    grade_id = args.get("id", f"cell-{n:03d}")
    md = {"grade": grade, "grade_id": grade_id, "locked": locked,
          "schema_version": 3, "solution": solution, "task": task}
    if grade or task:
        if "points" not in args:
            raise ValueError(f"cell {grade_id!r} ({role}) needs points=N")
        md["points"] = float(args["points"]) if "." in args["points"] else int(args["points"])
    return {"nbgrader": md}, grade_id


def to_notebook(text: str) -> nbformat.NotebookNode:
    """Parse the percent format into a notebook (no outputs, deterministic ids)."""
    cells, current = [], None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            current = {"md": bool(m["md"]), "head": m["rest"].split(), "lines": []}
            cells.append(current)
        elif current is not None:
            current["lines"].append(line)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for n, c in enumerate(cells):
        words = [w for w in c["head"] if "=" not in w]
        args = dict(w.split("=", 1) for w in c["head"] if "=" in w)
        role = words[0] if words else None
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {sorted(ROLES)}")
        lines = c["lines"]
        while lines and not lines[-1].strip():
            lines.pop()
        if c["md"]:
            lines = [ln[2:] if ln.startswith("# ") else ln[1:] if ln.startswith("#") else ln
                     for ln in lines]
            make = nbformat.v4.new_markdown_cell
        else:
            make = nbformat.v4.new_code_cell
        metadata, cell_id = _metadata(role, args, n)
        cell = make("\n".join(lines), metadata=metadata)
        cell["id"] = cell_id
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def to_text(nb: nbformat.NotebookNode) -> str:
    """Render a notebook in the percent format (inverse of `to_notebook`)."""
    out = []
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader")
        head = "# %%" + (" [markdown]" if cell.cell_type == "markdown" else "")
        if md:
            flags = (md["grade"], md["solution"], md["locked"], md.get("task", False))
            role = next(r for r, f in ROLES.items() if f == flags)
            head += f" {role} id={md['grade_id']}"
            if "points" in md:
                head += f" points={md['points']}"
        body = cell.source
        if cell.cell_type == "markdown":
            body = "\n".join(("# " + ln) if ln else "#" for ln in body.splitlines())
        out.append(head + "\n" + body + "\n")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "to-py":
        sys.stdout.write(to_text(nbformat.read(argv[1], as_version=4)))
        return 0
    if len(argv) == 3 and argv[0] == "to-nb":
        nb = to_notebook(Path(argv[1]).read_text())
        Path(argv[2]).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
