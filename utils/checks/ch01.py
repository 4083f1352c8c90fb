"""Visible checks for chapter 01 (superposition). Each names the mistake it most likely found."""

from __future__ import annotations

import math

import torch

from utils import toy_models as ref
from utils.checks import assert_close, assert_own_code, fail


def check_generate_batch(generate_batch) -> None:
    assert_own_code(generate_batch)
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([1.0, 0.5, 0.1])
    x = generate_batch(3, 40, p, 4000, generator=g)
    if tuple(x.shape) != (4000, 3, 40):
        fail(f"shape {tuple(x.shape)}; expected (batch, n_inst, n_feats) = (4000, 3, 40).")
    if x.min() < 0 or x.max() > 1:
        fail("values must lie in [0, 1]: draw magnitudes with torch.rand, not torch.randn.")
    density = (x != 0).float().mean((0, 2))
    if not torch.allclose(density, p, atol=0.02):
        fail(f"fraction of non-zero features per instance is {density.tolist()}, expected "
             f"{p.tolist()}: is each feature kept with probability feature_probability "
             "(not 1 − feature_probability)?")
    on = x[x != 0]
    if abs(on.mean().item() - 0.5) > 0.02:
        fail("non-zero features should be uniform on [0, 1] (mean 0.5).")
    y = generate_batch(3, 40, 0.3, 10, generator=torch.Generator().manual_seed(0))
    if tuple(y.shape) != (10, 3, 40):
        fail("a plain float feature_probability should work too (the same for every instance).")
    print("generate_batch looks right.")


def check_toy_model(ToyModel) -> None:
    assert_own_code(ToyModel)
    cfg = ref.ToyConfig(n_feats=7, d_hidden=3, n_inst=2)
    g = torch.Generator().manual_seed(1)
    theirs, ours = ToyModel(cfg), ref.ToyModel(cfg, generator=g)
    with torch.no_grad():
        theirs.W.copy_(ours.W)
        theirs.b_final.copy_(torch.randn(2, 7, generator=g) * 0.1)
        ours.b_final.copy_(theirs.b_final)
    x = ref.generate_batch(2, 7, 0.5, 16, generator=g)
    out = theirs(x)
    if tuple(out.shape) != (16, 2, 7):
        fail(f"forward returned shape {tuple(out.shape)}; expected (batch, n_inst, n_feats).")
    if (out < 0).any():
        fail("outputs are negative: apply ReLU after adding b_final.")
    no_relu = torch.einsum("ihf,ihg,big->bif", ours.W, ours.W, x) + ours.b_final
    if torch.allclose(out, no_relu, atol=1e-5) and (no_relu < 0).any():
        fail("the ReLU is missing.")
    assert_close(out, ours(x), "forward should compute ReLU(Wᵀ W x + b_final) per instance; "
                 "check which axis of W you contract (W is [n_inst, d_hidden, n_feats]).")
    print("ToyModel.forward matches the reference.")


def check_importance_weighted_loss(loss_fn) -> None:
    assert_own_code(loss_fn)
    g = torch.Generator().manual_seed(2)
    x, out = torch.rand(8, 3, 5, generator=g), torch.rand(8, 3, 5, generator=g)
    imp = torch.rand(5, generator=g)
    got = loss_fn(out, x, imp)
    want = ref.importance_weighted_loss(out, x, imp)
    if torch.as_tensor(got).shape != want.shape:
        fail(f"return one loss per instance, shape {tuple(want.shape)}; got "
             f"{tuple(torch.as_tensor(got).shape)} (did you average over instances too?).")
    if torch.allclose(got, ((x - out).pow(2) * imp).mean((0, 2)), atol=1e-6):
        fail("you averaged over features: sum the weighted errors over features, then average "
             "over the batch.")
    if torch.allclose(got, ((x - out).pow(2)).sum(-1).mean(0), atol=1e-6):
        fail("the importance weights are missing.")
    assert_close(got, want, "the loss is Σ_i I_i (x_i − x'_i)², averaged over the batch.")
    print("importance_weighted_loss matches the reference.")


def check_dimensions_per_feature(fn) -> None:
    assert_own_code(fn)
    # Hand-made geometry (1 instance, 2 dims, 4 features): a dedicated direction, an
    # antipodal pair, and a feature that is not represented.
    W = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, -1.0, 0.0]]])
    got = fn(W)
    if tuple(got.shape) != (1, 4):
        fail(f"return one value per feature per instance: shape (1, 4), got {tuple(got.shape)}.")
    if torch.isnan(got).any():
        fail("a feature with ‖W_i‖ = 0 gave NaN: clamp the norms away from zero before dividing.")
    assert_close(got, torch.tensor([[1.0, 0.5, 0.5, 0.0]]),
                 "a feature alone in its direction has D_i = 1, each of an antipodal pair 1/2, and "
                 "an unrepresented one 0. D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)², where the sum includes "
                 "j = i.")
    print("dimensions_per_feature is right on a hand-made geometry.")


def check_mean_abs_cosine(fn) -> None:
    assert_own_code(fn)
    got = float(fn(200, 64, generator=torch.Generator().manual_seed(3)))
    want = math.sqrt(2 / (math.pi * 64))
    if got > 0.5:
        fail(f"mean |cos| = {got:.3f} is far too high: normalise each vector to unit length, and "
             "leave out each vector's cosine with itself (the diagonal).")
    if abs(got - want) > 0.15 * want:
        fail(f"mean |cos| = {got:.3f}; for random directions in 64 dims expect about "
             f"{want:.3f}. Use Gaussian vectors (torch.randn), not uniform on [0, 1].")
    print("mean_abs_cosine behaves like random directions should.")
