"""One source of truth for versions: pyproject.toml; environment.yml and the installed stack follow."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from packaging.requirements import Requirement

from conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
REQS = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]
        + PYPROJECT["project"]["optional-dependencies"]["dev"]]
MUST_PIN = {"sae-lens", "transformer-lens", "transformers", "numpy", "jupyterlab", "plotly", "nbgrader",
            "pytest", "nbval", "einops", "jaxtyping", "tqdm"}


def test_what_breaks_courses_is_pinned_exactly():
    pinned = {r.name for r in REQS if str(r.specifier).startswith("==")}
    assert MUST_PIN <= pinned, MUST_PIN - pinned


def test_torch_is_a_range_that_keeps_an_installed_torch():
    torch_req = next(r for r in REQS if r.name == "torch")
    assert not str(torch_req.specifier).startswith("==")
    assert torch_req.specifier.contains("2.13.0") and torch_req.specifier.contains("2.8.0")


def test_environment_yml_mirrors_pyproject():
    lines = (REPO / "environment.yml").read_text().splitlines()
    listed = {Requirement(m.group(1)) for ln in lines if (m := re.match(r" {6}- ([A-Za-z][\w.\-]*[=<>!~].*)$", ln))}
    assert {str(r) for r in listed} == {str(r) for r in REQS}


def test_installed_versions_match_pins():
    for r in REQS:
        if str(r.specifier).startswith("=="):
            assert importlib.metadata.version(r.name) in r.specifier, r
