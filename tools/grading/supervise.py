"""Running the workers: one process per job, a time limit, retries after a port race, no leftovers.

A :class:`Supervisor` runs jobs in a thread pool (``config.jobs`` at a time); it owns the set
of worker processes still running, so that Ctrl-C or an error kills every one of them and
whatever their kernels left behind. :func:`failure` turns a worker's result into the
"needs a human" reason of the grades CSV, or None when the notebook was graded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from tools import sandbox
from tools.grading.config import GradeConfig
from tools.grading.jobs import Job

# The kernel's ports are picked free by the worker and bound by the kernel a moment later;
# with jobs in parallel another process can take one in between. The kernel then dies before
# running anything, and the job is simply run again.
PORT_RACE = "zmq.error.ZMQError: Address already in use"
PORT_RACE_ATTEMPTS = 3


def worker_env(job: Job) -> dict[str, str]:
    d = job.dir
    env = sandbox.scrub_env(os.environ)
    for name in ("home", "runtime", "config", "data", "ipython"):
        (d / name).mkdir(exist_ok=True)
    env.update({"HOME": str(d / "home"), "JUPYTER_PATH": str(d / "share"), "JUPYTER_RUNTIME_DIR": str(d / "runtime"),
                "JUPYTER_CONFIG_DIR": str(d / "config"), "JUPYTER_DATA_DIR": str(d / "data"),
                "IPYTHONDIR": str(d / "ipython"), "GRADE_JOB": str(d), "PYTHONDONTWRITEBYTECODE": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    return env


def cleanup_processes(job: Job) -> int:
    """Kill what a job's kernel left running; how many processes there were."""
    if job.uid is not None:
        return sandbox.kill_uid(job.uid)
    pid_file = job.dir / "kernel.pid"
    if pid_file.exists():
        try:
            return sandbox.kill_session(int(pid_file.read_text()))
        except ValueError:
            return 0
    return 0


class Supervisor:
    """Runs workers for jobs; `running` holds the worker processes alive right now."""

    def __init__(self, config: GradeConfig, root: Path):
        self.config, self.root = config, root
        self.running: dict[int, subprocess.Popen] = {}
        self.lock = threading.Lock()

    def execute(self, job: Job) -> dict:
        """Run the worker for `job` (in a pool thread); a job whose kernel could not bind its
        ports (see PORT_RACE) is run again, up to PORT_RACE_ATTEMPTS times."""
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            result = self.execute_once(job)
            if result.get("success") or result.get("timed_out") or PORT_RACE not in job.log.read_text(errors="replace"):
                break
            for name in ("result.json", "kernel.json", "kernel.pid", "guard.log"):
                (job.dir / name).unlink(missing_ok=True)
        result["attempts"] = attempt
        return result

    def execute_once(self, job: Job) -> dict:
        t0 = time.time()
        with job.log.open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "tools.grade_worker", str(job.dir)], cwd=self.root,
                                    env=worker_env(job), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            with self.lock:
                self.running[proc.pid] = proc
            timed_out = False
            try:
                proc.wait(timeout=self.config.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            finally:
                with self.lock:
                    self.running.pop(proc.pid, None)
                leftovers = cleanup_processes(job)
        result_file = job.dir / "result.json"
        result = json.loads(result_file.read_text()) if result_file.exists() else {"success": False}
        result.update(timed_out=timed_out, returncode=proc.returncode, leftovers=leftovers,
                      wall=round(time.time() - t0, 1))
        return result

    def run(self, jobs: list[Job], done: Callable[[Job, dict], None]) -> None:
        """Execute every job, `config.jobs` at a time, calling `done(job, result)` as each ends
        (in this thread). An interruption kills every worker and every kernel's leftovers."""
        if not jobs:
            return
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.config.jobs, len(jobs))))
        try:
            futures = {pool.submit(self.execute, job): job for job in jobs}
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    result = fut.result()
                except Exception as err:  # noqa: BLE001 - one broken job never stops the run
                    result = {"wall": None, "grader_error": f"{type(err).__name__}: {err}"}
                done(job, result)
        except BaseException:
            with self.lock:
                for proc in list(self.running.values()):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            for job in jobs:
                cleanup_processes(job)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def failure(result: dict, config: GradeConfig) -> str | None:
    """None when the notebook was graded, else why a human must look."""
    if result.get("grader_error"):
        return f"the grader failed on this notebook: {result['grader_error']}"
    if result.get("timed_out"):
        return f"grading took longer than {config.timeout:.0f} s and was stopped"
    if result.get("success"):
        return None
    kernel = result.get("kernel") or {}
    text = " ".join(str(result.get(k, "")) for k in ("log", "error"))
    if kernel.get("error") == "DeadKernelError" or "DeadKernelError" in text or "Kernel died" in text:
        where = f" in cell {kernel['grade_id']!r}" if kernel.get("grade_id") else (
            f" in cell #{kernel['cell_index']}" if kernel.get("cell_index", -1) >= 0 else "")
        status = kernel.get("exit_status")
        how = ""
        if isinstance(status, int) and status < 0:
            how = f", killed by {signal.Signals(-status).name}"
        elif isinstance(status, int):
            how = f", exit code {status}"
        return (f"the kernel died{where}{how} (os._exit, a crash, or the {config.memory:g} GB memory limit); "
                "the notebook could not be graded")
    if "ran out of memory" in text:
        return "the grading process ran out of memory (huge output?)"
    if result.get("returncode") not in (0, None) and "log" not in result:
        return f"the grading process failed (exit code {result.get('returncode')})"
    last = next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()), "nbgrader could not grade it")
    return f"nbgrader could not grade it: {last.strip()[:200]}"
