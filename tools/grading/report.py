"""grades.csv (one row per file handed in) and the summary table printed at the end of a run."""

from __future__ import annotations

import csv
from pathlib import Path

from tools.grading.collect import Row
from tools.grading.config import GRADED

COLUMNS = ["student", "chapter", "status", "score", "max_score", "needs_manual_grade", "file", "notes", "seconds"]


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
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
                 f"{info['seconds']:.0f} s · isolation {info['isolation']} · guard {info['guard']}")
    lines.append(f"grades: {out} · feedback: {out.parent / 'feedback'}/ · class report: {out.parent / 'report.html'}"
                 f" · logs: {out.parent / 'work' / 'logs'}/")
    return "\n".join(lines)
