"""Run one chapter's mistake catalogue: `python tests/mistakes/runner.py ch03 [--out FILE]`.

The chapter's solution notebook is executed cell by cell in one IPython shell, in the `fast`
profile, from the notebook's own folder (as a kernel would). Before each answer cell the
namespace is kept (a shallow copy). At each test cell, after the real cell has run, every
catalogued mistake for that test is tried on a copy of the namespace as it stood before its
answer cell: the mistaken answer is executed, then any later answer cells of the same test (as
the solution writes them), then the cell's visible part and, separately, its hidden part. The
reference answer goes through the same steps, so a harness that passes everything is caught.

This is also the execution that proves, in `make test`, that every cell of every solution runs:
`cell_errors` lists each cell that raised (tests/test_mistakes.py fails on any).

Prints (or writes) JSON: per mistake, what the visible part and the hidden part raised and with
which message, whether it changed the notebook's state, and how long it took; the cells of the
solution that failed; the solution's own visible/hidden outcomes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import linecache
import os
import random
import re
import signal
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
MARKERS = re.compile(r"[ \t]*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)[^\n]*\n?")
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS[^\n]*\n(.*?)[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.S)
TIMEOUT = int(os.environ.get("MISTAKE_TIMEOUT", "120"))  # seconds per mistake


def parts(source: str) -> tuple[str, str]:
    """(visible part, hidden part) of a test cell's source."""
    hidden = "\n".join(HIDDEN.findall(source))
    visible = HIDDEN.sub("", source)
    return MARKERS.sub("", visible), hidden


def _role(cell) -> str:
    md = cell.get("metadata", {}).get("nbgrader", {})
    if cell["cell_type"] != "code":
        return "markdown"
    if md.get("solution") and not md.get("grade"):
        return "answer"
    if md.get("grade") and not md.get("solution"):
        return "test"
    return "other"


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout(f"took longer than {TIMEOUT} s")


def _run(source: str, ns: dict, filename: str) -> dict:
    """Execute `source` in `ns`; what it raised (type name, message) and its printed output."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)  # inspect.getsource works
    out = io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT)
    raised, message = None, ""
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(source, filename, "exec"), ns)  # noqa: S102 - that is the point
    except BaseException as e:  # noqa: BLE001 - record whatever the code raises
        if isinstance(e, KeyboardInterrupt):
            raise
        raised, message = type(e).__name__, str(e)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return {"raised": raised, "message": message, "output": out.getvalue()[-2000:]}


def _fingerprint(ns: dict) -> dict[str, tuple]:
    """In-place changes to the notebook's tensors and modules show in their version counters."""
    import torch

    fp = {}
    for k, v in ns.items():
        if k.startswith("_"):
            continue
        if isinstance(v, torch.Tensor):
            fp[k] = (id(v), v._version)
        elif isinstance(v, torch.nn.Module):
            fp[k] = (id(v), tuple(p._version for p in v.parameters()), tuple(b._version for b in v.buffers()))
    return fp


@contextlib.contextmanager
def _isolated():
    """Undo what a mistake may change globally: RNG states, grad mode, default dtype."""
    import numpy as np
    import torch

    states = (torch.random.get_rng_state(), np.random.get_state(), random.getstate(),
              torch.is_grad_enabled(), torch.get_default_dtype())
    try:
        yield
    finally:
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        torch.set_grad_enabled(states[3])
        torch.set_default_dtype(states[4])


@contextlib.contextmanager
def _classes_kept(ns: dict):
    """An answer cell may attach a method to a notebook class (`StandardSAE.encode = encode`): the
    class is shared with the real namespace, so put its attributes back after each try."""
    kept = [(v, dict(vars(v))) for v in ns.values() if isinstance(v, type) and v.__module__ == "__main__"]
    try:
        yield
    finally:
        for cls, attrs in kept:
            for k in set(vars(cls)) - set(attrs):
                delattr(cls, k)
            for k, v in attrs.items():
                if vars(cls).get(k) is not v:
                    setattr(cls, k, v)


def _try(answer_source: str, later_answers: list[str], test_source: str, before: dict, label: str) -> dict:
    ns = dict(before)
    fp = _fingerprint(ns)
    t0 = time.perf_counter()
    with _isolated(), _classes_kept(ns):
        setup = _run(answer_source, ns, f"<answer {label}>")
        for i, src in enumerate(later_answers):
            if setup["raised"] is None:
                setup = _run(src, ns, f"<answer {label} +{i}>")
        visible_src, hidden_src = parts(test_source)
        visible = _run(visible_src, dict(ns), f"<visible {label}>")
        hidden = _run(hidden_src, dict(ns), f"<hidden {label}>") if hidden_src.strip() else \
            {"raised": None, "message": "(no hidden tests)", "output": ""}
    after = _fingerprint(before)
    mutated = sorted(k for k in fp if after.get(k) != fp[k])
    return {"answer": setup, "visible": visible, "hidden": hidden, "mutated": mutated,
            "seconds": time.perf_counter() - t0}


def run(module: str, notebook: Path | None = None) -> dict:
    """Execute the chapter (`notebook`, by default its solution) and try the module's catalogue."""
    sys.path.insert(0, str(TESTS))
    from mistakes import catalogue

    chapter, mistakes = catalogue(module)
    by_test: dict[str, list] = {}
    for m in mistakes:
        by_test.setdefault(m.test, []).append(m)

    os.environ.setdefault("COURSE_FAST", "1")
    os.environ.setdefault("PLOTLY_RENDERER", "json")  # no browser from fig.show() outside a notebook
    nb_path = Path(notebook).resolve() if notebook else REPO / "solutions" / chapter / f"{chapter}.ipynb"
    nb = json.loads(nb_path.read_text())
    os.chdir(nb_path.parent)

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["__name__"] = "__main__"
    before_answer: dict[str, dict] = {}
    answer_src: dict[str, str] = {}
    pending: list[str] = []  # answer cells since the last test cell
    result = {"chapter": chapter, "module": module, "cell_errors": [], "solution": {}, "mistakes": [],
              "tests": []}
    seen_tests = set()
    t_start = time.perf_counter()
    for cell in nb["cells"]:
        role = _role(cell)
        if role == "markdown":
            continue
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id", cell.get("id"))
        source = "".join(cell["source"])
        clean = MARKERS.sub("", source)
        if role == "answer":
            before_answer[gid] = dict(shell.user_ns)
            answer_src[gid] = clean
            pending.append(gid)
        with contextlib.redirect_stdout(io.StringIO()):
            r = shell.run_cell(clean, store_history=False, silent=True)
        if not r.success:
            err = r.error_in_exec or r.error_before_exec
            result["cell_errors"].append({"cell": gid, "error": f"{type(err).__name__}: {err}"})
        if role != "test":
            continue
        result["tests"].append({"test": gid, "answers": list(pending)})
        seen_tests.add(gid)
        if not pending:
            result["cell_errors"].append({"cell": gid, "error": "no answer cell before this test cell"})
            continue
        # the reference answer through the same steps (last answer cell replaced by itself)
        result["solution"][gid] = _try(answer_src[pending[0]], [answer_src[a] for a in pending[1:]], source,
                                       before_answer[pending[0]], f"{gid}/solution")
        for m in by_test.get(gid, []):
            target = m.answer or (pending[0] if len(pending) == 1 else None)
            if target not in pending:
                result["mistakes"].append({"test": gid, "name": m.name, "error":
                                           f"answer cell {m.answer!r} is not one of {pending}"})
                continue
            later = [answer_src[a] for a in pending[pending.index(target) + 1:]]
            outcome = _try(m.source, later, source, before_answer[target], m.key)
            result["mistakes"].append({"test": gid, "name": m.name, "subtle": m.subtle, "names": m.names,
                                       **outcome})
        pending = []
    for t in sorted(set(by_test) - seen_tests):
        result["mistakes"].append({"test": t, "name": "*", "error": f"no test cell {t!r} in {chapter}"})
    result["seconds"] = time.perf_counter() - t_start
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module", help="catalogue module, e.g. ch03")
    ap.add_argument("--out", help="write the JSON here (default: stdout)")
    ap.add_argument("--notebook", help="execute this notebook instead of the chapter's solution")
    args = ap.parse_args(argv)
    text = json.dumps(run(args.module, args.notebook), indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
