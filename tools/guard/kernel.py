"""Kernel side of the guard: installed by tools/sandbox.py before any notebook code runs.

What it watches, without reading a line of the student's code:

* **Reaching the reference.** A tracer (``sys.settrace``) sees every Python call, and every
  thread starts with it. When the course library (``utils``) is entered and the nearest
  non-library frame above is a student's (an answer cell, code it compiled, a file it wrote),
  the callee must be one of the chapter's allowed helpers (``tools/guard/allowed/``); otherwise
  that exercise scores nothing. Library code running with no notebook frame at all (a thread
  or callback an answer started with the reference as its target) is flagged too, and so is an
  answer *name* (``sae_loss``) bound to library code, or a class or instance that runs it.
* **Tampering.** What the tests use (builtins, torch, numpy, math, the ``utils`` modules, key
  classes, the names the locked cells bound) is snapshotted as each finishes importing, before
  any answer can touch it, and compared when every cell starts or ends and whenever an answer
  returns into a test or check. Operations that defeat an in-process guard are refused under a
  student frame and flagged: removing or adding a tracer or profiler, audit hooks, gc object
  walks, ctypes, starting processes, swapping a function's code, code claiming a library or
  locked-cell file name, reading the interpreter's frames.
* **Verdicts.** Every locked cell's code is compiled here from its known source and must equal
  what the kernel runs; a test cell earns a "pass" only when every statement of it returned
  normally. The grader gives points only to test cells with a pass and no flag, so a test whose
  failure was hidden (a custom exception handler, a patched shell) or that never ran scores 0.

Every record goes out through a pipe opened before the kernel started, authenticated with a
key that exists only in this process's unreachable state: the hook, the tracer and the thread
starter are built in empty namespaces and hold their state in defaults, whose reads are
refused, and the hook deletes its locals before it refuses anything. A notebook can close or
flood the pipe, but not forge a record: silence costs it the points. What stays possible (an
in-process guard cannot close everything) is listed in README "For instructors".
"""

import _thread
import hashlib
import importlib.util
import math  # noqa: F401 - a builtin module the tests use: in sys.modules before the snapshot
import operator  # noqa: F401
import os
import sys
import tempfile
import threading

_compile, _sha256, _urandom, _write = compile, hashlib.sha256, os.urandom, os.write
_str, _sorted = str, sorted

# The tracer (sys.settrace) sees every Python call: a call into the course library from outside
# it is the guard's business; a cell's code, a student's code and the modules tests use are
# traced further (their "return", no lines), everything else is left alone. It and the hook
# live in empty namespaces, with their state in defaults: nothing a notebook can reach.
TRACER = """
def tracer(frame, event, arg, _U=None, _W=None, _LIB=None, _CELL=None, _AUDIT=None, _TOKEN=None, _LOCAL=None,
           _BASE=None, _KI=None, _INTERRUPT=None):
    try:
        code = frame.f_code
        fn = code.co_filename
        if fn in _U:
            if code.co_name == "<module>":
                frame.f_trace_lines = False
                return _LOCAL
            back = frame.f_back
            if back is None or back.f_code.co_filename not in _U:
                _AUDIT("course.guard", _TOKEN, "call", frame, None)
            return None
        if fn.startswith(_CELL) or not fn.startswith(_LIB) or (fn in _W and code.co_name == "<module>"):
            frame.f_trace_lines = False
            return _LOCAL
    except _KI:
        _INTERRUPT()            # an interrupt (a cell's timeout) that landed here: deliver it again
    except _BASE:
        pass                    # an error escaping a tracer would uninstall it
    return None
"""

LOCAL = """
def local(frame, event, arg, _AUDIT=None, _TOKEN=None, _SELF=None, _BASE=None, _KI=None, _INTERRUPT=None):
    try:
        if event == "return":
            _AUDIT("course.guard", _TOKEN, "return", frame, arg)
    except _KI:
        _INTERRUPT()
    except _BASE:
        pass
    return _SELF
"""

# _thread.start_new_thread would start a thread the tracer does not follow: the guard's own
# version starts every thread with the tracer installed.
START_THREAD = """
def start_new_thread(function, args, kwargs=None, _START=None, _RUN=None):
    return _START(_RUN, (function, args, kwargs))
"""

RUN_THREAD = """
def run_thread(function, args, kwargs, _SETTRACE=None, _TRACER=None):
    _SETTRACE(_TRACER)
    if kwargs is None:
        return function(*args)
    return function(*args, **kwargs)
"""

HOOK = """
def hook(ev, args, _HANDLE=None, _MINE=None, _HANDLED=None, _DENY=None, _KI=None):
    if ev == "object.__getattr__":
        if args[1] == "f_code" or args[0] not in _MINE:
            return
    elif ev not in _HANDLED and ev[:7] != "ctypes.":
        return
    msg = _HANDLE(ev, args)
    if msg is None:
        return
    del _HANDLE, _MINE, _HANDLED, args          # nothing of the guard in this frame's locals
    if msg is _KI:
        raise _KI
    raise _DENY(msg)
"""


def _build(source: str, name: str, defaults: tuple):
    """A function made in an empty namespace: no globals, no builtins, its state in defaults."""
    ns = {"__builtins__": {}}
    exec(_compile(source, f"<course-guard:{name}>", "exec"), ns)
    fn = ns[name]
    fn.__defaults__ = defaults
    return fn


class Channel:
    """Records to the grader: `\\x1eG1 <seq> <mac> <kind>\\t<k>=<v>...\\n`, one atomic write each."""

    def __init__(self, fd: int):
        self.fd, self.seq, self.dead = fd, 0, False
        self.key = _urandom(32)
        self.ikey = bytes(b ^ 0x36 for b in self.key.ljust(64, b"\0"))
        self.okey = bytes(b ^ 0x5C for b in self.key.ljust(64, b"\0"))

    def mac(self, text: str) -> str:
        inner = _sha256(self.ikey + text.encode("utf-8", "replace")).digest()
        return _sha256(self.okey + inner).hexdigest()[:32]

    def send(self, record: str, **fields) -> None:
        if self.dead:
            return
        payload = record + "".join("\t" + k + "=" + _str(v)[:400].replace("\t", " ").replace("\n", " ").replace("\x1e", " ")
                                 for k, v in fields.items())
        mac = "-" if record == "hello" else self.mac(f"{self.seq} {payload}")
        line = f"\x1eG1 {self.seq} {mac} {payload}\n".encode("utf-8", "replace")
        self.seq += 1
        try:
            _write(self.fd, line)
        except OSError:
            self.dead = True


def install(spec: dict, env: dict) -> None:
    """Install the guard in this process (called once by the bootstrap, before ipykernel)."""
    channel = Channel(spec["fd"])
    channel.send("hello", key=channel.key.hex(), pid=os.getpid(), chapter=spec.get("chapter", ""))
    events = env["events"]
    g = events["Guard"](spec, channel, env["watch"], utils_files(), lib_prefixes(), cell_prefix())
    token, audit, stop = object(), sys.audit, (BaseException, KeyboardInterrupt, _thread.interrupt_main)
    local = _build(LOCAL, "local", ())
    local.__defaults__ = (audit, token, local, *stop)
    tracer = _build(TRACER, "tracer", (frozenset(g.cls.utils), watched_files(events["WATCHED"]), g.cls.lib,
                                       g.cls.cell, audit, token, local, *stop))
    run_thread = _build(RUN_THREAD, "run_thread", (sys.settrace, tracer))
    start = _build(START_THREAD, "start_new_thread", (None, _thread.start_new_thread, run_thread))
    mine = frozenset({tracer, local, run_thread, start})
    hook = _build(HOOK, "hook", (g.handle, mine, events["HANDLED"], PermissionError, KeyboardInterrupt))
    g.token, g.tracer, g.hook_code, g.mine = token, tracer, hook.__code__, mine
    g.run_thread_code = run_thread.__code__
    sys.addaudithook(hook)
    g.snapshot_library()
    g.installing = True
    _thread.start_new_thread = _thread.start_new = threading._start_new_thread = start
    threading.settrace(tracer)
    sys.settrace(tracer)
    g.installing = False
    channel.send("ready", watched=len(g.snap.entries))


def utils_files() -> dict:
    """Every source file of the course library, as code objects name it -> its module name."""
    spec = importlib.util.find_spec("utils")
    out = {}
    for root in (spec.submodule_search_locations or []) if spec else []:
        for dirpath, _, names in os.walk(root):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    rel = "" if rel == "__init__" else rel.removesuffix(".__init__")
                    module = "utils" + ("." + rel if rel else "")
                    out[path] = out[os.path.realpath(path)] = module
    return out


def watched_files(names: tuple) -> frozenset:
    """The source files of the modules tests use, found without importing them."""
    out = set()
    for name in names:
        top, _, rest = name.partition(".")
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        base = os.path.dirname(spec.origin)
        for path in ((spec.origin,) if not rest else (os.path.join(base, *rest.split(".")) + ".py",
                                                      os.path.join(base, *rest.split("."), "__init__.py"))):
            if os.path.exists(path):
                out |= {path, os.path.realpath(path)}
    return frozenset(out)


def lib_prefixes() -> tuple:
    """File name prefixes of installed code (the environment, the standard library) and '<'."""
    roots = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    roots |= {os.path.realpath(r) for r in roots}
    return tuple(_sorted(r.rstrip(os.sep) + os.sep for r in roots if r)) + ("<",)


def cell_prefix() -> str:
    """ipykernel names a cell's code <tmp>/ipykernel_<pid>/<hash>.py (ipykernel.compiler)."""
    return os.path.join(tempfile.gettempdir(), f"ipykernel_{os.getpid()}") + os.sep
