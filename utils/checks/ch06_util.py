"""Small helpers of chapter 06's checks (and of its hidden tests): reading what an answer returned,
running it with chapter-specific hints, and building stand-in SAELens SAEs on the right device."""

from __future__ import annotations

import re

import torch

from utils.activations import module_device
from utils.checks import CheckFailed, call, fail


def run(fn, *args, what: str | None = None, name: str | None = None, hints=(), **kwargs):
    """`call(fn, *args, **kwargs)`; when it fails, a hint whose pattern matches the error replaces the
    generic explanation (e.g. a KeyError on a `hook_sae_*` cache key: the SAE was not attached)."""
    try:
        return call(fn, *args, what=what, name=name, **kwargs)
    except CheckFailed as err:
        text = str(err)
        for pattern, hint in hints:
            if re.search(pattern, text, re.S):
                fail(f"{text.splitlines()[0]}\n{hint}")
        raise


def _flat(x, kind):
    """A flat list of `kind` from a list/tuple/1-D tensor/array of numbers, else None."""
    if isinstance(x, torch.Tensor):
        if x.ndim != 1:
            return None
        x = x.tolist()
    elif hasattr(x, "tolist") and getattr(x, "ndim", 1) == 1:
        x = x.tolist()
    if not isinstance(x, (list, tuple)):
        return None
    out = []
    for v in x:
        if isinstance(v, torch.Tensor) and v.ndim == 0:
            v = v.item()
        elif hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        if kind is int and (isinstance(v, float) and not v.is_integer()):
            return None
        out.append(kind(v))
    return out


def as_ints(x) -> list[int] | None:
    """`x` (a list, tuple or 1-D tensor of whole numbers) as a list of ints; None when it is not one."""
    return _flat(x, int)


def as_floats(x) -> list[float] | None:
    """`x` (a list, tuple or 1-D tensor of numbers) as a list of floats; None when it is not one."""
    return _flat(x, float)


def standard_sae(W_enc, b_enc, W_dec, b_dec, *, like, cls=None):
    """A SAELens `StandardSAE` (or subclass `cls`) with these weights, reading the hook `like` reads, on
    `like`'s device. Built under a forked RNG: SAELens initialises weights randomly before we copy ours in,
    and a check must not move the notebook's random stream."""
    from sae_lens import StandardSAE, StandardSAEConfig

    cls = cls or StandardSAE
    d_in, d_sae = W_enc.shape
    with torch.random.fork_rng(devices=[]):
        sae = cls(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=like.cfg.metadata))
    with torch.no_grad():
        for p, v in ((sae.W_enc, W_enc), (sae.b_enc, b_enc), (sae.W_dec, W_dec), (sae.b_dec, b_dec)):
            p.copy_(v)
    return sae.to(module_device(like))


def heads(examples, n: int = 3, size: int = 6) -> list[tuple] | None:
    """The first `n` fields of each example (tuples of `size` fields), ints and floats as such; None when
    `examples` is not a list of such tuples (for hidden tests: a wrong kind of answer fails an assert)."""
    if not isinstance(examples, (list, tuple)):
        return None
    out = []
    for e in examples:
        if not isinstance(e, (list, tuple)) or len(e) != size:
            return None
        vals = as_floats(list(e[:n]))
        if vals is None:
            return None
        out.append(tuple(int(v) if i < 2 and float(v).is_integer() else v for i, v in enumerate(vals)))
    return out
