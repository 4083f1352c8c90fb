"""tools.intake repairs what students hand in before nbgrader sees it."""

from __future__ import annotations

import copy

import nbformat
import pytest

from conftest import CHAPTERS, REPO
from tools import intake

CH = "01_superposition"


@pytest.fixture(scope="module")
def releases():
    return {ch: nbformat.read(REPO / "chapters" / ch / f"{ch}.ipynb", as_version=4) for ch in CHAPTERS}


@pytest.mark.parametrize("name", ["Copy of 01_superposition.ipynb", "01_superposition (1).ipynb",
                                  "Copy of 01_superposition (2).ipynb", "01_superposition-copy.ipynb"])
def test_renamed_files_are_recognised(name):
    assert intake.chapter_from_name(name, CHAPTERS) == CH


def test_lost_metadata_is_restored(tmp_path, releases):
    nb = copy.deepcopy(releases[CH])
    want = intake.grade_ids(nb)
    for cell in nb.cells:
        cell.metadata = {}
        if "YOUR CODE HERE" in cell.source:
            cell.source = "def answer():\n    return 42\n"
    path = tmp_path / "Copy of 01_superposition.ipynb"
    nbformat.write(nb, path)
    got = intake.take(path, None, releases)
    assert got.problem is None and got.chapter == CH
    assert intake.grade_ids(got.notebook) == want
    assert any("restored metadata" in n for n in got.notes) and any("renamed" in n for n in got.notes)


def test_duplicated_cells_keep_one_grade_id(tmp_path, releases):
    nb = copy.deepcopy(releases[CH])
    i = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    nb.cells.insert(i, copy.deepcopy(nb.cells[i]))
    path = tmp_path / f"{CH}.ipynb"
    nbformat.write(nb, path)
    got = intake.take(path, CH, releases)
    ids = intake.grade_ids(got.notebook)
    assert len(ids) == len(set(ids)) and any("duplicate" in n for n in got.notes)


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"{not json", "not JSON"),
                                             (b'{"hello": 1}', "not a notebook")])
def test_unreadable_files_need_a_human(tmp_path, releases, content, reason):
    path = tmp_path / f"{CH}.ipynb"
    path.write_bytes(content)
    got = intake.take(path, CH, releases)
    assert got.notebook is None and reason in got.problem


def test_wrong_folder_is_detected_by_content(tmp_path, releases):
    path = tmp_path / "homework.ipynb"
    nbformat.write(releases[CH], path)
    got = intake.take(path, "02_sae_architecture", releases)
    assert got.chapter == CH and any("handed in under 02_sae_architecture" in n for n in got.notes)


def test_a_kernel_that_lost_the_port_race_is_run_again(tmp_path, monkeypatch):
    """Ports are picked free, then bound by the kernel: a parallel job can take one in between."""
    from types import SimpleNamespace

    from tools.grading import supervise as S
    from tools.grading.config import GradeConfig

    job = SimpleNamespace(dir=tmp_path, log=tmp_path / "job.log")
    sup = S.Supervisor(GradeConfig(root=tmp_path, jobs=1, timeout=10, memory=2), tmp_path)
    runs = []

    def fake(outcomes):
        def once(job):
            text, result = outcomes[len(runs)]
            runs.append(text)
            job.log.write_text(text)
            (job.dir / "kernel.json").write_text("{}")
            return dict(result)
        return once

    race = "Traceback ...\n" + S.PORT_RACE + " (addr='tcp://127.0.0.1:41819')\n"
    monkeypatch.setattr(sup, "execute_once", fake([(race, {"success": False}), ("ok", {"success": True})]))
    assert sup.execute(job) == {"success": True, "attempts": 2}
    assert len(runs) == 2

    runs.clear()  # any other failure is final at once: a student's crash is not retried
    monkeypatch.setattr(sup, "execute_once", fake([("Kernel died", {"success": False})]))
    assert sup.execute(job) == {"success": False, "attempts": 1}

    runs.clear()  # and the retries are bounded
    monkeypatch.setattr(sup, "execute_once", fake([(race, {"success": False})] * S.PORT_RACE_ATTEMPTS))
    assert sup.execute(job)["attempts"] == S.PORT_RACE_ATTEMPTS
    assert len(runs) == S.PORT_RACE_ATTEMPTS


def test_grading_options_are_one_frozen_object():
    """`python -m tools.grade` options become one immutable GradeConfig (no namespace passed around)."""
    import dataclasses

    from tools.grading.config import parse_args

    cfg = parse_args(["--jobs", "0", "--regrade", "al*", "--regrade", "bo*", "--no-guard"], "")
    assert cfg.jobs == 1 and cfg.regrade == ("al*", "bo*") and cfg.guard is False and cfg.sandbox is True
    assert 2 <= cfg.memory <= 8 and cfg.root == REPO
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.jobs = 4
