"""`make grade`: autograde every submission in grading/submitted/, never stopping for one.

    grading/submitted/<student>/<chapter>/<any name>.ipynb   what students handed in (never modified)
    grading/work/submitted/<student>/<chapter>/<chapter>.ipynb   normalised copies (tools.intake)
    grading/autograded/, grading/gradebook.db                 nbgrader's results (formgrader reads them)
    grading/feedback/<student>/<chapter>/<chapter>.html       feedback, hidden tests removed
    grading/grades.csv                                        one row per file handed in, with a status
    grading/work/logs/                                        one log per graded notebook

Every student's chapter is graded by a process of its own (tools.grade_worker), up to `--jobs`
at a time, in a throw-away nbgrader course that holds the normalised submission, a private copy
of the gradebook and nothing else. Its kernel is started by tools/sandbox.py: as root, in a
private mount namespace where the course, the repository (solutions/, .git, grading/) and the
grader's home are empty folders, as an unprivileged uid of its own, with a clean environment,
an empty HOME and a memory limit. Results are merged into grading/gradebook.db and
grading/autograded/, so formgrader shows every graded submission as if nbgrader had graded
it there. A kernel that dies, loops or floods its output costs that student one "needs a
human" row and nothing more; a run is never stopped by a submission.

Re-running is safe: a submission whose normalised notebook, chapter, library and settings are
unchanged keeps its grade without being executed again (`--force` regrades everything,
`--regrade GLOB` the matching students).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tools import feedback as fb
from tools import sandbox
from tools.intake import NotANotebook, read_notebook, take

REPO = Path(__file__).resolve().parents[1]
COURSE_ID = "untangling-features"
GRADED = "graded"
IGNORED_NAMES = {"timestamp.txt", ".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass
class Row:
    student: str
    chapter: str
    file: str
    status: str = GRADED
    score: float | None = None
    max_score: float | None = None
    needs_manual: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None
    notebook: nbformat.NotebookNode | None = field(default=None, repr=False)
    timestamp: str | None = None
    digest: str = ""

    def need_human(self, reason: str) -> None:
        self.status = f"needs a human: {reason}"


@dataclass
class Job:
    row: Row
    dir: Path
    job_student: str
    uid: int | None
    key: str
    log: Path


# --------------------------------------------------------------------------------------------
# chapters and the master gradebook


def chapters(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "solutions").iterdir() if (p / f"{p.name}.ipynb").exists())


def course_config(root: Path, **overrides):
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    return cfg


def grading_dir(root: Path) -> Path:
    return Path(os.environ.get("COURSE_GRADING_DIR", root / "grading"))


def register(root: Path, wanted: list[str]) -> tuple[dict[str, nbformat.NotebookNode], dict[str, str]]:
    """Put each chapter in the master gradebook (nbgrader generate_assignment) and return the
    freshly generated releases. The release is written to grading/work/release/, never to the
    committed chapters/. A chapter that fails is reported, not fatal."""
    from nbgrader.apps import NbGraderAPI

    release = grading_dir(root) / "work" / "release"
    cfg = course_config(root, CourseDirectory__release_directory=os.path.relpath(release, root))
    api = NbGraderAPI(config=cfg)
    releases, failed = {}, {}
    for ch in wanted:
        r = api.generate_assignment(ch, force=True)
        path = release / ch / f"{ch}.ipynb"
        if r["success"] and path.exists():
            releases[ch] = nbformat.read(path, as_version=4)
        else:
            failed[ch] = (r.get("error") or r.get("log") or "generate_assignment failed").strip().splitlines()[-1][:200]
    return releases, failed


# --------------------------------------------------------------------------------------------
# what was handed in


def _skip(path: Path, base: Path) -> bool:
    parts = path.relative_to(base).parts
    return (path.name in IGNORED_NAMES or any(p.startswith(".") or p == "__MACOSX" for p in parts)
            or ".ipynb_checkpoints" in parts)


def collect(root: Path, releases: dict) -> tuple[list[Row], list[tuple[Row, Path, str | None]]]:
    """One row per file handed in. Returns (rows, [(row, path, folder chapter)]) where the
    second list holds the files that look like notebooks."""
    base = grading_dir(root) / "submitted"
    rows, notebooks = [], []
    for entry in sorted(base.iterdir()):
        if entry.name.startswith(".") or entry.name in IGNORED_NAMES:
            continue
        if entry.is_file():
            row = Row("?", "?", str(entry.relative_to(base)))
            row.need_human("file is not inside a student's folder (grading/submitted/<student>/<chapter>/)")
            rows.append(row)
            continue
        files = sorted(p for p in entry.rglob("*") if p.is_file() and not _skip(p, base))
        student_rows, extras = [], []
        for f in files:
            looks_notebook = f.suffix.lower() == ".ipynb"
            if not looks_notebook and f.stat().st_size < 50_000_000:
                try:
                    read_notebook(f)
                    looks_notebook = True
                except (NotANotebook, OSError):
                    pass
            if not looks_notebook:
                extras.append(f)
                continue
            folder = f.parent.name if f.parent != entry else None
            row = Row(entry.name, folder or "?", str(f.relative_to(base)))
            if f.suffix.lower() != ".ipynb":
                row.notes.append(f"not named .ipynb ({f.name})")
            student_rows.append(row)
            notebooks.append((row, f, folder if folder in releases else None, folder))
        if extras:
            names = ", ".join(str(p.relative_to(entry)) for p in extras)
            if student_rows:
                for row in student_rows:
                    row.notes.append(f"other files ignored: {names}")
            else:
                row = Row(entry.name, "?", str(entry.relative_to(base)))
                row.need_human(f"no notebook among the files handed in ({names})")
                student_rows.append(row)
        if not files:
            row = Row(entry.name, "?", str(entry.relative_to(base)))
            row.need_human("nothing handed in (empty folder)")
            student_rows.append(row)
        rows += student_rows
    return rows, notebooks


def normalise(root: Path, notebooks, releases: dict, failed: dict[str, str]) -> None:
    known = dict(releases)
    for ch in failed:  # still recognise its files, to say why they cannot be graded
        committed = root / "chapters" / ch / f"{ch}.ipynb"
        if committed.exists():
            known[ch] = nbformat.read(committed, as_version=4)
    for row, path, folder_ch, folder in notebooks:
        intake = take(path, folder_ch, known)
        row.chapter = intake.chapter or row.chapter
        row.notes = intake.notes + row.notes
        if intake.chapter and folder and folder != intake.chapter and folder_ch is None:
            row.notes.append(f"handed in under {folder} but is {intake.chapter}")
        if intake.problem:
            row.need_human(intake.problem)
            continue
        if row.chapter in failed:
            row.need_human(f"chapter {row.chapter} could not be registered in the gradebook: {failed[row.chapter]}")
            continue
        # whatever kernel the file asks for, it runs in the course's sandboxed kernel
        intake.notebook.metadata["kernelspec"] = releases[row.chapter].metadata.get("kernelspec", {})
        row.notebook = intake.notebook
        stamp = path.parent / "timestamp.txt"
        row.timestamp = stamp.read_text(errors="replace")[:100] if stamp.is_file() else None
        row.digest = hashlib.sha256(nbformat.writes(row.notebook).encode()).hexdigest()


def pick_one_per_chapter(rows: list[Row]) -> None:
    """Two files for one chapter: grade one, and say which; an identical copy shares its grade."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        if r.status == GRADED and r.notebook is not None:
            groups.setdefault((r.student, r.chapter), []).append(r)
    for (_, ch), group in groups.items():
        if len(group) < 2:
            continue

        def preference(r: Row):
            p = Path(r.file)
            return (p.parent.name == ch and p.name == f"{ch}.ipynb", p.parent.name == ch, r.file)

        chosen = max(group, key=preference)
        for r in group:
            if r is chosen:
                continue
            if r.digest == chosen.digest:
                r.status = f"{GRADED} (identical copy of {chosen.file}; its score counts once, there)"
            else:
                r.need_human(f"{len(group)} different files for {ch}; graded {chosen.file} — check which one counts")
            r.notebook = None
        chosen.notes.append("also handed in: " + ", ".join(r.file for r in group if r is not chosen))


# --------------------------------------------------------------------------------------------
# jobs


def _tree_digest(folder: Path, pattern: str) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob(pattern)):
        if "__pycache__" not in p.parts:
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def settings_digest(root: Path, args) -> str:
    """Everything besides the notebook that can change a grade: the library (checks, reference),
    the grader, the nbgrader config and the limits."""
    import importlib.util

    h = hashlib.sha256()
    spec = importlib.util.find_spec("utils")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        h.update(_tree_digest(Path(loc), "*.py").encode())
    h.update(_tree_digest(Path(__file__).parent, "*.py").encode())
    h.update((root / "nbgrader_config.py").read_bytes())
    h.update(json.dumps([args.timeout, args.memory, os.environ.get("COURSE_CELL_TIMEOUT"),
                         os.environ.get("COURSE_FAST"), os.environ.get("COURSE_PROFILE")]).encode())
    return h.hexdigest()


def job_student_id(student: str) -> str:
    """The id nbgrader uses inside the job: the student's own when it is plain, else a safe one."""
    if re.fullmatch(r"[A-Za-z0-9_.@+-]{1,100}", student):
        return student
    return "student_" + hashlib.sha1(student.encode()).hexdigest()[:10]


def keep_paths() -> list[str]:
    """Folders a kernel needs even when they lie in a hidden folder: Python and the library."""
    import importlib.util

    keep = {sys.prefix, sys.exec_prefix, os.path.realpath(sys.base_prefix),
            os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    spec = importlib.util.find_spec("utils")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        keep.add(os.path.realpath(loc))
    return sorted(keep)


PROJECT_MARKERS = ("solutions", ".git", "nbgrader_config.py", "pyproject.toml", "grading")
# top-level folders a kernel keeps seeing (the operating system); every other one (/home, /root,
# /work, /srv, /mnt, /opt, ...) is hidden, because another copy of the course, an instructor's
# own checkout with its solutions, or someone's gradebook may lie anywhere there
SYSTEM_DIRS = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "sys",
               "run", "tmp", "var"}


def hide_paths(root: Path) -> list[str]:
    """Folders the kernel must not see: every top-level folder that is not the operating
    system's, the course, this checkout, the grader's home, and any project folder the
    environment or the `utils` library is installed from (an editable install lives in a
    checkout that holds solutions/ and .git)."""
    hide = {str(root), str(REPO), str(grading_dir(root)), os.path.expanduser("~")}
    for top in Path("/").iterdir():
        try:
            if top.name not in SYSTEM_DIRS and top.is_dir() and not top.is_symlink():
                hide.add(str(top))
        except OSError:
            continue
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        if os.environ.get(name):
            hide.add(os.environ[name])
    for k in keep_paths():
        parent = Path(k).parent
        if len(parent.parts) > 1 and any((parent / m).exists() for m in PROJECT_MARKERS):
            hide.add(str(parent))
    return sorted(h for h in hide if h and os.path.realpath(h) != "/")


def new_uid(taken: set[int]) -> int:
    import secrets

    while True:
        uid = 1_000_000_000 + secrets.randbelow(1_000_000_000)
        if uid not in taken and not sandbox.processes_of(uid):
            taken.add(uid)
            return uid


def prepare(root: Path, row: Row, index: int, args, releases, isolated: bool, uids: set[int], key: str) -> Job:
    g = grading_dir(root)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", row.student)[:40]
    d = g / "work" / "jobs" / f"{index:04d}-{slug}-{row.chapter}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    os.chmod(d, 0o700)
    (d / "logs").mkdir()
    st = job_student_id(row.student)
    sub = d / "submitted" / st / row.chapter
    sub.mkdir(parents=True)
    nbformat.write(row.notebook, sub / f"{row.chapter}.ipynb")
    if row.timestamp:
        (sub / "timestamp.txt").write_text(row.timestamp)
    src = root / "solutions" / row.chapter
    for f in src.rglob("*"):  # data files a chapter ships (nbgrader copies them); never notebooks
        if f.is_file() and f.suffix != ".ipynb" and ".ipynb_checkpoints" not in f.parts:
            dest = d / "source" / row.chapter / f.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest)
    shutil.copy(g / "gradebook.db", d / "gradebook.db")
    os.chmod(d / "gradebook.db", 0o600)
    solution = nbformat.read(src / f"{row.chapter}.ipynb", as_version=4)
    (d / "hidden.json").write_text(json.dumps(fb.hidden_lines(solution, releases[row.chapter], row.notebook)))
    uid = new_uid(uids) if isolated else None
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    spec = {
        "uid": uid, "memory_bytes": int(args.memory * 2**30), "cpu_seconds": int(args.timeout * 2 + 60),
        "fsize_bytes": 256 * 2**20, "nproc": 512, "tmp_size": "512m",
        "hide": hide_paths(root) + [str(d)], "keep": keep_paths(), "pid_file": str(d / "kernel.pid"),
        "scratch": str(d / "scratch"),
        "env": {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                           "TORCH_NUM_THREADS")} | {"MPLBACKEND": "Agg"},
    }
    (d / "sandbox.json").write_text(json.dumps(spec, indent=1))
    kernel = d / "share" / "kernels" / "course-sandbox"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(Path(sandbox.__file__).resolve()), str(d / "sandbox.json"), "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)", "language": "python", "interrupt_mode": "signal",
        "metadata": {"debugger": False}}))
    (d / "job.json").write_text(json.dumps({
        "student": st, "chapter": row.chapter, "course_root": str(root), "worker_memory_gb": max(4.0, args.memory)}))
    log = g / "work" / "logs" / f"{slug}-{row.chapter}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return Job(row, d, st, uid, key, log)


def worker_env(job: Job) -> dict[str, str]:
    d = job.dir
    env = sandbox.scrub_env(os.environ)
    for name in ("home", "runtime", "config", "data", "ipython"):
        (d / name).mkdir(exist_ok=True)
    env.update({"HOME": str(d / "home"), "JUPYTER_PATH": str(d / "share"), "JUPYTER_RUNTIME_DIR": str(d / "runtime"),
                "JUPYTER_CONFIG_DIR": str(d / "config"), "JUPYTER_DATA_DIR": str(d / "data"),
                "IPYTHONDIR": str(d / "ipython"), "GRADE_JOB": str(d), "PYTHONDONTWRITEBYTECODE": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    return env


_running: dict[int, subprocess.Popen] = {}
_lock = threading.Lock()


# The kernel's ports are picked free by the worker and bound by the kernel a moment later;
# with jobs in parallel another process can take one in between. The kernel then dies before
# running anything, and the job is simply run again.
PORT_RACE = "zmq.error.ZMQError: Address already in use"
PORT_RACE_ATTEMPTS = 3


def execute(job: Job, root: Path, timeout: float) -> dict:
    """Run the worker for one job (in a thread of the pool); returns its result. A job whose
    kernel could not bind its ports (see PORT_RACE) is run again, up to PORT_RACE_ATTEMPTS times."""
    for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
        result = execute_once(job, root, timeout)
        if result.get("success") or result.get("timed_out") or PORT_RACE not in job.log.read_text(errors="replace"):
            break
        for name in ("result.json", "kernel.json", "kernel.pid"):
            (job.dir / name).unlink(missing_ok=True)
    result["attempts"] = attempt
    return result


def execute_once(job: Job, root: Path, timeout: float) -> dict:
    """One run of the worker for `job`."""
    t0 = time.time()
    with job.log.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tools.grade_worker", str(job.dir)], cwd=root,
                                env=worker_env(job), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        with _lock:
            _running[proc.pid] = proc
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            with _lock:
                _running.pop(proc.pid, None)
            leftovers = cleanup_processes(job)
    result_file = job.dir / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {"success": False}
    result.update(timed_out=timed_out, returncode=proc.returncode, leftovers=leftovers,
                  wall=round(time.time() - t0, 1))
    return result


def cleanup_processes(job: Job) -> int:
    if job.uid is not None:
        return sandbox.kill_uid(job.uid)
    pid_file = job.dir / "kernel.pid"
    if pid_file.exists():
        try:
            return sandbox.kill_session(int(pid_file.read_text()))
        except ValueError:
            return 0
    return 0


def reason(result: dict, args) -> str | None:
    """None when graded, else why a human must look."""
    if result.get("timed_out"):
        return f"grading took longer than {args.timeout:.0f} s and was stopped"
    if result.get("success"):
        return None
    kernel = result.get("kernel") or {}
    text = " ".join(str(result.get(k, "")) for k in ("log", "error"))
    if kernel.get("error") == "DeadKernelError" or "DeadKernelError" in text or "Kernel died" in text:
        where = f" in cell {kernel['grade_id']!r}" if kernel.get("grade_id") else (
            f" in cell #{kernel['cell_index']}" if kernel.get("cell_index", -1) >= 0 else "")
        status = kernel.get("exit_status")
        how = ""
        if isinstance(status, int) and status < 0:
            how = f", killed by {signal.Signals(-status).name}"
        elif isinstance(status, int):
            how = f", exit code {status}"
        return (f"the kernel died{where}{how} (os._exit, a crash, or the {args.memory:g} GB memory limit); "
                "the notebook could not be graded")
    if "ran out of memory" in text:
        return "the grading process ran out of memory (huge output?)"
    if result.get("returncode") not in (0, None) and "log" not in result:
        return f"the grading process failed (exit code {result.get('returncode')})"
    last = next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()), "nbgrader could not grade it")
    return f"nbgrader could not grade it: {last.strip()[:200]}"


# --------------------------------------------------------------------------------------------
# merging a job into grading/


def merge(root: Path, job: Job, result: dict, failure: str | None) -> None:
    from nbgrader.api import Gradebook

    warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy 2.1 SAWarnings, harmless (notes §1.5)

    g = grading_dir(root)
    st, ch = job.row.student, job.row.chapter
    for kind in ("autograded", "feedback"):
        dest = g / kind / st / ch
        shutil.rmtree(dest, ignore_errors=True)
        src = job.dir / kind / job.job_student / ch
        if failure is None and src.is_dir():
            shutil.copytree(src, dest, symlinks=True)
    data = None
    if failure is None:
        with Gradebook(f"sqlite:///{job.dir / 'gradebook.db'}", course_id=COURSE_ID) as jgb:
            sub = jgb.find_submission(ch, job.job_student)
            data = {"timestamp": sub.timestamp, "notebooks": {
                nb.name: {"late": nb.late_submission_penalty,
                          "grades": {gr.name: gr.auto_score for gr in nb.grades},
                          "comments": {c.name: c.auto_comment for c in nb.comments}}
                for nb in sub.notebooks}}
    with Gradebook(f"sqlite:///{g / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        gb.update_or_create_student(st)
        kwargs = {"timestamp": data["timestamp"]} if data and data["timestamp"] else {}
        sub = gb.update_or_create_submission(ch, st, **kwargs)
        if not data:  # not graded this time: stale automatic scores must not linger
            for nb in sub.notebooks:
                for gr in nb.grades:
                    gr.auto_score, gr.needs_manual_grade = None, True
        else:
            for nb in sub.notebooks:
                got = data["notebooks"].get(nb.name, {})
                nb.late_submission_penalty = got.get("late")
                for gr in nb.grades:
                    gr.auto_score = got.get("grades", {}).get(gr.name)
                    gr.needs_manual_grade = gr.manual_score is not None or gr.auto_score is None
                for c in nb.comments:
                    c.auto_comment = got.get("comments", {}).get(c.name)
        gb.db.commit()


def read_scores(root: Path, rows: list[Row]) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    by_key = {}
    with Gradebook(f"sqlite:///{grading_dir(root) / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        for row in rows:
            if row.status != GRADED:
                continue
            try:
                sub = gb.find_submission(row.chapter, row.student)
            except MissingEntry:
                if row.status == GRADED:
                    row.need_human("no gradebook entry after autograde")
                continue
            by_key[(row.student, row.chapter)] = (sub.score, sub.max_score, bool(sub.needs_manual_grade))
    for row in rows:
        if row.status == GRADED and (row.student, row.chapter) in by_key:
            row.score, row.max_score, row.needs_manual = by_key[(row.student, row.chapter)]


# --------------------------------------------------------------------------------------------
# the run


def run(root: Path, args) -> tuple[list[Row], dict]:
    g = grading_dir(root)
    t0 = time.time()
    isolated, how = sandbox.probe() if not args.no_sandbox else (False, "disabled with --no-sandbox")
    info = {"isolation": ("full: " if isolated else "partial: ") + how, "jobs": args.jobs}
    work = g / "work"
    shutil.rmtree(work / "submitted", ignore_errors=True)
    shutil.rmtree(work / "jobs", ignore_errors=True)
    (work / "jobs").mkdir(parents=True)
    os.chmod(work, 0o700)
    present = chapters(root)
    releases, failed = register(root, present)
    rows, notebooks = collect(root, {**releases, **{ch: None for ch in failed}})
    normalise(root, notebooks, releases, failed)
    pick_one_per_chapter(rows)
    settings = settings_digest(root, args)
    cache_dir = work / "cache"
    cache_dir.mkdir(exist_ok=True)
    todo: list[tuple[Row, str]] = []
    for row in rows:
        if row.notebook is None:
            continue
        out = work / "submitted" / row.student / row.chapter
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(row.notebook, out / f"{row.chapter}.ipynb")
        if row.timestamp:
            (out / "timestamp.txt").write_text(row.timestamp)
        key = hashlib.sha256(f"{row.digest}|{row.timestamp}|{settings}|"
                             f"{hashlib.sha256(nbformat.writes(releases[row.chapter]).encode()).hexdigest()}"
                             .encode()).hexdigest()
        cached = _cache_file(cache_dir, row)
        force = args.force or any(fnmatch.fnmatch(row.student, pat) for pat in args.regrade)
        if not force and cached.exists():
            prev = json.loads(cached.read_text())
            done = (g / "autograded" / row.student / row.chapter / f"{row.chapter}.ipynb").exists()
            if prev.get("key") == key and prev.get("status") == GRADED and done:
                row.status = prev["status"]
                row.notes += prev.get("notes", []) + ["unchanged since the last run: grade kept"]
                row.seconds = prev.get("seconds")
                continue
        todo.append((row, key))
    uids: set[int] = set()
    jobs = [prepare(root, row, i, args, releases, isolated, uids, key) for i, (row, key) in enumerate(todo)]
    info["graded_now"] = len(jobs)
    _run_jobs(root, jobs, args, cache_dir)
    if not args.keep_jobs:
        shutil.rmtree(work / "jobs", ignore_errors=True)
    # rows that share a file's grade, and scores for everything graded
    read_scores(root, rows)
    info["seconds"] = round(time.time() - t0, 1)
    rows.sort(key=lambda r: (r.student, r.chapter, r.file))
    return rows, info


def _cache_file(cache_dir: Path, row: Row) -> Path:
    return cache_dir / (hashlib.sha1(f"{row.student}\0{row.chapter}".encode()).hexdigest() + ".json")


def _run_jobs(root: Path, jobs: list[Job], args, cache_dir: Path) -> None:
    if not jobs:
        return
    from tqdm import tqdm

    width = max(len(j.row.student) for j in jobs)
    bar = tqdm(total=len(jobs), unit="notebook", desc="grading", file=sys.stderr, dynamic_ncols=True,
               disable=None if not args.progress else False)
    pool = ThreadPoolExecutor(max_workers=max(1, min(args.jobs, len(jobs))))
    try:
        futures = {pool.submit(execute, job, root, args.timeout): job for job in jobs}
        for n, fut in enumerate(as_completed(futures), 1):
            job = futures[fut]
            row = job.row
            try:
                result = fut.result()
                failure = reason(result, args)
                merge(root, job, result, failure)
            except Exception as err:  # noqa: BLE001 - one broken job never stops the run
                result, failure = {"wall": None}, f"the grader failed on this notebook: {type(err).__name__}: {err}"
            row.seconds = result.get("wall")
            if failure:
                row.need_human(failure)
                row.notes.append(f"log: {job.log.relative_to(grading_dir(root))}")
            row.notes += result.get("notes", [])
            if result.get("leftovers"):
                row.notes.append(f"{result['leftovers']} leftover process(es) of the kernel killed")
            _append_log(job, result)
            if row.status == GRADED:
                _cache_file(cache_dir, row).write_text(json.dumps(
                    {"key": job.key, "status": row.status, "notes": row.notes, "seconds": row.seconds}))
            else:
                _cache_file(cache_dir, row).unlink(missing_ok=True)
            if not args.keep_jobs:
                shutil.rmtree(job.dir, ignore_errors=True)
            bar.write(f"[{n:>3}/{len(jobs)}] {row.student:<{width}}  {row.chapter:<22} "
                      f"{row.seconds or 0:>6.0f} s  {row.status}", file=sys.stdout)
            bar.update()
    except BaseException:
        with _lock:
            for proc in list(_running.values()):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for job in jobs:
            cleanup_processes(job)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _append_log(job: Job, result: dict) -> None:
    with job.log.open("a") as f:
        f.write("\n==== result ====\n")
        f.write(json.dumps({k: v for k, v in result.items() if k not in ("log",)}, indent=1, default=str))
        f.write("\n==== nbgrader log ====\n" + str(result.get("log", "")))


# --------------------------------------------------------------------------------------------
# output


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "chapter", "status", "score", "max_score", "needs_manual_grade", "file",
                    "notes", "seconds"])
        for r in rows:
            w.writerow([r.student, r.chapter, r.status, "" if r.score is None else r.score,
                        "" if r.max_score is None else r.max_score, r.needs_manual, r.file, "; ".join(r.notes),
                        "" if r.seconds is None else r.seconds])


def summary(rows: list[Row], info: dict, out: Path) -> str:
    w_st = max([len(r.student) for r in rows] + [7])
    w_ch = max([len(r.chapter) for r in rows] + [7])
    lines = [f"{'student':<{w_st}}  {'chapter':<{w_ch}}  {'score':>9}  {'time':>6}  status",
             f"{'-' * w_st}  {'-' * w_ch}  {'-' * 9}  {'-' * 6}  {'-' * 30}"]
    for r in rows:
        score = "" if r.score is None else f"{r.score:g}/{r.max_score:g}"
        secs = "" if r.seconds is None else f"{r.seconds:.0f}s"
        manual = " (+ written answers to grade)" if r.needs_manual and r.status == GRADED else ""
        lines.append(f"{r.student:<{w_st}}  {r.chapter:<{w_ch}}  {score:>9}  {secs:>6}  {r.status}{manual}")
    graded = sum(r.status.startswith(GRADED) for r in rows)
    human = sum(r.status.startswith("needs a human") for r in rows)
    lines.append("")
    lines.append(f"{len(rows)} file(s) handed in: {graded} graded, {human} need a human · "
                 f"{info.get('graded_now', 0)} executed now, {info['jobs']} at a time · "
                 f"{info['seconds']:.0f} s · isolation {info['isolation']}")
    lines.append(f"grades: {out} · feedback: {out.parent / 'feedback'}/ · logs: {out.parent / 'work' / 'logs'}/")
    return "\n".join(lines)


def default_memory_gb(jobs: int) -> float:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        total = 8.0
    return round(max(2.0, min(8.0, 0.75 * total / max(1, jobs))), 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=REPO, help="course folder (default: this repository)")
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                    help="notebooks graded at the same time (default: the number of CPUs)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per notebook (default 1800); "
                    "the per-cell limit is COURSE_CELL_TIMEOUT, see nbgrader_config.py")
    ap.add_argument("--memory", type=float, default=None,
                    help="memory limit per student kernel in GB (default: 3/4 of RAM shared by the jobs, 2-8 GB)")
    ap.add_argument("--force", action="store_true", help="regrade every submission, even unchanged ones")
    ap.add_argument("--regrade", action="append", default=[], metavar="GLOB",
                    help="regrade the students matching GLOB even if unchanged (repeatable)")
    ap.add_argument("--no-sandbox", action="store_true", help="run kernels without the isolation of tools/sandbox.py")
    ap.add_argument("--keep-jobs", action="store_true", help="keep grading/work/jobs/ (for debugging the grader)")
    ap.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    args = ap.parse_args(argv)
    args.jobs = max(1, args.jobs)
    args.memory = args.memory or default_memory_gb(args.jobs)
    root = args.root.resolve()
    submitted = grading_dir(root) / "submitted"
    if not submitted.is_dir():
        print(f"Nothing to grade: put submissions in {submitted}/<student>/<chapter>/", file=sys.stderr)
        return 1
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # alembic
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    rows, info = run(root, args)
    out = grading_dir(root) / "grades.csv"
    write_csv(rows, out)
    print(summary(rows, info, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
