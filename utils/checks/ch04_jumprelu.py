"""Visible checks for chapter 04, exercises 4-6: autograd and a threshold, JumpReLU and Step STEs.

The straight-through gradients are computed here from their definitions on inputs chosen so that
the usual slips give different numbers: a different θ per latent with θ·ε ≠ 1 and θ ≠ 1/ε (a
missing θ, a missing 1/ε and a missing both differ), points inside the kernel's window
|z − θ| < ε/2, points only inside the twice-too-wide window |z − θ| < ε, a point exactly at θ,
points on both sides of θ, and an upstream gradient that is not all ones.
"""

from __future__ import annotations

import re

import torch

from utils.checks import (CheckFailed, assert_close, assert_own_code, assert_untouched, call, fail, name_mistake,
                          snapshot, tensor_result)


def _own_function_class(cls, name: str, methods=("forward", "backward")) -> None:
    """assert_own_code for an autograd.Function: its static methods are what must be the student's."""
    assert_own_code(cls, name)
    for m in methods:
        fn = getattr(cls, m, None)
        if fn is None or getattr(fn, "__qualname__", "").startswith(("Function.", "_SingleLevelFunction.")):
            fail(f"`{name}` must define its own `{m}` (a @staticmethod).")
        assert_own_code(fn, f"{name}.{m}")


# ---- exercise 4: what autograd gives θ ------------------------------------------------------------
def check_threshold_grad(fn) -> None:
    assert_own_code(fn)
    z = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, 0.1]])
    theta = torch.tensor([0.3, 0.0, 1.0])
    what = "z [2, 3], θ = (0.3, 0, 1) and the smooth loss Σ z·θ + Σ θ²"
    before = snapshot(z=z, theta=theta)
    got = call(fn, lambda z, t: (z * t).sum() + t.pow(2).sum(), z, theta, what=what, name="threshold_grad")
    if theta.grad is not None:
        fail("`threshold_grad` left a `.grad` on the caller's θ (`.backward()` on θ itself): a second call adds "
             "to it, so gradients accumulate across calls. Differentiate a copy, "
             "`theta.detach().clone().requires_grad_()`, e.g. with torch.autograd.grad.")
    assert_untouched(before, "threshold_grad", z=z, theta=theta)
    want = z.sum(0) + 2 * theta  # ∂/∂θ (Σ z θ + Σ θ²)
    if got is None:
        fail("`threshold_grad` returned None for a smooth loss of θ: pass loss_fn a copy of θ that requires grad "
             "(`theta.detach().clone().requires_grad_()`), then differentiate the loss with respect to that copy.")
    got = tensor_result(got, "threshold_grad")
    if got.shape == z.shape:
        fail("`threshold_grad` returned a gradient shaped like z: differentiate with respect to θ, not z.")
    if got.shape == ():
        fail("`threshold_grad` returned one number: return ∂loss/∂θ, one value per element of θ (not the loss).")
    name_mistake(got, [(-want, "the sign is flipped: return ∂loss/∂θ as autograd gives it, not the descent "
                               "direction.")], atol=1e-5)
    assert_close(got, want, "return ∂loss/∂θ, shaped like θ: make a copy of θ that requires grad, "
                 "compute the loss, and differentiate it (torch.autograd.grad or .backward()).")
    # a θ that already requires grad (like sae.threshold), twice: the same answer, nothing left on it
    param = torch.nn.Parameter(theta.clone())
    first = call(fn, lambda z, t: (z * t).sum() + t.pow(2).sum(), z, param, what="θ a Parameter", name="threshold_grad")
    again = call(fn, lambda z, t: (z * t).sum() + t.pow(2).sum(), z, param, what="the same Parameter again",
                 name="threshold_grad")
    if param.grad is not None or not (isinstance(again, torch.Tensor) and isinstance(first, torch.Tensor)
                                      and torch.allclose(first, again)):
        fail("called twice on a θ that already requires grad (a Parameter such as sae.threshold), the "
             "gradients accumulate in θ.grad: differentiate a detached copy with torch.autograd.grad.")
    for what, loss_fn in (("a loss through the step z > θ", lambda z, t: (z > t).float().sum()),
                          ("the paper's JumpReLU, (z · 1[z > θ])²", lambda z, t: (z * (z > t)).pow(2).sum())):
        try:
            got = call(fn, loss_fn, z, theta, what=what, name="threshold_grad")
        except CheckFailed as e:
            if re.search(r"does not require grad|grad_fn|does not have a grad", str(e)):
                fail(f"for {what} the loss has no gradient path from θ, and your function raised: "
                     "check `loss.requires_grad` and return None in that case (that is autograd's answer: "
                     "no gradient at all).")
            raise
        if got is not None and (not isinstance(got, torch.Tensor) or got.abs().max() > 0):
            fail(f"for {what} there is no gradient: return None (or zeros).")
    print("threshold_grad works on a smooth loss and on a step, and leaves θ as it was.")


# ---- exercises 5 and 6: the straight-through estimators -------------------------------------------
def _jump_inputs():
    # per-latent θ with θ·ε ≠ 1 and θ ≠ 1/ε; ε = 0.4: the kernel's window is |z − θ| < 0.2
    theta = torch.tensor([2.0, 0.5, 1.2, 3.0, 0.8])
    z = torch.tensor([[1.9, 0.5, 1.55, 2.85, 2.0],      # in window (below θ), at θ, only in a 2ε-wide window,
                      [2.3, 0.65, -0.3, 3.1, 0.7]])     # in window on both sides of θ, far above θ
    upstream = torch.arange(1.0, 11.0).reshape(2, 5)
    return z, theta, 0.4, upstream


def _applied(cls, name: str):
    """The student's autograd Function checked for its methods and applied to `_jump_inputs()` (with
    grads on copies of z and θ): ((z, θ, ε, upstream), (z copy, θ copy), output [2, 5])."""
    _own_function_class(cls, name)
    z, theta, eps, up = _jump_inputs()
    z1, t1 = z.clone().requires_grad_(), theta.clone().requires_grad_()
    out = tensor_result(call(cls.apply, z1, t1, eps, what="z [2, 5], θ [5], ε 0.4", name=f"{name}.apply"),
                        f"{name}.apply", shape=(2, 5))
    return (z, theta, eps, up), (z1, t1), out


def _backward(out, upstream, name: str) -> None:
    """out.backward(upstream), with autograd's complaints about the student's backward explained."""
    try:
        call(out.backward, upstream, what="z [2, 5], θ [5], ε 0.4", name=f"{name}.backward")
    except CheckFailed as e:
        if re.search(r"incorrect number of gradients|gradient different than None", str(e)):
            fail(f"`{name}.backward` must return one gradient per input of forward, in order: "
                 "(gradient for z, gradient for θ, None for ε).\n" + str(e))
        if re.search(r"does not require grad|grad_fn", str(e)):
            fail(f"`{name}.forward`'s output is cut off from autograd: return a float tensor computed from z "
                 "(`.to(z.dtype)`), not a boolean or a detached one.")
        raise


def _theta_grad(t_grad, name: str):
    if t_grad is None:
        fail(f"`{name}.backward` returned no gradient for θ: that is the whole point of the straight-through "
             "estimator.")
    return t_grad


def _theta_variants(z, theta, eps, up, *, with_theta: bool, formula: str):
    """(value, message) for the usual slips in ∂/∂θ := −[θ]·(1/ε) K((z − θ)/ε) · upstream, summed."""
    factor = theta if with_theta else torch.ones_like(theta)
    d = z - theta
    half, wide = (d.abs() < eps / 2).float(), (d.abs() < eps).float()
    per = -(factor / eps) * half * up
    return [
        (-per.sum(0), f"θ's pseudo-gradient has the wrong sign: {formula}."),
        ((-half * up / eps).sum(0), f"θ's pseudo-gradient lacks the factor θ: {formula}.") if with_theta else
        ((-theta * half * up / eps).sum(0), f"there is no factor θ here: {formula}."),
        ((-factor * half * up).sum(0), f"θ's pseudo-gradient lacks the factor 1/ε: {formula}."),
        ((-factor / eps * wide * up).sum(0), "the rectangle kernel is K(u) = 1[|u| < ½] with u = (z − θ)/ε: it is on "
                                             "for |z − θ| < ε/2, not ε."),
        ((-factor / eps * half).sum(0), f"multiply by the upstream gradient `grad`: {formula}."),
        ((per * (d > 0)).sum(0), "the kernel is on on both sides of θ, |z − θ| < ε/2, not only above it."),
        ((per * (d < 0)).sum(0), "the kernel is on on both sides of θ, |z − θ| < ε/2, not only below it."),
        (per.mean(0), "sum θ's pseudo-gradient over the batch (every token adds its vote), do not average it."),
    ]


def check_jumprelu_ste(cls) -> None:
    (z, theta, eps, up), (z1, t1), out = _applied(cls, "JumpReLU")
    name_mistake(out, [
        (torch.relu(z - theta), "forward returned ReLU(z − θ) (the seed's jump_relu): JumpReLU keeps z itself above "
                                "θ, z · 1[z > θ], so it jumps from 0 to θ."),
        (z * (z >= theta), "forward keeps z = θ: the gate is strict, z · 1[z > θ] (0 at z = θ)."),
        ((z > theta).float(), "forward returned the step 1[z > θ]; JumpReLU keeps z itself: z · 1[z > θ]."),
    ], atol=1e-6)
    assert_close(out, z * (z > theta), "forward is z · 1[z > θ].")
    _backward(out, up, "JumpReLU")
    mask = (z > theta).float()
    if z1.grad is None:
        fail("`JumpReLU.backward` returned no gradient for z: ∂/∂z = grad · 1[z > θ].")
    name_mistake(z1.grad, [
        (up, "∂/∂z is masked: grad · 1[z > θ] (0 where the latent is off), not the upstream gradient everywhere."),
        (mask, "∂/∂z is grad · 1[z > θ]: multiply the mask by the upstream gradient `grad`."),
        (up * (z >= theta), "∂/∂z is 0 at z = θ too: the mask is strict, 1[z > θ]."),
    ], atol=1e-5)
    assert_close(z1.grad, up * mask, "∂/∂z is the upstream gradient where z > θ and 0 elsewhere.")
    formula = "∂/∂θ := −(θ/ε) K((z − θ)/ε) · grad, summed over the batch"
    got = _theta_grad(t1.grad, "JumpReLU")
    name_mistake(got, _theta_variants(z, theta, eps, up, with_theta=True, formula=formula), atol=1e-4)
    assert_close(got, (-(theta / eps) * ((z - theta).abs() < eps / 2) * up).sum(0),
                 f"{formula}, with K(u) = 1[|u| < ½].", atol=1e-4)
    print("JumpReLU: forward and both gradients match the straight-through estimator.")


def check_step_ste(cls) -> None:
    (z, theta, eps, up), (z1, t1), out = _applied(cls, "Step")
    if not out.is_floating_point():
        fail(f"forward returned a {out.dtype} tensor: return the step as a float tensor, "
             "`(z > theta).to(z.dtype)`, so the L0 can be summed and differentiated.")
    name_mistake(out, [
        (z * (z > theta), "forward returned z · 1[z > θ] (that is JumpReLU); the step is 0 or 1: 1[z > θ]."),
        ((z >= theta).float(), "forward counts z = θ as on: the step is strict, 1[z > θ]."),
    ], atol=1e-6)
    assert_close(out, (z > theta).float(), "forward is the step H(z − θ) = 1[z > θ], as a float tensor.")
    _backward(out, up, "Step")
    if z1.grad is not None and z1.grad.abs().max() > 0:
        fail("return None (no gradient) for z: in the L0 term only θ learns (DeepMind's choice).")
    formula = "∂/∂θ := −(1/ε) K((z − θ)/ε) · grad, summed over the batch"
    got = _theta_grad(t1.grad, "Step")
    name_mistake(got, _theta_variants(z, theta, eps, up, with_theta=False, formula=formula), atol=1e-4)
    assert_close(got, (-(1 / eps) * ((z - theta).abs() < eps / 2) * up).sum(0),
                 f"{formula}, with K(u) = 1[|u| < ½].", atol=1e-4)
    print("Step: forward and θ's pseudo-gradient match.")
