"""Kernel side of the guard: which code is whose, and the verdict of every locked cell.

ipykernel names each cell's code after a hash of its source (tools.guard.spec), so the
record of the cell about to run is known when IPython compiles it. A locked cell's source must
hash to what the grader expects, and each statement IPython runs must equal this file's own
compilation of that statement: an input transformer, AST transformer or patched shell that
changes a test cannot go unnoticed. A test cell "passes" when all its statements returned
normally (the tracer sees each return; an exception leaves the frame elsewhere than at
RETURN_VALUE). Mixed into ``events.Guard``; loaded into a private namespace like the rest.
"""

import __future__
import types

_compile, _Module, _Interactive, _ONLY_AST = compile, __import__("_ast").Module, __import__("_ast").Interactive, 0x400
_FUTURE = 0
for _n in __future__.all_feature_names:
    _FUTURE |= getattr(__future__, _n).compiler_flag
_FUTURE &= ~0x10                          # nested_scopes shares its bit with CO_NESTED
_sha256 = __import__("hashlib").sha256
_type, _len, _dict, _list, _issubclass, _open = type, len, dict, list, issubclass, open
_FunctionType, _ModuleType, _MethodType, _BuiltinType = (types.FunctionType, types.ModuleType, types.MethodType,
                                                         types.BuiltinFunctionType)
_Exception = Exception
_RETURN_VALUE = 83                        # dis.opmap["RETURN_VALUE"] in Python 3.11
_MISSING = object()
UNKNOWN = {"label": "a cell that is not in the notebook", "trusted": False, "role": "extra", "exercise": None}


def _protectable(name, value) -> bool:
    """A name a locked cell bound that tests go on using: a module, class or function."""
    t = _type(value)
    return (name[:1] != "_" and (t is _ModuleType or t is _FunctionType or t is _BuiltinType or t is _MethodType
                                 or _issubclass(t, type)))


class Cells:
    def on_compile(self, src, filename):
        """IPython compiles a cell (or an answer compiles code): learn whose code the file holds."""
        if _type(filename) is not str:
            return None
        if filename in self.cls.utils:
            f = self.trigger()
            if f is not None and not f.f_code.co_filename.startswith("<frozen importlib"):
                return self.deny(f"compiling code under the course library's file name {filename}", f)
            return None
        if not filename.startswith(self.cls.cell) or (_type(src) is not str and _type(src) is not bytes):
            return None
        f = self.trigger()
        sf, srec = self.cls.student_frame(f)
        prev = self.cls.files.get(filename)
        if sf is not None:                       # an answer compiling a cell (get_ipython().run_cell)
            if prev is not None and prev["trusted"]:
                return self.deny("compiling code under a locked cell's file name", f)
            if prev is None:
                self.cls.files[filename] = _dict(UNKNOWN, label="code an answer compiled",
                                                 exercise=(srec or self.cur or UNKNOWN)["exercise"])
            return None
        data = src if _type(src) is bytes else src.encode("utf-8", "surrogatepass")
        queue = self.by_file.get(filename[_len(self.cls.cell):])
        rec = (queue.pop(0) if _len(queue) > 1 else queue[0]) if queue else _dict(
            UNKNOWN, exercise=(self.cur or UNKNOWN)["exercise"])
        if rec["trusted"] and _sha256(data).hexdigest() != rec["sha"]:
            self.flag("tamper", f"locked cell {rec['label']} was changed before it compiled", self.last_student)
            rec = _dict(rec, trusted=False)
        if prev is not None and prev["trusted"] != rec["trusted"]:
            self.flag("tamper", f"cell {rec['label']} shares its file name with cell {prev['label']}",
                      rec if not rec["trusted"] else prev)
            rec = _dict(rec, trusted=False)
        self.cls.files[filename] = rec
        if rec["trusted"]:
            tree = _compile(src, filename, "exec", _ONLY_AST)
            self.pieces[filename] = {"rec": rec, "nodes": tree.body, "next": 0, "code": None, "bad": False}
        return None

    def on_exec(self, code):
        """Code starts running: a statement of a cell, a module, or code an answer made."""
        fn = code.co_filename
        f = self.trigger()
        p = self.pieces.get(fn)
        if p is not None:
            if self.cls.student_frame(f)[0] is not None:
                return self.deny("running a locked cell's code from an answer", f)
            self.start_piece(p, code)
            return None
        rec = self.cls.files.get(fn)
        if rec is not None or fn.startswith(self.cls.cell):
            if self.cls.student_frame(f)[0] is None:
                self.cur, self.cur_test = rec or UNKNOWN, None
            return None
        if fn in self.cls.utils:
            if f is not None and not f.f_code.co_filename.startswith("<frozen importlib") and not self.genuine(code):
                return self.deny(f"running code that claims to be {fn}", f)
            return None
        if self.cls.student_frame(f)[0] is not None:
            self.cls.remember_student_code(code)
        return None

    def genuine(self, code) -> bool:
        try:
            with _open(code.co_filename, "rb") as fh:
                return _compile(fh.read(), code.co_filename, "exec", code.co_flags & _FUTURE, True) == code
        except _Exception:
            return False

    def start_piece(self, p, code):
        rec, nodes, i = p["rec"], p["nodes"], p["next"]
        if i == 0:                               # the locked cell starts
            self.cur, self.cur_test = rec, (rec if rec["role"] == "test" else None)
            self.verify(self.last_student)
            self.student_ran = False
            self.out.send("start", cell=rec["label"])
        if i >= _len(nodes) or not self.same(code, nodes[i]):
            p["bad"] = True
            self.flag("tamper", f"the code run for locked cell {rec['label']} is not its source", self.last_student)
        p["code"], p["next"] = code, i + 1

    def same(self, code, node) -> bool:
        flags = code.co_flags & _FUTURE
        for mod, mode in ((_Module([node], []), "exec"), (_Interactive([node]), "single")):
            try:
                if _compile(mod, code.co_filename, mode, flags, True) == code:
                    return True
            except _Exception:
                pass
        return False

    def piece_returned(self, p, frame):
        """A statement of a locked cell finished, normally or by an exception."""
        if self.ns is None:
            self.ns = frame.f_globals
        code = p["code"]
        if code.co_code[frame.f_lasti] != _RETURN_VALUE:
            self.end_cell(p, False)              # it raised: IPython runs no more of the cell
        elif p["next"] >= _len(p["nodes"]):
            self.end_cell(p, True)

    def end_cell(self, p, ok):
        rec = p["rec"]
        p["code"] = None
        if self.student_ran:                     # answers ran inside this cell: what changed is theirs
            self.verify(self.last_student)
        self.snap.refresh(keep=self.tampered)    # else it is the course's (or a library it imported)
        if rec["role"] == "test":
            self.out.send("pass" if ok and not p["bad"] else "fail", test=rec["label"],
                          flags=self.cell_flags.get(rec["label"], 0))
            if self.cur_test is rec:
                self.cur_test = None
        elif self.ns is not None:                # what this locked cell defined, tests may use
            for name, value in _list(self.ns.items()):
                if self.ns_copy.get(name, _MISSING) is not value and _protectable(name, value):
                    self.protected[name] = value
        self.remember_ns()

    def remember_ns(self):
        if self.ns is not None:
            self.ns_copy = _dict(self.ns)
