"""Grade one student's chapter in a throw-away course (`make grade` runs one of these per job).

    python -m tools.grade_worker <job folder>

The job folder (made by tools.grading.jobs, readable by root only) is a complete nbgrader
course of its own: a copy of the gradebook, the normalised submission, a kernelspec that starts
the kernel through tools/sandbox.py, and `job.json`. This process runs nbgrader's autograde
(its kernel under the guard, tools.grading.execute), applies the guard's verdict (an exercise
that reached the reference or tampered scores 0), writes the feedback, then `result.json`, and
exits; the parent merges the results into grading/. It never sees the repository's `solutions/`.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from pathlib import Path

import nbformat

from tools import feedback as fb
from tools.guard import verdict as guard_verdict

COURSE_ID = "untangling-features"


def _limit_memory(gb: float) -> None:
    soft = int(gb * 2**30)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def config(job: dict, jobdir: Path):
    """The course's own nbgrader_config.py, re-rooted in the job folder."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=job["course_root"]).load_config()
    cd = cfg.CourseDirectory
    cd.root = str(jobdir)
    cd.source_directory = "source"
    cd.release_directory = "release"
    cd.submitted_directory = "submitted"
    cd.autograded_directory = "autograded"
    cd.feedback_directory = "feedback"
    cd.db_url = f"sqlite:///{jobdir / 'gradebook.db'}"
    cfg.Execute.kernel_name = "course-sandbox"
    cfg.Execute.startup_timeout = 300      # a loaded machine can take a minute to import a kernel
    cfg.Execute.extra_arguments = []
    cfg.Autograde.autograde_preprocessors = [
        "tools.grading.execute.GuardedExecute",
        "nbgrader.preprocessors.IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]
    return cfg


def apply_guard(job: dict, jobdir: Path) -> dict:
    """Zero the exercises the guard says must not score; {"tampering": [...], "notes": [...]}."""
    from nbgrader.api import Gradebook

    st, ch = job["student"], job["chapter"]
    url = f"sqlite:///{jobdir / 'gradebook.db'}"
    with Gradebook(url, course_id=COURSE_ID) as gb:
        nb = gb.find_submission_notebook(ch, ch, st)
        scores = {g.name: g.auto_score for g in nb.grades if g.cell_type == "code"}
    channel = guard_verdict.parse((jobdir / "guard.log").read_bytes() if (jobdir / "guard.log").exists() else b"")
    verdict = guard_verdict.judge(channel, scores)
    path = jobdir / "autograded" / st / ch / f"{ch}.ipynb"
    autograded = nbformat.read(path, as_version=4)
    out = guard_verdict.apply(verdict, url, COURSE_ID, ch, st, autograded)
    nbformat.write(autograded, path)
    return out


def make_feedback(job: dict, jobdir: Path, cfg) -> dict:
    from nbgrader.apps import NbGraderAPI

    st, ch = job["student"], job["chapter"]
    src = jobdir / "autograded" / st / ch / f"{ch}.ipynb"
    hidden = json.loads((jobdir / "hidden.json").read_text())
    nb = nbformat.read(src, as_version=4)
    notes = fb.sanitise(nb, hidden)
    safe = jobdir / "feedback-src" / st / ch
    safe.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, safe / f"{ch}.ipynb")
    cfg.CourseDirectory.autograded_directory = "feedback-src"
    r = NbGraderAPI(config=cfg).generate_feedback(ch, st, force=True)
    html = jobdir / "feedback" / st / ch / f"{ch}.html"
    if not r["success"] or not html.exists():
        return {"feedback": "failed", "notes": notes, "feedback_log": (r.get("log", "") + r.get("error", ""))[-3000:]}
    text = fb.HIDDEN.sub("", html.read_text(encoding="utf-8"))
    leaked = fb.html_leaks(text, hidden)
    if leaked:
        html.write_text(fb.WITHHELD, encoding="utf-8")
        return {"feedback": "withheld", "notes": notes + ["feedback withheld: it still quoted a hidden test"]}
    html.write_text(text, encoding="utf-8")
    return {"feedback": "ok", "notes": notes}


def main(jobdir: Path) -> int:
    import os

    t0 = time.time()
    job = json.loads((jobdir / "job.json").read_text())
    _limit_memory(job.get("worker_memory_gb", 8))
    os.environ["GRADE_JOB"] = str(jobdir)
    result: dict = {"success": False}
    try:
        from nbgrader.apps import NbGraderAPI

        cfg = config(job, jobdir)
        r = NbGraderAPI(config=cfg).autograde(job["chapter"], job["student"], force=True)
        out = jobdir / "autograded" / job["student"] / job["chapter"] / f"{job['chapter']}.ipynb"
        result = {"success": bool(r["success"]) and out.exists(), "log": r.get("log", "")[-6000:],
                  "error": r.get("error", "")[-3000:]}
        if result["success"]:
            guard = apply_guard(job, jobdir) if job.get("guard") else {"tampering": [], "notes": []}
            result["guard"] = guard
            fbk = make_feedback(job, jobdir, cfg)
            result.update(fbk, notes=guard["notes"] + fbk.get("notes", []))
    except MemoryError:
        result = {"success": False, "error": "the grading process ran out of memory"}
    except Exception:  # noqa: BLE001 - reported to the parent, which marks the row
        result = {"success": False, "error": traceback.format_exc()[-3000:]}
    kernel = jobdir / "kernel.json"
    if kernel.exists():
        result["kernel"] = json.loads(kernel.read_text())
    result["seconds"] = round(time.time() - t0, 1)
    (jobdir / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]).resolve()))
