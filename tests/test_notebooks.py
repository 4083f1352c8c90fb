"""nbval (lax) over each `solutions/` notebook, `fast` profile: `make test-notebooks`.

Every cell of every chapter must run. `make test` proves it twice without this module's
per-chapter runs, so that each chapter is executed twice there, not three times (issue 15's
20-minute budget): the mistakes harness (tests/test_mistakes.py) executes every `solutions/`
notebook and fails on any cell that raised, and the grading pipeline (tests/test_pipeline.py)
executes every released chapter with the reference answers filled in, in a real kernel, and fails
on any cell of the autograded notebook that ended in an error. Here, with nbval, an error in any
code cell fails and the message names the cell (its position, its nbgrader id and first line)
and the exception; `run_nbval` is also what the `gpu` rehearsal (tests/test_gpu_profile.py)
runs each chapter with, so `make test` keeps the harness test below. Each notebook runs in a
copy in a temporary folder (the kernel's working directory), so nothing it writes lands in the
repository.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from _helpers import PLANTED_ERROR, planted_raise
from conftest import CHAPTERS, REPO

pytestmark = pytest.mark.slow

CELL_TIMEOUT = int(os.environ.get("COURSE_CELL_TIMEOUT", "900"))  # seconds; a hung cell fails, named
ANSI = re.compile(r"(\x1b|#x1B)\[[0-9;]*m")  # junit XML spells ESC as "#x1B"


@dataclass
class CellFailure:
    index: int  # position among the notebook's code cells (nbval's "Cell N")
    name: str  # nbgrader grade_id, or "-" for a cell without one
    first_line: str
    error: str  # the last lines of the traceback

    def __str__(self) -> str:
        return f"code cell {self.index} ({self.name}: {self.first_line!r}):\n    {self.error}"


def run_nbval(notebook: Path, workdir: Path, *, cell_timeout: int = CELL_TIMEOUT,
              env: dict[str, str] | None = None) -> tuple[list[CellFailure], str]:
    """Execute every code cell of `notebook` (a copy in `workdir`) under nbval --nbval-lax, in
    the `fast` profile unless `env` (the kernel's environment) says otherwise. Returns the
    failing cells and nbval's output."""
    workdir.mkdir(parents=True, exist_ok=True)
    nb_path = workdir / notebook.name
    shutil.copy(notebook, nb_path)
    report = workdir / "nbval.xml"
    if env is None:
        env = {**os.environ, "COURSE_FAST": "1"}
        env.pop("COURSE_PROFILE", None)
    env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    log = workdir / "nbval.log"
    with log.open("w") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-v",
             f"--nbval-cell-timeout={cell_timeout}", "--nbval-kernel-startup-timeout=600", "-p", "no:cacheprovider",
             "--rootdir", str(workdir), f"--junitxml={report}", nb_path.name],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            p.wait(timeout=3 * 3600)
        except subprocess.TimeoutExpired:  # every cell has its own timeout: something hangs outside them
            os.killpg(p.pid, signal.SIGKILL)  # nbval and its kernel
            p.wait()
            done = re.findall(r"::Cell (\d+) (?:PASSED|FAILED)", log.read_text())
            raise AssertionError(f"{notebook.name} hung after code cell {done[-1] if done else 'none'} "
                                 f"(nbval's log: {log})") from None
    output = ANSI.sub("", log.read_text())
    if not report.exists():
        raise AssertionError(f"nbval did not run on {notebook.name}:\n{output[-3000:]}")
    code_cells = [c for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "code"]
    failures = []
    for case in ET.parse(report).getroot().iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is None:
            continue
        index = int(case.get("name", "Cell -1").split()[-1])
        cell = code_cells[index] if 0 <= index < len(code_cells) else None
        text = ANSI.sub("", bad.text or bad.get("message") or "").strip().splitlines()
        if any("Kernel didn't respond" in ln or "Kernel died" in ln for ln in text[-5:]):
            raise AssertionError(f"the kernel for {notebook.name} did not start or died:\n" + "\n".join(text[-5:]))
        error = next((f"{ln.split(': ', 1)[-1].strip()} (COURSE_CELL_TIMEOUT)" for ln in text if "Timeout of" in ln), None) \
            or next((ln.strip() for ln in reversed(text) if re.match(r"\s*\w*(Error|Exception|Exit)\b", ln)),
                    text[-1].strip() if text else "")
        failures.append(CellFailure(
            index=index,
            name=cell.metadata.get("nbgrader", {}).get("grade_id", "-") if cell else "-",
            first_line=cell.source.strip().splitlines()[0] if cell and cell.source.strip() else "",
            error=error))
    if p.returncode not in (0, 1) or (p.returncode == 1 and not failures):
        raise AssertionError(f"nbval exited {p.returncode} on {notebook.name}:\n{output[-3000:]}")
    return failures, output


@pytest.mark.notebooks
@pytest.mark.parametrize("ch", CHAPTERS)
def test_every_cell_runs(ch, tmp_path):
    failures, _ = run_nbval(REPO / "solutions" / ch / f"{ch}.ipynb", tmp_path)
    assert not failures, f"solutions/{ch}: {len(failures)} cell(s) raised:\n" + "\n".join(map(str, failures))


def test_an_error_in_a_read_only_cell_fails(tmp_path):
    """The harness itself: a `raise` planted in a read-only cell after a graded test cell (where
    chapter 05's crash hid) is reported, by name; the chapter is cut after it to keep this quick."""
    ch = "01_superposition"
    nb, target = planted_raise(ch)
    planted = tmp_path / "src" / f"{ch}.ipynb"
    planted.parent.mkdir()
    nbformat.write(nb, planted)

    failures, output = run_nbval(planted, tmp_path / "run")
    code_index = sum(c.cell_type == "code" for c in nb.cells[:target])
    assert [(f.index, f.error) for f in failures] == [(code_index, PLANTED_ERROR)], output[-3000:]
    assert failures[0].name == nb.cells[target].metadata.get("nbgrader", {}).get("grade_id", "-")
