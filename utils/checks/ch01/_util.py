"""Helpers the chapter 01 checks share: seeded generators, running an answer with a chapter hint,
and naming the first wrong variant an answer matches."""

from __future__ import annotations

import re

import torch

from utils.checks import CheckFailed, call, fail

SHAPE_ERROR = re.compile(r"must match the size|shapes cannot be multiplied|size mismatch|expanded size|"
                         r"invalid for input|Dimension out of range|operands could not|einsum|does not match", re.I)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run(fn, *args, what: str, name: str, on_shape_error: str = "", on_error: str = "", **kwargs):
    """`call`, with a chapter hint added when the answer raised (`on_error`) or hit a shape error
    (`on_shape_error`)."""
    try:
        return call(fn, *args, what=what, name=name, **kwargs)
    except CheckFailed as err:
        hint = on_error or (on_shape_error if SHAPE_ERROR.search(str(err)) else "")
        if hint:
            raise CheckFailed(f"{err}\n{hint}") from None
        raise


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    a, b = a.detach().float(), b.detach().float()
    return a.shape == b.shape and bool(torch.isfinite(a).all()) and torch.allclose(a, b, atol=atol, rtol=1e-4)


def name_variant(got: torch.Tensor, variants) -> None:
    """Fail with the message of the first (value, message) in `variants` that `got` matches."""
    for value, message in variants:
        if close(got, value):
            fail(message)
