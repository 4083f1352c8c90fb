"""Kernel side of the guard: whose code a frame runs, what the tests use, where an answer leads.

Loaded by ``kernel.py`` into a private namespace (never imported by name, never in
``sys.modules``). Every type and function used here at event time is bound when this file is
loaded, before any notebook code runs, so a notebook that patches the standard library or the
builtins cannot change what the guard does. Nothing here calls an object the notebook made:
classes and instances are read through the raw ``type`` descriptors, never ``getattr``.
"""

import functools
import types

UTILS, TRUSTED, STUDENT, LIBRARY, NEUTRAL = "utils", "trusted", "student", "library", "neutral"

_FunctionType, _MethodType, _ModuleType = types.FunctionType, types.MethodType, types.ModuleType
_BuiltinTypes = (types.BuiltinFunctionType, types.BuiltinMethodType, types.WrapperDescriptorType,
                 types.MethodWrapperType, types.MethodDescriptorType, types.ClassMethodDescriptorType)
_partial, _partial_func = functools.partial, functools.partial.__dict__["func"].__get__
_staticmethod, _classmethod, _property = staticmethod, classmethod, property
_class_dict = type.__dict__["__dict__"].__get__          # the class's own namespace, no metaclass involved
_class_mro = type.__dict__["__mro__"].__get__
_GetSet = type(type.__dict__["__dict__"])                # a C attribute of a C type (e.g. an instance __dict__)
_type, _len, _issubclass, _callable, _id = type, len, issubclass, callable, id
_MISSING = object()
# attributes the standard library adds to a class on its own: copyreg caches __slotnames__ on
# a class the first time one of its instances is copied or pickled (copy.deepcopy of a config)
BENIGN_ADDED = frozenset({"__slotnames__"})


class Classifier:
    """Whose code a frame runs: the course library's, a locked cell's, a student's, a library's
    (site-packages, the standard library) or nobody's in particular ('<string>' made by a library)."""

    def __init__(self, utils_files: dict, lib_prefixes: tuple, cell_prefix: str):
        self.utils = utils_files         # file name -> module name ("utils.losses")
        self.lib = lib_prefixes
        self.cell = cell_prefix          # every notebook cell's code has a file name under it
        self.files = {}                  # cell file name -> its record (learned as cells compile)
        self.student_codes = set()       # code made by exec/compile under a student frame

    def kind(self, code):
        fn = code.co_filename
        if fn in self.utils:
            return UTILS, None
        rec = self.files.get(fn)
        if rec is not None:
            return (TRUSTED if rec["trusted"] else STUDENT), rec
        if fn.startswith(self.cell):
            return STUDENT, None
        if fn[:1] == "<":
            return (STUDENT if code in self.student_codes else NEUTRAL), None
        if fn.startswith(self.lib):
            return LIBRARY, None
        return STUDENT, None             # a file the notebook wrote and imported, say

    def decisive(self, frame):
        """The first frame from `frame` up whose code is not a library's: (kind, record, frame);
        (None, None, None) when the stack holds no notebook or course code at all."""
        while frame is not None:
            k, rec = self.kind(frame.f_code)
            if k is not LIBRARY and k is not NEUTRAL:
                return k, rec, frame
            frame = frame.f_back
        return None, None, None

    def student_frame(self, frame):
        """(frame, record) of the nearest student frame from `frame` up, else (None, None)."""
        while frame is not None:
            k, rec = self.kind(frame.f_code)
            if k is STUDENT:
                return frame, rec
            frame = frame.f_back
        return None, None

    def remember_student_code(self, code, depth=0):
        """Code compiled or executed by a student frame counts as the student's, nested code too."""
        if depth > 20:
            return
        self.student_codes.add(code)
        for const in code.co_consts:
            if _type(const) is _type(code):
                self.remember_student_code(const, depth + 1)

    def qualname(self, code) -> str:
        return f"{self.utils.get(code.co_filename, code.co_filename)}:{code.co_qualname}"


class Snapshot:
    """The identity of everything the tests use; :meth:`changed` names what is no longer there.

    A module contributes its functions, classes and submodules (its data may change as it
    caches); a class contributes every attribute and its set of names (a new attribute can
    shadow one of a base class); a plain mapping (``sys.modules``) the entries asked for.
    """

    def __init__(self, lib_prefixes: tuple):
        self.entries = []                # (label, mapping, ((key, value), ...), n_keys or -1)
        self.seen = set()                # (mapping id, label) already watched
        self.lib = tuple(p for p in lib_prefixes if p != "<")   # installed files only

    def add(self, label, mapping, items, exact=False):
        key = (_id(mapping), label)
        if key in self.seen:
            return
        self.seen.add(key)
        self.entries.append((label, mapping, tuple(items), _len(mapping) if exact else -1))

    def add_module(self, name, namespace, exclude=frozenset()):
        items = [(k, v) for k, v in namespace.items() if _type(k) is str and k not in exclude
                 and (_callable(v) or _type(v) is _ModuleType)]
        self.add(name, namespace, items)
        for k, v in items:               # the classes a module defines
            if _issubclass(_type(v), type) and _class_dict(v).get("__module__") == name:
                self.add_class(f"{name}.{k}", v)

    def add_class(self, label, cls):
        ns = _class_dict(cls)
        self.add(label, ns, list(ns.items()), exact=True)

    def refresh(self, keep=frozenset()) -> None:
        """Accept what changed since the snapshot (a locked cell ran: what it and the libraries it
        imported did is the course's doing), except the entries in `keep` (already flagged)."""
        fresh = []
        for label, mapping, items, n in self.entries:
            get = mapping.get
            items = tuple((k, v if f"{label}.{k}" in keep else get(k, v)) for k, v in items)
            fresh.append((label, mapping, items, -1 if n < 0 else _len(mapping)))
        self.entries = fresh

    def changed(self) -> list:
        out = []
        for label, mapping, items, n in self.entries:
            get = mapping.get
            for k, v in items:
                new = get(k, _MISSING)
                if new is not v and not self._library_wrapper(new, v):
                    out.append(f"{label}.{k}")
            if n >= 0 and _len(mapping) != n:
                known = {k for k, _ in items}
                out += [f"{label}.{k} (added)" for k in list(mapping) if k not in known and k not in BENIGN_ADDED]
        return out


    def _library_wrapper(self, new, old) -> bool:
        """A library re-wrapping a function it owns (torch._dynamo wraps torch.manual_seed)."""
        while _type(new) is _FunctionType and new.__code__.co_filename.startswith(self.lib):
            new = new.__dict__.get("__wrapped__")
            if new is old:
                return True
        return False


class Exposure:
    """What course-library code an object runs when the tests call it, with no student frame in
    between: a function whose code is the library's, a partial, bound or static method of one, a
    class whose methods (its own or inherited) are, an instance of such a class, and containers
    of these. A plain answer (a function written in the notebook) leads nowhere: its own frame
    is the student's, and the tracer judges what it calls."""

    def __init__(self, classifier: Classifier):
        self.cls = classifier
        self.skip = [object]             # big library classes with no course code (nn.Module, Tensor)

    def codes(self, obj, instances=True, limit=400) -> list:
        """Course-library code objects `obj` runs when called or used (instances: their class's
        methods too; a returned instance of a class the chapter hands out is not the answer's)."""
        found, seen, todo = [], set(), [(obj, 3)]
        while todo and limit > 0:
            obj, depth = todo.pop()
            limit -= 1
            if _id(obj) in seen or depth < 0:
                continue
            seen.add(_id(obj))
            t = _type(obj)
            if t is _FunctionType:
                code = obj.__code__
                if code.co_filename in self.cls.utils:
                    found.append(code)
            elif t is _MethodType or t is _staticmethod or t is _classmethod:
                todo.append((obj.__func__, depth))
            elif t is _property:
                todo += [(f, depth) for f in (obj.fget, obj.fset, obj.fdel) if f is not None]
            elif _issubclass(t, _partial):
                todo.append((_partial_func(obj), depth))
            elif t is dict:
                todo += [(v, depth - 1) for v in list(dict.values(obj))[:200]]
            elif t is list or t is tuple or t is set or t is frozenset:
                todo += [(v, depth - 1) for v in list(obj)[:200]]
            elif t is _ModuleType or _issubclass(t, _BuiltinTypes) or t is str or t is bytes:
                continue
            elif _issubclass(t, type):
                for c in _class_mro(obj):
                    if not self._skipped(c):
                        todo += [(v, depth - 1) for v in list(_class_dict(c).values())]
            elif instances:              # an instance: its class, and what it holds itself
                todo.append((t, depth))
                inst = self._instance_dict(obj, t)
                if inst is not None:
                    todo += [(v, depth - 1) for v in list(dict.values(inst))[:200]
                             if _type(v) is _FunctionType or _type(v) is _MethodType or _issubclass(_type(v), _partial)]
        return found

    def _skipped(self, c) -> bool:
        for k in self.skip:
            if c is k:
                return True
        return False

    def _instance_dict(self, obj, t):
        for c in _class_mro(t):
            d = _class_dict(c).get("__dict__")
            if d is not None:
                return d.__get__(obj, t) if _type(d) is _GetSet else None
        return None
