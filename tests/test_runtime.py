"""utils.runtime: profile and device choice, seeding, and the guard against a foreign `utils`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import nbformat
import pytest
import torch

from conftest import REPO
from utils import runtime


@pytest.mark.parametrize("env, want", [
    ({}, "gpu" if torch.cuda.is_available() else "cpu"),
    ({"COURSE_FAST": "1"}, "fast"),
    ({"COURSE_FAST": "0"}, "gpu" if torch.cuda.is_available() else "cpu"),
    ({"COURSE_PROFILE": "cpu", "COURSE_FAST": "1"}, "cpu"),
])
def test_profile_choice(monkeypatch, env, want):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert runtime.get_profile() == want


def test_profile_gpu_when_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.get_profile() == "gpu"
    assert runtime.get_device().type == "cuda"


def test_bad_profile_names_the_choices(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "tpu")
    with pytest.raises(runtime.CourseSetupError, match="gpu, cpu, fast"):
        runtime.get_profile()


def test_an_explicit_profile_wins_and_is_checked(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    assert runtime.get_profile("fast") == "fast" and runtime.get_profile(None) == "gpu"
    with pytest.raises(runtime.CourseSetupError, match="gpu, cpu, fast"):
        runtime.get_profile("colab")


def test_gpu_profile_without_cuda_says_what_to_do(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(runtime.CourseSetupError, match="T4 GPU"):
        runtime.setup(quiet=True)


def test_device_order(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.get_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.get_device().type == "cpu"


def test_seeding_reproduces_draws():
    runtime.seed_everything(3)
    a = torch.rand(4)
    runtime.seed_everything(3)
    assert torch.equal(a, torch.rand(4))


def test_pick(monkeypatch):
    rt = runtime.Runtime(profile="fast", device=torch.device("cpu"), seed=0)
    assert rt.pick(gpu=3, cpu=2, fast=1) == 1 and rt.pick(gpu=3, cpu=2) == 2
    assert runtime.Runtime(profile="gpu", device=torch.device("cpu"), seed=0).pick(gpu=3, cpu=2) == 3


def test_foreign_utils_module_is_refused():
    class Fake:
        __file__ = "/somewhere/else/utils/__init__.py"
    with pytest.raises(runtime.CourseSetupError, match="pip uninstall -y utils"):
        runtime.check_course_utils(Fake)


def _setup_cell() -> str:
    header = nbformat.read(REPO / "templates" / "header.ipynb", as_version=4)
    return next(c.source for c in header.cells if c.cell_type == "code")


def test_stray_utils_py_next_to_notebook_gives_clear_error(tmp_path):
    """A student's own utils.py shadows the course library: the setup cell says what to do."""
    (tmp_path / "utils.py").write_text("def helper():\n    return 1\n")
    code = "import sys; sys.path.insert(0, '.')\n" + _setup_cell()
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode != 0
    assert "Delete or rename any `utils.py`" in p.stderr, p.stderr


def test_pypi_utils_overwriting_ours_gives_clear_error(tmp_path):
    """The unrelated PyPI `utils` installs an __init__ of its own into the same folder."""
    fake = tmp_path / "utils"
    fake.mkdir()
    (fake / "__init__.py").write_text("from .strings import *\n")
    (fake / "strings.py").write_text("x = 1\n")
    (fake / "runtime.py").write_text((REPO / "utils" / "runtime.py").read_text())
    p = subprocess.run([sys.executable, "-c", "import utils.runtime"], cwd=tmp_path,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert p.returncode != 0 and "pip uninstall -y utils" in p.stderr, p.stderr


def test_setup_cell_is_a_no_op_off_colab(tmp_path):
    p = subprocess.run([sys.executable, "-c", _setup_cell() + "\nprint('ok', utils.runtime.get_profile())"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stderr


@pytest.mark.slow
def test_colab_branch_installs_course_and_keeps_torch(tmp_path):
    """Colab's setup branch in a fresh venv that already has a torch: it installs the pinned stack
    and the course from a local checkout (instead of the repository URL), the chapter imports work,
    and torch is the one that was there before."""
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    torch_spec = f"torch=={torch.__version__.split('+')[0]}"
    subprocess.run([py, "-m", "pip", "install", "-q", torch_spec], check=True, timeout=900)
    probe = "import torch, pathlib; print(torch.__version__, pathlib.Path(torch.__file__).stat().st_mtime_ns)"
    before = subprocess.run([py, "-c", probe], capture_output=True, text=True, check=True).stdout
    src = tmp_path / "checkout"   # a clean copy of the tracked files, as a git URL would give
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            (src / f).write_bytes((REPO / f).read_bytes())
    cell = textwrap.dedent("""
        import importlib.machinery, sys, types
        colab = types.ModuleType("google.colab")   # what Colab's kernel has already imported
        colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
        sys.modules["google.colab"] = colab
    """) + _setup_cell() + textwrap.dedent("""
        rt = utils.runtime.setup()
        import sae_lens, transformer_lens, plotly, einops, jaxtyping
        from utils import plots, toy_models
        print("IMPORTS-OK", rt.profile)
    """)
    env = {**os.environ, "COURSE_INSTALL_SOURCE": str(src)}
    env.pop("PYTHONPATH", None)
    p = subprocess.run([py, "-c", cell], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=1500)
    assert p.returncode == 0 and "IMPORTS-OK" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
    after = subprocess.run([py, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert before == after, f"torch was replaced: {before} -> {after}"
