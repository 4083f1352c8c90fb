"""A real browser: JupyterLab started as `make lab` starts it, driven by headless Chromium.

The test opens chapter 01 (answered, as a student who finished it), runs all cells, and
checks that a plotly figure rendered (a `.js-plotly-plot` holding an SVG); then it opens
nbgrader's formgrader. The instructor's class report (grading/report.html, made by `make
grade`) is opened from its file with the network cut off and must draw every figure. Screenshots go to artifacts/ (git-ignored). Chromium is Debian's
`chromium` package, installed by `make browser` (a prerequisite of `make test`); the tests
skip, saying why, only when it cannot be installed. Chromium is driven over the Chrome
DevTools protocol with `websocket-client` (already a dependency of jupyter_server).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, copy_course

pytestmark = pytest.mark.slow
ARTIFACTS = REPO / "artifacts"
CH = "01_superposition"
RUN_TIMEOUT = float(os.environ.get("BROWSER_RUN_TIMEOUT", "900"))  # seconds for Run All (it trains)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def ensure_chromium() -> str:
    found = chromium()
    if found:
        return found
    p = subprocess.run(["make", "-C", str(REPO), "browser"], capture_output=True, text=True)
    found = chromium()
    if not found:
        pytest.skip("Chromium is not installed and could not be installed (`make browser`: "
                    f"{(p.stdout + p.stderr).strip()[-300:] or 'no output'})")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(port: int) -> list[str]:
    """The command `make lab` runs (read from `make -n`), on the given port."""
    p = subprocess.run(["make", "-n", "-C", str(REPO), "lab", f"LAB_PORT={port}", "DISPLAY="],
                       capture_output=True, text=True)
    lines = p.stdout.replace("\\\n", " ").splitlines()
    line = next((ln for ln in lines if " lab " in ln and "jupyter" in ln), None)
    if line is None:  # no make: the same command by hand
        return [str(Path(sys.executable).parent / "jupyter"), "lab", "--notebook-dir=chapters",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--no-browser"]
    args = shlex.split(line)
    if not os.path.isabs(args[0]):
        args[0] = str(REPO / args[0])
    return args


class Page:
    """A Chrome DevTools protocol session on one page."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expr[:80]!r}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def wait(self, expr: str, timeout: float, what: str, every: float = 1.0):
        end = time.time() + timeout
        while time.time() < end:
            try:
                value = self.js(expr)
                if value:
                    return value
            except RuntimeError:
                pass
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@pytest.fixture(scope="module")
def browser_and_lab(tmp_path_factory):
    exe = ensure_chromium()
    tmp = tmp_path_factory.mktemp("browser")
    course = copy_course(tmp / "course")
    # the student has answered every exercise (the released stubs would stop Run All at once)
    sol = nbformat.read(REPO / "solutions" / CH / f"{CH}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n", "", c.source)
               for c in sol.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    nb = nbformat.read(course / "chapters" / CH / f"{CH}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    nbformat.write(nb, course / "chapters" / CH / f"{CH}.ipynb")

    port, token = free_port(), secrets.token_hex(16)
    cmd = lab_command(port) + [f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True",
                               "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers; `make lab` itself refuses root
        cmd.append("--allow-root")
    env = {**os.environ, "COURSE_FAST": "1", "COURSE_GRADING_DIR": str(tmp / "grading"),
           "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (tmp / "lab.log").open("w")
    lab = subprocess.Popen(cmd, cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/api/status?token={token}", 120, lab, tmp / "lab.log")
        with headless_chromium(exe) as page:
            # headless pages never have focus, and JupyterLab's "current notebook" follows focus
            page.call("Emulation.setFocusEmulationEnabled", enabled=True)
            yield {"page": page, "base": base, "token": token, "log": tmp / "lab.log"}
    finally:
        _stop(lab)
        log.close()


def _stop(proc) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass


@contextmanager
def headless_chromium(exe: str):
    """A headless Chromium with one 1400x1000 page, driven over the DevTools protocol."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    chrome = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1400,1000",
                               "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        devtools = Path(profile) / "DevToolsActivePort"
        end = time.time() + 60
        while not devtools.exists() and time.time() < end:
            time.sleep(0.2)
        assert devtools.exists(), "Chromium did not start its DevTools endpoint"
        cdp_port = int(devtools.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{cdp_port}/json/list", timeout=30) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        page = Page(target["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
        yield page
    finally:
        _stop(chrome)
        shutil.rmtree(profile, ignore_errors=True)


def _wait_http(url: str, timeout: float, proc, log: Path) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer on {url}: {log.read_text()[-3000:]}")


def test_chapter_01_runs_in_jupyterlab_and_renders_a_plotly_figure(browser_and_lab):
    page, base, token = browser_and_lab["page"], browser_and_lab["base"], browser_and_lab["token"]
    page.goto(f"{base}/lab/tree/{CH}/{CH}.ipynb?token={token}")
    page.wait("!!(window.jupyterapp && document.querySelector('.jp-NotebookPanel .jp-Cell'))", 180,
              "the notebook to open")
    app = "window.jupyterapp"
    panel = f"Array.from({app}.shell.widgets('main')).find(w => w.sessionContext && w.content)"
    page.js(f"(() => {{ {app}.shell.activateById(({panel}).id); return true; }})()")  # the current notebook
    page.wait(f"(() => {{ const w = {panel}; const s = w && w.sessionContext;"
              " return !!(s && s.session && s.session.kernel && s.session.kernel.status === 'idle'); })()",
              180, "the kernel to start")
    t0 = time.time()
    # started, not awaited: the command's promise resolves only when every cell has run
    page.js(f"({app}.commands.execute('notebook:run-all-cells'), true)")
    # finished when the kernel is idle and every code cell has an execution count
    done = ("(() => { const w = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.sessionContext && w.content);"
            " const k = w.sessionContext.session.kernel;"
            " const cells = w.content.model.cells; let n = 0, ran = 0;"
            " for (let i = 0; i < cells.length; i++) { const c = cells.get(i);"
            "   if (c.type === 'code') { n++; if (c.executionCount) ran++; } }"
            " return k.status === 'idle' && ran === n ? [n, ran] : null; })()")
    try:
        n, ran = page.wait(done, RUN_TIMEOUT, "Run All to finish", every=3)
    finally:
        page.screenshot(ARTIFACTS / "browser_chapter01_end.png")
    print(f"Run All: {ran}/{n} code cells in {time.time() - t0:.0f} s")
    errors = page.js("Array.from(document.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/"
                     "vnd.jupyter.stderr\"] pre')).map(e => e.innerText).filter(t => /Error|Traceback/.test(t))"
                     ".slice(0, 3)")
    assert not errors, errors
    figures = page.wait("document.querySelectorAll('.js-plotly-plot svg.main-svg').length", 60,
                        "a plotly figure to render")
    page.js("document.querySelector('.js-plotly-plot').scrollIntoView({block: 'center'}), true")
    time.sleep(1)
    shot = page.screenshot(ARTIFACTS / "browser_chapter01_plot.png")
    print(f"{figures} plotly SVG(s); screenshot {shot}")
    assert figures >= 1 and shot.stat().st_size > 10_000


def test_formgrader_opens(browser_and_lab):
    page, base, token = browser_and_lab["page"], browser_and_lab["base"], browser_and_lab["token"]
    page.goto(f"{base}/formgrader?token={token}")
    text = page.wait("document.body && document.body.innerText.includes('01_superposition')"
                     " && document.body.innerText", 120, "formgrader to list chapter 01")
    shot = page.screenshot(ARTIFACTS / "browser_formgrader.png")
    assert "Manage Assignments" in text or "Assignments" in text, text[:500]
    assert shot.stat().st_size > 5_000


def test_class_report_renders_offline_and_is_readable(tmp_path):
    """The class report `make grade` writes, for a small simulated class, opened from its file
    with every network request blocked: every figure draws, the messages are on the page, and
    nothing is wider than the window."""
    from collections import Counter

    from tools.grading import classreport

    exe = ensure_chromium()
    loss_msg = "importance_weighted_loss: you averaged over features: one loss per instance, summed over features"
    data = {"01_superposition": {"students": 5, "tampered": [("mallory", "test_toy_model")], "exercises": {
        "test_generate_batch": {"max": 1.0, "scores": [1.0] * 5, "messages": Counter(), "examples": {}},
        "test_importance_weighted_loss": {"max": 2.0, "scores": [2.0, 0.0, 0.0, 0.0, 2.0],
                                          "messages": Counter({classreport.normalise(loss_msg): 3}),
                                          "examples": {classreport.normalise(loss_msg): loss_msg}},
        "test_toy_model": {"max": 3.0, "scores": [3.0, 3.0, 0.0, 3.0, 0.0],
                           "messages": Counter({"not answered (NotImplementedError)": 1}),
                           "examples": {"not answered (NotImplementedError)": "not answered (NotImplementedError)"}},
    }}}
    path = tmp_path / "report.html"
    path.write_text(classreport.render(data), encoding="utf-8")
    with headless_chromium(exe) as page:
        page.call("Network.enable")
        page.call("Network.setBlockedURLs", urls=["http://*", "https://*", "ws://*", "wss://*"])
        page.goto(path.as_uri())
        # one "who lost points" figure per chapter, one score distribution per exercise
        n = page.wait("document.querySelectorAll('.js-plotly-plot svg.main-svg').length >= 4"
                      " && document.querySelectorAll('.js-plotly-plot').length", 60, "the report's figures")
        bars = page.js("document.querySelectorAll('.js-plotly-plot .bars path').length")
        text = page.js("document.body.innerText")
        wide = page.js("document.documentElement.scrollWidth > window.innerWidth")
        first = page.js("Array.from(document.querySelectorAll('h3')).map(h => h.innerText.split(' ')[0])")
        shot = page.screenshot(ARTIFACTS / "browser_class_report.png")
    assert n == 4 and bars >= 1 + 1 + 2 + 2, (n, bars)
    assert "you averaged over features" in text and "mallory" in text and "Students who lost points" in text
    assert first[0] == "test_importance_weighted_loss" and first[-1] == "test_generate_batch", first  # most lost first
    assert not wide, "the report is wider than a 1400-pixel window"
    assert shot.stat().st_size > 20_000
