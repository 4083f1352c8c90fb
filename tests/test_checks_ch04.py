"""utils.checks.ch04: each check passes a correct answer, rejects a planted mistake with the message
that names it, and rejects an answer that merely calls the course's reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _helpers import fails as _fails
from _helpers import mine as _mine
from utils.checks import ch04 as checks
from utils.saes import JumpReLUSTE

# Answers are written here as a student would; assert_own_code wants them in `__main__`.






# ---- gated ---------------------------------------------------------------------------------------
def test_seed_gated_encode():
    @_mine
    def good(sae, x):
        gate = torch.sigmoid(x @ sae.W_gate.T)
        return gate * F.relu(x @ sae.W_mag.T), gate

    @_mine
    def no_gate(sae, x):
        return F.relu(x @ sae.W_mag.T), torch.sigmoid(x @ sae.W_gate.T)

    @_mine
    def ref(sae, x):
        from utils.saes import SeedGatedSAE
        return SeedGatedSAE.encode_with_pre(sae, x)

    checks.check_seed_gated_encode(good)
    _fails(checks.check_seed_gated_encode, no_gate, match="magnitude alone")
    _fails(checks.check_seed_gated_encode, ref, match="scores zero")


def _gated_good(sae, x):
    x_cent = x - sae.b_dec
    pi_gate = x_cent @ sae.W_enc + sae.b_gate
    pi_mag = x_cent @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag
    return (pi_gate > 0).float() * F.relu(pi_mag), pi_gate


def test_gated_encode():
    good = _mine(_gated_good)

    @_mine
    def soft_gate(sae, x):
        x_cent = x - sae.b_dec
        pi_gate = x_cent @ sae.W_enc + sae.b_gate
        return F.relu(pi_gate) * F.relu(x_cent @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag), pi_gate

    @_mine
    def no_b_dec(sae, x):
        pi_gate = x @ sae.W_enc + sae.b_gate
        return (pi_gate > 0).float() * F.relu(x @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag), pi_gate

    checks.check_gated_encode(good)
    _fails(checks.check_gated_encode, soft_gate, match="Heaviside")
    _fails(checks.check_gated_encode, no_b_dec, match="b_dec")
    _fails(checks.check_gated_encode, _mine(lambda sae, x: sae.encode_with_pre(x)), match="sae.encode_with_pre")


def test_gated_loss_terms():
    def make(detach: bool, on_acts: bool = False):
        @_mine
        def loss(sae, x, x_hat, pi_gate):
            gate = F.relu(pi_gate)
            W, b = (sae.W_dec.detach(), sae.b_dec.detach()) if detach else (sae.W_dec, sae.b_dec)
            l1_of = (_gated_good(sae, x)[0] if on_acts else gate)
            return {"recon": (x - x_hat).pow(2).sum(-1).mean(),
                    "sparsity": sae.cfg.l1_coeff * (l1_of * sae.W_dec.norm(dim=-1)).sum(-1).mean(),
                    "aux": (x - (gate @ W + b)).pow(2).sum(-1).mean()}
        return loss

    checks.check_gated_loss_terms(make(True))
    _fails(checks.check_gated_loss_terms, make(False), match="detach")
    _fails(checks.check_gated_loss_terms, make(True, on_acts=True), match="gate path")


# ---- JumpReLU --------------------------------------------------------------------------------------
def test_threshold_grad():
    @_mine
    def good(loss_fn, z, theta):
        theta = theta.detach().clone().requires_grad_(True)
        loss = loss_fn(z, theta)
        return torch.autograd.grad(loss, theta, allow_unused=True)[0] if loss.requires_grad else None

    @_mine
    def always_none(loss_fn, z, theta):
        return None

    checks.check_threshold_grad(good)
    _fails(checks.check_threshold_grad, always_none, match="returned None for a smooth loss")


def _jump(kernel_half_width: float = 0.5, factor_theta: bool = True, sign: float = -1.0):
    class J(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return z * (z > theta)

        @staticmethod
        def backward(ctx, grad):
            z, theta = ctx.saved_tensors
            u = (z - theta) / ctx.eps
            k = (u.abs() < kernel_half_width).to(z.dtype)
            g = sign * (theta if factor_theta else 1.0) / ctx.eps * k * grad
            return grad * (z > theta), g.reshape(-1, theta.shape[-1]).sum(0), None

    return _mine(J)


def test_jumprelu_ste():
    checks.check_jumprelu_ste(_jump())
    _fails(checks.check_jumprelu_ste, _jump(factor_theta=False), match="factor θ")
    _fails(checks.check_jumprelu_ste, _jump(sign=1.0), match="sign")
    _fails(checks.check_jumprelu_ste, _jump(kernel_half_width=1.0), match="rectangle kernel")

    class Ref(torch.autograd.Function):
        forward = staticmethod(lambda ctx, z, t, e: JumpReLUSTE.forward(ctx, z, t, e))
        backward = staticmethod(lambda ctx, g: JumpReLUSTE.backward(ctx, g))

    _fails(checks.check_jumprelu_ste, _mine(Ref), match="scores zero")


def test_step_ste():
    class S(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, theta, eps):
            ctx.save_for_backward(z, theta)
            ctx.eps = eps
            return (z > theta).to(z.dtype)

        @staticmethod
        def backward(ctx, grad):
            z, theta = ctx.saved_tensors
            k = (((z - theta) / ctx.eps).abs() < 0.5).to(z.dtype)
            return None, (-(1 / ctx.eps) * k * grad).reshape(-1, theta.shape[-1]).sum(0), None

    checks.check_step_ste(_mine(S))
    _fails(checks.check_step_ste, _jump(), match="that is JumpReLU")  # JumpReLU's forward is not a step


# ---- TopK / BatchTopK ------------------------------------------------------------------------------
def test_topk_activation():
    @_mine
    def good(pre, k):
        top = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())

    @_mine
    def no_relu(pre, k):
        top = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values)

    checks.check_topk_activation(good)
    _fails(checks.check_topk_activation, no_relu, match="ReLU")


def test_batch_topk_activation():
    @_mine
    def good(pre, k):
        flat = pre.relu().reshape(-1)
        top = flat.topk(k * pre.shape[0])
        return torch.zeros_like(flat).scatter(0, top.indices, top.values).reshape(pre.shape)

    @_mine
    def per_token(pre, k):
        top = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())

    checks.check_batch_topk_activation(good)
    _fails(checks.check_batch_topk_activation, per_token, match="that is TopK")


# ---- feature splitting ----------------------------------------------------------------------------------
def test_find_splits():
    def make(normalise: bool):
        @_mine
        def find(W_small, W_large, threshold=0.5):
            A, B = (F.normalize(W_small, dim=-1), F.normalize(W_large, dim=-1)) if normalise else (W_small, W_large)
            cos = A @ B.T
            best_cos, best = cos.max(0)
            out = {i: [] for i in range(W_small.shape[0])}
            for j in best_cos.argsort(descending=True).tolist():
                if best_cos[j] > threshold:
                    out[int(best[j])].append(j)
            return out
        return find

    checks.check_find_splits(make(True))
    _fails(checks.check_find_splits, make(False), match="normalise")
