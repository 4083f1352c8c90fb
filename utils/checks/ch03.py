"""Visible checks for chapter 03 (the loss trade-off). Each names the mistake it most likely found.

Every check runs the student's code through `call` (an exception becomes a message), checks what
comes back, then compares it with the right value *and* with the value each common mistake would
give, all computed here from the definitions (gradients with torch.autograd, the shrinkage optimum
by gradient descent on the 1-D loss, training by replaying Adam from the same start), so a message
names the mistake rather than printing a bare difference. The inputs are chosen so that those
values differ: negative latents, a 2 × 3 tensor whose numel, rows and columns differ, inputs on
both sides of the threshold, a ragged last batch, a reconstruction with a constant bias.
"""

from __future__ import annotations

import re

import torch

from utils.checks import (assert_close, assert_own_code, assert_untouched, call, fail, matches, name_mistake,
                          snapshot, tensor_result)
from utils.checks.ch03_train import check_train_toy_sae  # noqa: F401 (exercise 4, in a file of its own)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- exercise 1: the seed's loss ------------------------------------------------------------------
def check_sae_loss(fn) -> None:
    assert_own_code(fn)
    g = _gen(0)
    x, rec = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    latents = torch.randn(16, 32, generator=g)  # some negative, so |·| matters; 8 ≠ 16 ≠ 32
    c, what = 0.3, "x, reconstructed [16, 8], latents [16, 32] (some negative), l1_coeff 0.3"
    before = snapshot(x=x, reconstructed=rec, latents=latents)
    got = tensor_result(call(fn, x, rec, latents, c, what=what), "sae_loss")
    assert_untouched(before, "sae_loss", x=x, reconstructed=rec, latents=latents)
    if got.shape == (16,):
        fail("sae_loss returned one loss per row (shape (16,)): the seed averages over every element, "
             "rows included: .mean() with no axis.")
    if got.shape != ():
        fail(f"sae_loss returned shape {tuple(got.shape)}: return one number, a 0-d tensor (.mean() with no axis).")
    err2, mag = (x - rec).pow(2), latents.abs()
    mse, l1 = err2.mean(), mag.mean()
    name_mistake(got, [
        (err2.sum() + c * mag.sum(), "you summed where the seed averages: both terms are .mean() over every element."),
        (err2.sum(-1).mean() + c * mag.sum(-1).mean(),
         "you summed over the last axis and averaged over rows (the library's and SAELens' convention); the "
         "seed averages over every element: both terms are .mean() with no axis."),
        (err2.sum() + c * l1, "the reconstruction term is summed where the seed averages: (x − reconstructed)² .mean()."),
        (err2.sum(-1).mean() + c * l1,
         "the reconstruction term is summed over the last axis: the seed averages over every element, .mean()."),
        (mse + c * mag.sum(), "the sparsity term is summed where the seed averages: latents.abs().mean()."),
        (mse + c * mag.sum(-1).mean(),
         "the sparsity term is summed over the latents: the seed averages over every element, latents.abs().mean()."),
        (mse + c * latents.mean(), "the sparsity term is the mean of |latents|: take .abs() before averaging."),
        (mse + c * latents.pow(2).mean(), "that is an L2 penalty (latents squared); the seed's penalty is L1, mean |latent|."),
        (c * mse + l1, "l1_coeff multiplies the sparsity term, not the reconstruction term."),
        (mse + l1, "l1_coeff is missing: the sparsity term is l1_coeff · mean(|latents|)."),
        (mse, "the sparsity term is missing: add l1_coeff · latents.abs().mean()."),
        (c * l1, "the reconstruction term is missing: add (x − reconstructed).pow(2).mean()."),
        ((x - rec).abs().mean() + c * l1,
         "the reconstruction error must be squared: (x − reconstructed).pow(2).mean(), not its absolute value."),
        ((x - rec).mean().pow(2) + c * l1,
         "that is the square of the mean error; the reconstruction term is the mean of the squared errors, "
         "(x − reconstructed).pow(2).mean()."),
        ((x - rec).norm() + c * l1, "that is the norm of the error (the root of the sum of squares); the "
         "reconstruction term is the mean of the squared errors, (x − reconstructed).pow(2).mean()."),
    ], atol=1e-4, rtol=1e-5)
    assert_close(got, mse + c * l1, "loss = mean((x − reconstructed)²) + l1_coeff · mean(|latents|).")
    # Differentiable, with the right gradient for both terms (what the trainer's backward() needs).
    rec_g, lat_g = rec.clone().requires_grad_(), latents.clone().requires_grad_()
    out = tensor_result(call(fn, x, rec_g, lat_g, c, what=what + ", reconstructed and latents requiring grad"),
                        "sae_loss")
    if not out.requires_grad:
        fail("the loss is cut off from autograd (float(), .item(), .detach(), numpy or torch.tensor(...) on the "
             "result): keep it a tensor built from torch operations so the trainer can call .backward().")
    out.backward()
    for name, t, want in (("reconstruction", rec_g, -2 * (x - rec) / x.numel()),
                          ("sparsity", lat_g, c * latents.sign() / latents.numel())):
        if t.grad is None or not t.grad.abs().sum() > 0:
            fail(f"the {name} term does not reach autograd: no .item(), float() or .detach() inside the loss.")
        assert_close(t.grad, want, f"autograd's gradient of your loss through the {name} term is wrong.")
    print("sae_loss matches the seed's, gradients included.")


# ---- exercise 2: the L1 (sub)gradient -------------------------------------------------------------
def _autograd_l1(latents: torch.Tensor, l1_coeff: float) -> torch.Tensor:
    z = latents.detach().clone().requires_grad_()
    (l1_coeff * z.abs().mean()).backward()
    return z.grad


def _closed_form(fn, z: torch.Tensor, l1_coeff: float, what: str) -> torch.Tensor:
    """fn(z, l1_coeff) under torch.no_grad(): the exercise asks for a formula, not autograd."""
    before = snapshot(latents=z)
    with torch.no_grad():
        try:
            got = call(fn, z, l1_coeff, what=what)
        except AssertionError as e:
            if re.search(r"does not require grad|grad_fn", str(e)):
                fail("your function needs autograd (it ran under torch.no_grad(), so .backward() had nothing "
                     "to differentiate). Write the gradient as a formula of the latents instead.")
            raise
    assert_untouched(before, "l1_gradient", latents=z)
    return tensor_result(got, "l1_gradient")


def check_l1_gradient(fn) -> None:
    assert_own_code(fn)
    z = torch.tensor([[2.0, -0.5, 0.01], [-3.0, 100.0, -0.001]])  # numel 6, 2 rows, 3 columns
    lam = 0.6
    got = _closed_form(fn, z, lam, "latents [2, 3], l1_coeff 0.6")
    if got.numel() == 1:
        fail("l1_gradient returned one number: return one partial derivative per latent (the shape of "
             "latents), not the penalty or its mean.")
    if tuple(got.shape) != tuple(z.shape):
        fail(f"return one partial derivative per latent: shape {tuple(z.shape)}, got {tuple(got.shape)}.")
    s, n = z.sign(), z.numel()
    name_mistake(got, [
        (lam * s, "the penalty is a *mean* over all latents: each partial derivative carries a 1/N "
                  "(N = latents.numel())."),
        (lam * s / z.shape[0], "you divided by latents.shape[0] (the number of rows): the mean is over every "
                               "element, N = latents.numel()."),
        (lam * s / z.shape[-1], "you divided by latents.shape[-1] (the number of latents per row): the mean is "
                                "over every element, N = latents.numel()."),
        (-lam * s / n, "the sign is flipped: the gradient of λ|z| points away from 0 (+λ/N for z > 0); gradient "
                       "descent then moves against it, toward 0."),
        (s / n, "l1_coeff is missing: the penalty is l1_coeff · mean |z|, so its gradient is l1_coeff · sign(z) / N."),
        (lam * z / n, "that gradient is proportional to the latent, which is the L2 penalty's. The derivative of "
                      "|z| is sign(z): the same size however small z is."),
        (2 * lam * z / n, "that gradient is proportional to the latent, which is the L2 penalty's. The derivative of "
                          "|z| is sign(z): the same size however small z is."),
    ], atol=1e-6, rtol=1e-4)
    assert_close(got, _autograd_l1(z, lam), "d/dz [λ · mean |z|] = λ · sign(z) / N; autograd disagrees with yours.")
    zero = torch.tensor([0.0, 1.0, 0.0, -1.0])
    g0 = _closed_form(fn, zero, 1.0, "latents (0, 1, 0, −1), l1_coeff 1")
    if tuple(g0.shape) != (4,):
        fail(f"for latents of shape (4,) l1_gradient returned shape {tuple(g0.shape)}.")
    if not torch.isfinite(g0).all():
        fail("at z = 0 your gradient is not finite (0/0, e.g. z / |z|): |z| has a kink there, not a pole. "
             "Use torch.sign, which gives sign(0) = 0.")
    if matches(g0[0].abs(), 0.25, atol=1e-6):
        fail("at z = 0 you returned ±λ/N (0 counted as positive or negative, e.g. `z >= 0`): "
             "use sign(0) = 0, as torch.sign and PyTorch's autograd do.")
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
    x = torch.tensor([2.0, 1.0, 0.3, 0.1, -0.5])  # above and below the threshold λ/2 = 0.2, and negative
    l1 = 0.4
    before = snapshot(x=x)
    got = tensor_result(call(fn, x, l1, what="x = (2, 1, 0.3, 0.1, −0.5), l1_coeff 0.4"), "optimal_latent")
    assert_untouched(before, "optimal_latent", x=x)
    if tuple(got.shape) != tuple(x.shape):
        fail(f"return one optimal latent per input: shape {tuple(x.shape)}, got {tuple(got.shape)}.")
    got = got.detach().float()
    half = l1 / 2
    name_mistake(got, [
        (x, "you returned x itself: with the penalty the optimum is pulled below x (shrinkage)."),
        ((x - l1).clamp_min(0), "off by a factor 2: d/df (x − f)² = −2(x − f), so the optimum is at x − λ/2."),
        (x - half, "the latent is a ReLU output, f ≥ 0: when x − λ/2 < 0 the optimum is f = 0 (clamp)."),
        (x.clamp_min(0) - half, "you clamped before subtracting: clamp the result, max(x − λ/2, 0), so that "
                                "f ≥ 0 (yours is negative for small x)."),
        (x.sign() * (x.abs() - half).clamp_min(0),
         "that is the two-sided soft threshold of the lasso, which lets f be negative; here f ≥ 0 "
         "(a ReLU latent), so every x below λ/2, negative ones included, gives f = 0."),
        (torch.where(x > half, x, torch.zeros_like(x)),
         "that is a hard threshold: it zeroes small inputs but keeps the others unchanged. The optimum is "
         "shrunk as well: f = x − λ/2 above the threshold."),
    ], atol=1e-4)
    assert_close(got, _descend(x, l1), "setting the derivative 2(f − x) + λ to zero gives f = x − λ/2, clamped "
                 "at 0; gradient descent on the 1-D loss (autograd) finds a different optimum than yours.", atol=2e-3)
    print("optimal_latent matches gradient descent on the 1-D loss.")


# ---- exercise 4: the training loop ----------------------------------------------------------------
# check_train_toy_sae: see utils/checks/ch03_train.py.


# ---- exercise 5: measuring the trade-off ----------------------------------------------------------
def check_l0_and_ev(fn) -> None:
    assert_own_code(fn)
    g = _gen(3)
    n, d = 40, 6  # few tokens, so dividing by n − 1 instead of n shows
    x = torch.randn(n, d, generator=g) * torch.linspace(0.5, 3, d) + torch.linspace(1, 6, d)  # offset, unequal spread
    x_hat = x + 0.4 * torch.randn(n, d, generator=g) + 0.3  # noise and a constant bias
    latents = torch.relu(torch.randn(n, 25, generator=g) - 0.8) * torch.randn(n, 25, generator=g).sign()  # ±
    what = "x, x_hat [40, 6] (offset per dimension), latents [40, 25] (some negative)"
    before = snapshot(x=x, x_hat=x_hat, latents=latents)
    got = call(fn, x, x_hat, latents, what=what)
    assert_untouched(before, "l0_and_explained_variance", x=x, x_hat=x_hat, latents=latents)
    if not isinstance(got, tuple) or len(got) != 2:
        fail(f"return the pair (l0, explained_variance); got {type(got).__name__}.")
    for name, v in zip(("l0", "explained_variance"), got):
        if isinstance(v, torch.Tensor):
            fail(f"{name} is a tensor: return Python floats (.item()), as the exercise asks.")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            fail(f"{name} should be a Python float; got {type(v).__name__}.")
    l0, ev = (float(v) for v in got)
    xd, xhd = x.double(), x_hat.double()
    active = latents != 0
    want_l0 = active.double().sum(-1).mean().item()
    sse = (xd - xhd).pow(2).sum()
    want_ev = (1 - sse / (xd - xd.mean(0)).pow(2).sum()).item()
    if abs(l0 - want_ev) < 1e-4 and abs(ev - want_l0) < 1e-4:
        fail("the pair is swapped: return (l0, explained_variance) in that order.")
    name_mistake(l0, [
        (want_l0 / latents.shape[-1], "L0 is the number of active latents per token (a count), not the fraction."),
        ((latents > 0).double().sum(-1).mean().item(),
         "you counted latents > 0: negative codes are active too (other variants produce them); count latents != 0."),
        (active.double().sum(0).mean().item(),
         "you counted over the wrong axis (per latent, over tokens): count the active latents of each token "
         "(sum over the last axis), then average over tokens."),
    ], atol=1e-4)
    if abs(l0 - want_l0) > 1e-4:
        fail(f"L0 = {l0:.3f}, expected {want_l0:.3f}: count latents != 0 per token, then average over tokens.")
    name_mistake(ev, [
        (1 - sse / xd.pow(2).sum(), "you measured variance about zero (Σ‖x‖²): a constant offset then counts as "
                                    "'explained'. Subtract the per-dimension mean over tokens, x − x.mean(0)."),
        (1 - (sse / xd.numel()) / xd.var(), "x.var() is the variance of all elements around one scalar mean; the "
                                            "variance to explain is around the per-dimension mean: Σ‖x − x̄‖² with x̄ = x.mean(0)."),
        (1 - sse / (xd - xd.mean(-1, keepdim=True)).pow(2).sum(),
         "you centred each token on its own mean (over dimensions); x̄ is the per-dimension mean over tokens, "
         "x.mean(0)."),
        (1 - (xd - xhd).var(0).sum() / xd.var(0).sum(),
         "that is the variance of the residual, which ignores a constant error (bias) in x̂; the numerator is "
         "the plain squared error Σ‖x − x̂‖²."),
        (1 - ((xd - xhd).pow(2).mean(0) / xd.var(0)).mean(), "you averaged per-dimension ratios; explained "
         "variance is one ratio of sums over every dimension: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²."),
        (1 - ((xd - xhd).pow(2).mean(0) / xd.var(0, unbiased=False)).mean(), "you averaged per-dimension ratios; "
         "explained variance is one ratio of sums over every dimension: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²."),
        (1 - (sse / n) / xd.var(0).sum(), "x.var(0) divides by n − 1 (the unbiased estimate) while your error "
                                          "divides by n: use sums on both sides, Σ‖x − x̂‖² / Σ‖x − x̄‖²."),
    ], atol=1e-5)
    if abs(ev - want_ev) > 1e-5:
        fail(f"explained variance = {ev:.4f}, expected {want_ev:.4f}: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖², "
             "x̄ = x.mean(0).")
    print("l0_and_explained_variance matches the definitions.")
