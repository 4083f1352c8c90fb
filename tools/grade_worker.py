"""Grade one student's chapter in a throw-away course (`make grade` runs one of these per job).

    python -m tools.grade_worker <job folder>

The job folder (made by tools.grade, readable by root only) is a complete nbgrader course of
its own: a copy of the gradebook, the normalised submission, a kernelspec that starts the
kernel through tools/sandbox.py, and `job.json`. This process runs nbgrader's autograde and
feedback in-process (one import of nbgrader per student), writes `result.json` and exits; the
parent merges the results into grading/. It never sees the repository's `solutions/`.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

import nbformat
from nbclient.util import run_sync
from nbgrader.preprocessors import Execute

from tools import feedback as fb


class BoundedExecute(Execute):
    """nbgrader's Execute, with two more guarantees for hostile notebooks.

    * Output is capped while it arrives (per cell and per notebook), so a cell that prints
      millions of lines or displays a huge object cannot exhaust the grader's memory; nbgrader's
      own LimitOutput only trims lines after the whole notebook ran.
    * When the kernel dies, the cell that killed it and the kernel's exit status are recorded
      in `kernel.json` for the "needs a human" reason.
    """

    cell_limit = 2_000_000  # characters of output kept per cell
    notebook_limit = 20_000_000

    def preprocess(self, nb, resources=None, km=None):
        self._sizes: dict[int, int] = {}
        self._total = 0
        self._truncated: set[tuple[int, str]] = set()
        return super().preprocess(nb, resources, km)

    async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
        try:
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        except Exception as err:
            self._record_death(cell, cell_index, err)
            raise

    execute_cell = run_sync(async_execute_cell)  # nbconvert calls the sync wrapper

    def _record_death(self, cell, cell_index, err) -> None:
        status = None
        for _ in range(20):  # the kernel process may take a moment to be reaped
            try:
                proc = getattr(getattr(self.km, "provisioner", None), "process", None)
                status = proc.poll() if proc is not None else None
            except Exception:  # noqa: BLE001 - best effort, for the message only
                break
            if status is not None:
                break
            time.sleep(0.1)
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        where = Path(os.environ.get("GRADE_JOB", ".")) / "kernel.json"
        where.write_text(json.dumps({"error": type(err).__name__, "message": str(err)[:500],
                                     "cell_index": cell_index, "grade_id": gid, "exit_status": status}))

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        if msg.get("msg_type") == "error":  # always kept: it decides the grade (and is small)
            return super().output(outs, msg, display_id, cell_index)
        size = len(content.get("text", "") or "") + sum(
            len(v) if isinstance(v, str) else len(json.dumps(v)) for v in (content.get("data") or {}).values())
        used = self._sizes.get(cell_index, 0)
        if used + size <= self.cell_limit and self._total + size <= self.notebook_limit:
            self._sizes[cell_index] = used + size
            self._total += size
            return super().output(outs, msg, display_id, cell_index)
        # over the limit: drop it, but say so once per cell and stream. Output on stderr fails a
        # grade cell in nbgrader, so a dropped stderr message leaves a (short) stderr trace.
        name = content.get("name", "stdout") if msg.get("msg_type") == "stream" else "stdout"
        if (cell_index, name) not in self._truncated:
            self._truncated.add((cell_index, name))
            outs.append(nbformat.v4.new_output(
                "stream", name=name,
                text=f"\n[grader: further output of this cell removed (over {self.cell_limit // 1_000_000} MB)]\n"))
        return None


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
    cfg.Execute.extra_arguments = []
    cfg.Autograde.autograde_preprocessors = [
        "tools.grade_worker.BoundedExecute",
        "nbgrader.preprocessors.IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]
    return cfg


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
            result.update(make_feedback(job, jobdir, cfg))
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
