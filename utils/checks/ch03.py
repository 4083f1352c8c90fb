"""Visible checks for chapter 03 (the loss trade-off). Each names the mistake it most likely found.

Gradients are checked against torch.autograd, and the shrinkage formula against gradient
descent on the 1-D loss, so the checks verify the mathematics rather than copy an answer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from utils import metrics
from utils.checks import assert_close, assert_own_code, fail
from utils.losses import sae_loss as ref_sae_loss
from utils.synthetic import ToyFeatureConfig, ToyFeatures


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- exercise 1: the seed's loss ------------------------------------------------------------------
def check_sae_loss(fn) -> None:
    assert_own_code(fn)
    g = _gen(0)
    x, rec = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    latents = torch.randn(16, 32, generator=g)  # some negative, so |·| matters
    got = fn(x, rec, latents, 0.3)
    want = ref_sae_loss(x, rec, latents, 0.3)
    got_t = torch.as_tensor(got)
    if got_t.numel() != 1:
        fail(f"return one number (a 0-d tensor); got shape {tuple(got_t.shape)}.")
    mse, l1 = (x - rec).pow(2).mean(), latents.abs().mean()
    if torch.allclose(got_t, (x - rec).pow(2).sum(-1).mean() + 0.3 * l1, atol=1e-4) or \
            torch.allclose(got_t, (x - rec).pow(2).sum() + 0.3 * latents.abs().sum(), atol=1e-3):
        fail("you summed where the seed averages: both terms are .mean() over every element.")
    if torch.allclose(got_t, mse + 0.3 * latents.mean(), atol=1e-5):
        fail("the sparsity term is the mean of |latents|: take .abs() before averaging.")
    if torch.allclose(got_t, mse + 0.3 * latents.pow(2).mean(), atol=1e-5):
        fail("that is an L2 penalty (latents squared); the seed's penalty is L1, mean |latent|.")
    if torch.allclose(got_t, 0.3 * mse + l1, atol=1e-5):
        fail("l1_coeff multiplies the sparsity term, not the reconstruction term.")
    assert_close(got_t, want, "loss = mean((x − reconstructed)²) + l1_coeff · mean(|latents|).")
    x2 = x.clone().requires_grad_()
    fn(x2, rec, latents, 0.3).backward()
    if x2.grad is None:
        fail("the loss must stay differentiable: use torch operations, not .item() or numpy.")
    print("sae_loss matches the seed's.")


# ---- exercise 2: the L1 (sub)gradient -------------------------------------------------------------
def _autograd_l1(latents: torch.Tensor, l1_coeff: float) -> torch.Tensor:
    z = latents.detach().clone().requires_grad_()
    (l1_coeff * z.abs().mean()).backward()
    return z.grad


def check_l1_gradient(fn) -> None:
    assert_own_code(fn)
    z = torch.tensor([[2.0, -0.5, 0.01], [-3.0, 100.0, -0.001]])
    with torch.no_grad():  # a closed form, not autograd
        try:
            got = fn(z, 0.6)
        except RuntimeError as e:
            fail(f"your function needs autograd ({e}). Write the gradient as a formula of the "
                 "latents instead: the check calls it under torch.no_grad().")
    got = torch.as_tensor(got)
    want = _autograd_l1(z, 0.6)
    if tuple(got.shape) != tuple(z.shape):
        fail(f"return one partial derivative per latent: shape {tuple(z.shape)}, got {tuple(got.shape)}.")
    if torch.allclose(got, 0.6 * z.sign(), atol=1e-6):
        fail("the penalty is a *mean* over all latents: each partial derivative carries a 1/N "
             "(N = latents.numel()).")
    if torch.allclose(got, 0.6 * z / z.numel(), atol=1e-6) or torch.allclose(got, 1.2 * z / z.numel(), atol=1e-6):
        fail("that gradient is proportional to the latent, which is the L2 penalty's. The derivative of "
             "|z| is sign(z): the same size however small z is.")
    assert_close(got, want, "d/dz [λ · mean |z|] = λ · sign(z) / N; autograd disagrees with yours.")
    zero = torch.tensor([0.0, 1.0, 0.0, -1.0])
    with torch.no_grad():
        g0 = torch.as_tensor(fn(zero, 1.0))
    if not torch.isfinite(g0).all():
        fail("at z = 0 your gradient is not finite: |z| has a kink there, not a pole. sign(0) = 0.")
    if g0[0].abs() > 0.25 + 1e-6:
        fail(f"at z = 0 you returned {g0[0].item():.3g}; any subgradient lies in [−λ/N, λ/N] "
             f"= [−0.25, 0.25]. Use sign(0) = 0, as PyTorch does.")
    assert_close(g0, _autograd_l1(zero, 1.0), "at exactly 0, return 0 (PyTorch's subgradient).")
    print("l1_gradient agrees with autograd, including at 0.")


# ---- exercise 3: shrinkage ------------------------------------------------------------------------
def _descend(x: torch.Tensor, l1: float, steps: int = 3000, lr: float = 0.01) -> torch.Tensor:
    """argmin_{f ≥ 0} (x − f)² + λ f by projected gradient descent, with autograd."""
    f = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        loss = ((x - f).pow(2) + l1 * f.abs()).sum()
        (grad,) = torch.autograd.grad(loss, f)
        with torch.no_grad():
            f -= lr * grad
            f.clamp_(min=0.0)
    return f.detach()


def check_optimal_latent(fn) -> None:
    assert_own_code(fn)
    x = torch.tensor([2.0, 1.0, 0.3, 0.1, -0.5])
    l1 = 0.4
    got = torch.as_tensor(fn(x, l1)).float()
    if tuple(got.shape) != tuple(x.shape):
        fail(f"return one optimal latent per input: shape {tuple(x.shape)}, got {tuple(got.shape)}.")
    want = _descend(x, l1)
    if torch.allclose(got, x, atol=1e-4):
        fail("you returned x itself: with the penalty the optimum is pulled below x (shrinkage).")
    if torch.allclose(got, (x - l1).clamp_min(0), atol=1e-4):
        fail("off by a factor 2: d/df (x − f)² = −2(x − f), so the optimum is at x − λ/2.")
    if torch.allclose(got, x - l1 / 2, atol=1e-4):
        fail("the latent is a ReLU output, f ≥ 0: when x − λ/2 < 0 the optimum is f = 0 (clamp).")
    assert_close(got, want, "setting the derivative 2(f − x) + λ to zero gives f = x − λ/2, clamped at 0; "
                 "gradient descent on the 1-D loss (autograd) finds a different optimum than yours.", atol=2e-3)
    print("optimal_latent matches gradient descent on the 1-D loss.")


# ---- exercise 4: the training loop ----------------------------------------------------------------
def _toy(n: int, seed: int) -> torch.Tensor:
    data = ToyFeatures(ToyFeatureConfig(d_in=12, n_feats=16, mean_active=2.0, prob_decay=1.0, seed=seed))
    return data.sample(n, _gen(seed + 1))[0]


def check_train_toy_sae(fn) -> None:
    assert_own_code(fn)
    x = _toy(1024, 0)
    out = fn(x, 16, 0.05, epochs=12, batch_size=128, lr=1e-2, seed=0)
    if not isinstance(out, tuple) or len(out) != 2:
        fail("return the pair (sae, history).")
    sae, history = out
    if not isinstance(sae, nn.Module):
        fail("the first element should be the trained SAE (an nn.Module).")
    if not isinstance(history, list) or not history or not isinstance(history[0], dict):
        fail("history should be a list with one dict per optimiser step.")
    n_steps = {12 * math.ceil(1024 / 128), 12 * (1024 // 128)}
    if len(history) not in n_steps:
        fail(f"history has {len(history)} entries; with 1024 rows, batch_size 128 and 12 epochs there are "
             f"{min(n_steps)} optimiser steps (one entry per step).")
    for key in ("step", "recon_loss", "sparsity_loss", "l0"):
        if key not in history[0]:
            fail(f"each history entry needs the key {key!r}; yours has {sorted(history[0])}.")
    if not all(isinstance(h["recon_loss"], float) for h in history[:3]):
        fail("store plain floats in the history (loss.item()), not tensors that keep the graph alive.")
    rec, lat = sae(x)
    if tuple(lat.shape) != (1024, 16):
        fail(f"the SAE should have n_latents = 16 latents; its latents have shape {tuple(lat.shape)}.")
    norms = sae.decoder.weight.detach().norm(dim=0)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        fail(f"decoder columns have norms {norms.min():.3f}–{norms.max():.3f}: call "
             "sae.normalize_decoder_() after every optimiser step (chapter 02's loophole).")
    first = sum(h["recon_loss"] for h in history[:5]) / 5
    last = sum(h["recon_loss"] for h in history[-5:]) / 5
    if not last < 0.5 * first:
        fail(f"reconstruction loss went from {first:.4f} to {last:.4f}: it should fall. Do you call "
             "optimizer.zero_grad(), loss.backward() and optimizer.step() on every batch?")
    ev = metrics.explained_variance(x, rec.detach()).item()
    if ev < 0.6:
        fail(f"after training, the SAE explains only {ev:.2f} of the variance of its training data: "
             "is it trained on `activations`, and do you return the trained SAE?")
    sparse, _ = fn(x, 16, 2.0, epochs=12, batch_size=128, lr=1e-2, seed=0)
    l0_small = metrics.l0(lat).item()
    l0_big = metrics.l0(sparse(x)[1]).item()
    if not l0_big < 0.7 * l0_small:
        fail(f"a 40× larger l1_coeff left L0 at {l0_big:.1f} (vs {l0_small:.1f}): does the loss you "
             "optimise include l1_coeff · sparsity?")
    print(f"train_toy_sae trains: reconstruction loss {first:.4f} → {last:.4f}, explained variance "
          f"{ev:.2f}; L0 {l0_small:.1f} at l1_coeff 0.05, {l0_big:.1f} at 2.0.")


# ---- exercise 5: measuring the trade-off ----------------------------------------------------------
def check_l0_and_ev(fn) -> None:
    assert_own_code(fn)
    g = _gen(3)
    offset = torch.linspace(1, 6, 6)  # a different, non-zero mean per dimension
    x = torch.randn(200, 6, generator=g) * torch.linspace(0.5, 2, 6) + offset
    x_hat = x + 0.3 * torch.randn(200, 6, generator=g)
    latents = torch.relu(torch.randn(200, 40, generator=g) - 1.0)
    got = fn(x, x_hat, latents)
    if not isinstance(got, tuple) or len(got) != 2:
        fail("return the pair (l0, explained_variance).")
    l0, ev = (float(v) for v in got)
    want_l0, want_ev = metrics.l0(latents).item(), metrics.explained_variance(x, x_hat).item()
    if abs(l0 - want_l0 / 40) < 1e-4:
        fail("L0 is the number of active latents per token (a count), not the fraction.")
    if abs(l0 - want_l0) > 1e-3:
        fail(f"L0 = {l0:.3f}, expected {want_l0:.3f}: count latents != 0 per token, then average over tokens.")
    about_zero = metrics.explained_variance_about_zero(x, x_hat).item()
    seed_style = 1 - ((x - x_hat).pow(2).mean() / x.var()).item()
    if abs(ev - about_zero) < 1e-4:
        fail("you measured variance about zero (Σ‖x‖²): a constant offset then counts as 'explained'. "
             "Subtract the per-dimension mean over tokens, x − x.mean(0).")
    if abs(ev - seed_style) < 1e-4:
        fail("x.var() is the variance of all elements around one scalar mean; the variance to explain is "
             "around the per-dimension mean: Σ‖x − x̄‖² with x̄ = x.mean(0).")
    if abs(ev - want_ev) > 1e-4:
        fail(f"explained variance = {ev:.4f}, expected {want_ev:.4f}: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖².")
    print("l0_and_explained_variance matches the course's metrics.")
