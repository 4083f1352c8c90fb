"""`make lab` as a student (or a container, as root) runs it: JupyterLab serves `/lab` on
127.0.0.1 with the token it prints, opens no browser on a headless machine, and stops cleanly
on Ctrl-C, Ctrl-C in its terminal (a pseudo-terminal here), shutting down its kernels.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import termios
import time
import urllib.error
import urllib.request

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
TIMEOUT = 120  # seconds for JupyterLab to start or stop (extensions load slowly on a busy 2-core CPU)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def request(url: str, method: str = "GET", token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                 headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def wait_for(what: str, ok, log, proc=None, timeout: float = TIMEOUT):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"`make lab` exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        value = ok()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def in_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is stdin (the pty)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_serves_lab_and_stops_on_ctrl_c(tmp_path):
    port, runtime, log = free_port(), tmp_path / "runtime", tmp_path / "lab.log"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "JUPYTER_TOKEN")}
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(runtime),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), COURSE_GRADING_DIR=str(tmp_path / "grading"))
    master, slave = pty.openpty()
    with log.open("w") as out:
        lab = subprocess.Popen(["make", "--no-print-directory", "-C", str(REPO), "lab", f"LAB_PORT={port}"],
                               env=env, stdin=slave, stdout=out, stderr=subprocess.STDOUT,
                               preexec_fn=in_terminal)
    os.close(slave)
    try:
        url = wait_for("the URL with its token", lambda: re.search(
            rf"http://127\.0\.0\.1:{port}/lab\?token=(\w+)", log.read_text()), log, lab)
        token = url.group(1)
        status, _ = wait_for("/lab to answer", lambda: (s := request(url.group(0)))[0] == 200 and s, log, lab)
        assert request(f"http://127.0.0.1:{port}/api/contents")[0] == 403, "the token is not required"
        status, body = request(f"http://127.0.0.1:{port}/api/kernels", "POST", token)
        assert status == 201, status
        kernel = runtime / f"kernel-{json.loads(body)['id']}.json"
        wait_for("the kernel's connection file", kernel.exists, log)

        echoed = log.read_text().split("[I ", 1)[0]  # the command make printed, before Jupyter's log
        assert "jupyter lab" in echoed and "--no-browser" in echoed, f"a browser would be opened:\n{echoed}"

        for _ in range(2):  # Ctrl-C asks to confirm; a second one within 5 s stops
            os.write(master, b"\x03")
            time.sleep(1)
        wait_for("Jupyter to shut down", lambda: not port_in_use(port)
                 and not list(runtime.glob("jpserver-*.json")) and not kernel.exists(), log)
        assert "Shutting down" in log.read_text()
        lab.wait(timeout=TIMEOUT)
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
        os.close(master)
