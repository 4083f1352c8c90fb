"""grading/report.html: what a class got wrong, for the instructor (plotly, works offline).

For every chapter: the exercises most students lost points on; per exercise, the score
distribution and the most frequent messages the visible checks gave (a check raises
``utils.checks.CheckFailed`` whose message names the mistake; they are read from the
autograded notebooks' error outputs, numbers blanked so that the same mistake counts once);
and the exercises the guard zeroed. :func:`class_data` gathers, :func:`render` draws: the
page holds plotly.js inline, so it opens from a file with no network.
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from pathlib import Path

import nbformat

from tools.grading.collect import Row
from tools.grading.config import COURSE_ID, GRADED, TAMPERING, GradeConfig

TOP_MESSAGES = 5


def message_of(output) -> str | None:
    """What an error output in a test cell says, as the report groups it."""
    ename, evalue = output.get("ename", ""), (output.get("evalue") or "").strip()
    if ename == "CheckFailed":
        return evalue
    if ename == "GradingGuard":
        return "zeroed by the grader's guard: " + evalue.split(": ", 1)[-1]
    if ename == "NotImplementedError" and not evalue:
        return "not answered (NotImplementedError)"
    if ename == "AssertionError":
        return f"a test's assertion failed{': ' + evalue if evalue else ''}"
    return f"{ename}: {evalue}" if evalue else ename


def normalise(message: str) -> str:
    text = re.sub(r"\s+", " ", message)
    text = re.sub(r"(?<![A-Za-z_])[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)
    return text[:240]


def class_data(config: GradeConfig, rows: list[Row]) -> dict:
    """{chapter: {"exercises": {test: {"max", "scores", "messages": Counter, "examples"}},
    "students": n, "tampered": [(student, tests)]}} from the gradebook and autograded notebooks."""
    from nbgrader.api import Gradebook, MissingEntry

    data: dict = {}
    graded = [r for r in rows if r.status == GRADED or r.status.startswith(TAMPERING)]
    with Gradebook(f"sqlite:///{config.grading / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        for row in graded:
            try:
                sub = gb.find_submission(row.chapter, row.student)
            except MissingEntry:
                continue
            ch = data.setdefault(row.chapter, {"exercises": {}, "students": 0, "tampered": []})
            ch["students"] += 1
            if row.status.startswith(TAMPERING):
                ch["tampered"].append((row.student, row.status[len(TAMPERING):].strip()))
            path = config.grading / "autograded" / row.student / row.chapter / f"{row.chapter}.ipynb"
            outputs = _test_outputs(path)
            for nb in sub.notebooks:
                for g in nb.grades:
                    if g.cell_type != "code" or g.max_score is None:
                        continue
                    ex = ch["exercises"].setdefault(g.name, {"max": g.max_score, "scores": [], "messages": Counter(),
                                                            "examples": {}})
                    ex["scores"].append(g.score or 0.0)
                    for out in outputs.get(g.name, []):
                        msg = message_of(out)
                        if msg:
                            key = normalise(msg)
                            ex["messages"][key] += 1
                            ex["examples"].setdefault(key, msg[:400])
    return data


def _test_outputs(path: Path) -> dict[str, list]:
    if not path.exists():
        return {}
    nb = nbformat.read(path, as_version=4)
    out = defaultdict(list)
    for cell in nb.cells:
        md = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and md.get("grade") and not md.get("solution"):
            out[md.get("grade_id")] += [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    return out


def _figure_div(fig) -> str:
    return fig.to_html(include_plotlyjs=False, full_html=False, config={"displayModeBar": False})


def render(data: dict, title: str = "Class report") -> str:
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    parts = [f"<h1>{html.escape(title)}</h1>",
             "<p>Per chapter: the exercises most students lost points on, then each exercise's scores and the "
             "messages its checks gave most often (numbers shown as #).</p>"]
    for chapter in sorted(data):
        ch = data[chapter]
        exercises = ch["exercises"]
        parts.append(f"<h2>{html.escape(chapter)} <small>({ch['students']} graded)</small></h2>")
        lost = {name: sum(s < ex["max"] for s in ex["scores"]) / max(1, len(ex["scores"]))
                for name, ex in exercises.items()}
        order = sorted(lost, key=lambda n: (-lost[n], n))
        if order:
            fig = go.Figure(go.Bar(x=[100 * lost[n] for n in order][::-1], y=order[::-1], orientation="h",
                                   marker_color="#c0504d", text=[f"{100 * lost[n]:.0f}%" for n in order][::-1],
                                   textposition="auto"))
            fig.update_layout(title="Students who lost points, per exercise", xaxis_title="% of students",
                              xaxis_range=[0, 100], height=120 + 28 * len(order), margin=dict(l=220, r=30, t=50, b=40))
            parts.append(_figure_div(fig))
        if ch["tampered"]:
            items = "".join(f"<li>{html.escape(s)}: {html.escape(t)}</li>" for s, t in ch["tampered"])
            parts.append(f"<div class='warn'><b>Zeroed by the guard (check by hand):</b><ul>{items}</ul></div>")
        for name in order:
            ex = exercises[name]
            parts.append(f"<h3>{html.escape(name)} <small>max {ex['max']:g} · mean {sum(ex['scores']) / len(ex['scores']):.2f}"
                         f" · {100 * lost[name]:.0f}% lost points</small></h3><div class='row'>")
            counts = Counter(ex["scores"])
            xs = sorted(counts)
            fig = go.Figure(go.Bar(x=[f"{x:g}" for x in xs], y=[counts[x] for x in xs], marker_color="#4f81bd"))
            fig.update_layout(title="Score distribution", xaxis_title="points", yaxis_title="students", height=260,
                              width=420, margin=dict(l=50, r=20, t=40, b=40), xaxis_type="category")
            parts.append(f"<div>{_figure_div(fig)}</div>")
            top = ex["messages"].most_common(TOP_MESSAGES)
            if top:
                rows = "".join(f"<tr><td>{n}</td><td>{html.escape(ex['examples'][m])}</td></tr>" for m, n in top)
                parts.append(f"<table><tr><th>students</th><th>most frequent messages</th></tr>{rows}</table>")
            else:
                parts.append("<p class='ok'>No check failed.</p>")
            parts.append("</div>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "h2{border-bottom:2px solid #ddd;margin-top:2em}small{color:#666;font-weight:normal}"
             ".row{display:flex;gap:2em;align-items:flex-start}table{border-collapse:collapse;font-size:14px}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
             ".warn{background:#fff3cd;padding:.5em 1em;border:1px solid #e0c060}.ok{color:#2a7}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style><script>{get_plotlyjs()}</script></head><body>{''.join(parts)}</body></html>")


def write(config: GradeConfig, rows: list[Row], path: Path) -> None:
    path.write_text(render(class_data(config, rows)), encoding="utf-8")
