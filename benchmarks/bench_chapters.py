"""How long a student waits: every chapter executed from top to bottom, per runtime profile.

    python benchmarks/bench_chapters.py                        # `cpu` and `fast` (part of `make bench`)
    python benchmarks/bench_chapters.py --profiles fast --chapters 01 05
    python benchmarks/bench_chapters.py --gpu                  # `make gpu-check`: the real `gpu` profile

Each chapter is the reference solution (`solutions/`), run in a fresh kernel of this environment
in a temporary folder, as a student's Run All. For each run it prints the wall time (kernel
start included), the kernel's peak resident memory, on `gpu` the peak GPU memory torch
reserved, and the cells that raised; for a chapter over the 5-minute goal in `cpu` it lists the
cells that cost the time. The machine's load average is printed first: on a shared machine other
work competes for the same cores. Figures also go to artifacts/bench_chapters.json
(artifacts/gpu_check.json for `--gpu`).

`--gpu` is for the day a CUDA GPU is at hand (hub downloads allowed): without one it says so in
one line and exits non-zero. It says which chapter comes closest to a T4's 15 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 5 * 60  # a laptop student's wait per chapter in `cpu` (DESIGN.md)
T4_GB = 15.0  # a Colab T4's memory
# Run in the kernel after the chapter: peak RSS (ru_maxrss is KiB on Linux, bytes on macOS) and
# the most memory torch's CUDA allocator held (what the GPU had to fit, less CUDA's own context).
PROBE = """
import json, resource, sys
_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
try:
    import torch
    _gpu = torch.cuda.max_memory_reserved() / 2**20 if torch.cuda.is_available() else None
except Exception:
    _gpu = None
print("BENCH-PROBE" + json.dumps({"rss_mb": _rss, "gpu_mb": _gpu}))
"""


@dataclass
class Run:
    chapter: str
    profile: str
    wall_s: float = 0.0
    rss_mb: float | None = None
    gpu_mb: float | None = None
    failures: list[str] = field(default_factory=list)  # "cell N (grade_id): Error: message"
    slowest: list[tuple[float, str]] = field(default_factory=list)  # (seconds, "cell N: first line")


def cell_name(i: int, cell) -> str:
    gid = cell.metadata.get("nbgrader", {}).get("grade_id")
    first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")[:60]
    return f"cell {i}" + (f" ({gid})" if gid else "") + f": {first}"


def cell_seconds(cell) -> float | None:
    t = cell.metadata.get("execution", {})
    try:
        start = datetime.fromisoformat(t["iopub.status.busy"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(t["iopub.status.idle"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return (end - start).total_seconds()


def run_chapter(chapter: str, profile: str, cell_timeout: int) -> Run:
    """Execute solutions/<chapter> in a fresh kernel with COURSE_PROFILE=<profile>."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    run = Run(chapter, profile)
    nb = nbformat.read(REPO / "solutions" / chapter / f"{chapter}.ipynb", as_version=4)
    n_cells = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{chapter}-"))
    env = {k: v for k, v in os.environ.items() if k != "COURSE_FAST"}
    env.update(COURSE_PROFILE=profile, PYTHONDONTWRITEBYTECODE="1")
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            record_timing=True, resources={"metadata": {"path": str(workdir)}})
    saved, start = dict(os.environ), time.perf_counter()
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client.execute()
    except DeadKernelError as e:
        run.failures.append(f"the kernel died ({e}); the last cells did not run")
    except Exception as e:  # a cell timeout (named below by its missing outputs), a kernel that would not start
        run.failures.append(f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}")
    finally:
        os.environ.clear()
        os.environ.update(saved)
        run.wall_s = time.perf_counter() - start
        shutil.rmtree(workdir, ignore_errors=True)
    for i, cell in enumerate(nb.cells[:n_cells]):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                run.failures.append(f"{cell_name(i, cell)} -> {out.ename}: {out.evalue.splitlines()[0] if out.evalue else ''}")
        if (s := cell_seconds(cell)) is not None:
            run.slowest.append((s, cell_name(i, cell)))
    run.slowest = sorted(run.slowest, reverse=True)[:6]
    for out in nb.cells[-1].get("outputs", []):
        if out.get("name") == "stdout" and "BENCH-PROBE" in out.text:
            probe = json.loads(out.text.split("BENCH-PROBE", 1)[1])
            run.rss_mb, run.gpu_mb = probe["rss_mb"], probe["gpu_mb"]
    return run


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(runs: list[Run], gpu: bool) -> None:
    head = f"{'chapter':<26} {'profile':<7} {'wall':>8} {'peak RSS':>9}" + (f" {'peak GPU':>9}" if gpu else "") + "  failing cells"
    print(head)
    print("-" * len(head))
    for r in runs:
        m, s = divmod(r.wall_s, 60)
        print(f"{r.chapter:<26} {r.profile:<7} {int(m):>4}:{s:04.1f} {fmt(r.rss_mb, '>6.0f')} MB"
              + (f" {fmt(r.gpu_mb and r.gpu_mb / 1024, '>6.2f')} GB" if gpu else "")
              + "  " + ("none" if not r.failures else f"{len(r.failures)}: {r.failures[0]}"))
        for f in r.failures[1:]:
            print(" " * (len(head) - len("failing cells")) + f"   {f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", nargs="+", default=["cpu", "fast"], choices=["gpu", "cpu", "fast"])
    ap.add_argument("--chapters", nargs="+", help="chapter folders or their number prefixes (default: all)")
    ap.add_argument("--gpu", action="store_true", help="make gpu-check: every chapter in the real gpu profile")
    ap.add_argument("--cell-timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args(argv)
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("gpu-check: no CUDA GPU visible to torch on this machine; run it where `nvidia-smi` "
                  "lists one (e.g. a Colab T4).", file=sys.stderr)
            return 2
        args.profiles = ["gpu"]
    chapters = sorted(p.name for p in (REPO / "solutions").iterdir() if (p / f"{p.name}.ipynb").exists())
    if args.chapters:
        chapters = [c for c in chapters if any(c.startswith(w) for w in args.chapters)]
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"(1/5/15 min) at the start; python {sys.version.split()[0]}")
    if args.gpu:
        import torch

        print(f"GPU: {torch.cuda.get_device_name(0)}, "
              f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GB")
    runs = []
    for profile in args.profiles:
        for ch in chapters:
            print(f"... {ch} ({profile})", flush=True)
            runs.append(run_chapter(ch, profile, args.cell_timeout))
    print()
    print_table(runs, gpu=args.gpu)
    for r in runs:
        if r.profile == "cpu" and r.wall_s > GOAL_S:
            print(f"\n{r.chapter} takes {r.wall_s / 60:.1f} min in `cpu` (goal: {GOAL_S // 60}); its slowest cells:")
            for s, name in r.slowest:
                print(f"  {s:7.1f} s  {name}")
    if args.gpu:
        worst = max((r for r in runs if r.gpu_mb is not None), key=lambda r: r.gpu_mb, default=None)
        if worst is not None:
            print(f"\nclosest to a T4's {T4_GB:.0f} GB: {worst.chapter}, peak {worst.gpu_mb / 1024:.2f} GB reserved by "
                  f"torch ({100 * worst.gpu_mb / 1024 / T4_GB:.0f}%; CUDA's own context adds ~0.3-0.5 GB)")
    out = REPO / "artifacts" / ("gpu_check.json" if args.gpu else "bench_chapters.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"load": load, "runs": [asdict(r) for r in runs]}, indent=1))
    return 1 if any(r.failures for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
