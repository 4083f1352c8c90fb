"""A hostile class: every kind of broken or malicious hand-in, graded in one parallel run.

`make grade` must be trusted blindly: each file handed in ends as a grade or as a clear
"needs a human: <reason>" row, the run never stops, `grading/submitted/` is never touched, a
submission can read neither the answers nor the grader's secrets, feedback never shows a
hidden test, and grading again gives the same grades.

The execution-heavy cases all use chapter 01 (one `make grade` run over the whole class, in
parallel, with a short per-cell timeout). Most submissions leave `ToyModel` unanswered so that
the chapter's training cells fail at once: each costs a kernel start and the checks, not a
training run. Such a "base" submission scores 10/17 (every test but `test_toy_model`; the
written answer is not autograded). The per-chapter parts (intake, chapter detection, metadata
repair, feedback redaction) run without execution for every chapter present.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from conftest import CHAPTERS, REPO, copy_course
from tools import feedback as fb
from tools import intake, sandbox

CH, CH03 = "01_superposition", "03_loss_tradeoff"
CELL_TIMEOUT = 90  # seconds per cell for the hostile run (an infinite loop costs this much; chapter 03's setup
#                   cell and the flood need ~30 s under the guard on a loaded 2-core machine)
MEMORY_GB = 3
BASE = 10  # score of the base submission: 17 points minus test_toy_model (3) and the written answer (4)
SECRETS = {"GITHUB_TOKEN": "ghp_sentinel4242", "AWS_SECRET_ACCESS_KEY": "aws-sentinel-4242",
           "HF_TOKEN": "hf_sentinel4242", "COURSE_API_KEY": "course-key-sentinel-4242",
           "MY_SECRET": "plain-secret-sentinel-4242"}


# --------------------------------------------------------------------------------------------
# building submissions


def grade_cells(nb):
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


def strip_markers(src: str) -> str:
    return re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n", "", src)


def solution_answers(ch: str = CH) -> dict[str, str]:
    sol = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)
    return {gid: strip_markers(c.source) for gid, c in grade_cells(sol).items()
            if c.metadata["nbgrader"]["solution"] and c.cell_type == "code"}


_fresh: dict[str, nbformat.NotebookNode] = {}


def release(ch: str = CH) -> nbformat.NotebookNode:
    """The student version: chapters/ when committed, else generated now (a chapter being written)."""
    path = REPO / "chapters" / ch / f"{ch}.ipynb"
    if path.exists():
        return nbformat.read(path, as_version=4)
    if ch not in _fresh:
        with tempfile.TemporaryDirectory() as tmp:
            course = copy_course(Path(tmp) / "course")
            p = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ch, "--force", "--no-db"],
                               cwd=course, capture_output=True, text=True)
            assert p.returncode == 0, p.stderr[-2000:]
            _fresh[ch] = nbformat.read(course / "chapters" / ch / f"{ch}.ipynb", as_version=4)
    return copy.deepcopy(_fresh[ch])


UNANSWERED = {CH: "toy_model", CH03: "train_toy_sae"}   # left as released: the training cells fail at once


def base(ch: str = CH, **answers: str) -> nbformat.NotebookNode:
    """The release with every code answer filled in from the solution except the one that
    trains (UNANSWERED), then `answers` (grade_id -> source) swapped in."""
    nb, sol = release(ch), solution_answers(ch)
    for gid, cell in grade_cells(nb).items():
        if gid in sol and gid != UNANSWERED[ch]:
            cell.source = sol[gid]
        if gid in answers:
            cell.source = answers[gid]
    return nb


def with_prefix(gid: str, code: str, ch: str = CH) -> dict[str, str]:
    """`code` run at the top of answer cell `gid`, followed by the correct answer."""
    return {gid: code.rstrip() + "\n\n" + solution_answers(ch)[gid]}


def colab_resave(nb) -> bytes:
    """What Colab's File → Download .ipynb gives: no cell ids, nbformat_minor 0, its metadata."""
    d = json.loads(nbformat.writes(nb))
    d["nbformat_minor"] = 0
    d["metadata"] = {"colab": {"provenance": [], "name": f"{CH}.ipynb", "toc_visible": True},
                     "kernelspec": {"name": "python3", "display_name": "Python 3"},
                     "language_info": {"name": "python"}, "accelerator": "GPU", "gpuClass": "standard"}
    for i, cell in enumerate(d["cells"]):
        cell.pop("id", None)
        cell["metadata"]["id"] = f"c0lab{i:04d}xyz"
        cell["metadata"]["colab"] = {"base_uri": "https://localhost:8080/", "height": 34}
        if cell["cell_type"] == "code":
            cell["metadata"]["outputId"] = f"{i:08x}-aaaa-bbbb-cccc-000000000000"
            cell["execution_count"] = i
    return json.dumps(d, indent=2).encode()


def lose_metadata(nb):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata = {}
    nb.metadata = {}
    return nb


def duplicate(nb, *gids):
    nb = copy.deepcopy(nb)
    for gid in gids:
        i = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
        nb.cells.insert(i + 1, copy.deepcopy(nb.cells[i]))
    return nb


def delete(nb, gid):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != gid]
    return nb


def edit(nb, gid, source):
    nb = copy.deepcopy(nb)
    grade_cells(nb)[gid].source = source
    return nb


SNOOP = r'''
import json, os, subprocess
_course, _repo = {course!r}, {repo!r}
_needles = [s[::-1].encode() for s in ({canary_reversed!r}, "10.0 < )8.0 - )(meti.)(naem")]   # built at run time
_report = {{"tried": 0, "found": [], "errors": {{}}, "uid": os.getuid(), "home": sorted(os.listdir(os.path.expanduser("~")))}}
for _p in [f"{{_repo}}/solutions/{ch}/{ch}.ipynb", f"{{_course}}/solutions/{ch}/{ch}.ipynb",
           f"{{_course}}/grading/gradebook.db", f"{{_repo}}/grading/gradebook.db", f"{{_repo}}/.git/HEAD",
           f"{{_course}}/grading/work/jobs", "/root/.bashrc", "/proc/1/environ", f"/proc/{{os.getppid()}}/environ",
           f"/proc/{{os.getppid()}}/cwd/nbgrader_config.py"]:
    _report["tried"] += 1
    try:
        if os.path.isdir(_p):
            _report["found"].append([_p, os.listdir(_p)])
        else:
            open(_p, "rb").read(64)
            _report["found"].append(_p)
    except Exception as _e:
        _report["errors"][_p] = type(_e).__name__
_skip = {{"proc", "sys", "dev", "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "boot"}}
for _top in sorted({{"/" + d for d in os.listdir("/") if d not in _skip}} | {{"/dev/shm", _course, _repo}}):
    for _dir, _dirs, _files in os.walk(_top):
        _dirs[:] = [d for d in _dirs if d not in ("site-packages", "node_modules", "__pycache__", ".library")]
        for _f in _files:
            _path = os.path.join(_dir, _f)
            _report["tried"] += 1
            try:
                with open(_path, "rb") as _fh:
                    _data = _fh.read(50_000_000 if _f.endswith((".db", ".ipynb", ".json", ".py")) else 300_000)
            except Exception:
                continue
            if any(_n in _data for _n in _needles):
                _report["found"].append(_path)
_report["env_secrets"] = sorted(k for k in os.environ if any(s in k.upper() for s in ("TOKEN", "KEY", "SECRET", "AWS", "GITHUB", "HF_")))
_report["env_values"] = [v for v in os.environ.values() if "sentinel" in v]
try:
    _report["git"] = subprocess.run(["git", "-C", _repo, "show", "HEAD:solutions/{ch}/{ch}.ipynb"],
                                    capture_output=True, text=True, timeout=30).stdout[:200]
except Exception as _e:
    _report["git"] = type(_e).__name__
print("ATTACK-REPORT " + json.dumps(_report))
# and watch every cell that runs after this one, hidden tests included
get_ipython().events.register("pre_run_cell", lambda info: print("SNOOP>>", info.raw_cell))
'''

LEFTOVERS = '''
import os, subprocess, time
subprocess.Popen(["sleep", "7777"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    time.sleep(7777)
    os._exit(0)
'''

FLOOD = '''
import sys
from IPython.display import HTML, display
for i in range(300_000):
    print("line", i)
sys.stdout.write("spam spam spam\\n" * 2_000_000)
display(HTML("<p>" + "x" * 30_000_000 + "</p>"))
'''

MEMORY_BOMB = '''
_hog = []
try:
    while True:
        _hog.append(bytearray(2**28))  # 256 MB at a time, until the per-student limit stops it
finally:
    print("allocated before the limit:", len(_hog) * 256, "MB")
'''


TAMPERING = "needs a human: tampering in "
SAE_LOSS_POINTS = 2
CHEAT_INDIRECTION = """def sae_loss(x, reconstructed, latents, l1_coeff):
    import sys
    return sys.modules["utils.losses"].sae_loss(x, reconstructed, latents, l1_coeff)
"""
CHEAT_PATCHING = """import builtins, torch
from utils.checks import ch03 as _checks
builtins.abs = lambda value: 0.0
torch.allclose = lambda *args, **kwargs: True
for _name in dir(_checks):
    if _name.startswith("check_"):
        setattr(_checks, _name, lambda *args, **kwargs: None)

def sae_loss(x, reconstructed, latents, l1_coeff):
    return torch.tensor(2.5)
"""


def plant_canary(course: Path) -> str:
    """A unique line in a hidden test of the course copy: wherever a file holds it, it is a copy
    of the solutions or of a gradebook."""
    import uuid

    canary = f"canary-{uuid.uuid4().hex}"
    path = course / "solutions" / CH / f"{CH}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = grade_cells(nb)["test_generate_batch"]
    cell.source = cell.source.replace("### END HIDDEN TESTS", f"# {canary}\n### END HIDDEN TESTS")
    nbformat.write(nb, path)
    return canary


def build_class(course: Path, canary: str) -> dict[str, dict]:
    """Write the class into course/grading/submitted; return {case: expectation}."""
    sol = solution_answers()
    cases: dict[str, dict] = {}

    def hand_in(student, files: dict[str, object], ch: str = CH, **expect):
        expect["chapter"] = CH03 if any(rel.startswith(CH03) for rel in files) else ch
        for rel, content in files.items():
            path = course / "grading" / "submitted" / student / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, (bytes, str)):
                path.write_bytes(content if isinstance(content, bytes) else content.encode())
            else:
                nbformat.write(content, path)
        cases[student] = expect

    nbpath = f"{CH}/{CH}.ipynb"
    hand_in("ok_base", {nbpath: base()}, status="graded", score=BASE)
    hand_in("exception", {nbpath: base(generate_batch=sol["generate_batch"].replace(
        '"""\n', '"""\n    raise ValueError("student bug in generate_batch")\n', 1))},
        status="graded", score=BASE - 2, feedback=["student bug in generate_batch"])
    hand_in("infinite_loop", {nbpath: base(generate_batch=(
        "def generate_batch(n_inst, n_feats, feature_probability, batch, *, generator=None):\n"
        "    while True:\n        pass\n"))},
        status="graded", score=BASE - 2, cells={"test_generate_batch": 0, "test_importance_weighted_loss": 2},
        feedback=["CellTimeoutError"])
    hand_in("os_exit", {nbpath: base(**with_prefix("generate_batch", "import os\nos._exit(3)"))},
            status="needs a human: the kernel died in cell 'generate_batch', exit code 3")
    hand_in("sigkill_self", {nbpath: base(**with_prefix("importance_weighted_loss",
                                                       "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))},
            status="needs a human: the kernel died in cell 'importance_weighted_loss', killed by SIGKILL")
    hand_in("memory_bomb", {nbpath: base(**with_prefix("dimensions_per_feature", MEMORY_BOMB))},
            status="graded", score=BASE - 3, autograded=["MemoryError", "allocated before the limit"])
    hand_in("nan_result", {nbpath: base(dimensions_per_feature=(
        "def dimensions_per_feature(W):\n    return torch.full((W.shape[0], W.shape[2]), float('nan'))\n"))},
        status="graded", score=BASE - 3, feedback=["NaN"])
    hand_in("wrong_shape", {nbpath: base(importance_weighted_loss=(
        "def importance_weighted_loss(out, x, importance):\n"
        "    return ((x - out).pow(2) * importance).sum(-1).mean()\n"))},
        status="graded", score=BASE - 2, feedback=["return one loss per instance"])
    hand_in("flood", {nbpath: base(**with_prefix("mean_abs_cosine", FLOOD))},
            status="graded", score=BASE, autograded=["truncated"], max_bytes=6_000_000)
    hand_in("edited_test", {nbpath: edit(base(generate_batch=(
        "def generate_batch(n_inst, n_feats, feature_probability, batch, *, generator=None):\n"
        "    return torch.zeros(batch, n_inst, n_feats)\n")), "test_generate_batch", "pass  # tests are optional")},
        status="graded", score=BASE - 2, cells={"test_generate_batch": 0})
    hand_in("deleted_test", {nbpath: delete(base(), "test_importance_weighted_loss")},
            status="graded", score=BASE, cells={"test_importance_weighted_loss": 2})
    hand_in("duplicated", {nbpath: duplicate(base(), "generate_batch", "test_generate_batch")},
            status="graded", score=BASE, notes=["duplicate cell"])
    hand_in("lost_metadata", {nbpath: lose_metadata(base())}, status="graded", score=BASE,
            notes=["restored metadata"])
    hand_in("colab", {nbpath: colab_resave(base())}, status="graded", score=BASE)
    hand_in("renamed", {f"{CH}/Copy of {CH} (1).ipynb": base()}, status="graded", score=BASE, notes=["renamed"])
    hand_in("wrong_folder", {"02_sae_architecture/homework.ipynb": base()}, status="graded", score=BASE,
            notes=["handed in under 02_sae_architecture"])
    hand_in("empty_file", {nbpath: b""}, status="needs a human: " + f"{CH}.ipynb: the file is empty")
    hand_in("not_json", {nbpath: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"}, status="needs a human: "
            + f"{CH}.ipynb: not JSON")
    hand_in("json_not_notebook", {nbpath: b'{"hello": "world"}'}, status="needs a human: "
            + f"{CH}.ipynb: JSON but not a notebook")
    hand_in("two_files", {nbpath: base(), f"{CH}/{CH}_final.ipynb": base(importance_weighted_loss="x = 1\n")},
            status="graded", score=BASE, other="needs a human: 2 different files for 01_superposition")
    hand_in("uses_reference", {nbpath: base(
        generate_batch="from utils.toy_models import generate_batch\n",
        # the reference fetched at call time, by a string the checks cannot see
        importance_weighted_loss=("import importlib\n\ndef importance_weighted_loss(out, x, importance):\n"
                                  "    ref = importlib.import_module('utils.toy_models')\n"
                                  "    return ref.importance_weighted_loss(out, x, importance)\n"))},
        status=TAMPERING, zeroed=["test_generate_batch", "test_importance_weighted_loss"], score=BASE - 4,
        feedback=["utils.toy_models:generate_batch", "utils.toy_models:importance_weighted_loss"])
    snoop = SNOOP.format(course=str(course), repo=str(REPO), ch=CH, canary_reversed=canary[::-1])
    hand_in("snooper", {nbpath: base(**with_prefix("generate_batch", snoop))},   # its `git show` is refused
            status=TAMPERING, zeroed=["test_generate_batch"], score=BASE - 2, feedback=["starting a process"])
    hand_in("leftovers", {nbpath: base(**with_prefix("generate_batch", LEFTOVERS))},  # refused at its first Popen
            status=TAMPERING, zeroed=["test_generate_batch"], score=BASE - 2)
    # the two held-out chapter-03 submissions that scored test_sae_loss's points with no answer of their own
    nb03 = f"{CH03}/{CH03}.ipynb"
    hand_in("ok_base_03", {nb03: base(CH03)}, status="graded", cells={"test_sae_loss": SAE_LOSS_POINTS})
    hand_in("cheat_by_indirection", {nb03: base(CH03, sae_loss=CHEAT_INDIRECTION)}, ch=CH03,
            status=TAMPERING, zeroed=["test_sae_loss"], cells={"test_sae_loss": 0},
            feedback=["utils.losses:sae_loss"])
    hand_in("cheat_by_patching", {nb03: base(CH03, sae_loss=CHEAT_PATCHING)}, ch=CH03,
            status=TAMPERING, zeroed=["test_sae_loss"], cells={"test_sae_loss": 0},
            feedback=["builtins.abs was changed", "torch.allclose was changed", "check_sae_loss was changed"])
    smuggled = base(generate_batch=("def generate_batch(n_inst, n_feats, feature_probability, batch, *, generator=None):\n"
                                    "    return torch.zeros(batch, n_inst, n_feats)\n"))
    smuggled.metadata["kernelspec"] = {"name": "evil", "display_name": "not the course kernel", "language": "python"}
    hand_in("smuggler", {nbpath: smuggled, f"{CH}/utils.py": "def __getattr__(name):\n    return lambda *a, **k: None\n",
                         f"{CH}/utils/checks/ch01.py": "def __getattr__(name):\n    return lambda *a, **k: None\n"},
            status="graded", score=BASE - 2, notes=["other files ignored"])
    hand_in("Zoë O'Neil (2)", {nbpath: base()}, status="graded", score=BASE)
    hand_in("no_notebook", {"answers.pdf": b"%PDF-1.4 my answers"},
            status="needs a human: no notebook among the files handed in")
    hand_in("empty_folder", {}, status="needs a human: nothing handed in")
    (course / "grading" / "submitted" / "empty_folder").mkdir(parents=True, exist_ok=True)
    (course / "grading" / "submitted" / "loose.ipynb").write_bytes(nbformat.writes(base()).encode())
    cases["?"] = {"status": "needs a human: file is not inside a student's folder"}
    return cases


# --------------------------------------------------------------------------------------------
# the run


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def grade(course: Path, *extra: str) -> tuple[list[dict], str]:
    env = {**os.environ, "COURSE_FAST": "1", "COURSE_CELL_TIMEOUT": str(CELL_TIMEOUT), **SECRETS}
    p = subprocess.run([sys.executable, "-m", "tools.grade", "--root", str(course), "--jobs", str(os.cpu_count()),
                        "--memory", str(MEMORY_GB), *extra], cwd=course, env=env, capture_output=True, text=True,
                       timeout=1200)
    print(p.stdout[-6000:], p.stderr[-3000:])
    assert p.returncode == 0, p.stderr[-4000:]
    with (course / "grading" / "grades.csv").open() as f:
        return list(csv.DictReader(f)), p.stdout


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("hostile") / "course")
    canary = plant_canary(course)
    cases = build_class(course, canary)
    before = digest(course / "grading" / "submitted")
    rows, out = grade(course)
    return {"course": course, "cases": cases, "rows": rows, "stdout": out, "before": before, "canary": canary}


def rows_of(graded, student):
    return [r for r in graded["rows"] if r["student"] == student]


def main_row(graded, student):
    rows = rows_of(graded, student)
    assert rows, f"{student} is missing from grades.csv"
    return next((r for r in rows if r["status"] == "graded"), rows[0])


def cell_scores(course: Path, student: str, ch: str = CH) -> dict[str, float]:
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}", course_id="untangling-features") as gb:
        sub = gb.find_submission(ch, student)
        return {g.name: g.auto_score for g in sub.notebooks[0].grades}


def output_text(course: Path, student: str) -> str:
    """Every stream output of the student's autograded notebook (what its kernel printed)."""
    nb = nbformat.read(course / "grading" / "autograded" / student / CH / f"{CH}.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def texts(course: Path, kind: str, student: str, ch: str = CH) -> str:
    d = course / "grading" / kind / student / ch
    return "".join(p.read_text(errors="replace") for p in d.glob("*") if p.is_file()) if d.exists() else ""


@pytest.mark.slow
def test_every_file_handed_in_ends_as_expected(graded):
    """The hostile-case table: every case ends in its expected grade or "needs a human" row."""
    course, table = graded["course"], []
    submitted = course / "grading" / "submitted"
    students = {p.name for p in submitted.iterdir() if p.is_dir()}
    assert students <= {r["student"] for r in graded["rows"]}, "a student is silently missing"
    files = [p for p in submitted.rglob("*") if p.is_file()]
    assert len(graded["rows"]) >= len(files) - 2, "every notebook-like file has a row"   # smuggler's 2 .py files
    failures = []
    for student, expect in graded["cases"].items():
        row = main_row(graded, student)
        got = f"{row['status']} {row['score']}".strip()
        table.append(f"{student:<20} {expect['status'][:60]:<60} -> {got}")
        if not row["status"].startswith(expect["status"]):
            failures.append(f"{student}: status {row['status']!r}, expected {expect['status']!r}")
            continue
        for test in expect.get("zeroed", []):
            if test not in row["status"]:
                failures.append(f"{student}: {test} missing from {row['status']!r}")
        if expect["status"] == "graded" and not row["status"] == "graded":
            failures.append(f"{student}: status {row['status']!r}, expected exactly 'graded'")
        if "score" in expect and float(row["score"]) != expect["score"]:
            failures.append(f"{student}: score {row['score']}, expected {expect['score']} ({row['notes']})")
        for note in expect.get("notes", []):
            if note not in row["notes"]:
                failures.append(f"{student}: note {note!r} missing from {row['notes']!r}")
        if expect["status"] == "graded" or expect["status"].startswith(TAMPERING):
            ch = expect["chapter"]
            scores = cell_scores(course, student, ch)
            for gid, want in expect.get("cells", {}).items():
                if scores[gid] != want:
                    failures.append(f"{student}: {gid} scored {scores[gid]}, expected {want}")
            html = texts(course, "feedback", student, ch)
            assert html, f"{student}: no feedback"
            for needle in expect.get("feedback", []):
                if needle not in html:
                    failures.append(f"{student}: feedback lacks {needle!r}")
            autograded = texts(course, "autograded", student, ch)
            for needle in expect.get("autograded", []):
                if needle not in autograded:
                    failures.append(f"{student}: autograded notebook lacks {needle!r}")
            if "max_bytes" in expect:
                for kind in ("autograded", "feedback"):
                    size = sum(p.stat().st_size for p in (course / "grading" / kind / student / CH).glob("*"))
                    if size > expect["max_bytes"]:
                        failures.append(f"{student}: {kind} is {size} bytes")
        if "other" in expect:
            others = [r["status"] for r in rows_of(graded, student) if r["status"] != "graded"]
            if not any(s.startswith(expect["other"]) for s in others):
                failures.append(f"{student}: no row {expect['other']!r} among {others}")
    print("\n".join(table))
    assert len(graded["cases"]) >= 15
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_submitted_folder_never_modified(graded):
    assert digest(graded["course"] / "grading" / "submitted") == graded["before"]


@pytest.mark.slow
def test_feedback_never_shows_hidden_tests(graded):
    course = graded["course"]
    hidden, raw = {}, {}
    for ch in (CH, CH03):      # each page against its own chapter's hidden tests (a line such as
        sol = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)   # `with torch.no_grad():`
        hidden[ch] = fb.hidden_lines(sol, release(ch))                 # may be visible code elsewhere)
        raw[ch] = [ln.strip() for block in fb.hidden_blocks(sol) for ln in block.splitlines()
                   if len(ln.strip()) > 20 and "HIDDEN TESTS" not in ln]
    pages = list((course / "grading" / "feedback").rglob("*.html"))
    assert len(pages) >= 15
    for page in pages:
        html, ch = page.read_text(), page.parent.name
        assert "HIDDEN TESTS" not in html, page
        assert not fb.html_leaks(html, hidden[ch]), (page, fb.html_leaks(html, hidden[ch]))
        for line in raw[ch]:
            assert line not in html, (page, line)
    # the snooper really did watch the hidden tests run (the kernel executes them, so it can):
    # its printout is in the instructor's autograded copy, and only the feedback hides it
    printed = output_text(course, "snooper")
    assert "SNOOP>>" in printed and graded["canary"] in printed
    for page in pages:
        assert graded["canary"] not in page.read_text(), page
    assert fb.REDACTED in texts(course, "feedback", "snooper")


@pytest.mark.slow
def test_a_submission_cannot_read_answers_gradebooks_or_credentials(graded):
    course = graded["course"]
    if "isolation full" not in graded["stdout"]:
        pytest.skip("kernels are isolated only when grading runs as root on Linux: "
                    + graded["stdout"].rsplit("isolation", 1)[-1].splitlines()[0])
    line = next(ln for ln in output_text(course, "snooper").splitlines() if ln.startswith("ATTACK-REPORT "))
    report = json.loads(line.split(" ", 1)[1])
    print(json.dumps(report, indent=1))
    assert report["tried"] > 50, report            # it really looked around
    assert report["found"] == [], report["found"]   # solutions, gradebooks, .git, jobs, /proc of the grader
    assert report["env_secrets"] == [] and report["env_values"] == [], report
    assert report["uid"] >= 100_000, report
    assert set(report["home"]) <= {".ipython", ".kernel-connection.json", ".cache", ".config", ".local"}, report
    assert "nbgrader" not in report["git"] and "BEGIN" not in report["git"], report["git"]
    for kind in ("autograded", "feedback"):
        for student in graded["cases"]:
            text = texts(course, kind, student)
            for value in SECRETS.values():
                assert value not in text, (kind, student)


@pytest.mark.slow
def test_processes_a_submission_starts_are_refused_and_nothing_is_left(graded):
    row = main_row(graded, "leftovers")
    assert row["status"].startswith(TAMPERING), row
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 7777" not in ps


def test_whatever_a_kernel_leaves_running_is_killed(tmp_path):
    """The guard refuses process starts; the grader still sweeps the kernel's session (or uid)."""
    from types import SimpleNamespace

    from tools.grading.supervise import cleanup_processes

    p = subprocess.Popen(["sleep", "7778"], start_new_session=True)
    (tmp_path / "kernel.pid").write_text(str(p.pid))
    assert cleanup_processes(SimpleNamespace(uid=None, dir=tmp_path)) >= 1
    assert p.wait(timeout=10) == -9


@pytest.mark.slow
def test_formgrader_sees_every_graded_submission(graded):
    course = graded["course"]
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}", course_id="untangling-features") as gb:
        for row in graded["rows"]:
            if row["status"] == "graded":
                sub = gb.find_submission(row["chapter"], row["student"])
                assert sub.score == float(row["score"])
                assert (course / "grading" / "autograded" / row["student"] / row["chapter"]
                        / f"{row['chapter']}.ipynb").exists()
                assert (course / "grading" / "work" / "submitted" / row["student"] / row["chapter"]).exists()
    jobs = course / "grading" / "work" / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir()), "job folders (gradebook copies) are cleaned up"


@pytest.mark.slow
def test_grading_again_is_safe_and_gives_the_same_grades(graded):
    course = graded["course"]
    first = {(r["student"], r["file"]): (r["status"], r["score"]) for r in graded["rows"]}
    rows, out = grade(course, "--regrade", "ok_base")   # everything else unchanged: kept, not re-run
    second = {(r["student"], r["file"]): (r["status"], r["score"]) for r in rows}
    assert second == first
    assert digest(course / "grading" / "submitted") == graded["before"]
    regraded = next(r for r in rows if r["student"] == "ok_base")
    assert "grade kept" not in regraded["notes"]
    kept = next(r for r in rows if r["student"] == "colab")
    assert "grade kept" in kept["notes"]


# --------------------------------------------------------------------------------------------
# per chapter, without execution: intake repairs every chapter present


@pytest.fixture(scope="module")
def releases():
    return {ch: release(ch) for ch in CHAPTERS}


def solved(ch: str) -> nbformat.NotebookNode:
    nb, sol = release(ch), solution_answers(ch)
    for gid, cell in grade_cells(nb).items():
        if gid in sol:
            cell.source = sol[gid]
    return nb


@pytest.mark.parametrize("ch", CHAPTERS)
def test_intake_repairs_every_chapter(ch, tmp_path, releases):
    want = intake.grade_ids(releases[ch])
    variants = {
        f"Copy of {ch} (1).ipynb": nbformat.writes(solved(ch)).encode(),
        "colab.ipynb": colab_resave(solved(ch)),
        "lost.ipynb": nbformat.writes(lose_metadata(solved(ch))).encode(),
        "dup.ipynb": nbformat.writes(duplicate(solved(ch), *[g for g in want if g.startswith("test_")][:1])).encode(),
        "deleted.ipynb": nbformat.writes(delete(solved(ch), [g for g in want if g.startswith("test_")][-1])).encode(),
    }
    for name, data in variants.items():
        path = tmp_path / name
        path.write_bytes(data)
        got = intake.take(path, "somewhere_else", releases)
        assert got.problem is None and got.chapter == ch, (name, got.problem, got.chapter)
        ids = intake.grade_ids(got.notebook)
        assert len(ids) == len(set(ids)), name
        deleted = [g for g in want if g.startswith("test_")][-1] if name == "deleted.ipynb" else None
        assert ids == [g for g in want if g != deleted], (name, ids)   # nbgrader re-adds the deleted one
        assert any("handed in under somewhere_else" in n for n in got.notes), got.notes


@pytest.mark.parametrize("ch", CHAPTERS)
def test_feedback_redaction_removes_hidden_tests_of_every_chapter(ch, releases):
    """Worst case: the autograded notebook quotes every hidden test in an output of every cell."""
    sol = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)
    # the graded notebook is the solution handed in as a student: its answers are the student's own
    # lines (visible to them anyway), the test cells are the graded ones
    answers = copy.deepcopy(sol)
    answers.cells = [c for c in answers.cells if c.metadata.get("nbgrader", {}).get("solution")]
    hidden = fb.hidden_lines(sol, releases[ch], answers)
    blocks = fb.hidden_blocks(sol)
    if not blocks:
        pytest.skip(f"{ch} has no hidden tests")
    nb = copy.deepcopy(sol)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(blocks)),
                            nbformat.v4.new_output("error", ename="ValueError", evalue=repr(blocks[0][:300]),
                                                   traceback=[blocks[-1]])]
    fb.sanitise(nb, hidden)
    text = "\n".join(c.source + json.dumps(c.get("outputs", [])) for c in nb.cells)
    assert "HIDDEN TESTS" not in text
    assert not [h for h in hidden if h in fb.norm(text.replace("\\n", "\n"))]


FEEDBACK_ANSWER = '''
def halve(x):
    if x < 0:
        raise ValueError("halve() got a negative number: " + str(x))
    return x // 2
'''
FEEDBACK_TESTS = {   # test cell id -> source: a visible check, then hidden lines of 16+ characters
    "test_message": 'assert halve(4) == 2\n### BEGIN HIDDEN TESTS\nresult_for_hidden = halve(41)\n'
                    'assert result_for_hidden == 21, f"halve(41) returned {result_for_hidden}, expected 21"\n'
                    '### END HIDDEN TESTS\n',
    "test_bare": '### BEGIN HIDDEN TESTS\nassert halve(1000001) == 999999\n### END HIDDEN TESTS\n',
    "test_raises": '### BEGIN HIDDEN TESTS\nhidden_negative_input = -(10 ** 3)\nhalve(hidden_negative_input)\n'
                   '### END HIDDEN TESTS\n',
}


def test_feedback_shows_a_failed_hidden_tests_message_but_not_its_lines():
    """Real IPython tracebacks (they quote the failing hidden line and its neighbours): the
    feedback keeps the exception's name and message and the student's own frames, never a
    hidden line."""
    from nbclient import NotebookClient

    def md(gid, **kw):
        return {"nbgrader": {"grade_id": gid, "schema_version": 3, "locked": False, "solution": False,
                             "grade": False, "task": False, **kw}}

    cells = [nbformat.v4.new_code_cell(FEEDBACK_ANSWER, metadata=md("halve", solution=True))]
    cells += [nbformat.v4.new_code_cell(src, metadata=md(gid, grade=True, locked=True, points=1))
              for gid, src in FEEDBACK_TESTS.items()]
    nb = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=60).execute()
    solution = copy.deepcopy(nb)
    release = copy.deepcopy(nb)
    for c in release.cells:
        c.source = fb.HIDDEN.sub("", c.source)
    hidden = fb.hidden_lines(solution, release)
    assert len(hidden) == 5, hidden      # every hidden line above
    raw = {c.metadata["nbgrader"]["grade_id"]: c.outputs[0] for c in nb.cells[1:]}
    assert all(o.output_type == "error" for o in raw.values()), raw
    assert fb.leaks("\n".join(raw["test_message"].traceback), hidden)    # what today's feedback had to drop
    fb.sanitise(nb, hidden)
    shown = {c.metadata["nbgrader"]["grade_id"]: c.outputs[0] for c in nb.cells[1:]}
    for gid, out in shown.items():
        assert not fb.leaks(fb._output_text(out), hidden), (gid, out)
    assert shown["test_message"].ename == "AssertionError"
    assert shown["test_message"].evalue == "halve(41) returned 20, expected 21"
    assert shown["test_message"].traceback[-1] == f"AssertionError: {shown['test_message'].evalue}"
    assert fb.HIDDEN_FRAME in shown["test_message"].traceback
    assert (shown["test_bare"].ename, shown["test_bare"].evalue) == ("AssertionError", "a hidden test failed")
    tb = "\n".join(shown["test_raises"].traceback)
    assert shown["test_raises"].evalue == "halve() got a negative number: -1000"
    assert "raise ValueError" in fb.ANSI.sub("", tb), tb      # the student's own frame stays
    assert "hidden_negative_input" not in fb.ANSI.sub("", tb), tb


def test_kernel_environment_has_no_credentials():
    env = {"PATH": "/usr/bin", "HOME": "/root", "GITHUB_TOKEN": "x", "AWS_ACCESS_KEY_ID": "x", "HF_TOKEN": "x",
           "OPENAI_API_KEY": "x", "MY_SECRET": "x", "COURSE_FAST": "1", "COURSE_API_KEY": "x", "SSH_AUTH_SOCK": "x",
           "LC_ALL": "C", "PIP_INDEX_URL": "https://user:pw@example/simple"}
    got = sandbox.kernel_env(env, home="/tmp/home")
    assert got["HOME"] == "/tmp/home" and got["COURSE_FAST"] == "1" and got["LC_ALL"] == "C"
    assert not {"GITHUB_TOKEN", "AWS_ACCESS_KEY_ID", "HF_TOKEN", "OPENAI_API_KEY", "MY_SECRET", "COURSE_API_KEY",
                "SSH_AUTH_SOCK", "PIP_INDEX_URL"} & set(got)
    assert "GITHUB_TOKEN" not in sandbox.scrub_env(env) and "PATH" in sandbox.scrub_env(env)


# --------------------------------------------------------------------------------------------
# the guard, kernel by kernel: variants of both held-out cheats in several chapters, each in a
# small notebook of the chapter's real test cells (visible checks and hidden tests), run under
# the guard as `make grade` starts it without root ("isolation partial": no mount namespace, no
# uid of its own), and judged by the grader's own verdict (tools.guard.verdict.judge)

from tools.guard import run as guard_run  # noqa: E402
from tools.guard import spec as guard_spec  # noqa: E402
from tools.guard import verdict as guard_verdict  # noqa: E402

LIGHT_SETUP = {   # the chapter's imports without its data: these tests need none
    CH: "import math\nimport einops\nimport torch\nfrom torch import nn\nfrom utils.checks import ch01 as checks\n",
    "02_sae_architecture": "import math\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
                           "from utils.checks import ch02 as checks\n",
    CH03: "import math\nimport torch\nfrom torch import nn\nfrom utils.checks import ch03 as checks\n",
    "05_dead_latents": "import torch\nfrom utils.saes import build_sae\nfrom utils.checks import ch05 as checks\n",
}


def mini_chapter(ch: str, answers: dict[str, str]) -> tuple[nbformat.NotebookNode, dict]:
    """(a notebook: a locked setup cell, then for each answer cell id its given source and the
    chapter's real test cell; the guard's job spec, with the reference answers as the solution)."""
    sol_nb = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)
    cells, exercise, sol = grade_cells(sol_nb), guard_spec.exercises(sol_nb), solution_answers(ch)
    setup = nbformat.v4.new_code_cell(LIGHT_SETUP[ch], metadata={"nbgrader": {
        "grade_id": "setup", "locked": True, "grade": False, "solution": False, "schema_version": 3}})
    student, reference = [setup], [copy.deepcopy(setup)]
    for gid, source in answers.items():
        test = cells[exercise[gid]]
        student += [nbformat.v4.new_code_cell(source, metadata=copy.deepcopy(cells[gid].metadata)), copy.deepcopy(test)]
        reference += [nbformat.v4.new_code_cell(sol[gid], metadata=copy.deepcopy(cells[gid].metadata)),
                      copy.deepcopy(test)]
    return nbformat.v4.new_notebook(cells=student), guard_spec.job_part(nbformat.v4.new_notebook(cells=reference), ch)


def guarded(ch: str, answers: dict[str, str]) -> tuple[dict, dict]:
    """Run the mini chapter under the guard: (tests the grader would zero -> reasons, channel)."""
    nb, part = mini_chapter(ch, answers)
    nb, channel = guard_run.run(nb, part, cell_timeout=120)
    tests = {c.metadata["nbgrader"]["grade_id"]: 1.0 for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade")}
    verdict = guard_verdict.judge(channel, tests)   # as if nbgrader had given every test its points
    print(json.dumps(verdict, indent=1))
    return verdict, channel


def assert_zeroed(verdict: dict, test: str, *why: str) -> None:
    reasons = " | ".join(verdict["zero"].get(test, []))
    assert reasons, f"{test} keeps its points: {verdict}"
    for w in why:
        assert w in reasons, f"{test}: {w!r} not in {reasons!r}"


WRAPPER_BY_STRING = '''
def sae_loss(x, reconstructed, latents, l1_coeff):
    import sys
    return sys.modules["utils." + "losses"].sae_loss(x, reconstructed, latents, l1_coeff)
'''
VIA_IMPORTLIB = '''
def l1_gradient(latents, l1_coeff):
    import importlib
    losses = importlib.import_module("".join(["ut", "ils.lo", "sses"]))
    z = latents.detach().clone().requires_grad_()
    with torch.enable_grad():
        losses.sae_loss(z, z.detach(), z, l1_coeff).backward()
    return z.grad - 2 * (z.detach() - z.detach()) / z.numel()
'''
VIA_GETATTR = '''
def optimal_latent(x, l1_coeff):
    package = __import__("utils", fromlist=["losses"])
    getattr(getattr(package, "lo" + "sses"), "sae" + "_loss")(x, x, x, l1_coeff)
    return (x - l1_coeff / 2).clamp_min(0.0)
'''
IN_EXEC = '''
def l0_and_explained_variance(x, x_hat, latents):
    scope = {"x": x, "x_hat": x_hat, "latents": latents}
    exec("import utils.metrics as m\\nresult = (m.l0(latents).item(), m.explained_variance(x, x_hat).item())", scope)
    return scope["result"]
'''


def test_guard_catches_the_reference_reached_by_indirection():
    """Chapter 03: a wrapper importing by string, importlib, getattr built at run time, exec'd code."""
    verdict, _ = guarded(CH03, {"sae_loss": WRAPPER_BY_STRING, "l1_gradient": VIA_IMPORTLIB,
                                "optimal_latent": VIA_GETATTR, "l0_and_ev": IN_EXEC})
    assert_zeroed(verdict, "test_sae_loss", "utils.losses:sae_loss")
    assert_zeroed(verdict, "test_l1_gradient", "utils.losses:sae_loss")
    assert_zeroed(verdict, "test_optimal_latent", "utils.losses:sae_loss")
    assert_zeroed(verdict, "test_l0_and_ev", "utils.metrics:l0")


def test_guard_catches_both_held_out_chapter_03_cheats():
    """The two submissions that scored test_sae_loss with no answer of their own (the root run in
    test_every_file_handed_in_ends_as_expected grades them as `make grade` does), kernel by kernel:
    the reference reached through sys.modules, and patched builtins.abs / torch.allclose / check_*
    with a constant answer; the honest reference answer next to them is not flagged."""
    for cheat, why in ((CHEAT_INDIRECTION, ["calls the course's utils.losses:sae_loss"]),
                       (CHEAT_PATCHING, ["builtins.abs was changed", "torch.allclose was changed",
                                         "check_sae_loss was changed"])):
        verdict, _ = guarded(CH03, {"sae_loss": cheat})
        assert_zeroed(verdict, "test_sae_loss", *why)
    honest, channel = guarded(CH03, {"sae_loss": solution_answers(CH03)["sae_loss"]})
    assert honest["zero"] == {} and honest["unattributed"] == [], honest
    assert "test_sae_loss" in {f["test"] for f in guard_run.records(channel, "pass")}


PROFILER_OFF = '''
import sys
def sae_loss(x, reconstructed, latents, l1_coeff):
    for switch_off in (sys.settrace, sys.setprofile):
        try:
            switch_off(None)            # refused: the grader's tracer stays
        except PermissionError:
            pass
    return sys.modules["utils.losses"].sae_loss(x, reconstructed, latents, l1_coeff)
'''
IN_A_THREAD = '''
import threading
def l1_gradient(latents, l1_coeff):
    out = {}
    def work():
        losses = __import__("ut" + "ils.losses", fromlist=["x"])     # (no name a static check could read)
        z = latents.detach().clone().requires_grad_()
        with torch.enable_grad():
            losses.sae_loss(z, z.detach(), z, l1_coeff).backward()
        out["g"] = z.grad
    t = threading.Thread(target=work)
    t.start(); t.join()
    return out["g"]
'''
THREAD_RUNS_THE_REFERENCE = '''
import threading, sys
def optimal_latent(x, l1_coeff):
    target = getattr(sys.modules["ut" + "ils.losses"], "sae_loss")      # no student frame in the thread
    t = threading.Thread(target=target, args=(x, x, x, l1_coeff))
    t.start(); t.join()
    return (x - l1_coeff / 2).clamp_min(0.0)
'''
RAW_THREAD = '''
import _thread, time
def l0_and_explained_variance(x, x_hat, latents):
    done = []
    _thread.start_new_thread(lambda: done.append(__import__("utils.metrics").metrics.l0(latents).item()), ())
    while not done:
        time.sleep(0.01)
    return done[0], 1 - ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
'''


def test_guard_catches_tracer_removal_and_threads():
    verdict, _ = guarded(CH03, {"sae_loss": PROFILER_OFF, "l1_gradient": IN_A_THREAD,
                                "optimal_latent": THREAD_RUNS_THE_REFERENCE, "l0_and_ev": RAW_THREAD})
    assert_zeroed(verdict, "test_sae_loss", "sys.settrace()", "sys.setprofile()", "utils.losses:sae_loss")
    assert_zeroed(verdict, "test_l1_gradient", "utils.losses:sae_loss")
    assert_zeroed(verdict, "test_optimal_latent", "outside any notebook cell")
    assert_zeroed(verdict, "test_l0_and_ev", "utils.metrics:l0")


HONEST_01 = None   # the reference answers, from solution_answers()
TENSOR_EQ = '''
import torch
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)
'''
REBIND_CHECKS = '''
class _Anything:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None
checks = _Anything()
'''
REBIND_TORCH = '''
import types
torch = types.SimpleNamespace(**{**vars(__import__("torch")), "allclose": lambda *a, **k: True})
'''


def test_guard_catches_tampering_in_chapter_01():
    """Honest answers first (not flagged), then: patching torch.Tensor.__eq__, rebinding `checks`
    and `torch` in the notebook's namespace."""
    sol = solution_answers(CH)
    verdict, channel = guarded(CH, {
        "generate_batch": sol["generate_batch"],
        "importance_weighted_loss": TENSOR_EQ + sol["importance_weighted_loss"],
        "dimensions_per_feature": REBIND_CHECKS + sol["dimensions_per_feature"],
        "mean_abs_cosine": REBIND_TORCH + sol["mean_abs_cosine"]})
    assert "test_generate_batch" not in verdict["zero"], verdict          # no false positive
    assert "test_generate_batch" in {f["test"] for f in guard_run.records(channel, "pass")}
    assert_zeroed(verdict, "test_importance_weighted_loss", "Tensor.__eq__")
    assert_zeroed(verdict, "test_dimensions_per_feature", "the name `checks`")
    assert_zeroed(verdict, "test_capacity", "the name `torch`")


SUBCLASS_REFERENCE = '''
from utils.saes import SeedSparseAutoencoder, SeedReLUConfig
class SparseAutoencoder(SeedSparseAutoencoder):   # the course's own, under the answer's name
    def __init__(self, d_model, n_latents):
        super().__init__(SeedReLUConfig(d_in=d_model, d_sae=n_latents))
'''
HIDDEN_FAILURE = '''
get_ipython().set_custom_exc((Exception,), lambda *args, **kwargs: None)   # no error output, ever
def geometric_median(x, iters=100, eps=1e-8):
    return x.mean(0)
'''
TRANSFORMED_TESTS = '''
import ast
class _NoTests(ast.NodeTransformer):
    def visit_Module(self, node):
        node.body = [ast.Pass()]          # every later cell, the tests included, does nothing
        return node
get_ipython().ast_transformers.append(_NoTests())
def count_parameters(d_in, d_sae):
    return 0
'''


def test_guard_catches_answers_that_are_the_reference_and_hidden_failures():
    """Chapter 02: a class that is the course's SAE under the answer's name; a test whose failure
    a custom exception handler hides; hidden tests rewritten by an AST transformer."""
    verdict, channel = guarded("02_sae_architecture", {
        "sparse_autoencoder": SUBCLASS_REFERENCE, "geometric_median": HIDDEN_FAILURE,
        "count_parameters": TRANSFORMED_TESTS})
    assert_zeroed(verdict, "test_sparse_autoencoder", "utils.saes.relu:SeedSparseAutoencoder")
    assert "test_geometric_median" in {f["test"] for f in guard_run.records(channel, "fail")}
    assert_zeroed(verdict, "test_geometric_median", "its failure did not show")
    assert_zeroed(verdict, "test_sizes", "not its source")


def test_guard_lets_honest_answers_use_what_the_chapter_hands_out():
    """Chapter 05: firing_frequency calls `sae.encode` of the SAE the test passes in (allowed);
    calling the course's own firing_frequency is not."""
    sol = solution_answers("05_dead_latents")
    honest, _ = guarded("05_dead_latents", {"firing_frequency": sol["firing_frequency"]})
    assert honest["zero"] == {} and honest["unattributed"] == [], honest
    cheat = sol["firing_frequency"].replace("counts / x.shape[0]",
                                            "__import__('utils.metrics').metrics.firing_frequency(sae.encode(x))")
    verdict, _ = guarded("05_dead_latents", {"firing_frequency": cheat})
    assert_zeroed(verdict, "test_firing_frequency", "utils.metrics:firing_frequency")



def _names_something(pattern: str) -> bool:
    """Whether an allowed-helper pattern (`module:qualified.name`, shell wildcards) still names
    code of the library: the module imports and each part of the name is there (a `<locals>`
    class is looked up among the enclosing function's nested code)."""
    import fnmatch
    import importlib
    import inspect
    import pkgutil
    import types

    mod_pat, _, qual = pattern.partition(":")
    if "*" in mod_pat:
        base = mod_pat.split("*")[0].rstrip(".")
        pkg = importlib.import_module(base)
        names = [base] + [m.name for m in pkgutil.walk_packages(pkg.__path__, base + ".")]
        return any(fnmatch.fnmatchcase(n, mod_pat) and _names_something(f"{n}:{qual}") for n in names)
    objs = [importlib.import_module(mod_pat)]
    parts = qual.split(".")
    for i, part in enumerate(parts):
        if part == "<locals>":
            continue
        if parts[i - 1:i] == ["<locals>"]:  # a class or function defined inside the previous one
            codes = [c for o in objs for c in getattr(getattr(inspect.unwrap(o), "__code__", None), "co_consts", ())
                     if isinstance(c, types.CodeType)]
            if not any(fnmatch.fnmatchcase(c.co_name, part) for c in codes):
                return False
            return True  # what a local class holds is only known when the function runs
        objs = [getattr(o, n) for o in objs for n in dir(o) if fnmatch.fnmatchcase(n, part)]
        if not objs:
            return False
    return True


def test_every_allowed_helper_names_code_that_exists():
    """An allow-list entry whose class or function was renamed or moved stops matching, and the
    honest answers that use it would be zeroed as tampering: every entry must name real code."""
    from tools.guard.spec import ALLOWED

    stale = [f"{f.name}: {p}" for f in sorted(ALLOWED.glob("*.txt"))
             for p in (ln.split("#", 1)[0].strip() for ln in f.read_text().splitlines()) if p
             if not _names_something(p)]
    assert not stale, "allow-list entries naming nothing (update tools/guard/allowed/, "\
                      "or re-derive them with python -m tools.guard.trace):\n" + "\n".join(stale)
    # the check can fail: the entry the checks' move broke before 4374b42
    assert not _names_something("utils.checks.ch06:SignedSAE.*")
    assert not _names_something("utils.checks.ch07:_TinySAE.*")
    assert not _names_something("utils.checks.ch06:_signed_sae.<locals>.SignedSAEv2.*")

# --------------------------------------------------------------------------------------------
# the channel: nothing a notebook writes to it counts


def test_channel_records_cannot_be_forged_replayed_or_reordered():
    from tools.guard.verdict import _mac, parse

    key = bytes(range(32))

    def record(seq, payload, k=key):
        return f"\x1eG1 {seq} {_mac(k, f'{seq} {payload}')} {payload}\n".encode()

    hello = f"\x1eG1 0 - hello\tkey={key.hex()}\tpid=1\n".encode()
    genuine = hello + record(1, "pass\ttest=test_a\tflags=0")
    assert parse(genuine)["records"][1] == ("pass", {"test": "test_a", "flags": "0"})
    forged = (b"garbage \x1eG1 2 0123456789abcdef0123456789abcdef pass\ttest=test_b\tflags=0\n"   # bad mac
              + record(1, "pass\ttest=test_c\tflags=0")                                       # replayed seq
              + record(2, "pass\ttest=test_d\tflags=0", k=bytes(32))                          # another key
              + b"\x1eG1 0 - hello\tkey=" + b"ab" * 32 + b"\n")                               # a second hello
    got = parse(genuine + forged)
    assert [f.get("test") for k, f in got["records"] if k == "pass"] == ["test_a"] and got["ignored"] == 4
    before = parse(b"\x1eG1 0 - hello\tkey=" + b"cd" * 32 + b"\n" + genuine)   # a hello before the guard's?
    assert before["records"][0][1]["key"] == "cd" * 32   # (cannot happen: the guard writes first, see kernel.py)


def test_verdict_zeroes_what_the_guard_did_not_see_pass():
    from tools.guard.verdict import judge

    channel = {"hello": True, "ignored": 0, "records": [
        ("pass", {"test": "test_ok", "flags": "0"}), ("fail", {"test": "test_hidden", "flags": "0"}),
        ("pass", {"test": "test_flagged", "flags": "1"}),
        ("flag", {"kind": "reference", "tests": "test_flagged", "cell": "a", "what": "calls the course's x"})]}
    v = judge(channel, {"test_ok": 2.0, "test_hidden": 2.0, "test_flagged": 2.0, "test_silent": 1.0, "test_zero": 0.0})
    assert set(v["zero"]) == {"test_hidden", "test_flagged", "test_silent"}
    assert "calls the course's x" in v["zero"]["test_flagged"][0]
    assert "did not show" in v["zero"]["test_hidden"][0] and "went silent" in v["zero"]["test_silent"][0]
    assert judge({"hello": False, "ignored": 0, "records": []}, {"t": 1.0})["zero"]["t"][0].startswith("the grader's guard never")


def test_channel_reader_keeps_only_records(tmp_path):
    """Whatever else arrives on the FIFO (a notebook writing to it, half lines) is dropped."""
    from tools.grading.execute import ChannelReader

    reader = ChannelReader(tmp_path / "fifo")
    reader.start()
    fd = os.open(tmp_path / "fifo", os.O_WRONLY)
    for chunk in (b"junk without newline \x1eG1 0 - hel", b"lo\tkey=00\n\x1enot a record\n", b"\x1e\x1eG1 1 ab pass\n"):
        os.write(fd, chunk)
    os.close(fd)
    assert reader.stop() == b"\x1eG1 0 - hello\tkey=00\n\x1eG1 1 ab pass\n"
