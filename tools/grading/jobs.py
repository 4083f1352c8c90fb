"""A job folder per student's chapter: what its worker and its kernel get, and its cache key.

    grading/work/jobs/<n>-<student>-<chapter>/   (0700, root's when grading as root)
        submitted/<id>/<chapter>/<chapter>.ipynb  the normalised notebook
        source/<chapter>/...                      the chapter's data files (never notebooks)
        gradebook.db                              a private copy of the master gradebook (0600)
        hidden.json                               the hidden-test lines feedback must not show
        guard-job.json                            what the guard must know (tools.guard.spec)
        sandbox.json, share/kernels/course-sandbox/kernel.json   how the kernel is started
        job.json                                  the worker's instructions
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tools import feedback as fb
from tools import sandbox
from tools.grading.collect import Row
from tools.grading.config import REPO, GradeConfig
from tools.guard import spec as guard_spec

PROJECT_MARKERS = ("solutions", ".git", "nbgrader_config.py", "pyproject.toml", "grading")
# top-level folders a kernel keeps seeing (the operating system); every other one (/home, /root,
# /work, /srv, /mnt, /opt, ...) is hidden, because another copy of the course, an instructor's
# own checkout with its solutions, or someone's gradebook may lie anywhere there
SYSTEM_DIRS = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "sys",
               "run", "tmp", "var"}


@dataclass
class Job:
    row: Row
    dir: Path
    job_student: str          # the student id nbgrader sees inside the job
    uid: int | None           # the kernel's own user id (full isolation), else None
    key: str                  # cache key: unchanged key, unchanged grade
    log: Path


def _tree_digest(folder: Path, pattern: str) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob(pattern)):
        if "__pycache__" not in p.parts:
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def settings_digest(config: GradeConfig) -> str:
    """Everything besides the notebook that can change a grade: the library (checks, reference),
    the grader (and its guard), the nbgrader config and the limits."""
    h = hashlib.sha256()
    spec = importlib.util.find_spec("utils")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        h.update(_tree_digest(Path(loc), "*.py").encode())
    h.update(_tree_digest(Path(__file__).parents[1], "*.*").encode())
    h.update((config.root / "nbgrader_config.py").read_bytes())
    h.update(json.dumps([config.timeout, config.memory, config.guard, str(config.guard_allowed),
                         os.environ.get("COURSE_CELL_TIMEOUT"), os.environ.get("COURSE_FAST"),
                         os.environ.get("COURSE_PROFILE")]).encode())
    return h.hexdigest()


def cache_key(row: Row, settings: str, release: nbformat.NotebookNode) -> str:
    release_digest = hashlib.sha256(nbformat.writes(release).encode()).hexdigest()
    return hashlib.sha256(f"{row.digest}|{row.timestamp}|{settings}|{release_digest}".encode()).hexdigest()


def job_student_id(student: str) -> str:
    """The id nbgrader uses inside the job: the student's own when it is plain, else a safe one."""
    if re.fullmatch(r"[A-Za-z0-9_.@+-]{1,100}", student):
        return student
    return "student_" + hashlib.sha1(student.encode()).hexdigest()[:10]


def keep_paths() -> list[str]:
    """Folders a kernel needs even when they lie in a hidden folder: Python and the library."""
    keep = {sys.prefix, sys.exec_prefix, os.path.realpath(sys.base_prefix),
            os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    spec = importlib.util.find_spec("utils")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        keep.add(os.path.realpath(loc))
    return sorted(keep)


def hide_paths(config: GradeConfig) -> list[str]:
    """Folders the kernel must not see: every top-level folder that is not the operating
    system's, the course, this checkout, the grader's home, and any project folder the
    environment or the `utils` library is installed from (an editable install lives in a
    checkout that holds solutions/ and .git)."""
    hide = {str(config.root), str(REPO), str(config.grading), os.path.expanduser("~")}
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
    while True:
        uid = 1_000_000_000 + secrets.randbelow(1_000_000_000)
        if uid not in taken and not sandbox.processes_of(uid):
            taken.add(uid)
            return uid


def prepare(config: GradeConfig, row: Row, index: int, releases: dict, isolated: bool, uids: set[int],
            key: str) -> Job:
    """Make the job folder of `row` (see the module docstring)."""
    g = config.grading
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
    src = config.root / "solutions" / row.chapter
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
    threads = max(1, (os.cpu_count() or 1) // max(1, config.jobs))
    spec = {
        "uid": uid, "memory_bytes": int(config.memory * 2**30), "cpu_seconds": int(config.timeout * 2 + 60),
        "fsize_bytes": 256 * 2**20, "nproc": 512, "tmp_size": "512m",
        "hide": hide_paths(config) + [str(d)], "keep": keep_paths(), "pid_file": str(d / "kernel.pid"),
        "scratch": str(d / "scratch"),
        "env": {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                           "TORCH_NUM_THREADS")} | {"MPLBACKEND": "Agg"},
    }
    if config.guard:
        (d / "guard-job.json").write_text(json.dumps(guard_spec.job_part(solution, row.chapter, config.guard_allowed)))
        spec["guard"] = {"spec": str(d / "guard.json"), "fifo": str(d / "guard.fifo")}
    (d / "sandbox.json").write_text(json.dumps(spec, indent=1))
    kernel = d / "share" / "kernels" / "course-sandbox"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(Path(sandbox.__file__).resolve()), str(d / "sandbox.json"), "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)", "language": "python", "interrupt_mode": "signal",
        "metadata": {"debugger": False}}))
    (d / "job.json").write_text(json.dumps({
        "student": st, "chapter": row.chapter, "course_root": str(config.root),
        "worker_memory_gb": max(4.0, config.memory), "guard": config.guard}))
    log = g / "work" / "logs" / f"{slug}-{row.chapter}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return Job(row, d, st, uid, key, log)
