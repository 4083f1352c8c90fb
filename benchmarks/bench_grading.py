"""Time to grade a class: 30 simulated submissions of chapter 01, in parallel vs one at a time,
and in parallel without the guard (what the guard costs).

    python benchmarks/bench_grading.py [--students 30] [--jobs N] [--modes parallel,sequential,unguarded]

Each mode grades the same class from scratch (`python -m tools.grade --force`, the `fast`
profile, as `make grade` runs it) in its own throw-away copy of the course. The class mixes
what instructors get: a third complete, a third complete with one mistake (both run the
chapter's training cells), a third that left `ToyModel` unanswered (the training cells fail
at once). Prints wall time, CPU time, seconds per student, the speed-up and the guard's
overhead (`unguarded` is the parallel run with `--no-guard`), and writes
artifacts/bench_grading.json. The machine's load average is printed too: on a shared machine
other work competes for the same cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
CH = "01_superposition"
MISTAKE = ("def importance_weighted_loss(out, x, importance):\n"
           "    return ((x - out).pow(2) * importance).mean((0, 2))\n")


def copy_course(dest: Path) -> Path:
    for name in ("solutions", "chapters", "templates", "tools"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "nbgrader_config.py", dest)
    return dest


def make_class(course: Path, n: int) -> dict[str, str]:
    sol = nbformat.read(REPO / "solutions" / CH / f"{CH}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n", "", c.source)
               for c in sol.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    kinds = {}
    for i in range(n):
        kind = ("complete", "one mistake", "unfinished")[i % 3]
        nb = nbformat.read(REPO / "chapters" / CH / f"{CH}.ipynb", as_version=4)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in answers and not (kind == "unfinished" and gid == "toy_model"):
                cell.source = answers[gid]
            if kind == "one mistake" and gid == "importance_weighted_loss":
                cell.source = MISTAKE
        student = f"student{i:02d}"
        d = course / "grading" / "submitted" / student / CH
        d.mkdir(parents=True)
        nbformat.write(nb, d / f"{CH}.ipynb")
        kinds[student] = kind
    return kinds


def grade(course: Path, jobs: int, guard: bool = True) -> dict:
    env = {**os.environ, "COURSE_FAST": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tools.grade", "--root", str(course), "--jobs", str(jobs), "--force"]
                       + ([] if guard else ["--no-guard"]),
                       cwd=course, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"grading failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    with (course / "grading" / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {"jobs": jobs, "wall_s": round(wall, 1),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            "load_before": [round(x, 1) for x in load0], "load_after": [round(x, 1) for x in os.getloadavg()],
            "graded": sum(r["status"] == "graded" for r in rows), "rows": len(rows),
            "scores": {r["student"]: r["score"] for r in rows}, "summary": p.stdout.strip().splitlines()[-2]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel jobs (default: CPUs)")
    ap.add_argument("--modes", default="parallel,sequential,unguarded")
    args = ap.parse_args()
    results = {}
    print(f"grading {args.students} submissions of {CH} ({os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})", flush=True)
    for mode in args.modes.split(","):
        jobs = args.jobs if mode == "parallel" else 1
        with tempfile.TemporaryDirectory(prefix=f"bench-grading-{mode}-") as tmp:
            course = copy_course(Path(tmp) / "course")
            kinds = make_class(course, args.students)
            results[mode] = grade(course, jobs, guard=mode != "unguarded")
        r = results[mode]
        print(f"  {mode:<10} --jobs {jobs}: {r['wall_s']:7.1f} s wall, {r['cpu_s']:7.1f} s CPU, "
              f"{r['wall_s'] / args.students:5.1f} s per student, {r['graded']}/{r['rows']} graded "
              f"(load {r['load_before'][0]} -> {r['load_after'][0]})", flush=True)
    if {"parallel", "sequential"} <= results.keys():
        p, s = results["parallel"], results["sequential"]
        speedup = s["wall_s"] / p["wall_s"]
        same = p["scores"] == s["scores"]
        print(f"  speed-up with {args.jobs} jobs: {speedup:.2f}x  (same grades both ways: {same})")
        results["speedup"] = round(speedup, 2)
        results["same_grades"] = same
    if {"parallel", "unguarded"} <= results.keys():
        p, u = results["parallel"], results["unguarded"]
        overhead = p["wall_s"] / u["wall_s"]
        print(f"  guard overhead: {u['wall_s']:.1f} s -> {p['wall_s']:.1f} s wall (x{overhead:.2f}), "
              f"{u['cpu_s']:.1f} s -> {p['cpu_s']:.1f} s CPU (same grades: {p['scores'] == u['scores']})")
        results["guard_overhead"] = round(overhead, 2)
    results["class"] = {k: sum(v == k for v in kinds.values()) for k in ("complete", "one mistake", "unfinished")}
    out = REPO / "artifacts" / "bench_grading.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"  details: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
