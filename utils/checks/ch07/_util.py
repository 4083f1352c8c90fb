"""Helpers the chapter 07 checks share: seeded generators, running an answer (with a chapter hint
on an error, and a check that its inputs are left as they were), and naming the first mistaken
variant an answer matches."""

from __future__ import annotations

import re

import torch

from utils.checks import CheckFailed, assert_untouched, call, fail, matches, snapshot


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run(fn, *args, what: str, name: str, hint: tuple[str, str] | None = None, **inputs):
    """`call(fn, *args)` on `what`, with `hint[1]` added when the error's message matches the regex
    `hint[0]`; then fail if the answer changed one of `inputs` (tensors among `args`) in place."""
    before = snapshot(**inputs)
    try:
        out = call(fn, *args, what=what, name=name)
    except CheckFailed as err:
        if hint and re.search(hint[0], str(err), re.I):
            raise CheckFailed(f"{err}\n{hint[1]}") from None
        raise
    assert_untouched(before, name, **inputs)
    return out


def name_variant(got, want, variants, *, atol: float, rtol: float = 0.0) -> None:
    """Fail with the message of the first `(value, message)` that `got` matches, skipping variants that
    coincide with the right value `want` on these inputs (they are not mistakes here)."""
    for value, message in variants:
        if matches(got, value, atol=atol, rtol=rtol) and not matches(want, value, atol=atol, rtol=rtol):
            fail(message)
