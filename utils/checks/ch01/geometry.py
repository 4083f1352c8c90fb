"""Chapter 01, exercises 4-5: dimensions per feature, the interference of random directions, CAPACITY."""

from __future__ import annotations

import math

import torch
from torch import nn

from utils import toy_models as ref
from utils.checks import assert_close, assert_own_code, assert_untouched, fail, snapshot, tensor_result
from utils.checks.ch01._util import close, gen, run


# ---- exercise 4: dimensions_per_feature -----------------------------------------------------------
def _dims(W: torch.Tensor, *, normalise=True, power=2, include_self=True, over_j=True, numerator=2,
          norm_dim=1, normalise_j=False) -> torch.Tensor:
    """D_i = ‖W_i‖^numerator / Σ_j |Ŵ_i·W_j|^power, with switches that give the common wrong variants."""
    norms = W.norm(dim=norm_dim)                                              # [inst feats] (dim=1)
    W_hat = W / norms.clamp_min(1e-8)[:, None, :] if normalise else W
    dots = torch.einsum("kha,khb->kab", W_hat, W_hat if normalise_j else W)  # [inst i j]: Ŵ_i·W_j
    terms = dots.abs().pow(power)
    if not include_self:
        terms = terms * (1 - torch.eye(terms.shape[-1]))
    denom = terms.sum(-1) if over_j else terms.sum(-2)
    return norms.pow(numerator) / denom.clamp_min(1e-8)


_AXES = ("W has shape (n_inst, d_hidden, n_feats): feature i's direction is the column W[k, :, i], so "
         "‖W_i‖ is `W.norm(dim=1)` (shape (n_inst, n_feats)) and Ŵ = W / norms[:, None, :]; the overlaps "
         "Ŵ_i·W_j contract the d_hidden axis.")
_DIMS_VARIANTS = (
    (dict(include_self=False), "you left out j = i: the sum over j includes the feature itself, (Ŵ_i·W_i)² = ‖W_i‖²."),
    (dict(power=1), "square the overlaps: the denominator is Σ_j (Ŵ_i·W_j)², not Σ_j |Ŵ_i·W_j|."),
    (dict(normalise=False), "normalise W_i in the overlaps: Ŵ_i = W_i / ‖W_i‖, so the denominator is "
                            "Σ_j (Ŵ_i·W_j)², not Σ_j (W_i·W_j)²."),
    (dict(numerator=1), "the numerator is the squared norm ‖W_i‖², not ‖W_i‖."),
    (dict(normalise_j=True), "you normalised W_j too: only Ŵ_i is a unit vector, the overlaps are (Ŵ_i·W_j)² with "
                             "W_j at its full length."),
    # Σ_i (Ŵ_i·W_j)² = ‖W_j‖² Σ_i cos², so this variant is also 1 / Σ_j cos²(W_i, W_j): the same numbers
    (dict(over_j=False), "you summed the overlaps over i instead of j, or normalised both vectors and dropped "
                         "‖W_i‖² (the two give the same numbers, 1 / Σ_j cos²): for feature i the denominator is "
                         "Σ_j (Ŵ_i·W_j)², with only Ŵ_i a unit vector and W_j at full length."),
    (dict(norm_dim=2), "the norms are taken over the wrong axis: " + _AXES),
)


def check_dimensions_per_feature(fn) -> None:
    assert_own_code(fn)
    name = "dimensions_per_feature"
    # Square and generic first (2 instances, 3 dims, 3 features; norms from 0.5 to 2, no two directions
    # orthogonal): every common variant gives a different value here, and none raises.
    g = gen(4)
    W = torch.randn(2, 3, 3, generator=g)
    W = W / W.norm(dim=1, keepdim=True) * torch.tensor([[0.5, 1.0, 2.0], [1.5, 0.7, 1.2]])[:, None, :]
    before = snapshot(W=W)
    got = run(fn, W, name=name, what="W of shape (n_inst 2, d_hidden 3, n_feats 3)", on_shape_error=_AXES)
    assert_untouched(before, name, W=W)
    got = tensor_result(got, name)
    if tuple(got.shape) == (2, 1, 3):
        fail(f"`{name}` returned shape (2, 1, 3): `keepdim=True` left a d_hidden axis of size 1 in the result; "
             "return shape (n_inst, n_feats) (drop keepdim, or squeeze that axis).")
    got = tensor_result(got, name, shape=(2, 3), what="W of shape (2, 3, 3)")
    if not torch.isfinite(got).all():
        fail(f"`{name}` gave NaN or inf although every feature here has a non-zero norm (so the denominator, "
             "which includes j = i, is at least ‖W_i‖² > 0): look for a division by zero or a NaN made earlier.")
    want = ref.dimensions_per_feature(W)
    for kwargs, message in _DIMS_VARIANTS:
        if close(got, _dims(W, **kwargs)):
            fail(message)
    if close(got, 1 / want):
        fail("your D_i is upside down: D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)², not its reciprocal.")
    if close(got, ref.dimensions_per_feature(W.transpose(1, 2))):
        fail("you treated the rows of W as the features. " + _AXES)
    assert_close(got, want, "D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)² with Ŵ_i = W_i / ‖W_i‖ and the sum including j = i; "
                 "compare each step of yours with this formula on a W whose features have different lengths "
                 "and are not orthogonal.")

    # The notebook's case: a trained model's W (a Parameter, fewer dims than features) with a dropped feature.
    W2 = torch.randn(2, 2, 5, generator=g)
    W2[0, :, 3] = 0.0
    W2 = nn.Parameter(W2)
    before = snapshot(W=W2)
    what = "W = a model's parameter of shape (n_inst 2, d_hidden 2, n_feats 5), one feature with ‖W_i‖ = 0"
    got2 = run(fn, W2, name=name, what=what, on_shape_error=_AXES)
    assert_untouched(before, name, W=W2)
    got2 = tensor_result(got2, name, shape=(2, 5), what="W of shape (2, 2, 5)")
    if torch.isnan(got2).any() or torch.isinf(got2).any():
        fail("a feature with ‖W_i‖ = 0 gave NaN or inf: clamp the norms (and the denominator) away from zero "
             "before dividing, e.g. `.clamp_min(1e-8)`; a dropped feature has D_i = 0.")
    assert_close(got2, ref.dimensions_per_feature(W2), "with d_hidden < n_feats and a dropped feature (D_i = 0): "
                 "D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)², the sum over all j including i.")
    print("dimensions_per_feature is right on generic (non-unit, non-orthogonal) features and a dropped one.")


# ---- exercise 5: mean_abs_cosine and CAPACITY ------------------------------------------------------
def expected_abs_cos(d: int) -> float:
    """E|cos| between two independent uniformly random directions in d dimensions:
    Γ(d/2) / (√π Γ((d+1)/2)), about √(2/(π d)) for large d (2/π for d = 2)."""
    return math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)


def _off_diagonal_abs_mean(V: torch.Tensor, dim: int = 1) -> float:
    V = V / V.norm(dim=dim, keepdim=True)
    c = (V @ V.T).abs()
    return ((c.sum() - c.diagonal().sum()) / (len(V) * (len(V) - 1))).item()


def _simulate(variant, n: int, d: int, draws: int = 40) -> tuple[float, float]:
    """(mean, standard error) of a wrong variant over `draws` random n × d draws of its own."""
    g = gen(12345)
    vals = torch.tensor([variant(torch.randn(n, d, generator=g), g) for _ in range(draws)])
    return vals.mean().item(), vals.std().item() / math.sqrt(draws)


def _exact_variants(m: float, n: int, d: int):
    """(expected value, what it means) of the common wrong variants at n vectors in d dims (E|cos| = m)."""
    return (
        (m + (1 - m) / n, "each vector's cosine with itself (the diagonal, always 1) is included: average over "
                          "the pairs i ≠ j only"),
        (m + 1 / (n - 1), "each vector's cosine with itself (the diagonal, always 1) is included in the sum: "
                          "leave out i = j"),
        (m * (n - 1) / n, "the denominator is off: there are n(n − 1) pairs i ≠ j, not n² (you left the "
                          "diagonal out of the sum but still divide by n²)"),
        (m * (n - 1) / (2 * n), "you averaged the upper triangle over all n² entries: the mean runs over the "
                                "n(n − 1)/2 pairs only (zeros below the diagonal count as entries)"),
        ((m * n * (n - 1) / 2 + n) / n ** 2, "you averaged the upper triangle with its diagonal over all n² entries: "
                                             "take the mean over the pairs i < j only"),
        (0.0, "the cosines are not in absolute value: positive and negative cosines cancel; take |cos| (`.abs()`)"),
        (1 / n, "the cosines are not in absolute value (they cancel) and the diagonal is included: take |cos| "
                "over the pairs i ≠ j"),
        (1 / d, "that is the mean *squared* cosine (≈ 1/d): the exercise asks for the mean |cos|"),
        (1 / d + (1 - 1 / d) / n, "that is the mean squared cosine with the diagonal: take |cos| over i ≠ j"),
        (expected_abs_cos(n), f"that is what {d} random vectors in {n} dimensions give: draw n vectors of d "
                              f"dimensions, torch.randn(n, d)"),
    )


_SIMULATED = (
    (lambda V, g: _off_diagonal_abs_mean(torch.rand(V.shape, generator=g)),
     "random directions come from Gaussian vectors (torch.randn); uniform vectors on [0, 1] (torch.rand) all "
     "point into one corner, so their cosines are large"),
    (lambda V, g: _off_diagonal_abs_mean(torch.rand(V.shape, generator=g) - 0.5),
     "use Gaussian vectors (torch.randn), not uniform ones: uniform directions are not spread evenly over the sphere"),
    (lambda V, g: _off_diagonal_abs_mean(V, dim=0),
     "each vector must be normalised by its own norm: you divided by the norms of the columns (dim=0); use "
     "`V / V.norm(dim=1, keepdim=True)`"),
)
N_SMALL, D_SMALL, CALLS = 20, 256, 100  # many small draws pin the mean down to about ±0.0003


def _one_value(fn, name: str) -> float:
    keepdim = ("Normalise each vector (row) by its own norm: `V / V.norm(dim=1, keepdim=True)` (without "
               "keepdim the (n,) norms line up with the wrong axis).")
    v = run(fn, 200, 64, generator=gen(3), name=name, what="n=200, d=64", on_shape_error=keepdim)
    if isinstance(v, torch.Tensor):
        fail(f"`{name}` returned a tensor ({tuple(v.shape)}); return a Python float: `.item()` on the 0-d result.")
    if isinstance(v, bool) or not isinstance(v, (float, int)):
        fail(f"`{name}` returned {type(v).__name__}; return a Python float (the mean |cos|)"
             + (": is the `return` missing?" if v is None else "."))
    if not math.isfinite(v):
        fail(f"`{name}` returned {v}: a division by a zero norm or an empty selection of pairs?")
    if run(fn, 200, 64, generator=gen(3), name=name, what="the same call a second time") != v:
        fail("two calls with generators seeded alike gave different values: pass `generator=generator` to "
             "torch.randn so the measurement can be reproduced.")
    if v > 1:
        fail(f"mean |cos| = {v:.3g} > 1, which no cosine can be: normalise each vector to unit length "
             "(V / V.norm(dim=1, keepdim=True)) before taking dot products.")
    return float(v)


def check_mean_abs_cosine(fn) -> None:
    assert_own_code(fn)
    name = "mean_abs_cosine"
    _one_value(fn, name)
    n, d = N_SMALL, D_SMALL
    vals = torch.tensor([float(run(fn, n, d, generator=gen(100 + k), name=name, what=f"n={n}, d={d}"))
                         for k in range(CALLS)])
    if vals.std() == 0:
        fail(f"`{name}` returned {vals[0].item():.4g} for each of {CALLS} differently seeded generators: it must "
             "measure the vectors it draws, so the value varies a little from draw to draw.")
    s, se = vals.mean().item(), vals.std().item() / math.sqrt(CALLS)
    m = expected_abs_cos(d)
    tol = 5 * se + 1e-4                                # a correct answer lands within 5 standard errors
    if abs(s - m) <= tol:
        print(f"mean_abs_cosine behaves like random directions should: {s:.4f} on average over {CALLS} draws "
              f"of {n} vectors in {d} dims (expected {m:.4f}).")
        return
    gaps = [(abs(s - value) / tol, message) for value, message in _exact_variants(m, n, d)]
    for variant, message in _SIMULATED:
        mean, se_v = _simulate(variant, n, d)
        gaps.append((abs(s - mean) / (5 * math.hypot(se, se_v) + 1e-4), message))
    where = f"averaged over {CALLS} calls with n={n}, d={d}, your mean |cos| is {s:.4f} (random directions: {m:.4f})"
    gap, message = min(gaps, key=lambda t: t[0])
    if gap <= 1:
        fail(f"{where}: {message}.")
    fail(f"{where}. Compare each step with the definition: n Gaussian vectors (torch.randn(n, d)), each scaled to "
         "unit length, and |cos| averaged over the n(n − 1) pairs i ≠ j.")


def check_capacity(capacity) -> None:
    keys = ("latents", "orthogonal", "interference_768")
    if not isinstance(capacity, dict):
        fail(f"CAPACITY is a {type(capacity).__name__}; keep it a dict with the keys {keys}.")
    missing = [k for k in keys if k not in capacity]
    if missing:
        fail(f"CAPACITY lacks the keys {missing}; keep the dict's keys {keys} as given.")
    empty = [k for k in keys if capacity[k] is None]
    if empty:
        fail(f"fill in CAPACITY: {empty} still None.")
    for k in keys:
        if isinstance(capacity[k], torch.Tensor):
            fail(f"CAPACITY[{k!r}] is a tensor; store a Python number (`.item()` turns a 0-d tensor into one).")
        if isinstance(capacity[k], bool) or not isinstance(capacity[k], (int, float)):
            fail(f"CAPACITY[{k!r}] is a {type(capacity[k]).__name__}; it should be a number.")
    lat, orth, inter = (float(capacity[k]) for k in keys)
    if lat == 16:
        fail("CAPACITY['latents'] is the number of dictionary entries, 16 × 768, not the expansion ratio 16.")
    if lat == 768:
        fail("CAPACITY['latents']: 768 is the stream's width (d_model); a 16× SAE has 16 × 768 latents.")
    if lat != 16 * 768:
        fail(f"CAPACITY['latents'] = {lat:g}: a 16× SAE on a 768-dimensional stream has 16 × 768 latents.")
    if orth == 16 * 768:
        fail("CAPACITY['orthogonal']: 12288 directions cannot all be orthogonal in a 768-dimensional space; at most "
             "d_model of them can.")
    if orth != 768:
        fail(f"CAPACITY['orthogonal'] = {orth:g}: in d dimensions at most d directions are mutually orthogonal; "
             "the decoder directions live in the 768-dimensional stream.")
    m = expected_abs_cos(768)
    if abs(inter - m) <= 3e-4:                         # 2000 vectors: ~2 million pairs, noise ~2e-5
        print(f"CAPACITY looks right: 12288 latents, 768 orthogonal directions, mean |cos| {inter:.4f} at d = 768.")
        return
    if abs(inter - expected_abs_cos(16 * 768)) <= 3e-4:
        fail("CAPACITY['interference_768'] is the mean |cos| in 12288 dimensions: the decoder directions live in "
             "the 768-dimensional stream, mean_abs_cosine(2000, 768).")
    if abs(inter - expected_abs_cos(2000)) <= 3e-4:
        fail("CAPACITY['interference_768']: the arguments are swapped; it is n = 2000 vectors in d = 768 "
             "dimensions, mean_abs_cosine(2000, 768).")
    if abs(inter - math.sqrt(1 / 768)) <= 3e-4 or abs(inter - 1 / 768) <= 3e-5:
        fail("CAPACITY['interference_768'] is a rule of thumb (1/√d or 1/d); measure it: mean_abs_cosine(2000, 768).")
    fail(f"CAPACITY['interference_768'] = {inter:.4g}; random directions in 768 dimensions have mean |cos| about "
         f"{m:.4f}: store mean_abs_cosine(2000, 768) (your function, with a seeded generator).")
