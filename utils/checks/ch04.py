"""Visible checks for chapter 04 (SAE variants). Each names the mistake it most likely found.

The references are the course's own SAEs (`utils.saes`): a check builds one, copies its
weights into the question, and compares the student's answer with it.
"""

from __future__ import annotations

import torch

from utils import losses as L
from utils.checks import assert_close, assert_own_code, fail
from utils.saes import BatchTopKSAE, GatedSAE, JumpReLUSTE, SeedGatedSAE, build_sae


def _own_function_class(cls, name: str, methods=("forward", "backward")) -> None:
    """assert_own_code for an autograd.Function: its static methods are what must be the student's."""
    assert_own_code(cls, name)
    for m in methods:
        fn = getattr(cls, m, None)
        if fn is None or getattr(fn, "__qualname__", "").startswith(("Function.", "_SingleLevelFunction.")):
            fail(f"`{name}` must define its own `{m}` (a @staticmethod).")
        assert_own_code(fn, f"{name}.{m}")


def _guarded(sae):
    """The SAE with its reference methods switched off: an answer must compute, not delegate."""
    for method in ("encode_with_pre", "encode", "pre_activation", "output", "forward", "loss_terms", "loss",
                   "select"):
        def refuse(*args, _m=method, **kwargs):
            fail(f"your answer calls `sae.{_m}`, the course's reference implementation: compute the "
                 "result yourself from the SAE's parameters; this answer scores zero.")
        object.__setattr__(sae, method, refuse)
    return sae


def _pair(out, name: str):
    if not (isinstance(out, tuple) and len(out) == 2):
        fail(f"`{name}` must return a pair (acts, pre_acts); got {type(out).__name__}.")
    return out


# ---- gated SAEs -----------------------------------------------------------------------------------
def check_seed_gated_encode(fn) -> None:
    assert_own_code(fn)
    sae = build_sae("seed_gated", d_in=6, d_sae=10, init_seed=3)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(4))
    want_acts, want_gate = sae.encode_with_pre(x)
    acts, gate = _pair(fn(_guarded(sae), x), "seed_gated_encode")
    if tuple(acts.shape) != (5, 10):
        fail(f"acts has shape {tuple(acts.shape)}, expected (batch, d_sae) = (5, 10): W_gate and W_mag are "
             "[d_sae d_in] as in the seed, so a batch multiplies by their transpose, x @ W.T.")
    if torch.allclose(gate, torch.relu(x @ sae.W_gate.T), atol=1e-6):
        fail("the gate is σ(W_gate x), a sigmoid, not a ReLU.")
    assert_close(gate, want_gate, "the second output is the gate σ(x W_gateᵀ) (values in (0, 1)).")
    if torch.allclose(acts, torch.relu(x @ sae.W_mag.T), atol=1e-6):
        fail("acts equal the magnitude alone: multiply it by the gate, element-wise.")
    assert_close(acts, want_acts, "acts = σ(x W_gateᵀ) ⊙ ReLU(x W_magᵀ), element-wise, as in the seed.")
    print("seed_gated_encode matches the seed's gated SAE.")


def _gated(seed: int = 5, d_in: int = 6, d_sae: int = 12) -> GatedSAE:
    sae = build_sae("gated", d_in=d_in, d_sae=d_sae, init_seed=seed, l1_coeff=0.3)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-zero biases and rescalings, so every term is exercised
        sae.W_enc.add_(0.3 * torch.randn(sae.W_enc.shape, generator=g))
        sae.b_gate.copy_(0.3 * torch.randn(d_sae, generator=g))
        sae.b_mag.copy_(0.3 * torch.randn(d_sae, generator=g))
        sae.r_mag.copy_(0.5 * torch.randn(d_sae, generator=g))
        sae.b_dec.copy_(0.5 * torch.randn(d_in, generator=g))
        sae.W_dec.mul_(1 + torch.rand(d_sae, 1, generator=g))  # not unit norm: the L1 weights by ‖W_dec[i]‖
    return sae


def check_gated_encode(fn) -> None:
    assert_own_code(fn)
    sae = _gated()
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(7))
    want_acts, want_gate = sae.encode_with_pre(x)
    acts, pi_gate = _pair(fn(_guarded(sae), x), "gated_encode")
    if torch.allclose(pi_gate, x @ sae.W_enc + sae.b_gate, atol=1e-5):
        fail("π_gate does not subtract b_dec from x first: π_gate = (x − b_dec) W_enc + b_gate.")
    assert_close(pi_gate, want_gate, "the second output is π_gate = (x − b_dec) W_enc + b_gate (before any ReLU).")
    x_cent = x - sae.b_dec
    no_exp = (pi_gate > 0) * torch.relu(x_cent @ (sae.W_enc * sae.r_mag) + sae.b_mag)
    if torch.allclose(acts, no_exp, atol=1e-5):
        fail("the magnitude path rescales W_enc by exp(r_mag), not by r_mag (r_mag is a log-scale).")
    soft = torch.relu(pi_gate) * torch.relu(x_cent @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag)
    if torch.allclose(acts, soft, atol=1e-5):
        fail("the gate is the Heaviside step 1[π_gate > 0] (0 or 1), not ReLU(π_gate).")
    if ((acts != 0) & (want_gate <= 0)).any():
        fail("a latent with π_gate ≤ 0 is active: the gate 1[π_gate > 0] must switch it off.")
    assert_close(acts, want_acts, "acts = 1[π_gate > 0] ⊙ ReLU((x − b_dec)(W_enc ⊙ exp r_mag) + b_mag); "
                 "exp(r_mag) scales each latent's column of W_enc.")
    print("gated_encode matches DeepMind's gated SAE on copied weights.")


def check_gated_loss_terms(fn) -> None:
    assert_own_code(fn)
    sae = _gated(seed=8)
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(9))
    acts, pi_gate = sae.encode_with_pre(x)
    x_hat = sae.decode(acts)
    want = sae.loss_terms(x, x_hat, acts, pi_gate)
    got = fn(_guarded(sae), x, x_hat, pi_gate)
    if not isinstance(got, dict) or set(got) != {"recon", "sparsity", "aux"}:
        fail("return a dict with exactly the keys 'recon', 'sparsity' and 'aux'.")
    assert_close(got["recon"], want["recon"], "recon = Σ_d (x − x̂)², averaged over tokens (sum over d_in, "
                 "mean over the batch).")
    plain_l1 = sae.cfg.l1_coeff * torch.relu(pi_gate).sum(-1).mean()
    if torch.allclose(got["sparsity"], plain_l1, atol=1e-5):
        fail("weight each latent's |ReLU(π_gate)| by the norm of its decoder row, ‖W_dec[i]‖ "
             "(the decoder here is not unit-norm).")
    if torch.allclose(got["sparsity"], sae.cfg.l1_coeff * L.l1_penalty(acts, sae.W_dec), atol=1e-5):
        fail("the L1 goes on the gate path, ReLU(π_gate), not on the acts: that is what keeps the "
             "magnitudes free of shrinkage.")
    assert_close(got["sparsity"], want["sparsity"], "sparsity = l1_coeff · Σ_i ReLU(π_gate)_i ‖W_dec[i]‖, "
                 "averaged over tokens.")
    assert_close(got["aux"], want["aux"], "aux = Σ_d (x − x̂_gate)², averaged over tokens, where "
                 "x̂_gate = ReLU(π_gate) W_dec + b_dec with the decoder frozen.")
    for name in ("aux", "sparsity"):
        sae.zero_grad(set_to_none=True)
        got[name].backward(retain_graph=True)
        if name == "aux":
            g = sae.W_dec.grad
            if g is not None and g.abs().max() > 0:
                fail("the aux loss sends a gradient to W_dec: use W_dec.detach() (and b_dec.detach()) in "
                     "x̂_gate, so only the gate path learns from it and the decoder is trained by recon alone.")
        for p in ("b_mag", "r_mag"):
            g = getattr(sae, p).grad
            if g is not None and g.abs().max() > 0:
                fail(f"the {name} term sends a gradient to {p}: it must depend on π_gate only.")
    print("gated_loss_terms matches the reference; the L1 never touches the magnitude path and the "
          "aux loss leaves the decoder alone.")


# ---- JumpReLU ---------------------------------------------------------------------------------------
def check_threshold_grad(fn) -> None:
    assert_own_code(fn)
    z = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, 0.1]])
    theta = torch.tensor([0.3, 0.0, 1.0])
    got = fn(lambda z, t: (z * t).sum(), z, theta)
    if got is None:
        fail("for a loss that depends smoothly on θ, return its gradient, not None.")
    assert_close(got, z.sum(0), "return ∂loss/∂θ, shaped like θ: make a copy of θ that requires grad, "
                 "compute the loss, and differentiate it (torch.autograd.grad or .backward()).")
    if not torch.equal(theta, torch.tensor([0.3, 0.0, 1.0])):
        fail("do not modify the θ you are given: work on `theta.clone().requires_grad_()`.")
    got = fn(lambda z, t: (z > t).float().sum(), z, theta)
    if got is not None and (not isinstance(got, torch.Tensor) or got.abs().max() > 0):
        fail("a step function has no gradient: for a loss computed through `z > θ` return None (or zeros).")
    print("threshold_grad works on a smooth loss and on a step.")


def _jump_inputs():
    # θ = 2 (so a missing factor θ shows), ε = 0.5: the kernel is on for z in (1.75, 2.25)
    z = torch.tensor([[1.7, 1.8, 2.2, 2.3, 0.0], [2.0, 1.76, 3.0, 1.0, 2.24]])
    theta = torch.full((5,), 2.0)
    return z, theta, 0.5


def check_jumprelu_ste(cls) -> None:
    _own_function_class(cls, "JumpReLU")
    z, theta, eps = _jump_inputs()
    z1, t1 = z.clone().requires_grad_(), theta.clone().requires_grad_()
    out = cls.apply(z1, t1, eps)
    if torch.allclose(out, torch.relu(z - theta)):
        fail("forward returned ReLU(z − θ) (the seed's jump_relu): JumpReLU keeps z itself above θ, "
             "z · 1[z > θ], so it jumps from 0 to θ.")
    assert_close(out, z * (z > theta), "forward is z · 1[z > θ].")
    upstream = torch.arange(1.0, 11.0).reshape(2, 5)
    out.backward(upstream)
    z2, t2 = z.clone().requires_grad_(), theta.clone().requires_grad_()
    JumpReLUSTE.apply(z2, t2, eps).backward(upstream)
    assert_close(z1.grad, z2.grad, "∂/∂z is the upstream gradient where z > θ and 0 elsewhere.")
    if t1.grad is None:
        fail("backward returned no gradient for θ: that is the whole point of the straight-through estimator.")
    if tuple(t1.grad.shape) != tuple(theta.shape):
        fail(f"θ's gradient has shape {tuple(t1.grad.shape)}; it must be shaped like θ {tuple(theta.shape)}: "
             "sum the per-token pseudo-gradients over the batch dimensions.")
    if torch.allclose(t1.grad, -t2.grad, atol=1e-5):
        fail("θ's pseudo-gradient has the wrong sign: ∂/∂θ := −(θ/ε) K((z − θ)/ε).")
    if torch.allclose(t1.grad, t2.grad / theta, atol=1e-5):
        fail("θ's pseudo-gradient lacks the factor θ: ∂/∂θ := −(θ/ε) K((z − θ)/ε).")
    wide = -(theta / eps) * ((z - theta).abs() < eps).float() * upstream
    if torch.allclose(t1.grad, wide.sum(0), atol=1e-5):
        fail("the rectangle kernel is K(u) = 1[|u| < ½] with u = (z − θ)/ε: it is on for |z − θ| < ε/2.")
    assert_close(t1.grad, t2.grad, "∂/∂θ := −(θ/ε) K((z − θ)/ε) · upstream, summed over the batch, with "
                 "K(u) = 1[|u| < ½].")
    print("JumpReLU: forward and both gradients match the straight-through estimator.")


def check_step_ste(cls) -> None:
    _own_function_class(cls, "Step")
    z, theta, eps = _jump_inputs()
    z1, t1 = z.clone().requires_grad_(), theta.clone().requires_grad_()
    out = cls.apply(z1, t1, eps)
    assert_close(out, (z > theta).float(), "forward is the step H(z − θ) = 1[z > θ], as a float tensor.")
    upstream = torch.arange(1.0, 11.0).reshape(2, 5)
    out.backward(upstream)
    z2, t2 = z.clone().requires_grad_(), theta.clone().requires_grad_()
    L.StepSTE.apply(z2, t2, eps).backward(upstream)
    if z1.grad is not None and z1.grad.abs().max() > 0:
        fail("return None (no gradient) for z: in the L0 term only θ learns (DeepMind's choice).")
    if t1.grad is None:
        fail("backward returned no gradient for θ.")
    if tuple(t1.grad.shape) != tuple(theta.shape):
        fail(f"θ's gradient has shape {tuple(t1.grad.shape)}; sum over the batch so it is shaped like θ.")
    if torch.allclose(t1.grad, t2.grad * theta, atol=1e-5):
        fail("there is no factor θ here: ∂H(z − θ)/∂θ := −(1/ε) K((z − θ)/ε).")
    assert_close(t1.grad, t2.grad, "∂/∂θ := −(1/ε) K((z − θ)/ε) · upstream, summed over the batch, "
                 "K(u) = 1[|u| < ½].")
    print("Step: forward and θ's pseudo-gradient match.")


# ---- TopK and BatchTopK -------------------------------------------------------------------------
def check_topk_activation(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(11)
    pre = torch.randn(7, 20, generator=g).abs() + 0.1
    out = fn(pre, 4)
    if tuple(out.shape) != (7, 20):
        fail(f"shape {tuple(out.shape)}; return a dense tensor shaped like pre_acts, zeros except the top k.")
    counts = (out != 0).sum(-1)
    if not (counts == 4).all():
        fail(f"active latents per token {counts.tolist()}; expected exactly k = 4 each (TopK over the last "
             "dimension, per token — not over the whole batch).")
    assert_close(out, build_sae("topk", d_in=2, d_sae=20, k=4).select(pre),
                 "keep the k largest pre-activations of each token at their values, zero the rest.")
    mixed = torch.tensor([[3.0, -1.0, -2.0, 0.5], [-0.5, -0.1, -3.0, -2.0]])
    out = fn(mixed, 2)
    if (out < 0).any():
        fail("negative values were kept: apply a ReLU to the selected values (TopK then ReLU).")
    assert_close(out, torch.tensor([[3.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]]),
                 "f = ReLU(TopK_k(z)): the top k per token, negatives set to 0.")
    out3 = fn(pre.reshape(7, 1, 20).expand(7, 3, 20), 4)
    if tuple(out3.shape) != (7, 3, 20):
        fail("inputs may have extra leading dimensions (batch, seq, d_sae): select over the last one (dim=-1).")
    print("topk_activation keeps exactly k per token.")


def check_batch_topk_activation(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(12)
    pre = torch.randn(8, 30, generator=g) * torch.linspace(0.1, 3, 8)[:, None]  # some tokens "harder" than others
    out = fn(pre, 3)
    if tuple(out.shape) != (8, 30):
        fail(f"shape {tuple(out.shape)}; return a tensor shaped like pre_acts.")
    per_token = (out != 0).sum(-1)
    if (per_token == 3).all():
        fail("every token has exactly k active: that is TopK. BatchTopK keeps the k·B largest values "
             "of the whole batch (flatten it), so tokens get different numbers of latents.")
    if int(per_token.sum()) != 3 * 8:
        fail(f"{int(per_token.sum())} activations kept in the batch, expected k · batch = 24.")
    ref = build_sae("batchtopk", d_in=2, d_sae=30, k=3).train()
    assert_close(out, ref.select(pre), "keep the k·B largest values of ReLU(z) across the flattened batch, "
                 "at their values; zero the rest.")
    few = torch.tensor([[1.0, -1.0], [-2.0, -0.5]])
    if (fn(few, 1) < 0).any():
        fail("negative values were kept: take the ReLU before choosing the k·B largest.")
    print("batch_topk_activation keeps k·B activations per batch, unevenly across tokens.")


# ---- feature splitting ---------------------------------------------------------------------------
def check_find_splits(fn) -> None:
    assert_own_code(fn)
    small = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # latent 1 has norm 2: normalise!
    large = torch.tensor([[0.3, 0.03, 0.0], [0.0, 0.0, 1.0], [0.1, 0.9, 0.0], [0.75, 0.65, 0.0], [0.0, 3.0, 0.3]])
    got = fn(small, large, 0.5)
    if not isinstance(got, dict):
        fail("return a dict {small latent: [large latents]}.")
    got = {int(k): [int(j) for j in v] for k, v in got.items()}
    if 0 not in got.get(0, []):
        fail("large latent 0 (cosine 0.995 with small latent 0, but short) is missing: normalise the rows of both "
             "decoders before taking dot products.")
    if 1 in got.get(0, []) or 1 in got.get(1, []):
        fail("large latent 1 is orthogonal to every small latent: keep only matches with cosine > threshold.")
    if 3 in got.get(1, []):
        fail("each large latent belongs to one parent only: its best-matching small latent.")
    want = {0: [0, 3], 1: [4, 2]}
    if {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()} and got != want:
        fail("list each parent's children from the most to the least similar (descending cosine).")
    if got != want:
        fail(f"got {got}, expected {want}: for each large latent find the small latent with the largest "
             "cosine; keep it if that cosine > threshold; list children by descending cosine; include "
             "every small latent as a key (with [] if it has no children).")
    got = fn(small, torch.tensor([[0.0, 0.0, 1.0]]), 0.5)
    if {int(k): list(v) for k, v in got.items()} != {0: [], 1: []}:
        fail("every small latent must appear as a key, with an empty list when nothing matches it.")
    print("find_splits matches the children to their parents.")
