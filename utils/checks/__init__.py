"""Student-facing checks: each names the likely mistake instead of printing a bare diff.

One module per chapter (`utils.checks.ch01`, ...). Everything shared lives here: comparing
tensors with a helpful message, and making sure an answer is the student's own code rather
than a call into the course's reference implementation (which would pass every test).
"""

from __future__ import annotations

import types

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
