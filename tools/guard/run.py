"""Run one notebook under the guard, outside nbgrader (for tools/guard/trace.py and the tests).

The kernel is started exactly as ``make grade`` starts it (tools/sandbox.py, the guard's
bootstrap, the channel), without the file-system isolation, and the notebook's cells are run
by nbclient in order. Returns the executed notebook and the guard's parsed channel.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from tools import sandbox
from tools.grading.execute import ChannelReader
from tools.guard import spec as guard_spec
from tools.guard import verdict


def run(nb, part: dict | None, *, cell_timeout: int = 300, memory_gb: float = 6.0) -> tuple[object, dict]:
    """Execute `nb` (in place) under the guard described by `part` (tools.guard.spec.job_part);
    with `part` None, in the same sandboxed kernel without the guard (to measure what it costs)."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="guard-run-") as tmp:
        d = Path(tmp)
        kernels = d / "kernels" / "course-sandbox"
        kernels.mkdir(parents=True)
        box = {"uid": None, "memory_bytes": int(memory_gb * 2**30), "pid_file": str(d / "kernel.pid"),
               "scratch": str(d / "scratch"), "env": {"MPLBACKEND": "Agg"}}
        if part is not None:
            (d / "guard.json").write_text(json.dumps(guard_spec.kernel_spec(part, nb)))
            box["guard"] = {"spec": str(d / "guard.json"), "fifo": str(d / "guard.fifo")}
        (d / "sandbox.json").write_text(json.dumps(box))
        (kernels / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, str(Path(sandbox.__file__).resolve()), str(d / "sandbox.json"),
                     "{connection_file}"], "display_name": "guarded", "language": "python",
            "interrupt_mode": "signal"}))
        reader = ChannelReader(d / "guard.fifo")
        reader.start()      # (with no guard nothing ever writes to it)
        km = KernelManager(kernel_name="course-sandbox",
                           kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(d / "kernels")]))
        try:
            NotebookClient(nb, km=km, timeout=cell_timeout, allow_errors=True, startup_timeout=300,
                           interrupt_on_timeout=True).execute()
        finally:
            cpu = kernel_cpu_seconds(d / "kernel.pid")
            raw = reader.stop()
            if (d / "kernel.pid").exists():
                sandbox.kill_session(int((d / "kernel.pid").read_text()))
    channel = verdict.parse(raw)
    channel["kernel_cpu_s"] = cpu
    return nb, channel


def kernel_cpu_seconds(pid_file: Path) -> float | None:
    """CPU time (user + system) the kernel process has used so far, from /proc."""
    try:
        fields = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def records(channel: dict, kind: str) -> list[dict]:
    return [f for k, f in channel["records"] if k == kind]
