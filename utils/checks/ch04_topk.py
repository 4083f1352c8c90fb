"""Visible checks for chapter 04, exercises 7-9: TopK, BatchTopK and feature splitting.

The expected selections are computed here from the definitions, and so is what each usual slip
selects instead; the inputs make them differ: negative pre-activations larger in magnitude than
the kept ones, rows with fewer positive values than k, ties at the k-th value, a 3-D input
(batch, seq, d_sae), tokens of very different scales (BatchTopK), decoder rows that are not
unit-norm, an anti-aligned latent, and a cosine exactly at the threshold (find_splits).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from utils.checks import (CheckFailed, assert_close, assert_own_code, assert_untouched, call, fail,
                          name_mistake_besides, snapshot, tensor_result)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _topk(z: torch.Tensor, k: int, *, by: torch.Tensor | None = None) -> torch.Tensor:
    """ReLU(TopK_k(z)) along the last dimension, chosen by `by` (default z itself)."""
    idx = (z if by is None else by).topk(k, dim=-1).indices
    return torch.zeros_like(z).scatter(-1, idx, z.gather(-1, idx).relu())


def _run(fn, name: str, pre: torch.Tensor, k: int, what: str) -> torch.Tensor:
    """fn(pre, k) through `call`, checked to leave `pre` alone and to return a tensor shaped like it."""
    before = snapshot(pre_acts=pre)
    out = call(fn, pre, k, what=what, name=name)
    assert_untouched(before, name, pre_acts=pre)
    out = tensor_result(out, name)
    if out.shape != pre.shape:
        if out.dim() == 1 and out.numel() == pre.numel():
            fail(f"`{name}` returned a flat tensor of {out.numel()} values: reshape it back to pre_acts' shape "
                 f"{tuple(pre.shape)}.")
        if out.shape[-1] == k:
            fail(f"`{name}` returned only the k selected values (shape {tuple(out.shape)}): return a dense tensor "
                 f"shaped like pre_acts {tuple(pre.shape)}, zeros except the kept values (scatter them back).")
        fail(f"`{name}` returned shape {tuple(out.shape)} for {what}; return a tensor shaped like pre_acts "
             f"{tuple(pre.shape)}.")
    return out


def _ties(out: torch.Tensor, want_count: int, name: str, what: str) -> None:
    n = int((out != 0).sum())
    if n > want_count:
        fail(f"`{name}` kept {n} values for {what}, where exactly {want_count} must be kept: a threshold "
             "`>= the k-th value` keeps every tied value; select indices with .topk (which keeps exactly k) "
             "instead of comparing with a threshold.")


# ---- exercise 7: TopK ----------------------------------------------------------------------------
def check_topk_activation(fn) -> None:
    assert_own_code(fn)
    pre = 2 * torch.randn(7, 20, generator=_gen(11))  # signed: large negative values tempt |z|
    what = "pre_acts [7, 20] (signed), k = 4"
    out = _run(fn, "topk_activation", pre, 4, what)
    counts = (out != 0).sum(-1)
    along_tokens = _topk(pre.T, 4).T  # ReLU(TopK) of each latent across the 7 tokens
    if torch.allclose(out, along_tokens) or (torch.allclose(out.relu(), along_tokens)
                                             and ((out != 0).sum(0) == 4).all()):
        fail("you selected along dim 0 (across tokens): TopK keeps the k largest of each token, along the "
             "last dimension (dim=-1).")
    if (counts == 5).all():
        fail("k + 1 latents kept per token: off by one (the k-th largest is at index k − 1 of a descending sort, "
             "or just use .topk(k)).")
    name_mistake_besides(out, _topk(pre, 4), [
        (_topk(pre, 4, by=pre.abs()), "you picked the k largest |z| (by magnitude); TopK keeps the k largest "
                                       "values z themselves."),
        (pre.abs() * (_topk(pre, 4, by=pre.abs()) != 0), "you picked the k largest |z| and kept |z|; TopK keeps "
                                                         "the k largest values z themselves."),
        (pre * (_topk(pre, 4) != 0), "negative values were kept: apply a ReLU to the selected values (TopK then "
                                     "ReLU)."),
    ], atol=1e-6)
    if not (counts == 4).all():
        fail(f"active latents per token {counts.tolist()}; expected exactly k = 4 each (TopK over the last "
             "dimension, per token).")
    assert_close(out, _topk(pre, 4), "keep the k largest pre-activations of each token at their values, zero the rest.")
    mixed = torch.tensor([[3.0, -1.0, -2.0, 0.5], [-0.5, -0.1, -3.0, -2.0]])
    out = _run(fn, "topk_activation", mixed, 2, "a token with only negative pre-activations, k = 2")
    if (out < 0).any():
        fail("negative values were kept: apply a ReLU to the selected values (TopK then ReLU).")
    assert_close(out, _topk(mixed, 2), "f = ReLU(TopK_k(z)): the top k per token, negatives set to 0.")
    tie = torch.tensor([[3.0, 2.0, 2.0, 1.0, -4.0]])
    what = "a token (3, 2, 2, 1, −4) with a tie at the k-th value, k = 2"
    out = _run(fn, "topk_activation", tie, 2, what)
    _ties(out, 2, "topk_activation", what)
    assert_close(out.sort(-1).values, torch.tensor([[0.0, 0.0, 0.0, 2.0, 3.0]]), f"for {what} keep 3 and one 2.")
    pre3 = torch.randn(2, 3, 20, generator=_gen(13))
    what = "a 3-D input (batch 2, seq 3, d_sae 20), k = 4"
    try:
        out = _run(fn, "topk_activation", pre3, 4, what)
    except CheckFailed as e:
        if re.search(r"shape|out of range|index", str(e)):
            fail("inputs may have extra leading dimensions (batch, seq, d_sae): select along the last one "
                 "(dim=-1) and return the input's shape.\n" + str(e))
        raise
    assert_close(out, _topk(pre3, 4), "with leading dimensions (batch, seq, d_sae), select along the last one "
                 "(dim=-1), per token.")
    print("topk_activation keeps exactly k per token.")


# ---- exercise 8: BatchTopK -----------------------------------------------------------------------
def _batch_topk(z: torch.Tensor, n: int, *, by: torch.Tensor | None = None, relu: bool = True) -> torch.Tensor:
    """The n largest values of ReLU(z) (or of z) over the flattened batch, chosen by `by`."""
    flat = z.relu().reshape(-1) if relu else z.reshape(-1)
    idx = (flat if by is None else by.reshape(-1)).topk(n).indices
    return torch.zeros_like(flat).scatter(0, idx, flat[idx]).reshape(z.shape)


def check_batch_topk_activation(fn) -> None:
    assert_own_code(fn)
    pre = torch.randn(8, 30, generator=_gen(12)) * torch.linspace(0.1, 3, 8)[:, None]  # some tokens "harder"
    what, B, k = "pre_acts [8, 30] (8 tokens of different scales), k = 3", 8, 3
    out = _run(fn, "batch_topk_activation", pre, k, what)
    per_token, total = (out != 0).sum(-1), int((out != 0).sum())
    if (per_token == k).all():
        fail("every token has exactly k active: that is TopK. BatchTopK keeps the k·B largest values "
             "of the whole batch (flatten it), so tokens get different numbers of latents.")
    if total == k:
        fail(f"{total} activations kept in the whole batch: keep k · B = {k * B}, k per token on average "
             "(B = pre_acts.shape[0], the number of tokens).")
    if total == k * pre.shape[1]:
        fail(f"{total} activations kept: B is the number of tokens, pre_acts.shape[0] = {B}, not d_sae "
             f"(pre_acts.shape[1]); keep k · B = {k * B}.")
    name_mistake_besides(out, _batch_topk(pre, k * B), [
        (_batch_topk(pre, k * B, by=pre.abs(), relu=False).relu(),
         "you picked the k·B largest |z| (by magnitude); BatchTopK keeps the k·B largest values of ReLU(z)."),
    ], atol=1e-6)
    if total != k * B:
        fail(f"{total} activations kept in the batch, expected k · B = {k * B} (B = pre_acts.shape[0] tokens).")
    assert_close(out, _batch_topk(pre, k * B), "keep the k·B largest values of ReLU(z) across the flattened batch, "
                 "at their values; zero the rest.")
    few = torch.tensor([[1.0, -1.0], [-2.0, -0.5]])
    out = _run(fn, "batch_topk_activation", few, 1, "a batch with one positive value, k = 1")
    if (out < 0).any():
        fail("negative values were kept: take the ReLU before choosing the k·B largest.")
    assert_close(out, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "the k·B largest values of ReLU(z): with one "
                 "positive value, only it survives.")
    tie = torch.tensor([[3.0, 1.0], [1.0, 0.5]])
    what = "a batch ((3, 1), (1, 0.5)) with a tie at the k·B-th value, k = 1"
    out = _run(fn, "batch_topk_activation", tie, 1, what)
    _ties(out, 2, "batch_topk_activation", what)
    assert_close(out.reshape(-1).sort().values, torch.tensor([0.0, 0.0, 1.0, 3.0]), f"for {what} keep 3 and one 1.")
    print("batch_topk_activation keeps k·B activations per batch, unevenly across tokens.")


# ---- exercise 9: feature splitting ---------------------------------------------------------------
def _splits(cos: torch.Tensor, threshold: float, *, strict: bool = True, descending: bool = True) -> dict:
    """{small latent: [large latents whose best match it is, cosine above threshold, sorted]}."""
    best_cos, best = cos.max(0)
    out = {i: [] for i in range(cos.shape[0])}
    for j in best_cos.argsort(descending=descending).tolist():
        if best_cos[j] > threshold or (not strict and best_cos[j] >= threshold):
            out[int(best[j])].append(j)
    return out


def _as_splits(got, name: str, n_small: int, n_large: int) -> dict[int, list[int]]:
    if not isinstance(got, dict):
        fail(f"`{name}` returned a {type(got).__name__}; return a dict {{small latent: [large latents]}}.")
    clean = {}
    for key, kids in got.items():
        if isinstance(key, torch.Tensor) or not isinstance(key, int):
            fail(f"`{name}` has a key {key!r} of type {type(key).__name__}: use Python ints (int(i)) as keys, "
                 "so splits[0] finds them.")
        if not isinstance(kids, list):
            fail(f"`{name}`[{key}] is a {type(kids).__name__}; each value is a list of large-latent indices.")
        clean[key] = [int(j) for j in kids]
    if set(clean) < set(range(n_small)):
        fail(f"keys {sorted(clean)}: every small latent (0 … {n_small - 1}) must appear as a key, with an empty "
             "list when nothing matches it.")
    if set(clean) != set(range(n_small)):
        fail(f"keys {sorted(clean)}: the keys are the small latents' indices, 0 … {n_small - 1} (rows of W_small).")
    return clean


def check_find_splits(fn) -> None:
    assert_own_code(fn)
    small = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # latent 1 has norm 2: normalise!
    large = torch.tensor([[0.3, 0.03, 0.0], [0.0, 0.0, 1.0], [0.1, 0.9, 0.0], [0.75, 0.65, 0.0], [0.0, 3.0, 0.3],
                          [0.05, -2.0, 0.1]])  # 5 is anti-aligned with small latent 1
    what = "W_small [2, 3] (rows of norms 1 and 2), W_large [6, 3], threshold 0.5"
    before = snapshot(W_small=small, W_large=large)
    got = call(fn, small, large, 0.5, what=what, name="find_splits")
    assert_untouched(before, "find_splits", W_small=small, W_large=large)
    got = _as_splits(got, "find_splits", 2, 6)
    cos = F.normalize(small, dim=-1) @ F.normalize(large, dim=-1).T
    want = _splits(cos, 0.5)
    if got != want:
        raw = small @ large.T
        every = {i: [j for j in cos[i].argsort(descending=True).tolist() if cos[i, j] > 0.5] for i in range(2)}
        best_per_small = {i: ([int(cos[i].argmax())] if cos[i].max() > 0.5 else []) for i in range(2)}
        for value, message in (
            (_splits(cos.abs(), 0.5), "large latent 5 points the opposite way to small latent 1 (cosine −1): "
                                      "match on the cosine itself, not its absolute value."),
            (_splits(raw, 0.5), "normalise the rows of both decoders before taking dot products: with rows of "
                                "different norms a dot product is not a cosine."),
            (_splits(small @ F.normalize(large, dim=-1).T, 0.5), "normalise the rows of W_small too: the cosine "
                                                                 "needs unit vectors on both sides."),
            (_splits(F.normalize(small, dim=-1) @ large.T, 0.5), "normalise the rows of W_large too: the cosine "
                                                                 "needs unit vectors on both sides."),
            (_splits(cos, 0.5, descending=False), "list each parent's children from the most to the least similar "
                                                  "(descending cosine)."),
            (every, "each large latent belongs to one parent only: its best-matching small latent (the max over "
                    "the small latents), even when it is above the threshold for several."),
            (best_per_small, "for each large latent find its best small latent (not, for each small latent, its "
                             "best large one): a parent can have several children."),
        ):
            if got == value:
                fail(message)
        if {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}:
            fail("list each parent's children from the most to the least similar (descending cosine).")
        fail(f"got {got}, expected {want}: for each large latent find the small latent with the largest "
             "cosine; keep it if that cosine > threshold; list children by descending cosine; include "
             "every small latent as a key (with [] if it has no children).")
    got = _as_splits(call(fn, small, torch.tensor([[0.0, 0.0, 1.0]]), 0.5, what="one orthogonal large latent",
                          name="find_splits"), "find_splits", 2, 1)
    if got != {0: [], 1: []}:
        fail(f"got {got} for a large latent orthogonal to both small ones: keep only matches with cosine > "
             "threshold; every small latent is a key, with [] when nothing matches it.")
    # a cosine of exactly ½ (1/‖(1, 1, 1, 1)‖ = ½, exact in floating point) is not above ½
    got = _as_splits(call(fn, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0, 1.0]]), 0.5,
                          what="a large latent at cosine exactly 0.5, threshold 0.5", name="find_splits"),
                     "find_splits", 1, 1)
    if got != {0: []}:
        fail("a large latent whose best cosine equals the threshold exactly (0.5) was kept: the condition is "
             "strictly above, cosine > threshold.")
    print("find_splits matches the children to their parents.")
