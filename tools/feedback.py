"""Feedback a student may see: hidden tests removed, and nothing that quotes them.

nbgrader's feedback shows the autograded notebook as it ran, hidden tests included (nbgrader
#917, "by design"). And a hostile submission can *observe* the hidden tests while they run
(an IPython hook that prints each cell, `inspect.stack()` in an answer's exception message)
and print them into any cell's output. So, before nbgrader renders the feedback:

* test cells show only their visible part; a failed test keeps its message (the exception's
  name and text: what the student needs to fix the answer) and the traceback entries of other
  code (the student's own frames), while the entries of the test cell's own frame (which quote
  its hidden lines) are replaced by one line; an assertion without a message becomes
  "a hidden test failed";
* every output of every cell is checked against the hidden lines (compared without spaces,
  quotes or backslashes, so reformatting or `repr` does not hide them) and replaced when it
  quotes one;

and after it renders, :func:`html_leaks` checks the HTML once more: feedback that still quotes
a hidden line is withheld (the grades CSV says so) rather than sent.
"""

from __future__ import annotations

import html as htmllib
import re

import nbformat

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)
MIN_LEN = 16  # normalised characters: shorter lines ("assert ok") are too common to flag
REDACTED = "[output removed from the feedback: it quoted a hidden test]"
HIDDEN_FRAME = "[a hidden test's code: not shown]"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def norm(text: str) -> str:
    return re.sub(r"[\s'\"\\`]+", "", text)


def hidden_blocks(nb: nbformat.NotebookNode) -> list[str]:
    return [m.group(0) for c in nb.cells for m in HIDDEN.finditer(c.source)]


def hidden_lines(solution: nbformat.NotebookNode, *visible: nbformat.NotebookNode) -> list[str]:
    """Normalised lines of the hidden tests that appear nowhere in the `visible` notebooks
    (the release, the student's own submission): those are what must not reach a student."""
    seen = {norm(line) for nb in visible for c in nb.cells for line in c.source.splitlines()}
    out = set()
    for block in hidden_blocks(solution):
        for line in block.splitlines():
            n = norm(line)
            if len(n) >= MIN_LEN and "HIDDENTESTS" not in n and n not in seen:
                out.add(n)
    return sorted(out)


def leaks(text: str, hidden: list[str]) -> bool:
    n = norm(ANSI.sub("", text))
    return any(h in n for h in hidden)


def _test_traceback(out, cell, hidden: list[str]) -> list[str]:
    """A test cell's traceback without its own frames (they quote the hidden lines) and without
    any entry that quotes a hidden line; ends with the exception's name and message."""
    own = f"Cell In[{cell.get('execution_count')}]" if cell.get("execution_count") else None
    entries, dropped = [], False
    for entry in (out.get("traceback") or [])[:-1]:
        plain = ANSI.sub("", entry)
        mine = (own is not None and own in plain.split("\n", 2)[0]) or "HIDDEN TESTS" in plain
        if mine or leaks(plain, hidden):
            if not dropped:
                entries.append(HIDDEN_FRAME)
            dropped = True
        else:
            entries.append(entry)
            dropped = False
    return entries + [f"{out['ename']}: {out['evalue']}"]


def _output_text(out) -> str:
    parts = [out.get("text", ""), out.get("ename", ""), out.get("evalue", "")]
    parts += out.get("traceback", []) or []
    for value in (out.get("data") or {}).values():
        parts.append(value if isinstance(value, str) else str(value))
    return "\n".join(parts)


def _redacted() -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=REDACTED + "\n")


def sanitise(nb: nbformat.NotebookNode, hidden: list[str]) -> list[str]:
    """Make the autograded notebook `nb` safe to render as feedback (in place); notes."""
    removed = 0
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader", {})
        is_test = cell.cell_type == "code" and md.get("grade") and not md.get("solution")
        if is_test:
            cell.source = HIDDEN.sub("# (hidden tests ran here)\n", cell.source)
        if cell.cell_type != "code":
            if leaks(cell.source, hidden) and not md.get("solution"):
                cell.source = REDACTED
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and is_test:   # its own frames would show hidden lines
                if out.get("ename") == "AssertionError" and not (out.get("evalue") or "").strip():
                    out["evalue"] = "a hidden test failed"
                out["traceback"] = _test_traceback(out, cell, hidden)
            if leaks(_output_text(out), hidden):
                removed += 1
                if out.get("output_type") == "error":
                    out["evalue"] = REDACTED
                    out["traceback"] = [f"{out['ename']}: {REDACTED}"]
                else:
                    out = _redacted()
            outputs.append(out)
        cell.outputs = outputs
    return [f"{removed} output(s) that quoted hidden tests removed from the feedback"] if removed else []


def html_text(html: str) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", "", html))


def html_leaks(html: str, hidden: list[str]) -> list[str]:
    """Hidden lines (normalised) still present in rendered feedback."""
    text = norm(html_text(html))
    found = [h for h in hidden if h in text]
    if "BEGINHIDDENTESTS" in text or "ENDHIDDENTESTS" in text:
        found.append("### BEGIN HIDDEN TESTS")
    return found


WITHHELD = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Feedback withheld</title></head>
<body><h1>Feedback withheld</h1>
<p>Your notebook was graded, but its feedback could not be shown without revealing hidden
tests. Your instructor has your grade and will send you feedback by hand.</p></body></html>
"""
