"""Student-facing checks: each names the likely mistake instead of printing a bare diff.

One module per chapter (`utils.checks.ch01`, ...). Everything shared lives here: comparing
tensors with a helpful message, and making sure an answer is the student's own code rather
than a call into the course's reference implementation (which would pass every test).
"""

from __future__ import annotations

import types
from typing import NamedTuple

import torch

REFERENCE_PACKAGES = ("utils.",)  # the course library: reference solutions live here
ALLOWED_MODULES = ("utils.runtime", "utils.checks", "utils.plots")  # helpers an answer may use


class CheckFailed(AssertionError):
    """A visible check failed; the message says what is probably wrong."""


def fail(message: str) -> None:
    raise CheckFailed(message)


def assert_close(actual, expected, hint: str, *, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """`actual ≈ expected` (shape first), else fail with `hint` and the largest difference."""
    actual = torch.as_tensor(actual).detach().float().cpu()
    expected = torch.as_tensor(expected).detach().float().cpu()
    if actual.shape != expected.shape:
        fail(f"wrong shape: got {tuple(actual.shape)}, expected {tuple(expected.shape)}. {hint}")
    if not torch.isfinite(actual).all():
        fail(f"your result contains NaN or inf. {hint}")
    if not torch.allclose(actual, expected, atol=atol, rtol=rtol):
        worst = (actual - expected).abs().max().item()
        fail(f"values differ from the expected ones (max |difference| {worst:.3g}). {hint}")


# ---- running the student's code: a raw exception becomes a message ----------------------------
# (pattern in the exception's text, what it usually means). First match wins.
_MEANINGS: tuple[tuple[type, str, str], ...] = (
    (RuntimeError, r"shapes cannot be multiplied|size mismatch|must match the size of tensor|"
                   r"shape .* is invalid for input|inconsistent tensor size|expanded size|"
                   r"Expected size for first two dimensions|batch1 and batch2|einsum\(\)",
     "Two tensors' shapes do not line up inside your function: usually a weight used without "
     "transposing it, a reduction over the wrong axis earlier on, or a reshape with the wrong sizes."),
    (IndexError, r"Dimension out of range",
     "You used an axis the tensor does not have: count the axes of each input (negative axes, -1 = "
     "last, are safer than numbers that assume a batch axis)."),
    (IndexError, r"out of bounds|out of range|index",
     "An index is out of range: an off-by-one, or an index into the wrong axis."),
    (AttributeError, r"'(float|int|bool|NoneType)' object has no attribute",
     "A plain Python number (or None) is used where a tensor is expected: `.item()` or `float()` "
     "too early, a missing `return`, or a reduction that gave a number instead of a tensor."),
    (AttributeError, r"'(tuple|list|dict)' object has no attribute",
     "A tuple, list or dict is used where a tensor is expected: check what the function you "
     "called returns (several values?) and pick the right element."),
    (AttributeError, r"object has no attribute",
     "An attribute or method that this object does not have: check its name and the object's type."),
    (TypeError, r"missing \d+ required|unexpected keyword|positional argument",
     "Your function's signature differs from the stub's: keep the parameter names, their order "
     "and their defaults exactly as given."),
    (TypeError, r"not subscriptable|not iterable|unsupported operand|must be Tensor|"
                r"not supported between|expected Tensor",
     "An operation got a value of the wrong type (e.g. None, a tuple or a Python list where a "
     "tensor belongs)."),
    (RuntimeError, r"expected scalar type|dtype|Found dtype|result type",
     "Tensors of different dtypes meet (e.g. an integer or boolean tensor and a float one): "
     "convert with `.float()` where needed."),
    (RuntimeError, r"same device|on device|Expected all tensors",
     "Tensors on different devices meet: create new tensors on the input's device "
     "(`torch.zeros(..., device=x.device)`) or move them with `.to(x.device)`."),
    (RuntimeError, r"leaf Variable that requires grad.*in-place|a leaf Variable",
     "An in-place change of a tensor that requires grad (a parameter): do it inside "
     "`with torch.no_grad():`, or work on a copy."),
    (RuntimeError, r"modified by an inplace operation",
     "An in-place operation (`x -= ...`, `x += ...`, `relu_()`, `x[...] = ...`) overwrote a tensor "
     "autograd still needed: use the out-of-place form (`x = x - ...`)."),
    (RuntimeError, r"does not require grad|does not have a grad_fn",
     "Something is cut off from autograd: `.detach()`, `.item()`, `torch.no_grad()` or a tensor "
     "rebuilt from plain numbers breaks the graph."),
    (ZeroDivisionError, r"",
     "A division by zero: a count or a norm that can be 0 needs a guard (e.g. `.clamp_min(1e-8)`)."),
    (ValueError, r"values to unpack",
     "Unpacking the wrong number of values: check how many things the function you called "
     "returns."),
    (KeyError, r"", "A dictionary key that does not exist: check the key names the exercise asks for."),
    (RecursionError, r"", "Your function calls itself without end (a method calling itself by mistake?)."),
)

_MEANINGS += (
    (RuntimeError, r"Boolean value of Tensor with more than one",
     "Python's `if`, `and`, `or`, `max()` or `min()` got a tensor of several values: use the elementwise "
     "torch forms (`torch.where`, `.clamp(min=...)`, `torch.maximum`, `&`, `|`)."),
)


def explain(err: BaseException) -> str:
    """What an exception raised inside an answer usually means, in the course's words."""
    import re

    text = str(err)
    for kind, pattern, meaning in _MEANINGS:
        if isinstance(err, kind) and re.search(pattern, text, re.IGNORECASE | re.DOTALL):
            return meaning
    return "Read the error: the check could not run your code to the end."


def call(fn, *args, what: str | None = None, name: str | None = None, **kwargs):
    """Run the student's `fn(*args, **kwargs)`; an exception comes back as a CheckFailed that says
    which input it failed on (`what`, e.g. "a batch of 4 tokens with d_in = 3") and what such an
    error usually means, instead of a traceback from inside the student's code."""
    name = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "your code")
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except NotImplementedError:
        fail(f"`{name}` still raises NotImplementedError: replace `raise NotImplementedError()` in the "
             "answer cell with your code and run that cell again.")
    except Exception as err:  # noqa: BLE001 - any error in the student's code becomes a message
        first = (str(err).strip().splitlines() or [""])[0][:300]
        on = f" on {what}" if what else ""
        fail(f"`{name}` raised {type(err).__name__}{on}: {first}\n{explain(err)}")


def tensor_result(value, name: str, *, shape: tuple[int, ...] | None = None, what: str = "") -> torch.Tensor:
    """`value` as returned by the student's `name`, checked to be a tensor (of `shape`), with a
    message for the usual wrong kinds of return value."""
    if value is None:
        fail(f"`{name}` returned None: is the `return` statement missing?")
    if isinstance(value, (tuple, list)):
        fail(f"`{name}` returned a {type(value).__name__} of {len(value)} values; it should return one tensor"
             + (f" of shape {tuple(shape)}" if shape is not None else "") + ".")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        fail(f"`{name}` returned a Python {type(value).__name__}; return a tensor (keep the torch "
             "operations; `.item()`/`float()` turn a tensor into a number and cut it off from autograd).")
    if not isinstance(value, torch.Tensor):
        fail(f"`{name}` returned a {type(value).__name__}; it should return a torch tensor.")
    if shape is not None and tuple(value.shape) != tuple(shape):
        on = f" for {what}" if what else ""
        fail(f"`{name}` returned shape {tuple(value.shape)}{on}; expected {tuple(shape)}.")
    return value


class Snapshot(NamedTuple):
    value: torch.Tensor  # a copy of the input's data
    requires_grad: bool
    had_grad: bool


def snapshot(**tensors: torch.Tensor) -> dict[str, Snapshot]:
    """Copies of the inputs a check passes in, to compare after the call (`assert_untouched`)."""
    return {k: Snapshot(v.detach().clone(), v.requires_grad, v.grad is not None)
            for k, v in tensors.items() if isinstance(v, torch.Tensor)}


def assert_untouched(before: dict[str, Snapshot], name: str, **tensors: torch.Tensor) -> None:
    """Fail when the student's `name` changed one of its inputs in place, or left autograd state on it."""
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor) or k not in before:
            continue
        b = before[k]
        if v.shape != b.value.shape or not torch.equal(v.detach(), b.value):
            fail(f"`{name}` changed its input `{k}` in place (an in-place operation such as `{k} -= ...`, "
                 f"`{k}.relu_()` or `{k}[...] = ...`): the caller's data must stay as it was; compute on a "
                 f"new tensor (`{k} = {k} - ...`, or `{k}.clone()` first).")
        if v.requires_grad and not b.requires_grad:
            fail(f"`{name}` switched on `requires_grad` for its input `{k}` (`{k}.requires_grad_()`): work on a "
                 f"copy (`{k}.detach().clone().requires_grad_()`) so the caller's tensor is left as it was.")
        if v.grad is not None and not b.had_grad:
            fail(f"`{name}` left a `.grad` on its input `{k}`: compute gradients of a copy so the caller's tensor "
                 "stays clean and repeated calls do not accumulate.")


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _functions_of(obj) -> list[types.FunctionType]:
    if isinstance(obj, type):
        return [f for f in vars(obj).values() if isinstance(f, types.FunctionType)]
    if isinstance(obj, types.MethodType):
        return [obj.__func__]
    if isinstance(obj, types.FunctionType):
        return [obj]
    fail(f"expected a function or a class, got {type(obj).__name__}.")


def _is_reference(ident: str, value) -> str | None:
    """The reference module `ident` leads to, or None when it is not the course library."""
    if ident == "utils" or (ident.startswith("utils.") and not ident.startswith(ALLOWED_MODULES)):
        return ident  # `import utils...` inside the answer
    if isinstance(value, types.ModuleType):
        module = value.__name__
    else:
        module = getattr(value, "__module__", None)
    if not isinstance(module, str) or not (module + ".").startswith(REFERENCE_PACKAGES):
        return None
    return None if module.startswith(ALLOWED_MODULES) else module


def assert_own_code(obj, name: str | None = None) -> None:
    """Fail when `obj` is, or merely calls, the course's reference implementation.

    The answer must be defined in the notebook and must not reach any `utils` module other
    than the helpers a chapter lets you use (runtime, checks, plots).
    """
    name = name or getattr(obj, "__name__", repr(obj))
    if getattr(obj, "__module__", "__main__") != "__main__":
        fail(f"`{name}` comes from {obj.__module__}, not from your notebook: write your own "
             "implementation in the answer cell (the course's reference does not count).")
    for fn in _functions_of(obj):
        for code in _code_objects(fn.__code__):
            for ident in code.co_names:
                ref = _is_reference(ident, fn.__globals__.get(ident))
                if ref:
                    fail(f"`{name}` uses `{ident}` from the course library ({ref}); "
                         "the exercise asks for your own code, so this answer scores zero.")


# ---- naming a mistake by its value ------------------------------------------------------------
def matches(actual, value, *, atol: float, rtol: float = 0.0) -> bool:
    """`actual` has `value`'s shape and is close to it (compared in float64, on the CPU)."""
    a = torch.as_tensor(actual).detach().cpu().double()
    b = torch.as_tensor(value).detach().cpu().double()
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=rtol))


def name_mistake(actual, variants, *, atol: float, rtol: float = 0.0) -> None:
    """Fail with the message of the first `(value, message)` in `variants` that `actual` matches: the
    values a check computes for each common mistake, most specific first."""
    for value, message in variants:
        if matches(actual, value, atol=atol, rtol=rtol):
            fail(message)
