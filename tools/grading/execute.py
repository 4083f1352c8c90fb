"""Inside a worker: nbgrader's Execute, hardened for hostile notebooks and run under the guard.

:class:`BoundedExecute` caps output while it arrives and records which cell killed a kernel;
:class:`GuardedExecute` also hands the kernel its guard: it writes the guard's spec for the
notebook about to run (tools.guard.spec), opens the channel (a FIFO the sandbox connects to
the kernel before any notebook code runs) and keeps every record the guard sends.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
from pathlib import Path

import nbformat
from nbclient.util import run_sync
from nbgrader.preprocessors import Execute

from tools.guard import spec as guard_spec

RECORD_LIMIT = 200_000     # records kept from one kernel (a notebook flooding the pipe costs it the rest)


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


class ChannelReader(threading.Thread):
    """Reads the guard's FIFO until told to stop; keeps the records (\\x1eG1 ... lines) only."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        path.unlink(missing_ok=True)
        os.mkfifo(path, 0o600)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # open before the kernel's writer
        self.records: list[bytes] = []
        self.partial = b""
        self.stopping = threading.Event()

    def run(self) -> None:
        deadline = None
        try:
            while deadline is None or time.monotonic() < deadline:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                data = os.read(self.fd, 1 << 16) if ready else b""
                if data:
                    self._take(data)
                elif self.stopping.is_set():
                    break
                elif ready:          # no writer (yet, or any more): a FIFO reads as end of file
                    time.sleep(0.05)
                if self.stopping.is_set() and deadline is None:
                    deadline = time.monotonic() + 2       # a leftover writer cannot keep us here
        finally:
            os.close(self.fd)

    def _take(self, data: bytes) -> None:
        parts = (self.partial + data).split(b"\x1e")
        self.partial = b""
        for i, part in enumerate(parts[1:], 1):   # parts[0] is whatever came before a record
            line, newline, _ = part.partition(b"\n")
            if not newline and i == len(parts) - 1:
                self.partial = (b"\x1e" + part)[:8192]      # the rest of this record is still coming
            elif line.startswith(b"G1 ") and len(self.records) < RECORD_LIMIT:
                self.records.append(b"\x1e" + line[:8192] + b"\n")

    def stop(self) -> bytes:
        self.stopping.set()
        self.join(timeout=10)
        return b"".join(self.records)


class GuardedExecute(BoundedExecute):
    """BoundedExecute whose kernel runs under the guard when the job asks for it."""

    def preprocess(self, nb, resources=None, km=None):
        jobdir = Path(os.environ.get("GRADE_JOB", "."))
        job = json.loads((jobdir / "job.json").read_text()) if (jobdir / "job.json").exists() else {}
        if not job.get("guard"):
            return super().preprocess(nb, resources, km)
        part = json.loads((jobdir / "guard-job.json").read_text())
        (jobdir / "guard.json").write_text(json.dumps(guard_spec.kernel_spec(part, nb)))
        reader = ChannelReader(jobdir / "guard.fifo")
        reader.start()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            (jobdir / "guard.log").write_bytes(reader.stop())
