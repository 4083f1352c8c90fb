"""Shared fixtures: the repository, and a throw-away copy of the course to grade in.

Every annotated function and class in `utils` is shape- and type-checked under pytest
(jaxtyping + beartype, STYLE.md "Shapes"): the import hook below must run before anything
imports `utils`, which is why it sits at the top of the first file pytest loads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from jaxtyping import install_import_hook

assert "utils" not in sys.modules, "utils was imported before the jaxtyping hook: its annotations would go unchecked"
install_import_hook("utils", "_typecheck.typecheck")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.name for p in (REPO / "solutions").iterdir() if (p / f"{p.name}.ipynb").exists())


# The modules that take longest (grading runs, the mistakes harness, a fresh install), first: under
# `make test`'s two xdist workers (--dist loadfile, one module per worker at a time) they start at
# once instead of leaving one worker alone with a long module at the end.
LONGEST_FIRST = ("test_pipeline.py", "test_hostile.py", "test_mistakes.py", "test_runtime.py", "test_world.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def unchecked_types():
    """Switch the runtime type checker off, for tests of the library's own friendly errors on bad
    input (what a student sees: outside pytest nothing checks annotations before the function does)."""
    from jaxtyping import config
    config.update("jaxtyping_disable", True)
    yield
    config.update("jaxtyping_disable", False)


def run_nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m nbgrader ...` in `root`, with this environment's bin/ on PATH (alembic)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def copy_course(dest: Path) -> Path:
    """A self-contained course: nbgrader_config.py pins its root to its own folder."""
    for name in ("solutions", "chapters", "templates", "tools"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "nbgrader_config.py", dest)
    return dest


@pytest.fixture
def course(tmp_path) -> Path:
    return copy_course(tmp_path / "course")
