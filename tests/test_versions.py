"""One source of truth for versions: pyproject.toml; environment.yml and the installed stack follow,
and its Python and torch floors are the ones its own pins need."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import CHAPTERS, REPO

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


# --- the floors: every Python and torch that pyproject admits, every dependency admits ------------
def requirements_in_force() -> list[tuple[str, Requirement]]:
    """(who asks, requirement) for every requirement in force in the installed course: ours, then
    each installed dependency's, markers evaluated with the extras actually asked for."""
    edges, seen, todo = [], set(), [("untangling-features", r, "") for r in REQS]
    while todo:
        who, req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        edges.append((who, req))
        key = (canonicalize_name(req.name), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [(req.name, sub, e) for sub in map(Requirement, dist.requires or []) for e in sorted(req.extras) or [""]]
    return edges


EDGES = requirements_in_force()


def test_python_floor_is_what_the_pins_need():
    """No Python that pyproject admits is refused by one of its exact pins."""
    ours = SpecifierSet(PYPROJECT["project"]["requires-python"])
    pythons = [f"3.{m}" for m in range(8, 16)]
    for name in [r.name for r in REQS if str(r.specifier).startswith("==")]:  # what pip cannot swap for another
        theirs = SpecifierSet(importlib.metadata.metadata(name).get("Requires-Python") or "")
        too_old = [v for v in pythons if v in ours and v not in theirs]
        assert not too_old, f"requires-python {ours} admits Python {too_old}, which {name} ({theirs}) does not"
    assert sys.version.split()[0] in ours
    yml = re.search(r"^\s*- python=(\S+)$", (REPO / "environment.yml").read_text(), re.M)
    assert yml and yml.group(1) in ours, "environment.yml's python is outside pyproject's requires-python"


def test_torch_floor_keeps_an_installed_torch():
    """Every torch that pyproject's range admits satisfies every torch requirement in force, so pip
    keeps an installed torch (Colab's) instead of replacing it."""
    ours = next(r for r in REQS if r.name == "torch").specifier
    theirs = [(who, r.specifier) for who, r in EDGES if canonicalize_name(r.name) == "torch" and who != "untangling-features"]
    assert "transformer-lens" in {who for who, _ in theirs}, theirs
    torches = [f"2.{m}.0" for m in range(0, 21)] + [importlib.metadata.version("torch").split("+")[0]]
    for who, spec in theirs:
        bad = [v for v in torches if ours.contains(v) and not spec.contains(v, prereleases=True)]
        assert not bad, f"pyproject admits torch {bad}, which {who} ({spec}) does not: pip would replace it"


# --- Colab installs the library the chapters were released with --------------------------------
RELEASE = re.compile(r'^RELEASE = "([^"]*)"$', re.M)
URL = 'f"git+https://github.com/untangling-features/untangling-features@{RELEASE}"'
LIBRARY = ("utils", "pyproject.toml")  # what `pip install git+...@ref` builds the course from


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


def setup_cell(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code" and "COURSE_INSTALL_SOURCE" in c.source)


def test_colab_installs_the_library_the_chapters_were_released_with():
    """Every released chapter's setup cell installs the course at one commit of this repository's
    history whose library is HEAD's (`make release` writes it). The badges open chapters from the
    branch; a notebook saved in Drive and reopened later still gets the library it was made with."""
    files = [REPO / "templates" / "header.ipynb"] + [REPO / "chapters" / ch / f"{ch}.ipynb" for ch in CHAPTERS]
    cells = {f.relative_to(REPO).as_posix(): setup_cell(f) for f in files}
    assert all(URL in c for c in cells.values()), f"every setup cell installs {URL}"
    stamps = {f: RELEASE.findall(c) for f, c in cells.items()}
    refs = {tuple(s) for s in stamps.values()}
    assert len(refs) == 1 and len(refs.copy().pop()) == 1, \
        f"the chapters install different versions: {stamps}; run `make release`"
    ref = refs.pop()[0]
    assert re.fullmatch(r"[0-9a-f]{40}", ref), f"RELEASE = {ref!r} is not a commit: run `make release`"
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the commit cannot be checked")
    assert git("cat-file", "-e", f"{ref}^{{commit}}").returncode == 0, \
        f"the chapters install commit {ref}, which this clone does not have (shallow? `git fetch --unshallow`)"
    assert git("merge-base", "--is-ancestor", ref, "HEAD").returncode == 0, \
        f"the chapters install commit {ref}, which is not in this branch's history: run `make release`"
    changed = git("diff", "--name-only", ref, "HEAD", "--", *LIBRARY).stdout.split()
    assert not changed, (f"the library changed since commit {ref[:10]}, which Colab installs: {changed[:10]}; "
                         "run `make release` and commit chapters/ and templates/")
