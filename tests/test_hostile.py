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

CH = "01_superposition"
CELL_TIMEOUT = 30  # seconds per cell for the hostile run (an infinite loop costs this much)
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


def base(**answers: str) -> nbformat.NotebookNode:
    """The release with every code answer filled in from the solution except ToyModel, then
    `answers` (grade_id -> source) swapped in."""
    nb, sol = release(), solution_answers()
    for gid, cell in grade_cells(nb).items():
        if gid in sol and gid != "toy_model":
            cell.source = sol[gid]
        if gid in answers:
            cell.source = answers[gid]
    return nb


def with_prefix(gid: str, code: str) -> dict[str, str]:
    """`code` run at the top of answer cell `gid`, followed by the correct answer."""
    return {gid: code.rstrip() + "\n\n" + solution_answers()[gid]}


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

    def hand_in(student, files: dict[str, object], **expect):
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
        importance_weighted_loss=("import utils.toy_models\n\ndef importance_weighted_loss(out, x, importance):\n"
                                  "    return utils.toy_models.importance_weighted_loss(out, x, importance)\n"))},
        status="graded", score=BASE - 4, feedback=["not from your notebook", "from the course library"])
    snoop = SNOOP.format(course=str(course), repo=str(REPO), ch=CH, canary_reversed=canary[::-1])
    hand_in("snooper", {nbpath: base(**with_prefix("generate_batch", snoop))}, status="graded", score=BASE)
    hand_in("leftovers", {nbpath: base(**with_prefix("generate_batch", LEFTOVERS))}, status="graded", score=BASE)
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


def cell_scores(course: Path, student: str) -> dict[str, float]:
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}", course_id="untangling-features") as gb:
        sub = gb.find_submission(CH, student)
        return {g.name: g.auto_score for g in sub.notebooks[0].grades}


def output_text(course: Path, student: str) -> str:
    """Every stream output of the student's autograded notebook (what its kernel printed)."""
    nb = nbformat.read(course / "grading" / "autograded" / student / CH / f"{CH}.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def texts(course: Path, kind: str, student: str) -> str:
    d = course / "grading" / kind / student / CH
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
        if "score" in expect and float(row["score"]) != expect["score"]:
            failures.append(f"{student}: score {row['score']}, expected {expect['score']} ({row['notes']})")
        for note in expect.get("notes", []):
            if note not in row["notes"]:
                failures.append(f"{student}: note {note!r} missing from {row['notes']!r}")
        if expect["status"] == "graded":
            scores = cell_scores(course, student)
            for gid, want in expect.get("cells", {}).items():
                if scores[gid] != want:
                    failures.append(f"{student}: {gid} scored {scores[gid]}, expected {want}")
            html = texts(course, "feedback", student)
            assert html, f"{student}: no feedback"
            for needle in expect.get("feedback", []):
                if needle not in html:
                    failures.append(f"{student}: feedback lacks {needle!r}")
            autograded = texts(course, "autograded", student)
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
    sol = nbformat.read(REPO / "solutions" / CH / f"{CH}.ipynb", as_version=4)
    hidden = fb.hidden_lines(sol, release())
    raw = [ln.strip() for block in fb.hidden_blocks(sol) for ln in block.splitlines()
           if len(ln.strip()) > 20 and "HIDDEN TESTS" not in ln]
    pages = list((course / "grading" / "feedback").rglob("*.html"))
    assert len(pages) >= 15
    for page in pages:
        html = page.read_text()
        assert "HIDDEN TESTS" not in html, page
        assert not fb.html_leaks(html, hidden), (page, fb.html_leaks(html, hidden))
        for line in raw:
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
def test_leftover_processes_are_killed(graded):
    row = main_row(graded, "leftovers")
    if "isolation full" in graded["stdout"]:
        assert "leftover process(es) of the kernel killed" in row["notes"], row
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 7777" not in ps


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


def test_kernel_environment_has_no_credentials():
    env = {"PATH": "/usr/bin", "HOME": "/root", "GITHUB_TOKEN": "x", "AWS_ACCESS_KEY_ID": "x", "HF_TOKEN": "x",
           "OPENAI_API_KEY": "x", "MY_SECRET": "x", "COURSE_FAST": "1", "COURSE_API_KEY": "x", "SSH_AUTH_SOCK": "x",
           "LC_ALL": "C", "PIP_INDEX_URL": "https://user:pw@example/simple"}
    got = sandbox.kernel_env(env, home="/tmp/home")
    assert got["HOME"] == "/tmp/home" and got["COURSE_FAST"] == "1" and got["LC_ALL"] == "C"
    assert not {"GITHUB_TOKEN", "AWS_ACCESS_KEY_ID", "HF_TOKEN", "OPENAI_API_KEY", "MY_SECRET", "COURSE_API_KEY",
                "SSH_AUTH_SOCK", "PIP_INDEX_URL"} & set(got)
    assert "GITHUB_TOKEN" not in sandbox.scrub_env(env) and "PATH" in sandbox.scrub_env(env)
