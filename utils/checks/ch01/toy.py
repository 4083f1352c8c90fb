"""Chapter 01, exercises 1-3: the sparse data, the toy model and its importance-weighted loss."""

from __future__ import annotations

import torch
from torch import nn

from utils import toy_models as ref
from utils.checks import assert_close, assert_own_code, assert_untouched, fail, snapshot, tensor_result
from utils.checks.ch01._util import gen, name_variant, run


# ---- exercise 1: generate_batch -------------------------------------------------------------------
def _batch_shape(x, name: str) -> torch.Tensor:
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
    return x


def _on_off(x: torch.Tensor, p: torch.Tensor) -> None:
    """Which features are on: per instance with probability p, independently per example and feature."""
    on = (x[:, 1] != 0).float()                        # instance 1, p = 0.5: [batch feats]
    per_feature, per_example = on.mean(0), on.mean(1)
    if ((per_feature < 0.01) | (per_feature > 0.99)).all() and 0.01 < per_feature.mean() < 0.99:
        fail("in instance 1 (p = 0.5) each feature is on in every example or in none: one on/off pattern is "
             "shared by the whole batch. Draw the decision for every example, instance and feature: a tensor of "
             "shape (batch, n_inst, n_feats).")
    if ((per_example < 0.01) | (per_example > 0.99)).all() and 0.01 < per_example.mean() < 0.99:
        fail("in instance 1 (p = 0.5) all features of an example are on or all are off: the on/off decision is "
             "shared by an example's features. Draw it for every feature separately, a tensor of shape "
             "(batch, n_inst, n_feats).")
    density = (x != 0).float().mean((0, 2))            # per instance
    shown = [round(d, 3) for d in density.tolist()]
    if torch.allclose(density, 1 - p, atol=0.02):
        fail(f"the fraction of active features per instance is {shown} for feature_probability {p.tolist()}: the "
             "probabilities are inverted. A feature is ON with probability feature_probability (keep it where "
             "rand < p, not where rand > p; S = 1 − p is the chance it is off).")
    if not torch.allclose(density, p, atol=0.02):
        if torch.allclose(density, density.mean().expand(3), atol=0.02):
            fail(f"every instance has the same fraction of active features ({density.mean().item():.3f}); "
                 f"instance k must use feature_probability[k] ({p.tolist()}).")
        fail(f"the fraction of active features per instance is {shown}; expected {p.tolist()} (feature k of "
             "instance i is active with probability p[i]).")
    if on.sum(-1).var() > 2 * 40 * 0.25:               # binomial(40, 0.5): variance 10
        fail("in instance 1 (p = 0.5) the features of an example are switched on together: draw the on/off "
             "decision for every feature separately, a tensor of shape (batch, n_inst, n_feats).")


def _magnitudes(x: torch.Tensor, p: torch.Tensor) -> None:
    """Active features are U[0, 1] in every instance, whatever its p."""
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


def check_generate_batch(generate_batch) -> None:
    assert_own_code(generate_batch)
    name = "generate_batch"
    p = torch.tensor([1.0, 0.5, 0.1])
    before = snapshot(feature_probability=p)
    # Seeds far from the notebook's own (0), so that a draw from the global RNG never mirrors the generator's.
    x = run(generate_batch, 3, 40, p, 4000, generator=gen(1001), name=name,
            what="n_inst=3, n_feats=40, feature_probability=tensor([1.0, 0.5, 0.1]), batch=4000", on_shape_error=(
                "`feature_probability` is a tensor of shape (n_inst,) here: compare the uniform draw with "
                "`p[None, :, None]` so that it lines up with the instance axis of (batch, n_inst, n_feats)."))
    assert_untouched(before, name, feature_probability=p)
    x = _batch_shape(x, name)
    again = run(generate_batch, 3, 40, p, 4000, generator=gen(1001), name=name, what="the same call a second time")
    if not (isinstance(again, torch.Tensor) and again.shape == x.shape and torch.equal(again, x)):
        fail("two calls with generators seeded alike gave different batches: pass `generator=generator` to "
             "every torch.rand call, so that a batch can be reproduced.")
    other = run(generate_batch, 3, 40, p, 4000, generator=gen(1002), name=name, what="a generator with another seed")
    if isinstance(other, torch.Tensor) and other.shape == x.shape and torch.equal(other, x):
        fail("generators with different seeds gave the same batch: draw from the `generator` you are given "
             "instead of seeding inside the function.")
    if x.min() < 0:
        fail("some features are negative: draw the magnitudes with torch.rand (uniform on [0, 1]), "
             "not torch.randn (Gaussian).")
    if x.max() > 1:
        kept_max = torch.stack([x[:, k].max() for k in range(3)])
        if torch.allclose(kept_max * p, torch.ones(3), atol=0.05):
            fail("kept features go above 1, up to 1/feature_probability: do not rescale by the probability "
                 "(that is dropout's trick); an active feature is uniform on [0, 1].")
        fail("some features are above 1: an active feature is uniform on [0, 1] (torch.rand).")
    _on_off(x, p)
    _magnitudes(x, p)
    y = run(generate_batch, 2, 30, 0.3, 2000, generator=gen(1003), name=name, what="feature_probability=0.3, a "
            "plain float", on_error="A plain float feature_probability must work too: `torch.as_tensor(p).expand(n_inst)`.")
    y = tensor_result(y, name, shape=(2000, 2, 30), what="feature_probability=0.3 (a plain float)")
    dens = (y != 0).float().mean((0, 2))
    if not torch.allclose(dens, torch.full((2,), 0.3), atol=0.02):
        fail(f"with feature_probability = 0.3 (a plain float) the active fractions are "
             f"{[round(d, 3) for d in dens.tolist()]}; expected 0.3 for every instance.")
    print("generate_batch looks right.")


# ---- exercise 2: ToyModel -------------------------------------------------------------------------
def _hidden(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ihf,bif->bih", W, x)          # h = W x per instance


def _back(W: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ihf,bih->bif", W, h)          # Wᵀ h per instance


def _model(ToyModel) -> nn.Module:
    model = run(ToyModel, ref.ToyConfig(n_feats=7, d_hidden=3, n_inst=2), name="ToyModel",
                what="ToyConfig(n_feats=7, d_hidden=3, n_inst=2)")
    if not isinstance(model, nn.Module) or not isinstance(getattr(model, "W", None), nn.Parameter) \
            or not isinstance(getattr(model, "b_final", None), nn.Parameter):
        fail("ToyModel must stay an nn.Module whose __init__ creates the parameters `W` and `b_final` (as given).")
    if tuple(model.W.shape) != (2, 3, 7) or tuple(model.b_final.shape) != (2, 7):
        fail(f"W has shape {tuple(model.W.shape)} and b_final {tuple(model.b_final.shape)}; keep __init__ as given: "
             "W is (n_inst, d_hidden, n_feats) = (2, 3, 7), b_final (n_inst, n_feats) = (2, 7).")
    return model


def _check_hidden(h, W: torch.Tensor, x: torch.Tensor) -> None:
    h = tensor_result(h, "ToyModel.hidden")
    if tuple(h.shape) == (16, 3):
        fail("ToyModel.hidden returned shape (16, 3): it summed over the instances. Keep the instance axis "
             "on both sides: 'inst hid feats, batch inst feats -> batch inst hid'.")
    if tuple(h.shape) != (16, 2, 3):
        fail(f"ToyModel.hidden returned shape {tuple(h.shape)}; expected (batch, n_inst, d_hidden) = (16, 2, 3).")
    name_variant(h, (
        (_hidden(W, x).relu(), "ToyModel.hidden applies a ReLU: h = W x is linear (the toy model's only ReLU is on "
                               "the output)."),
        (_hidden(W[:1].expand_as(W), x), "ToyModel.hidden uses instance 0's W for every instance: instance k must "
                                         "use its own W[k]."),
        (_hidden(W.sum(0, keepdim=True).expand_as(W), x),
         "ToyModel.hidden adds up all instances' W: the instances are mixed. Instance k must use only its own W[k]: "
         "keep the instance axis the same index on both inputs ('inst hid feats, batch inst feats')."),
    ))
    assert_close(h, _hidden(W, x), "h = W x for each instance separately: h[b, k] = W[k] @ x[b, k], W[k] being "
                 "d_hidden × n_feats. Compare your contraction with this formula.")


def _check_forward(model: nn.Module, out, W: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> None:
    out = tensor_result(out, "ToyModel.forward", shape=(16, 2, 7), what="x of shape (16, 2, 7)")
    h, W0 = _hidden(W, x), W[:1].expand_as(W)
    lin = _back(W, h)
    name_variant(out, (
        (lin.relu(), "b_final is missing: x' = ReLU(WᵀW x + b_final); add the bias inside the ReLU."),
        (lin + b, "the ReLU is missing: x' = ReLU(WᵀW x + b_final)."),
        (lin, "both the ReLU and b_final are missing: x' = ReLU(WᵀW x + b_final)."),
        (lin.relu() + b, "the ReLU comes before b_final: add b_final first, then apply the ReLU, "
                         "x' = ReLU(WᵀW x + b_final)."),
        ((_back(W, h.relu()) + b).relu(), "forward applies a ReLU to the hidden vector h: h = W x is linear, the "
                                          "ReLU acts only on the output, x' = ReLU(Wᵀ h + b_final)."),
        ((_back(W0, _hidden(W0, x)) + b).relu(), "forward uses instance 0's W for every instance: instance k must "
                                                 "use its own W[k]."),
        ((_back(W0, h) + b).relu(), "forward uses instance 0's W for every instance when mapping back: instance k "
                                    "must use its own W[k]."),
    ))
    x2 = x.clone()
    x2[:, 1] = x2[:, 1].flip(0)                        # change instance 1's inputs only
    out2 = tensor_result(run(model, x2, name="ToyModel.forward", what="x with only instance 1 changed"),
                         "ToyModel.forward", shape=(16, 2, 7))
    if not torch.allclose(out2[:, 0], out[:, 0]):
        fail("changing instance 1's inputs changed instance 0's outputs: the instances are mixed. Each instance "
             "is a separate model: contract only over d_hidden and n_feats, never over the instance axis.")
    assert_close(out, (lin + b).relu(), "forward should compute x' = ReLU(Wᵀ (W x) + b_final) for each instance "
                 "separately; compare each step of yours with this formula.")


def _check_gradients(model: nn.Module, W: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    out = tensor_result(run(model, x, name="ToyModel.forward", what="x of shape (16, 2, 7)"), "ToyModel.forward")
    if not out.requires_grad:
        fail("forward's output does not require grad: `.detach()`, `.data` or `torch.no_grad()` in forward cuts "
             "the model off from autograd, and training could not change W or b_final.")
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    for pname, param in (("W", model.W), ("b_final", model.b_final)):
        if param.grad is None:
            fail(f"no gradient reached `{pname}`: forward must use `self.{pname}` itself (no `.detach()`, `.data` "
                 "or copy), or training cannot change it.")

    def grad(W_in: torch.Tensor, W_out: torch.Tensor, b_: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
        ((_back(W_out, _hidden(W_in, x)) + b_).relu() * weights).sum().backward()
        return leaf.grad

    Wr = [W.clone().requires_grad_() for _ in range(3)]
    name_variant(model.W.grad, (
        (grad(W, Wr[1], b, Wr[1]), "no gradient flows through the hidden step h = W x: W is detached there "
                                   "(`.data`, `.detach()` or `torch.no_grad()`), so training only sees half of W's "
                                   "gradient. Use self.W itself in `hidden`."),
        (grad(Wr[2], W, b, Wr[2]), "no gradient flows through the map back x' = ReLU(Wᵀ h + b): W is detached there "
                                   "(`.data`, `.detach()` or `torch.no_grad()`). Use self.W itself in `forward`."),
    ))
    assert_close(model.W.grad, grad(Wr[0], Wr[0], b, Wr[0]), "the gradient of `W` differs from autograd's on the "
                 "formula: check that hidden and forward use self.W without detaching or rebuilding it.")
    br = b.clone().requires_grad_()
    assert_close(model.b_final.grad, grad(W, W, br, br), "the gradient of `b_final` differs from autograd's on the "
                 "formula: check that forward adds self.b_final itself, inside the ReLU.")
    model.zero_grad(set_to_none=True)


def check_toy_model(ToyModel) -> None:
    assert_own_code(ToyModel)
    model = _model(ToyModel)
    g = gen(1)
    W = torch.randn(2, 3, 7, generator=g) * 0.7        # two instances with different weights
    b = torch.randn(2, 7, generator=g) * 0.3           # negative and positive: ReLU(a + b) ≠ ReLU(a) + b
    with torch.no_grad():
        model.W.copy_(W)
        model.b_final.copy_(b)
    x = ref.generate_batch(2, 7, 0.6, 16, generator=g)
    x[0] = torch.tensor([1.0, 0, 0, 0, 0, 0.5, 0])     # rows where h = W x has negative entries too
    what = "x of shape (batch 16, n_inst 2, n_feats 7)"
    before = snapshot(x=x, W=model.W, b_final=model.b_final)
    h = run(model.hidden, x, name="ToyModel.hidden", what=what)
    assert_untouched(before, "ToyModel.hidden", x=x, W=model.W, b_final=model.b_final)
    _check_hidden(h, W, x)
    out = run(model, x, name="ToyModel.forward", what=what)
    assert_untouched(before, "ToyModel.forward", x=x, W=model.W, b_final=model.b_final)
    _check_forward(model, out, W, b, x)
    _check_gradients(model, W, b, x)
    print("ToyModel matches x' = ReLU(WᵀW x + b_final), instance by instance, values and gradients.")


# ---- exercise 3: importance_weighted_loss ---------------------------------------------------------
_LOSS_SHAPES = {
    (): "returned a single number; return one loss per instance, shape (3,): average over the batch only (did you "
        "average over instances too?).",
    (1,): "returned a single number; return one loss per instance, shape (3,): average over the batch only (did "
          "you average over instances too?).",
    (5,): "returned shape (5,), one value per feature: sum over the features (the last axis) and average over the "
          "batch (the first), keeping the instance axis.",
    (8,): "returned shape (8,), one value per example: average over the batch (axis 0) and keep the instance axis; "
          "return one loss per instance, shape (3,).",
    (8, 3): "returned shape (8, 3): the average over the batch (axis 0) is missing; return one loss per instance, "
            "shape (3,).",
}


def check_importance_weighted_loss(loss_fn) -> None:
    assert_own_code(loss_fn)
    name = "importance_weighted_loss"
    g = gen(2)
    x = torch.rand(8, 3, 5, generator=g)
    out = torch.rand(8, 3, 5, generator=g).requires_grad_()   # as in training: the model's output has a graph
    imp = 0.1 + 0.8 * torch.rand(5, generator=g)              # in (0.1, 0.9): I ≠ I², Σ I ≠ 1
    before = snapshot(out=out, x=x, importance=imp)
    got = run(loss_fn, out, x, imp, name=name, what="out, x of shape (batch 8, n_inst 3, n_feats 5) and importance "
              "of shape (5,)", on_shape_error="`importance` has shape (n_feats,): it lines up with the last axis of "
              "(batch, n_inst, n_feats) as it is; multiply the squared errors by it before summing over the features.")
    assert_untouched(before, name, out=out, x=x, importance=imp)
    got = tensor_result(got, name)
    if tuple(got.shape) != (3,):
        fail(f"`{name}` " + _LOSS_SHAPES.get(tuple(got.shape), f"returned shape {tuple(got.shape)}; return one loss "
                                              "per instance, shape (3,)."))
    err = x - out.detach()
    sq = err.pow(2)
    want = (sq * imp).sum(-1).mean(0)
    name_variant(got.abs(), ((v.abs(), m) for v, m in (    # (x − out) or (out − x): the same mistake
        ((sq * imp).mean((0, 2)), "you averaged over features: sum the weighted errors over features, then "
                                  "average over the batch."),
        (sq.sum(-1).mean(0), "the importance weights are missing: multiply each feature's squared error by I_i."),
        ((err * imp).pow(2).sum(-1).mean(0), "the importance is squared: you weighted the error before squaring, "
                                             "(I_i (x_i − x'_i))². Square the error first, then multiply by I_i."),
        ((err * imp).sum(-1).mean(0), "the error is not squared: positive and negative errors cancel; the loss "
                                      "uses the squared error (x_i − x'_i)²."),
        ((err.abs() * imp).sum(-1).mean(0), "that is the absolute error |x_i − x'_i|; the loss uses the squared "
                                            "error (x_i − x'_i)²."),
        ((sq * imp).sum(-1).sum(0), "you summed over the batch: average over it (mean over axis 0)."),
        ((sq * imp).mean(-1).sum(0), "the two reductions are swapped: sum over the features (the last axis), "
                                     "average over the batch (axis 0)."),
        (want / imp.sum(), "you divided by Σ I_i: the loss is an importance-weighted *sum* over features, not a "
                           "weighted average."),
        (want.sqrt(), "you took a square root: the loss is the weighted squared error itself, not its root."),
    )))
    assert_close(got, want, "per instance: L = (1/batch) Σ_b Σ_i I_i (x_i − x'_i)²; compare each step of yours "
                 "with this formula.")
    if not got.requires_grad:
        fail("the loss is cut off from autograd (`.detach()`, `.item()`, `.tolist()` or a tensor rebuilt from "
             "numbers): the trainer calls `.backward()` on it.")
    got.sum().backward()
    assert_close(out.grad, -2 * err * imp / 8, "the gradient of your loss with respect to `out` differs from "
                 "autograd's on the formula: keep the computation in torch operations on `out`.")
    print("importance_weighted_loss matches the formula, per instance, with its gradient.")
