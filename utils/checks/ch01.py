"""Visible checks for chapter 01 (superposition). Each names the mistake it most likely found.

Every check runs the student's code through `call` (an exception becomes a message naming the
input), checks what comes back, then compares it with the answer and with the common wrong
variants, each computed here from its definition, most specific first, on inputs chosen to tell
them apart: non-unit, non-orthogonal feature directions; negative biases; importances below 1;
instances with different weights; many random draws where a statistic must be pinned down.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from utils import toy_models as ref
from utils.checks import (CheckFailed, assert_close, assert_own_code, assert_untouched, call, fail, snapshot,
                          tensor_result)

__all__ = ["check_generate_batch", "check_toy_model", "check_importance_weighted_loss",
           "check_dimensions_per_feature", "check_mean_abs_cosine", "check_capacity",
           "call", "tensor_result"]  # `call` and `tensor_result` are used by the hidden tests too

_SHAPE_ERROR = re.compile(r"must match the size|shapes cannot be multiplied|size mismatch|expanded size|"
                          r"invalid for input|Dimension out of range|operands could not|einsum|does not match",
                          re.I)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _run(fn, *args, what: str, name: str, on_shape_error: str = "", **kwargs):
    """`call`, with a chapter-specific hint added when the student's code hit a shape error."""
    try:
        return call(fn, *args, what=what, name=name, **kwargs)
    except CheckFailed as err:
        if on_shape_error and _SHAPE_ERROR.search(str(err)):
            raise CheckFailed(f"{err}\n{on_shape_error}") from None
        raise


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    a, b = a.detach().float(), b.detach().float()
    return a.shape == b.shape and bool(torch.isfinite(a).all()) and torch.allclose(a, b, atol=atol, rtol=1e-4)


# ---- exercise 1: generate_batch -------------------------------------------------------------------
_P_BROADCAST = ("`feature_probability` is a tensor of shape (n_inst,) here: compare the uniform draw with "
                "`p[None, :, None]` so that it lines up with the instance axis of (batch, n_inst, n_feats).")


def check_generate_batch(generate_batch) -> None:
    assert_own_code(generate_batch)
    name = "generate_batch"
    p = torch.tensor([1.0, 0.5, 0.1])
    before = snapshot(feature_probability=p)
    # Seeds far from the notebook's own (0): a draw from the global RNG never mirrors the generator's.
    x = _run(generate_batch, 3, 40, p, 4000, generator=_gen(1001), name=name, on_shape_error=_P_BROADCAST,
             what="n_inst=3, n_feats=40, feature_probability=tensor([1.0, 0.5, 0.1]), batch=4000")
    assert_untouched(before, name, feature_probability=p)
    x = tensor_result(x, name)
    if tuple(x.shape) != (4000, 3, 40):
        if sorted(x.shape) == [3, 40, 4000]:
            fail(f"`{name}` returned shape {tuple(x.shape)}: the axes are in the wrong order. Expected "
                 "(batch, n_inst, n_feats) = (4000, 3, 40): the batch axis comes first.")
        fail(f"`{name}` returned shape {tuple(x.shape)}; expected (batch, n_inst, n_feats) = (4000, 3, 40).")
    if x.dtype == torch.bool or not x.is_floating_point():
        fail(f"`{name}` returned a {x.dtype} tensor: that is the on/off mask alone. Multiply it by the "
             "magnitudes (a float tensor from torch.rand) and return the product.")
    if x.dtype != torch.float32:
        fail(f"`{name}` returned {x.dtype}; the toy model's weights are float32, so return float32 (torch.rand's "
             "default dtype) or training will fail on mixed dtypes.")
    again = _run(generate_batch, 3, 40, p, 4000, generator=_gen(1001), name=name, what="the same call a second time")
    if not (isinstance(again, torch.Tensor) and again.shape == x.shape and torch.equal(again, x)):
        fail("two calls with generators seeded alike gave different batches: pass `generator=generator` to "
             "every torch.rand call, so that a batch can be reproduced.")
    other = _run(generate_batch, 3, 40, p, 4000, generator=_gen(1002), name=name, what="a generator with another seed")
    if isinstance(other, torch.Tensor) and other.shape == x.shape and torch.equal(other, x):
        fail("generators with different seeds gave the same batch: draw from the `generator` you are given "
             "instead of seeding inside the function.")
    if x.min() < 0:
        fail("some features are negative: draw the magnitudes with torch.rand (uniform on [0, 1]), "
             "not torch.randn (Gaussian).")
    density = (x != 0).float().mean((0, 2))  # per instance
    if x.max() > 1:
        kept_max = torch.stack([x[:, k].max() for k in range(3)])
        if _close(kept_max * p, torch.ones(3), atol=0.05):
            fail("kept features go above 1, up to 1/feature_probability: do not rescale by the probability "
                 "(that is dropout's trick); an active feature is uniform on [0, 1].")
        fail("some features are above 1: an active feature is uniform on [0, 1] (torch.rand).")
    if torch.allclose(density, 1 - p, atol=0.02):
        fail(f"the fraction of active features per instance is {[round(d, 3) for d in density.tolist()]} for "
             f"feature_probability {p.tolist()}: the probabilities are inverted. A feature is ON with "
             "probability feature_probability (keep it where rand < p, not where rand > p; S = 1 − p is the "
             "chance it is off).")
    if not torch.allclose(density, p, atol=0.02):
        if torch.allclose(density, density.mean().expand(3), atol=0.02):
            fail(f"every instance has the same fraction of active features ({density.mean().item():.3f}); "
                 f"instance k must use feature_probability[k] ({p.tolist()}).")
        fail(f"the fraction of active features per instance is {[round(d, 3) for d in density.tolist()]}; "
             f"expected {p.tolist()} (feature k of instance i is active with probability p[i]).")
    active = [x[:, k][x[:, k] != 0] for k in range(3)]
    if all(bool((a == 1).all()) for a in active):
        fail("every active feature equals 1: multiply the on/off mask by magnitudes drawn with torch.rand, "
             "so an active feature is uniform on [0, 1], not always 1.")
    for k, (a, pk) in enumerate(zip(active, p.tolist())):
        if pk < 1 and a.max() <= pk + 0.01:
            fail(f"in instance {k} (p = {pk}) every active value is below {pk}: one random draw decides "
                 "both whether a feature is on and its magnitude (u · (u < p)). Draw the magnitudes and the "
                 "on/off decision with two separate torch.rand calls.")
        if pk < 1 and a.min() >= 1 - pk - 0.01:
            fail(f"in instance {k} (p = {pk}) every active value is above {1 - pk:.2f}: one random draw decides "
                 "both whether a feature is on and its magnitude (u · (u > 1 − p)). Draw the magnitudes and "
                 "the on/off decision with two separate torch.rand calls.")
        if abs(a.mean().item() - 0.5) > 0.02 or a.max() < 0.95 or a.min() > 0.05:
            fail(f"in instance {k} the active values have mean {a.mean().item():.3f} and range "
                 f"[{a.min().item():.3f}, {a.max().item():.3f}]; they should be uniform on [0, 1] (mean 0.5).")
    y = _run(generate_batch, 2, 30, 0.3, 2000, generator=_gen(1003), name=name,
             what="feature_probability=0.3, a plain float", on_shape_error=(
                 "A plain float feature_probability must work too: `torch.as_tensor(p).expand(n_inst)`."))
    y = tensor_result(y, name, shape=(2000, 2, 30), what="feature_probability=0.3 (a plain float)")
    dens = (y != 0).float().mean((0, 2))
    if not torch.allclose(dens, torch.full((2,), 0.3), atol=0.02):
        fail(f"with feature_probability = 0.3 (a plain float) the active fractions are "
             f"{[round(d, 3) for d in dens.tolist()]}; expected 0.3 for every instance.")
    print("generate_batch looks right.")


# ---- exercise 2: ToyModel -------------------------------------------------------------------------
def _hidden(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ihf,bif->bih", W, x)


def _back(W: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ihf,bih->bif", W, h)


def check_toy_model(ToyModel) -> None:
    assert_own_code(ToyModel)
    cfg = ref.ToyConfig(n_feats=7, d_hidden=3, n_inst=2)
    model = _run(ToyModel, cfg, name="ToyModel", what="ToyConfig(n_feats=7, d_hidden=3, n_inst=2)")
    if not isinstance(model, nn.Module) or not isinstance(getattr(model, "W", None), nn.Parameter) \
            or not isinstance(getattr(model, "b_final", None), nn.Parameter):
        fail("ToyModel must stay an nn.Module whose __init__ creates the parameters `W` and `b_final` (as given).")
    if tuple(model.W.shape) != (2, 3, 7) or tuple(model.b_final.shape) != (2, 7):
        fail(f"W has shape {tuple(model.W.shape)} and b_final {tuple(model.b_final.shape)}; keep __init__ as given: "
             "W is (n_inst, d_hidden, n_feats) = (2, 3, 7), b_final (n_inst, n_feats) = (2, 7).")
    g = _gen(1)
    W = torch.randn(2, 3, 7, generator=g) * 0.7  # two instances with different weights
    b = torch.randn(2, 7, generator=g) * 0.3      # negative and positive: ReLU(a + b) ≠ ReLU(a) + b
    with torch.no_grad():
        model.W.copy_(W)
        model.b_final.copy_(b)
    x = ref.generate_batch(2, 7, 0.6, 16, generator=g)
    x[0] = torch.tensor([1.0, 0, 0, 0, 0, 0.5, 0])  # a few rows where h = W x has negative entries
    what = "x of shape (batch 16, n_inst 2, n_feats 7)"
    before = snapshot(x=x, W=model.W, b_final=model.b_final)

    h = _run(model.hidden, x, name="ToyModel.hidden", what=what)
    assert_untouched(before, "ToyModel.hidden", x=x, W=model.W, b_final=model.b_final)
    h = tensor_result(h, "ToyModel.hidden")
    want_h = _hidden(W, x)
    if tuple(h.shape) == (16, 3):
        fail("ToyModel.hidden returned shape (16, 3): it summed over the instances. Keep the instance axis "
             "on both sides: 'inst hid feats, batch inst feats -> batch inst hid'.")
    if tuple(h.shape) != (16, 2, 3):
        fail(f"ToyModel.hidden returned shape {tuple(h.shape)}; expected (batch, n_inst, d_hidden) = (16, 2, 3).")
    if _close(h, want_h.relu()):
        fail("ToyModel.hidden applies a ReLU: h = W x is linear (the toy model's only ReLU is on the output).")
    if _close(h, _hidden(W[:1].expand_as(W), x)):
        fail("ToyModel.hidden uses instance 0's W for every instance: instance k must use its own W[k].")
    if _close(h, _hidden(W.sum(0, keepdim=True).expand_as(W), x)):
        fail("ToyModel.hidden adds up all instances' W: the instances are mixed. Instance k must use only its own "
             "W[k]: keep the instance axis the same index on both inputs ('inst hid feats, batch inst feats').")
    assert_close(h, want_h, "h = W x for each instance separately: h[b, k] = W[k] @ x[b, k], W[k] being "
                 "d_hidden × n_feats. Compare your contraction with this formula.")

    out = _run(model, x, name="ToyModel.forward", what=what)
    assert_untouched(before, "ToyModel.forward", x=x, W=model.W, b_final=model.b_final)
    out = tensor_result(out, "ToyModel.forward", shape=(16, 2, 7), what=what)
    lin = _back(W, want_h)
    if _close(out, lin.relu()):
        fail("b_final is missing: x' = ReLU(WᵀW x + b_final); add the bias inside the ReLU.")
    if _close(out, lin + b):
        fail("the ReLU is missing: x' = ReLU(WᵀW x + b_final).")
    if _close(out, lin):
        fail("both the ReLU and b_final are missing: x' = ReLU(WᵀW x + b_final).")
    if _close(out, lin.relu() + b):
        fail("the ReLU comes before b_final: add b_final first, then apply the ReLU, x' = ReLU(WᵀW x + b_final).")
    if _close(out, (_back(W, want_h.relu()) + b).relu()):
        fail("forward applies a ReLU to the hidden vector h: h = W x is linear, the ReLU acts only on the "
             "output, x' = ReLU(Wᵀ h + b_final).")
    W0 = W[:1].expand_as(W)
    if _close(out, (_back(W0, _hidden(W0, x)) + b).relu()) or _close(out, (_back(W0, want_h) + b).relu()):
        fail("forward uses instance 0's W for every instance: instance k must use its own W[k].")
    x2 = x.clone()
    x2[:, 1] = x2[:, 1].flip(0)  # change instance 1's inputs only
    out2 = tensor_result(_run(model, x2, name="ToyModel.forward", what="x with only instance 1 changed"),
                         "ToyModel.forward", shape=(16, 2, 7))
    if not _close(out2[:, 0], out[:, 0]):
        fail("changing instance 1's inputs changed instance 0's outputs: the instances are mixed. Each instance "
             "is a separate model: contract only over d_hidden and n_feats, never over the instance axis.")
    assert_close(out, (lin + b).relu(), "forward should compute x' = ReLU(Wᵀ (W x) + b_final) for each instance "
                 "separately; compare each step of yours with this formula.")

    model.zero_grad(set_to_none=True)
    out = _run(model, x, name="ToyModel.forward", what=what)
    if not out.requires_grad:
        fail("forward's output does not require grad: `.detach()`, `.data` or `torch.no_grad()` in forward cuts "
             "the model off from autograd, and training could not change W or b_final.")
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    def grad_of_W(W_in: torch.Tensor, W_out: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
        ((_back(W_out, _hidden(W_in, x)) + b).relu() * weights).sum().backward()
        return leaf.grad

    for pname, param in (("W", model.W), ("b_final", model.b_final)):
        if param.grad is None:
            fail(f"no gradient reached `{pname}`: forward must use `self.{pname}` itself (no `.detach()`, `.data` "
                 "or copy), or training cannot change it.")
    Wr = [W.clone().requires_grad_() for _ in range(3)]
    want = grad_of_W(Wr[0], Wr[0], Wr[0])
    if _close(model.W.grad, grad_of_W(W, Wr[1], Wr[1])):
        fail("no gradient flows through the hidden step h = W x: W is detached there (`.data`, `.detach()` or "
             "`torch.no_grad()`), so training only sees half of W's gradient. Use self.W itself in `hidden`.")
    if _close(model.W.grad, grad_of_W(Wr[2], W, Wr[2])):
        fail("no gradient flows through the map back x' = ReLU(Wᵀ h + b): W is detached there (`.data`, "
             "`.detach()` or `torch.no_grad()`). Use self.W itself in `forward`.")
    assert_close(model.W.grad, want, "the gradient of `W` differs from autograd's on the formula: check that "
                 "hidden and forward use self.W without detaching or rebuilding it.")
    br = b.clone().requires_grad_()
    ((_back(W, _hidden(W, x)) + br).relu() * weights).sum().backward()
    assert_close(model.b_final.grad, br.grad, "the gradient of `b_final` differs from autograd's on the formula: "
                 "check that forward adds self.b_final itself, inside the ReLU.")
    model.zero_grad(set_to_none=True)
    print("ToyModel matches x' = ReLU(WᵀW x + b_final), instance by instance, values and gradients.")


# ---- exercise 3: importance_weighted_loss ---------------------------------------------------------
def check_importance_weighted_loss(loss_fn) -> None:
    assert_own_code(loss_fn)
    name = "importance_weighted_loss"
    g = _gen(2)
    x = torch.rand(8, 3, 5, generator=g)
    out = torch.rand(8, 3, 5, generator=g).requires_grad_()   # as in training: the model's output has a graph
    imp = 0.1 + 0.8 * torch.rand(5, generator=g)              # in (0.1, 0.9): I ≠ I², Σ I ≠ 1
    what = "out, x of shape (batch 8, n_inst 3, n_feats 5) and importance of shape (5,)"
    before = snapshot(out=out, x=x, importance=imp)
    got = _run(loss_fn, out, x, imp, name=name, what=what, on_shape_error=(
        "`importance` has shape (n_feats,): it already lines up with the last axis of (batch, n_inst, n_feats), "
        "so multiply by it as it is, without reshaping it."))
    assert_untouched(before, name, out=out, x=x, importance=imp)
    got = tensor_result(got, name)
    err = x - out.detach()
    sq = err.pow(2)
    if got.numel() == 1:
        fail(f"`{name}` returned a single number; return one loss per instance, shape (3,): average over the "
             "batch only (did you average over instances too?).")
    if tuple(got.shape) == (5,):
        fail(f"`{name}` returned shape (5,), one value per feature: sum over the features (the last axis) and "
             "average over the batch (the first), keeping the instance axis.")
    if tuple(got.shape) == (8,):
        fail(f"`{name}` returned shape (8,), one value per example: average over the batch (axis 0) and keep the "
             "instance axis; return one loss per instance, shape (3,).")
    if tuple(got.shape) == (8, 3):
        fail(f"`{name}` returned shape (8, 3): the average over the batch (axis 0) is missing; return one loss "
             "per instance, shape (3,).")
    if tuple(got.shape) != (3,):
        fail(f"`{name}` returned shape {tuple(got.shape)}; return one loss per instance, shape (3,).")
    want = (sq * imp).sum(-1).mean(0)
    variants = (
        ((sq * imp).mean((0, 2)), "you averaged over features: sum the weighted errors over features, then "
                                  "average over the batch."),
        (sq.sum(-1).mean(0), "the importance weights are missing: multiply each feature's squared error by I_i."),
        ((err * imp).pow(2).sum(-1).mean(0), "the importance is squared: you weighted the error before squaring, "
                                             "(I_i (x_i − x'_i))². Square the error first, then multiply by I_i."),
        ((err.abs() * imp).sum(-1).mean(0), "that is the absolute error |x_i − x'_i|; the loss uses the squared "
                                            "error (x_i − x'_i)²."),
        ((sq * imp).sum(-1).sum(0), "you summed over the batch: average over it (mean over axis 0)."),
        ((sq * imp).sum(-1).mean(0) / imp.sum(), "you divided by Σ I_i: the loss is an importance-weighted *sum* "
                                                 "over features, not a weighted average."),
        ((sq * imp).sum(-1).mean(0).sqrt(), "you took a square root: the loss is the weighted squared error itself, "
                                            "not its root."),
    )
    for value, message in variants:
        if _close(got, value):
            fail(message)
    assert_close(got, want, "per instance: L = (1/batch) Σ_b Σ_i I_i (x_i − x'_i)²; compare each step of yours "
                 "with this formula.")
    if not got.requires_grad:
        fail("the loss is cut off from autograd (`.detach()`, `.item()`, `.tolist()` or a tensor rebuilt from "
             "numbers): the trainer calls `.backward()` on it.")
    got.sum().backward()
    assert_close(out.grad, -2 * err * imp / 8, "the gradient of your loss with respect to `out` differs from "
                 "autograd's on the formula: keep the computation in torch operations on `out`.")
    print("importance_weighted_loss matches the formula, per instance, with its gradient.")


# ---- exercise 4: dimensions_per_feature -----------------------------------------------------------
def _dims(W: torch.Tensor, *, normalise=True, power=2, include_self=True, over_j=True, numerator=2,
          norm_dim=1) -> torch.Tensor:
    """D_i = ‖W_i‖^numerator / Σ_j |Ŵ_i·W_j|^power, with switches that give the common wrong variants."""
    norms = W.norm(dim=norm_dim)                                     # [inst feats] (dim=1)
    W_hat = W / norms.clamp_min(1e-8)[:, None, :] if normalise else W
    dots = torch.einsum("kha,khb->kab", W_hat, W)                    # [inst i j]: Ŵ_i·W_j
    terms = dots.abs().pow(power)
    if not include_self:
        terms = terms * (1 - torch.eye(terms.shape[-1]))
    denom = terms.sum(-1) if over_j else terms.sum(-2)
    return norms.pow(numerator) / denom.clamp_min(1e-8)


_AXES = ("W has shape (n_inst, d_hidden, n_feats): feature i's direction is the column W[k, :, i], so "
         "‖W_i‖ is `W.norm(dim=1)` (shape (n_inst, n_feats)) and Ŵ = W / norms[:, None, :]; the overlaps "
         "Ŵ_i·W_j contract the d_hidden axis.")


def check_dimensions_per_feature(fn) -> None:
    assert_own_code(fn)
    name = "dimensions_per_feature"
    # Square and generic first (2 instances, 3 dims, 3 features; norms from 0.5 to 2, no two directions
    # orthogonal): every common variant gives a different value here, and none raises.
    g = _gen(4)
    W = torch.randn(2, 3, 3, generator=g)
    W = W / W.norm(dim=1, keepdim=True) * torch.tensor([[0.5, 1.0, 2.0], [1.5, 0.7, 1.2]])[:, None, :]
    before = snapshot(W=W)
    got = _run(fn, W, name=name, what="W of shape (n_inst 2, d_hidden 3, n_feats 3)", on_shape_error=_AXES)
    assert_untouched(before, name, W=W)
    got = tensor_result(got, name)
    if tuple(got.shape) == (2, 1, 3):
        fail(f"`{name}` returned shape (2, 1, 3): `keepdim=True` left a d_hidden axis of size 1 in the result; "
             "return shape (n_inst, n_feats) (drop keepdim, or squeeze that axis).")
    got = tensor_result(got, name, shape=(2, 3), what="W of shape (2, 3, 3)")
    if not torch.isfinite(got).all():
        fail(f"`{name}` gave NaN or inf although every feature here has a non-zero norm: the sum over j includes "
             "j = i, so the denominator is at least ‖W_i‖²; check it.")
    want = ref.dimensions_per_feature(W)
    variants = (
        (dict(include_self=False), "you left out j = i: the sum over j includes the feature itself, "
                                   "(Ŵ_i·W_i)² = ‖W_i‖²."),
        (dict(power=1), "square the overlaps: the denominator is Σ_j (Ŵ_i·W_j)², not Σ_j |Ŵ_i·W_j|."),
        (dict(normalise=False), "normalise W_i in the overlaps: Ŵ_i = W_i / ‖W_i‖, so the denominator is "
                                "Σ_j (Ŵ_i·W_j)², not Σ_j (W_i·W_j)²."),
        (dict(numerator=1), "the numerator is the squared norm ‖W_i‖², not ‖W_i‖."),
        (dict(over_j=False), "you summed the overlaps over i instead of j: for feature i, the denominator is "
                             "Σ_j (Ŵ_i·W_j)² (Ŵ_i fixed, W_j running over all features)."),
        (dict(norm_dim=2), "the norms are taken over the wrong axis: " + _AXES),
    )
    for kwargs, message in variants:
        if _close(got, _dims(W, **kwargs)):
            fail(message)
    if _close(got, 1 / want):
        fail("your D_i is upside down: D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)², not its reciprocal.")
    if _close(got, ref.dimensions_per_feature(W.transpose(1, 2))):
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
    got2 = _run(fn, W2, name=name, what=what, on_shape_error=_AXES)
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


def _simulate(variant, n: int, d: int, draws: int) -> tuple[float, float]:
    """(mean, standard error) of a wrong variant over `draws` random draws of its own."""
    g = _gen(12345)
    vals = torch.tensor([float(variant(torch.randn(n, d, generator=g), g)) for _ in range(draws)])
    return vals.mean().item(), vals.std().item() / math.sqrt(draws)


def _off_diagonal_abs_mean(V: torch.Tensor) -> float:
    V = V / V.norm(dim=1, keepdim=True)
    c = (V @ V.T).abs()
    n = len(V)
    return ((c.sum() - c.diagonal().sum()) / (n * (n - 1))).item()


N_SMALL, D_SMALL, CALLS = 20, 256, 100  # many small draws pin the mean down to ±0.0003


def check_mean_abs_cosine(fn) -> None:
    assert_own_code(fn)
    name = "mean_abs_cosine"
    keepdim = ("Normalise each vector (row) by its own norm: `V / V.norm(dim=1, keepdim=True)` (without "
               "keepdim the (n,) norms line up with the wrong axis).")
    v = _run(fn, 200, 64, generator=_gen(3), name=name, what="n=200, d=64", on_shape_error=keepdim)
    if isinstance(v, torch.Tensor):
        fail(f"`{name}` returned a tensor ({tuple(v.shape)}); return a Python float: `.item()` on the 0-d result.")
    if isinstance(v, bool) or not isinstance(v, (float, int)):
        fail(f"`{name}` returned {type(v).__name__}; return a Python float (the mean |cos|)"
             + (": is the `return` missing?" if v is None else "."))
    v = float(v)
    if not math.isfinite(v):
        fail(f"`{name}` returned {v}: a division by a zero norm or an empty selection of pairs?")
    again = _run(fn, 200, 64, generator=_gen(3), name=name, what="the same call a second time")
    if again != v:
        fail("two calls with generators seeded alike gave different values: pass `generator=generator` to "
             "torch.randn so the measurement can be reproduced.")
    if v > 1:
        fail(f"mean |cos| = {v:.3g} > 1, which no cosine can be: normalise each vector to unit length "
             "(V / V.norm(dim=1, keepdim=True)) before taking dot products.")

    n, d = N_SMALL, D_SMALL
    vals = torch.tensor([float(_run(fn, n, d, generator=_gen(100 + k), name=name, what=f"n={n}, d={d}"))
                         for k in range(CALLS)])
    s, se = vals.mean().item(), vals.std().item() / math.sqrt(CALLS)
    m = expected_abs_cos(d)
    tol = 5 * se + 1e-4
    if abs(s - m) <= tol:
        print(f"mean_abs_cosine behaves like random directions should: {s:.4f} on average over {CALLS} draws "
              f"of {n} vectors in {d} dims (expected {m:.4f}).")
        return
    where = f"averaged over {CALLS} calls with n={n}, d={d}, your mean |cos| is {s:.4f} (random directions: {m:.4f})"
    exact = (
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
    simulated = (
        (lambda V, g: _off_diagonal_abs_mean(torch.rand(V.shape, generator=g)),
         "random directions come from Gaussian vectors (torch.randn); uniform vectors on [0, 1] (torch.rand) all "
         "point into one corner, so their cosines are large"),
        (lambda V, g: _off_diagonal_abs_mean(torch.rand(V.shape, generator=g) - 0.5),
         "use Gaussian vectors (torch.randn), not uniform ones: uniform directions are not spread evenly over the "
         "sphere"),
        (lambda V, g: _cols_normalised(V),
         "each vector must be normalised by its own norm: you divided by the norms of the columns (dim=0); use "
         "`V / V.norm(dim=1, keepdim=True)`"),
    )
    best = None
    for value, message in exact:
        gap = abs(s - value) / tol
        if gap <= 1 and (best is None or gap < best[0]):
            best = (gap, message)
    for variant, message in simulated:
        mean, se_v = _simulate(variant, n, d, 40)
        t = 5 * math.hypot(se, se_v) + 1e-4
        gap = abs(s - mean) / t
        if gap <= 1 and (best is None or gap < best[0]):
            best = (gap, message)
    if best:
        fail(f"{where}: {best[1]}.")
    fail(f"{where}. Compare each step with the definition: n Gaussian vectors (torch.randn(n, d)), each scaled to "
         "unit length, and |cos| averaged over the n(n − 1) pairs i ≠ j.")


def _cols_normalised(V: torch.Tensor) -> float:
    V = V / V.norm(dim=0, keepdim=True)
    c = (V @ V.T).abs()
    n = len(V)
    return ((c.sum() - c.diagonal().sum()) / (n * (n - 1))).item()


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
    values = {}
    for k in keys:
        v = capacity[k]
        if isinstance(v, torch.Tensor):
            fail(f"CAPACITY[{k!r}] is a tensor; store a Python number (`.item()` turns a 0-d tensor into one).")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            fail(f"CAPACITY[{k!r}] is a {type(v).__name__}; it should be a number.")
        values[k] = float(v)
    lat, orth, inter = values["latents"], values["orthogonal"], values["interference_768"]
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
    if abs(inter - m) <= 3e-4:
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
