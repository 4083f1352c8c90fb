"""The `gpu` profile, rehearsed without a GPU or network: every chapter's Colab code path.

The hub is stood in for by `tests/gpu_standins.py` (GPT-2 small's configs with random weights,
SAEs with the shapes and configs of the releases the chapters load, the course corpus in the
Pile's place), through `utils.models`' one door to the hub (COURSE_HUB_STANDINS). Everything
after it is the code a Colab student runs, with the `fast` profile's numbers
(COURSE_REHEARSAL, read by `Runtime.pick`). Each test cell's hidden tests run as a cell of their
own after its visible check (`hidden_tests_apart`), so that a check failing on a value does not
keep them from running. Each chapter runs twice:

- on the CPU (`COURSE_REHEARSAL=cpu`): every cell must run, as in tests/test_notebooks.py,
  except that a course check may reject a *value* (`CheckFailed`): GPT-2 and the releases' SAEs
  stand in with random weights, so a check that needs what the real weights know (chapter 06: at
  least 3 concepts recovered by a latent, steering that raises P(code) by half) can fail here
  and pass on Colab; such cells are listed, and so are hidden tests' `assert`s; any other
  exception (an answer's own error reported by a check, "`fn` raised ...", included) fails the test;
- on `meta` standing in for CUDA (`COURSE_REHEARSAL=meta`, `gpu_standins.MetaAsCuda`): the
  model, the SAEs and everything the chapter puts on its device have shapes but no data, so
  numbers are meaningless and checks may fail, but every operation that mixes a tensor on the
  device with one on the CPU raises as it would on Colab: those cells fail the test. A
  TransformerLens model built without `device=` lands on `meta` too, as it lands on CUDA there.

The chapter runs are marked `gpu_rehearsal` and run by `make test-gpu-profile` (they train on
GPT-2-sized activations on the CPU: longer than `make test`'s budget); `make test` runs the rest.
`make gpu-check` runs the real thing where a GPU is at hand; without one it says so and fails.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
import torch

from conftest import CHAPTERS, REPO
from mistakes.runner import parts
from test_notebooks import run_nbval

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
CELL_TIMEOUT = int(os.environ.get("COURSE_CELL_TIMEOUT", "1800"))
# a check's verdict on a value; not a crash inside an answer that `checks.call` reported ("`fn` raised ...")
VALUE_VERDICT = re.compile(r"CheckFailed: (?!`[^`]*` (raised|still raises) )")
HIDDEN_VERDICT = re.compile(r"AssertionError\b")  # a hidden test's `assert` on a value
DEVICE_MIXING = re.compile(r"is not on the expected device|on the same device|found at least two devices"
                           r"|device type .* does not match|on device meta", re.I)


def rehearsal_env(device: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_")}
    env.update(COURSE_REHEARSAL=device, COURSE_HUB_STANDINS="gpu_standins", HF_HUB_OFFLINE="1",
               COURSE_STANDIN_CACHE=os.environ.get("COURSE_STANDIN_CACHE", str(REPO / "artifacts" / "gpu-standins")),
               PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    if device == "meta":  # the kernel starts with meta standing in for CUDA
        startup = tmp / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-meta-as-cuda.py").write_text("import gpu_standins\ngpu_standins.meta_as_cuda()\n")
        env["IPYTHONDIR"] = str(tmp / "ipython")
    return env


def hidden_tests_apart(ch: str, dest: Path) -> tuple[Path, set[int]]:
    """A copy of chapter `ch`'s solution in which each test cell's hidden tests are a code cell of
    their own, right after its visible check: on random weights a visible check can fail on a
    value, and the hidden tests after it (code the grader runs on Colab, where a model built
    without `device=` lands on the GPU) must run all the same. Returns the copy and the code-cell
    indices of the hidden-test cells."""
    nb = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)
    cells, hidden_at, n_code = [], set(), 0
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader", {})
        visible, hidden = parts(cell.source) if cell.cell_type == "code" else ("", "")
        if md.get("grade") and not md.get("solution") and hidden.strip():
            cell.source = visible
            hidden_at.add(n_code + 1)
            cells += [cell, nbformat.v4.new_code_cell(hidden, metadata={"nbgrader": {
                "grade_id": f"{md.get('grade_id', '-')}, hidden tests"}})]
            n_code += 2
        else:
            cells.append(cell)
            n_code += cell.cell_type == "code"
    nb.cells = cells
    dest.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest / f"{ch}.ipynb")
    return dest / f"{ch}.ipynb", hidden_at


@pytest.mark.gpu_rehearsal
@pytest.mark.parametrize("ch", CHAPTERS)
def test_gpu_path_runs_on_the_cpu(ch, tmp_path):
    notebook, hidden_at = hidden_tests_apart(ch, tmp_path / "src")
    failures, _ = run_nbval(notebook, tmp_path / "run", cell_timeout=CELL_TIMEOUT, env=rehearsal_env("cpu", tmp_path))
    verdicts = [f for f in failures if VALUE_VERDICT.match(f.error)
                or (f.index in hidden_at and HIDDEN_VERDICT.match(f.error))]
    crashes = [f for f in failures if f not in verdicts]
    print(f"{ch} on the CPU: {len(verdicts)} check(s) failed on values only:\n" + "\n".join(map(str, verdicts)))
    assert not crashes, f"solutions/{ch}, gpu profile rehearsed on the CPU: {len(crashes)} cell(s) raised:\n" \
        + "\n".join(map(str, crashes))


@pytest.mark.gpu_rehearsal
@pytest.mark.parametrize("ch", CHAPTERS)
def test_gpu_path_keeps_its_tensors_on_its_device(ch, tmp_path):
    notebook, _ = hidden_tests_apart(ch, tmp_path / "src")
    failures, output = run_nbval(notebook, tmp_path / "run", cell_timeout=CELL_TIMEOUT, env=rehearsal_env("meta", tmp_path))
    assert all(f.index > 0 for f in failures), f"solutions/{ch}: the setup cell failed on meta:\n{failures[0]}"
    mixing = [f for f in failures if DEVICE_MIXING.search(f.error)]
    print(f"{ch} on meta: {len(failures) - len(mixing)} cell(s) failed on values only:\n" + "\n".join(map(str, failures)))
    assert not mixing, (f"solutions/{ch}, gpu profile with its device standing in for CUDA: {len(mixing)} cell(s) "
                        "mix tensors on the device with tensors on the CPU (move the CPU ones to the "
                        "module's device, e.g. x.to(sae.device)):\n" + "\n".join(map(str, mixing)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: run `make gpu-check` itself")
def test_gpu_check_without_a_gpu_says_so_and_fails():
    # as a user types it: not as a sub-make of `make test` (MAKELEVEL would make it say "make[1]: ***")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    p = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO), "gpu-check"],
                       capture_output=True, text=True, env={**env, "CUDA_VISIBLE_DEVICES": ""})
    ours = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip() and not re.match(r"make(\[\d+\])?: \*\*\*", ln)]
    assert p.returncode != 0
    assert len(ours) == 1 and "no CUDA GPU" in ours[0], ours


@pytest.mark.parametrize("ch", CHAPTERS)
def test_hidden_tests_apart_keeps_every_line_in_order(ch, tmp_path):
    """The rehearsal's copy runs exactly the chapter's code: each test cell's visible check, then its
    hidden tests as the next cell, with only the nbgrader markers left out."""
    notebook, hidden_at = hidden_tests_apart(ch, tmp_path)
    lines = lambda cells: [ln for c in cells if c.cell_type == "code" for ln in c.source.splitlines()  # noqa: E731
                           if ln.strip() and "### BEGIN HIDDEN TESTS" not in ln and "### END HIDDEN TESTS" not in ln]
    split = nbformat.read(notebook, as_version=4).cells
    code = [c for c in split if c.cell_type == "code"]
    assert hidden_at and lines(split) == lines(nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4).cells)
    for i in hidden_at:
        assert code[i - 1].metadata["nbgrader"]["grade"] and "assert" in code[i].source
        assert "HIDDEN" not in code[i - 1].source + code[i].source


# --- device discipline of the library's entry points, without running a chapter ---------------------
def no_device_mixing(fn, *args) -> None:
    """Run `fn(*args)` with `meta` standing in for CUDA: mixing devices fails the test; any other
    error (meta tensors have no values, so checks may fail) does not."""
    from gpu_standins import MetaAsCuda

    try:
        with MetaAsCuda():
            fn(*args)
    except Exception as e:  # noqa: BLE001 (only device mixing matters here)
        assert not DEVICE_MIXING.search(str(e)), f"{getattr(fn, '__qualname__', fn)} mixes devices: {e}"


def test_evaluation_moves_cpu_activations_to_the_sae():
    """Chapter 06 on Colab: activations come back on the CPU (`collect_resid`), the SAE is on CUDA;
    the bootstrap interval of the downstream loss is computed on the model's device."""
    from _helpers import tiny_hooked
    from test_checks_ch06 import _evaluate

    from utils import metrics
    from utils.checks import ch06

    model, sae, tokens = tiny_hooked(n_ctx=64, k=6, n_seq=6, seq=20, saelens=True)
    model.to("meta"), sae.to("meta")  # both on "the GPU"; the tokens stay on the CPU
    no_device_mixing(metrics.evaluate, sae, torch.randn(40, model.cfg.d_model))
    no_device_mixing(ch06.check_evaluate_sae, _evaluate(), model, sae, tokens)
    no_device_mixing(metrics.downstream_loss, model, sae, tokens, sae.cfg.metadata.hook_name)
