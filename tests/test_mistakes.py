"""Every catalogued mistake is caught by the visible check with a message that names it, and by
the hidden tests with a message too (issue 17). The catalogue is in tests/mistakes/chNN.py; each
chapter is executed once, in a process of its own, by tests/mistakes/runner.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import nbformat
import pytest

from _helpers import PLANTED_ERROR, planted_raise
from conftest import REPO
from mistakes import catalogue, chapter_modules

MODULES = chapter_modules()
CATALOGUE = {mod: catalogue(mod) for mod in MODULES}
ALL = [(mod, m) for mod, (_, ms) in CATALOGUE.items() for m in ms]
MIN_PER_EXERCISE, MIN_SUBTLE = 5, 2


@lru_cache(maxsize=None)
def outcomes(module: str, notebook: Path | None = None) -> dict:
    """The runner's JSON for one chapter (one execution of its solution notebook, or `notebook`)."""
    out = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"mistakes-{module}-{os.getpid()}.json"
    env = {**os.environ, "COURSE_FAST": "1"}
    extra = ["--notebook", str(notebook)] if notebook else []
    p = subprocess.run([sys.executable, str(REPO / "tests" / "mistakes" / "runner.py"), module, "--out", str(out),
                        *extra], env=env, capture_output=True, text=True, timeout=3600)
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(out.read_text())


def _test_cells(module: str) -> list[str]:
    chapter = CATALOGUE[module][0]
    nb = nbformat.read(REPO / "solutions" / chapter / f"{chapter}.ipynb", as_version=4)
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]


def test_every_chapter_has_a_catalogue():
    chapters = sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir())
    covered = sorted(ch for ch, _ in CATALOGUE.values())
    assert covered == chapters, f"chapters without a mistake catalogue: {sorted(set(chapters) - set(covered))}"


@pytest.mark.parametrize("module", MODULES)
def test_catalogue_covers_every_exercise(module):
    mistakes = CATALOGUE[module][1]
    for test in _test_cells(module):
        mine = [m for m in mistakes if m.test == test]
        assert len(mine) >= MIN_PER_EXERCISE, f"{module} {test}: {len(mine)} mistakes, need {MIN_PER_EXERCISE}"
        assert sum(m.subtle for m in mine) >= MIN_SUBTLE, f"{module} {test}: need {MIN_SUBTLE} subtle mistakes"
    unknown = {m.test for m in mistakes} - set(_test_cells(module))
    assert not unknown, f"{module}: mistakes for test cells that do not exist: {unknown}"


@pytest.mark.slow
@pytest.mark.parametrize("module", MODULES)
def test_reference_answers_pass_in_the_harness(module):
    """The harness runs the chapter without errors and the reference answer passes every visible
    check and hidden test through the same steps as a mistake (so the harness cannot pass vacuously)."""
    r = outcomes(module)
    assert not r["cell_errors"], f"{r['chapter']}: " + "; ".join(f"cell {e['cell']!r} raised {e['error'][:300]}"
                                                              for e in r["cell_errors"])
    for test, s in r["solution"].items():
        assert s["answer"]["raised"] is None, (test, s["answer"])
        assert s["visible"]["raised"] is None, (test, s["visible"])
        assert s["hidden"]["raised"] is None, (test, s["hidden"])
        assert not s["mutated"], (test, s["mutated"])


def _result(module: str, key: str) -> dict:
    r = outcomes(module)
    found = [m for m in r["mistakes"] if f"{m['test']}/{m['name']}" == key]
    assert found, f"{key}: the runner did not try it ({[m for m in r['mistakes'] if 'error' in m]})"
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("module,mistake", ALL, ids=[f"{mod}-{m.key}" for mod, m in ALL])
def test_mistake_is_caught_and_named(module, mistake):
    r = _result(module, mistake.key)
    assert "error" not in r, r["error"]
    assert not r["mutated"], f"the mistake changed the notebook's state ({r['mutated']}): make its check use copies"
    vis, hid = r["visible"], r["hidden"]
    assert vis["raised"] == "CheckFailed", (
        f"visible check did not name it: raised {vis['raised']}: {vis['message'][:500]}")
    assert re.search(mistake.names, vis["message"], re.I | re.S), (
        f"visible message does not name the mistake ({mistake.names!r}): {vis['message'][:800]}")
    assert hid["raised"] is not None, "the hidden tests pass this mistake"
    assert hid["raised"] in ("AssertionError", "CheckFailed") and hid["message"].strip(), (
        f"hidden tests failed without a message of their own: {hid['raised']}: {hid['message'][:300]!r}")


@pytest.mark.slow
def test_a_planted_raise_in_a_read_only_cell_fails_the_harness(tmp_path):
    """The harness is what proves, in `make test`, that every cell of every solution runs: a `raise`
    planted in a read-only cell after a test cell (where chapter 05's crash hid) is reported by
    name."""
    nb, target = planted_raise("01_superposition")
    planted = tmp_path / "01_superposition.ipynb"
    nbformat.write(nb, planted)
    r = outcomes("ch01", planted)
    cell = nb.cells[target]
    assert [(e["cell"], e["error"]) for e in r["cell_errors"]] == [
        (cell.metadata.get("nbgrader", {}).get("grade_id", cell.get("id")), PLANTED_ERROR)], r["cell_errors"]
