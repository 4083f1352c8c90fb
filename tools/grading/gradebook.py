"""grading/gradebook.db: each job's private gradebook merged in, and the scores read back.

Formgrader then shows every graded submission as if nbgrader had graded it there: scores,
comments and the autograded notebook. A job that failed leaves no stale automatic score behind.
"""

from __future__ import annotations

import shutil
import warnings

from tools.grading.collect import Row
from tools.grading.config import COURSE_ID, GRADED, TAMPERING, GradeConfig
from tools.grading.jobs import Job


def merge(config: GradeConfig, job: Job, failure: str | None) -> None:
    from nbgrader.api import Gradebook

    warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy 2.1 SAWarnings, harmless (notes §1.5)

    g = config.grading
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
                          "grades": {gr.name: (gr.auto_score, gr.needs_manual_grade) for gr in nb.grades},
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
                    gr.auto_score, flagged = got.get("grades", {}).get(gr.name, (None, True))
                    gr.needs_manual_grade = gr.manual_score is not None or gr.auto_score is None or bool(flagged)
                for c in nb.comments:
                    c.auto_comment = got.get("comments", {}).get(c.name)
        gb.db.commit()


def read_scores(config: GradeConfig, rows: list[Row]) -> None:
    """Fill in each graded row's score from the master gradebook (tampered rows keep theirs:
    the flagged exercises are zero there, the rest counts)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{config.grading / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        for row in rows:
            if row.status != GRADED and not row.status.startswith(TAMPERING):
                continue
            try:
                sub = gb.find_submission(row.chapter, row.student)
            except MissingEntry:
                if row.status == GRADED:
                    row.need_human("no gradebook entry after autograde")
                continue
            row.score, row.max_score, row.needs_manual = sub.score, sub.max_score, bool(sub.needs_manual_grade)
