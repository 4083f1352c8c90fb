"""`make grade`: autograde every submission in grading/submitted/, never stopping for one.

    grading/submitted/<student>/<chapter>/<any name>.ipynb   what students handed in (never modified)
    grading/work/submitted/<student>/<chapter>/<chapter>.ipynb   normalised copies (tools.intake)
    grading/autograded/, grading/gradebook.db                 nbgrader's results (formgrader reads them)
    grading/feedback/<student>/<chapter>/<chapter>.html       feedback, hidden tests removed
    grading/grades.csv                                        one row per file handed in, with a status
    grading/report.html                                       what the class got wrong, per exercise
    grading/work/logs/                                        one log per graded notebook

Every student's chapter is graded by a process of its own (tools.grade_worker), up to `--jobs`
at a time, in a throw-away nbgrader course that holds the normalised submission, a private copy
of the gradebook and nothing else. Its kernel is started by tools/sandbox.py: as root, in a
private mount namespace where the course, the repository (solutions/, .git, grading/) and the
grader's home are empty folders, as an unprivileged uid of its own, with a clean environment,
an empty HOME and a memory limit; and under the guard (tools/guard/): an answer that reaches
the course's reference implementation or tampers with what the tests use scores 0 for that
exercise, and the row says "needs a human: tampering in <exercise>". Results are merged into
grading/gradebook.db and grading/autograded/, so formgrader shows every graded submission. A
kernel that dies, loops or floods its output costs that student one "needs a human" row and
nothing more; a run is never stopped by a submission.

Re-running is safe: a submission whose normalised notebook, chapter, library and settings are
unchanged keeps its grade without being executed again (`--force` regrades everything,
`--regrade GLOB` the matching students).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat

from tools import sandbox
from tools.grading import classreport, collect, gradebook, jobs, report
from tools.grading.config import GRADED, TAMPERING, GradeConfig, parse_args
from tools.grading.supervise import Supervisor, failure


def _cache_file(cache_dir: Path, row: collect.Row) -> Path:
    import hashlib

    return cache_dir / (hashlib.sha1(f"{row.student}\0{row.chapter}".encode()).hexdigest() + ".json")


def run(config: GradeConfig) -> tuple[list[collect.Row], dict]:
    g, t0 = config.grading, time.time()
    isolated, how = sandbox.probe() if config.sandbox else (False, "disabled with --no-sandbox")
    info = {"isolation": ("full: " if isolated else "partial: ") + how, "jobs": config.jobs,
            "guard": "on" if config.guard else "off (--no-guard)"}
    work = g / "work"
    shutil.rmtree(work / "submitted", ignore_errors=True)
    shutil.rmtree(work / "jobs", ignore_errors=True)
    (work / "jobs").mkdir(parents=True)
    os.chmod(work, 0o700)
    releases, failed = collect.register(config, collect.chapters(config.root))
    rows, notebooks = collect.collect(config, set(releases) | set(failed))
    collect.normalise(config.root, notebooks, releases, failed)
    collect.pick_one_per_chapter(rows)
    settings = jobs.settings_digest(config)
    cache_dir = work / "cache"
    cache_dir.mkdir(exist_ok=True)
    todo: list[tuple[collect.Row, str]] = []
    for row in rows:
        if row.notebook is None:
            continue
        out = work / "submitted" / row.student / row.chapter
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(row.notebook, out / f"{row.chapter}.ipynb")
        if row.timestamp:
            (out / "timestamp.txt").write_text(row.timestamp)
        key = jobs.cache_key(row, settings, releases[row.chapter])
        cached = _cache_file(cache_dir, row)
        force = config.force or any(fnmatch.fnmatch(row.student, pat) for pat in config.regrade)
        if not force and cached.exists():
            prev = json.loads(cached.read_text())
            done = (g / "autograded" / row.student / row.chapter / f"{row.chapter}.ipynb").exists()
            if prev.get("key") == key and done:   # (only graded and tampered rows are cached)
                row.status = prev["status"]
                row.notes += prev.get("notes", []) + ["unchanged since the last run: grade kept"]
                row.seconds = prev.get("seconds")
                continue
        todo.append((row, key))
    uids: set[int] = set()
    batch = [jobs.prepare(config, row, i, releases, isolated, uids, key) for i, (row, key) in enumerate(todo)]
    info["graded_now"] = len(batch)
    _grade(config, batch, cache_dir)
    if not config.keep_jobs:
        shutil.rmtree(work / "jobs", ignore_errors=True)
    gradebook.read_scores(config, rows)
    info["seconds"] = round(time.time() - t0, 1)
    rows.sort(key=lambda r: (r.student, r.chapter, r.file))
    return rows, info


def _grade(config: GradeConfig, batch: list[jobs.Job], cache_dir: Path) -> None:
    if not batch:
        return
    from tqdm import tqdm

    width = max(len(j.row.student) for j in batch)
    bar = tqdm(total=len(batch), unit="notebook", desc="grading", file=sys.stderr, dynamic_ncols=True,
               disable=None if not config.progress else False)
    counter = iter(range(1, len(batch) + 1))

    def done(job: jobs.Job, result: dict) -> None:
        row = job.row
        try:
            why = failure(result, config)
            gradebook.merge(config, job, why)
        except Exception as err:  # noqa: BLE001 - one broken job never stops the run
            why = f"the grader failed on this notebook: {type(err).__name__}: {err}"
        row.seconds = result.get("wall")
        if why:
            row.need_human(why)
            row.notes.append(f"log: {job.log.relative_to(config.grading)}")
        tampered = (result.get("guard") or {}).get("tampering") or []
        if not why and tampered:
            row.status = f"{TAMPERING} {', '.join(tampered)}"
        row.notes += result.get("notes", [])
        if result.get("leftovers"):
            row.notes.append(f"{result['leftovers']} leftover process(es) of the kernel killed")
        with job.log.open("a") as f:
            f.write("\n==== result ====\n")
            f.write(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=1, default=str))
            f.write("\n==== nbgrader log ====\n" + str(result.get("log", "")))
        cached = _cache_file(cache_dir, row)
        if row.status == GRADED or row.status.startswith(TAMPERING):   # deterministic: kept next time
            cached.write_text(json.dumps({"key": job.key, "status": row.status, "notes": row.notes,
                                          "seconds": row.seconds}))
        else:
            cached.unlink(missing_ok=True)
        if not config.keep_jobs:
            shutil.rmtree(job.dir, ignore_errors=True)
        bar.write(f"[{next(counter):>3}/{len(batch)}] {row.student:<{width}}  {row.chapter:<22} "
                  f"{row.seconds or 0:>6.0f} s  {row.status}", file=sys.stdout)
        bar.update()

    try:
        Supervisor(config, config.root).run(batch, done)
    finally:
        bar.close()


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv, __doc__)
    submitted = config.grading / "submitted"
    if not submitted.is_dir():
        print(f"Nothing to grade: put submissions in {submitted}/<student>/<chapter>/", file=sys.stderr)
        return 1
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # alembic
    if str(config.root) not in sys.path:
        sys.path.insert(0, str(config.root))
    rows, info = run(config)
    out = config.grading / "grades.csv"
    report.write_csv(rows, out)
    classreport.write(config, rows, config.grading / "report.html")
    print(report.summary(rows, info, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
