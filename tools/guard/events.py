"""Kernel side of the guard: what each audit and tracer event means (see kernel.py for why).

Loaded into a private namespace by the bootstrap; everything used at event time is bound here,
before the notebook runs. :class:`Guard` never raises into the notebook except to refuse an
operation (its ``handle`` returns the refusal message and the hook raises it).
"""

import _thread
import builtins
import ctypes
import inspect
import os
import re
import sys
import threading
import traceback

try:                                      # in the kernel the bootstrap passes the other files' namespaces
    Cells, UNKNOWN = GUARD["cells"]["Cells"], GUARD["cells"]["UNKNOWN"]  # noqa: F821
except NameError:                         # imported as a module (reading, tests)
    from tools.guard.cells import UNKNOWN, Cells

_getframe, _ident, _FunctionType = sys._getframe, _thread.get_ident, type(lambda: 0)
_gettrace, _settrace = sys.gettrace, sys.settrace
_CALL_OPCODES = (166, 171)                # PRECALL, CALL in Python 3.11
_type, _len, _dict, _list, _sorted = type, len, dict, list, sorted
_ModuleType = type(sys)
_MISSING = object()
_BaseException, _Exception, _KeyboardInterrupt = BaseException, Exception, KeyboardInterrupt
_fnmatch_translate = __import__("fnmatch").translate
_realpath, _getcwd = os.path.realpath, os.getcwd
_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
_RESUME = __import__("dis").opmap["RESUME"]     # its argument is 0 at a function's start

FRAME_EVENTS = {"sys._getframe", "sys._current_frames"}
GC_EVENTS = {"gc.get_objects", "gc.get_referrers", "gc.get_referents"}
PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                  "os.forkpty", "pty.spawn", "os.startfile"}
HANDLED = frozenset({"course.guard", "sys.setprofile", "sys.settrace", "sys.addaudithook", "object.__setattr__",
                     "code.__new__", "function.__new__", "compile", "exec", "open"} | FRAME_EVENTS | GC_EVENTS
                    | PROCESS_EVENTS)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
FD_PATH = re.compile(r"^/(proc/(self|thread-self|\d+)(/task/\d+)?/(fd|mem|map_files)|dev/fd)(/|$)")
BUILTINS_SKIP = frozenset({"_", "__", "___", "input", "exit", "quit", "help", "copyright", "credits", "license",
                           "get_ipython", "display", "__IPYTHON__", "__loader__", "__spec__", "__name__", "__doc__",
                           "__package__"})
# What the tests use, snapshotted when each finishes importing (before any answer can touch it)
WATCHED = ("math", "operator", "numpy", "numpy.testing", "torch", "torch.nn", "torch.nn.functional", "torch.linalg",
           "torch.testing", "einops")
WATCHED_CLASSES = ("torch.Tensor", "torch._C.TensorBase", "torch.nn.Module", "torch.nn.Parameter", "torch.nn.Linear",
                   "torch.optim.Optimizer", "torch.optim.Adam", "torch.autograd.Function")
SKIP_FOR_FRAMES = (inspect.__file__, traceback.__file__)


def resumed(frame) -> bool:
    """A generator or coroutine frame going on after a yield, not starting: its start was judged
    where it happened (with the frames above it then)."""
    code = frame.f_code
    if not code.co_flags & _GENERATOR_FLAGS:
        return False
    raw, i = code.co_code, frame.f_lasti      # at its start: RESUME 0; thrown into (closed): its YIELD_VALUE
    return 0 <= i < _len(raw) - 1 and not (raw[i] == _RESUME and raw[i + 1] == 0)


class Guard(Cells):
    """The guard's state and its answer to every event (one instance per kernel)."""

    def __init__(self, spec, channel, watch, utils_files, lib_prefixes, cell_prefix):
        self.out = channel
        self.cls = watch["Classifier"](utils_files, lib_prefixes, cell_prefix)
        self.snap, self.expose = watch["Snapshot"](lib_prefixes), watch["Exposure"](self.cls)
        self.by_file = {}                        # cell file name -> the cells with that source, in order
        for rec in spec["cells"]:
            self.by_file.setdefault(rec["file"], []).append(_dict(rec))
        self.answers = _dict(spec.get("answers", {}))           # answer name -> its exercise
        patterns = [_fnmatch_translate(p) for p in spec.get("allowed", [])]
        self.allowed = re.compile("|".join(patterns) or "(?!)").match
        self.allowed_cache = {}
        self.pieces = {}                         # locked cell file name -> its statements and progress
        self.ns = None                           # the notebook's namespace (learned from a cell frame)
        self.ns_copy, self.protected = {}, {}
        self.cur = self.cur_test = self.last_student = None
        self.cell_flags, self.sent, self.busy, self.tampered = {}, set(), set(), set()
        self.student_ran = self.installing = False
        self.token = self.tracer = self.hook_code = self.run_thread_code = None
        self.mine = frozenset()                  # the tracer, the hook's helpers: nobody reads them
        self.thr_ns, self.thr_file = threading.__dict__, threading.__file__
        self.ctypes_dir = os.path.dirname(ctypes.__file__) + os.sep

    def watch_imported(self, name, namespace) -> None:
        """A module finished importing: watch it if tests use it (utils, torch, numpy, ...)."""
        self.snap.add_module(name, namespace)
        self.snap.add(f"sys.modules[{name!r}]", sys.modules, [(name, sys.modules.get(name))])
        if name == "torch":                      # its key classes are all imported by now
            for dotted in WATCHED_CLASSES:
                mod, _, attr = dotted.rpartition(".")
                cls = sys.modules.get(mod)
                cls = cls.__dict__.get(attr) if cls is not None else None
                if cls is not None and _type(cls) is not _ModuleType:
                    self.snap.add_class(dotted, cls)
                    self.expose.skip.append(cls)

    def snapshot_library(self) -> None:
        self.snap.add_module("builtins", builtins.__dict__, exclude=BUILTINS_SKIP)
        for name in _sorted(_list(sys.modules)):
            if name in WATCHED or name == "utils" or name.startswith("utils."):
                self.watch_imported(name, sys.modules[name].__dict__)

    # ---------------------------------------------------------------------------------------
    # dispatch

    def handle(self, ev, args):
        """The audit hook's work: None to let the operation go on, a message to refuse it."""
        tid = _ident()
        if tid in self.busy:
            return None
        self.busy.add(tid)
        try:
            return self.dispatch(ev, args)
        except _KeyboardInterrupt:
            return _KeyboardInterrupt
        except _BaseException as err:            # a bug of the guard never breaks the notebook
            self.out.send("error", event=ev, what=f"{_type(err).__name__}: {err}")
            return None
        finally:
            self.busy.discard(tid)

    def dispatch(self, ev, args):
        if ev == "course.guard":
            if args[0] is not self.token:
                return self.deny("a forged grader event", self.trigger(), always=True)
            kind, frame, value = args[1], args[2], args[3]
            if kind == "call":
                self.on_call(frame)
            elif kind == "return":
                self.on_return(frame, value)
            return None
        if ev == "object.__getattr__":           # args[0] is the tracer or a helper (the hook checked)
            return self.deny("reading the grader's tracer", self.trigger(), always=True)
        if ev == "compile":
            return self.on_compile(args[0], args[1])
        if ev == "exec":
            self.check_tracer()
            return self.on_exec(args[0])
        if ev == "open":
            return self.on_open(args[0], args[2] if _len(args) > 2 else 0)
        if ev == "object.__setattr__":
            return self.on_setattr(args[0], args[1], args[2])
        if ev in FRAME_EVENTS:
            f = self.trigger()
            while f is not None and f.f_code.co_filename in SKIP_FOR_FRAMES:
                f = f.f_back
            if f is not None and self.cls.kind(f.f_code)[0] == "student":
                return self.deny(f"reading the interpreter's frames ({ev})", f)
            return None
        if ev == "sys.settrace":
            return self.on_settrace(self.trigger())
        if ev == "sys.setprofile":               # a profiler sees every frame of the tests
            return self.deny("sys.setprofile()", self.trigger())
        if ev == "sys.addaudithook":
            return self.deny("adding an audit hook", self.trigger(), always=True)
        if ev in GC_EVENTS or ev in PROCESS_EVENTS:
            what = "starting a process" if ev in PROCESS_EVENTS else f"walking the interpreter's objects ({ev})"
            return self.deny(what, self.trigger())
        if ev.startswith("ctypes."):
            f = self.trigger()
            while f is not None and f.f_code.co_filename.startswith(self.ctypes_dir):
                f = f.f_back
            if f is not None and self.cls.kind(f.f_code)[0] == "student":
                return self.deny(f"ctypes ({ev})", f)
            return None
        if ev == "code.__new__":
            fn = args[1]
            if _type(fn) is str and (fn in self.cls.utils or fn.startswith(self.cls.cell)):
                return self.deny(f"making code that claims to be {fn}", self.trigger())
            return None
        if ev == "function.__new__":
            f = self.trigger()
            kind = self.cls.kind(args[0])[0]
            if kind == "utils" or kind == "trusted":
                return self.deny("making a function from the course library's or a locked cell's code", f)
            if self.cls.student_frame(f)[0] is not None:
                self.cls.remember_student_code(args[0])
        return None

    # ---------------------------------------------------------------------------------------
    # helpers

    def trigger(self):
        """The frame whose operation raised the audit event (just outside the hook)."""
        f = _getframe(1)
        while f is not None and f.f_code is not self.hook_code:
            f = f.f_back
        return f.f_back if f is not None else None

    def deny(self, what, frame, always=False):
        """Refuse and flag under a student frame (or always); the message the notebook sees."""
        sf, rec = self.cls.student_frame(frame)
        if sf is None and not always:
            return None
        where = sf or frame
        at = f" at {where.f_code.co_filename.rsplit('/', 1)[-1]}:{where.f_lineno}" if where is not None else ""
        self.flag("forbidden", what + at, rec if sf is not None else None)
        return f"the grader does not allow {what} in a graded notebook; this exercise goes to a human"

    def tests_for(self, rec):
        out = []
        for r in ((rec,) if rec is not None and rec.get("own") else (rec, self.cur_test)):
            ex = r.get("exercise") if r is not None else None
            if ex and ex not in out:
                out.append(ex)
        if not out and self.cur is not None and self.cur.get("exercise"):
            out.append(self.cur["exercise"])
        return out

    def flag(self, kind, what, rec):
        rec = rec if rec is not None else self.cur
        tests = self.tests_for(rec)
        key = (kind, what, tuple(tests))
        if key in self.sent:
            return
        self.sent.add(key)
        for t in tests:
            self.cell_flags[t] = self.cell_flags.get(t, 0) + 1
        self.out.send("flag", kind=kind, tests=",".join(tests), cell=(rec or UNKNOWN)["label"], what=what)

    def is_allowed(self, name) -> bool:
        ok = self.allowed_cache.get(name)
        if ok is None:
            ok = self.allowed_cache[name] = self.allowed(name) is not None
        return ok

    def check_value(self, value, rec, how, instances=True) -> None:
        for code in self.expose.codes(value, instances=instances):
            name = self.cls.qualname(code)
            if not self.is_allowed(name):
                self.flag("reference", f"{how} the course's {name}", rec)

    def verify(self, rec) -> None:
        """Everything the tests use is as it was, and no answer name leads to the library."""
        changed = self.snap.changed()
        ns = self.ns
        if ns is not None:
            changed += [f"the name `{n}` a locked cell defined" for n, v in self.protected.items()
                        if ns.get(n, _MISSING) is not v]
            for name, ex in self.answers.items():
                value = ns.get(name, _MISSING)
                if value is not _MISSING:
                    self.check_value(value, {"label": name, "exercise": ex, "own": True},   # its own exercise only
                                     f"the answer `{name}` is")
        for what in changed:
            self.tampered.add(what)
            self.flag("tamper", f"{what} was changed", rec)

    # ---------------------------------------------------------------------------------------
    # tracer events

    def on_call(self, frame):
        """Course-library code entered from outside the library: who asked for it?"""
        code = frame.f_code
        if code.co_name == "<module>":
            return
        kind, rec, _ = self.cls.decisive(frame.f_back)
        if kind == "student":
            name = self.cls.qualname(code)
            if not self.is_allowed(name):
                self.flag("reference", f"calls the course's {name}", rec)
        elif kind is None and not resumed(frame):   # (a suspended generator closed by the collector: no one's)
            self.flag("reference", f"{self.cls.qualname(code)} ran outside any notebook cell "
                                   "(in a thread or callback an answer started)", None)

    def on_return(self, frame, value):
        code = frame.f_code
        fn = code.co_filename
        if code.co_name == "<module>" and not fn.startswith(self.cls.cell):
            g = frame.f_globals                  # a module the tests use finished importing
            if _type(g.get("__name__")) is str and (fn in self.cls.utils or g["__name__"] in WATCHED):
                self.watch_imported(g["__name__"], g)
                return
        p = self.pieces.get(fn)
        if p is not None and code is p["code"]:  # a statement of a locked cell finished
            self.piece_returned(p, frame)
            return
        kind, rec = self.cls.kind(code)
        if kind != "student":
            return
        rec = rec or self.cur
        self.last_student, self.student_ran = rec, True
        if code.co_name == "<module>" and (fn in self.cls.files or fn.startswith(self.cls.cell)):
            if self.ns is None:                  # a statement of an answer cell finished
                self.ns = frame.f_globals
            self.verify(rec)
            self.remember_ns()
            return
        into, into_rec, into_frame = self.cls.decisive(frame.f_back)
        if into == "trusted" or into == "utils":   # an answer hands back to the course's code
            self.check_value(value, rec, "returns", instances=False)
            if ((into == "trusted" and into_rec["role"] == "test")
                    or self.cls.utils.get(into_frame.f_code.co_filename, "").startswith("utils.checks")):
                self.verify(rec)                   # ... to a test: is what it uses intact?

    def on_settrace(self, f):
        """Only the guard sets the tracer: in a new thread, or after a library tried one (debugpy
        does at import) or an interrupt landed in it (Python then drops it: refused, quietly)."""
        if self.installing or f is None:
            return None
        fn = f.f_code.co_filename
        if f.f_code is self.run_thread_code or (fn == self.thr_file and self.thr_ns.get("_trace_hook") is self.tracer):
            return None                          # a thread starting under the guard's tracer
        called = f.f_lasti >= 0 and f.f_code.co_code[f.f_lasti] in _CALL_OPCODES
        if called and self.cls.student_frame(f)[0] is not None:
            return self.deny("sys.settrace() (it would switch off the grader's tracer)", f)
        if called and self.importing(f):
            self.out.send("note", what=f"a library set a tracer while importing ({fn.rsplit('/', 1)[-1]})")
            return None                          # put back by check_tracer at the next event
        return "the grader's tracer stays in place"

    def importing(self, f) -> bool:
        while f is not None:
            if f.f_code.co_filename.startswith("<frozen importlib"):
                return True
            f = f.f_back
        return False

    def check_tracer(self) -> None:
        if not self.installing and _gettrace() is not self.tracer:
            self.installing = True
            _settrace(self.tracer)
            self.installing = False

    def on_setattr(self, obj, name, value):
        if _type(obj) is not _FunctionType or name not in ("__code__", "__defaults__", "__kwdefaults__"):
            return None
        mine = self.cls.kind(obj.__code__)[0] == "student"
        if name == "__code__" and _type(value) is _type(obj.__code__):
            mine = mine and self.cls.kind(value)[0] == "student"
        return None if mine else self.deny(f"changing {name} of {obj.__code__.co_qualname}", self.trigger())

    def on_open(self, path, flags):
        if _type(path) is bytes:
            path = path.decode("utf-8", "replace")
        if _type(path) is not str:
            return None
        if FD_PATH.match(path):
            return self.deny(f"opening {path}", self.trigger())
        if _type(flags) is int and flags & WRITE_FLAGS:
            full = _realpath(path if path[:1] == "/" else _getcwd() + "/" + path)
            if full in self.cls.utils or full.startswith(self.cls.lib[:-1]):
                return self.deny(f"writing to {full}", self.trigger())
        return None
