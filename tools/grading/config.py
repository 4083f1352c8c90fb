"""The options of a grading run, in one frozen object (made once, from the command line)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COURSE_ID = "untangling-features"
GRADED = "graded"
TAMPERING = "needs a human: tampering in"


@dataclass(frozen=True, kw_only=True)
class GradeConfig:
    root: Path                       # the course folder (nbgrader_config.py, solutions/, chapters/)
    jobs: int                        # notebooks graded at the same time
    timeout: float                   # seconds allowed per notebook (per cell: COURSE_CELL_TIMEOUT)
    memory: float                    # GB per student kernel
    force: bool = False              # regrade every submission, even unchanged ones
    regrade: tuple[str, ...] = ()    # glob patterns of students to regrade even if unchanged
    sandbox: bool = True             # isolate kernels when the machine allows it (tools/sandbox.py)
    guard: bool = True               # run kernels under the guard (tools/guard/)
    guard_allowed: Path | None = None  # folder of allowed-helper lists (default tools/guard/allowed)
    keep_jobs: bool = False          # keep grading/work/jobs/ (debugging the grader)
    progress: bool = False           # progress bar even when not on a terminal

    @property
    def grading(self) -> Path:
        return Path(os.environ.get("COURSE_GRADING_DIR", self.root / "grading"))


def default_memory_gb(jobs: int) -> float:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        total = 8.0
    return round(max(2.0, min(8.0, 0.75 * total / max(1, jobs))), 1)


def parse_args(argv: list[str] | None, description: str) -> GradeConfig:
    ap = argparse.ArgumentParser(prog="python -m tools.grade", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
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
    ap.add_argument("--no-guard", action="store_true",
                    help="run kernels without the guard (for measuring it; answers that call the reference "
                         "or tamper with the tests are then not caught)")
    ap.add_argument("--guard-allowed", type=Path, default=None, help=argparse.SUPPRESS)   # tools/guard/trace.py
    ap.add_argument("--keep-jobs", action="store_true", help="keep grading/work/jobs/ (for debugging the grader)")
    ap.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    a = ap.parse_args(argv)
    jobs = max(1, a.jobs)
    return GradeConfig(root=a.root.resolve(), jobs=jobs, timeout=a.timeout, memory=a.memory or default_memory_gb(jobs),
                       force=a.force, regrade=tuple(a.regrade), sandbox=not a.no_sandbox, guard=not a.no_guard,
                       guard_allowed=a.guard_allowed, keep_jobs=a.keep_jobs, progress=a.progress)
