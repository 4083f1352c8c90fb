"""Visible checks for chapter 04 (SAE variants). Each names the mistake it most likely found.

Every check runs the student's code through `call` (an exception becomes a message), checks what
comes back, then compares it with the right value *and* with the value each common mistake would
give, computed here from the definitions, so a message names the mistake rather than printing a
bare difference. The inputs are chosen so that those values differ: non-zero biases, a rescaling
r_mag far from 0, a decoder whose rows are not unit-norm, per-latent thresholds with θ·ε ≠ 1,
an upstream gradient that is not all ones, ties, anti-aligned and unnormalised directions.

This file holds the gated SAEs (exercises 1-3); JumpReLU (4-6) is in `ch04_jumprelu`, TopK,
BatchTopK and feature splitting (7-9) in `ch04_topk`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.checks import (assert_close, assert_own_code, assert_untouched, call, fail, name_mistake,  # noqa: F401
                          snapshot, tensor_result)
from utils.checks.ch04_jumprelu import check_jumprelu_ste, check_step_ste, check_threshold_grad  # noqa: F401
from utils.checks.ch04_topk import check_batch_topk_activation, check_find_splits, check_topk_activation  # noqa: F401
from utils.saes import GatedSAE, build_sae


def _guarded(sae):
    """The SAE with its reference methods switched off: an answer must compute, not delegate."""
    for method in ("encode_with_pre", "encode", "pre_activation", "output", "forward", "loss_terms", "loss",
                   "select"):
        def refuse(*args, _m=method, **kwargs):
            fail(f"your answer calls `sae.{_m}`, the course's reference implementation: compute the "
                 "result yourself from the SAE's parameters; this answer scores zero.")
        object.__setattr__(sae, method, refuse)
    return sae


def _pair(out, name: str, shape: tuple[int, ...], first: str, second: str):
    """The (first, second) pair an encoder returns, each a tensor of `shape`."""
    if isinstance(out, torch.Tensor):
        fail(f"`{name}` returned one tensor; it must return the pair ({first}, {second}): `return {first}, {second}`.")
    if not (isinstance(out, tuple) and len(out) == 2):
        fail(f"`{name}` must return the pair ({first}, {second}); got "
             f"{type(out).__name__}{f' of {len(out)} values' if isinstance(out, (tuple, list)) else ''}.")
    return (tensor_result(out[0], f"{name}(...)[0] ({first})", shape=shape),
            tensor_result(out[1], f"{name}(...)[1] ({second})", shape=shape))


def _encoded_pair(fn, sae, x: torch.Tensor, what: str, name: str, names: tuple[str, str],
                  shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the student's encoder on a guarded copy of `sae` and `x`; check that it left x alone and
    returned a pair of tensors of `shape`."""
    before = snapshot(x=x)
    out = call(fn, _guarded(sae), x, what=what, name=name)
    assert_untouched(before, name, x=x)
    return _pair(out, name, shape, *names)


# ---- exercise 1: the seed's gated SAE -------------------------------------------------------------
def check_seed_gated_encode(fn) -> None:
    assert_own_code(fn)
    sae = build_sae("seed_gated", d_in=6, d_sae=10, init_seed=3)
    x = 2 * torch.randn(5, 6, generator=torch.Generator().manual_seed(4))  # 6 ≠ 10: a missing transpose shows
    what = "a seed gated SAE (d_in 6, d_sae 10; W_gate and W_mag are [d_sae d_in]) and x [5, 6]"
    acts, gate = _encoded_pair(fn, sae, x, what, "seed_gated_encode", ("acts", "gate"), (5, 10))
    with torch.no_grad():
        g_pre, m_pre = x @ sae.W_gate.T, x @ sae.W_mag.T
        sig, mag = torch.sigmoid(g_pre), F.relu(m_pre)
    if torch.allclose(acts, sig, atol=1e-5) and torch.allclose(gate, sig * mag, atol=1e-5):
        fail("the two outputs are swapped: return (acts, gate), acts first.")
    name_mistake(gate, [
        (F.relu(g_pre), "the gate is σ(x W_gateᵀ), a sigmoid, not a ReLU: the seed's gate is torch.sigmoid."),
        ((g_pre > 0).float(), "the seed's gate is a sigmoid, σ(x W_gateᵀ), not a hard step 1[· > 0] (that is "
                              "DeepMind's gate, section 2 below)."),
        (torch.sigmoid(m_pre), "the gate is computed from W_mag: it has its own weights, σ(x W_gateᵀ)."),
        (mag, "the second output is the gate σ(x W_gateᵀ), not the magnitude."),
        (g_pre, "the second output is the gate after the sigmoid, σ(x W_gateᵀ)."),
    ], atol=1e-5)
    assert_close(gate, sig, "the second output is the gate σ(x W_gateᵀ) (values in (0, 1)).")
    name_mistake(acts, [
        (mag, "acts equal the magnitude alone: multiply it by the gate, element-wise."),
        (sig * m_pre, "the magnitude needs its ReLU: acts = σ(x W_gateᵀ) ⊙ ReLU(x W_magᵀ)."),
        (sig * torch.sigmoid(m_pre), "the magnitude is ReLU(x W_magᵀ), not a sigmoid."),
        (sig * F.relu(g_pre), "the magnitude is computed from W_gate: it uses W_mag, ReLU(x W_magᵀ)."),
    ], atol=1e-5)
    assert_close(acts, sig * mag, "acts = σ(x W_gateᵀ) ⊙ ReLU(x W_magᵀ), element-wise, as in the seed.")
    print("seed_gated_encode matches the seed's gated SAE.")


# ---- exercise 2: DeepMind's gated encoder ---------------------------------------------------------
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
    what = "a gated SAE (d_in 6, d_sae 12, non-zero b_dec, b_gate, b_mag, r_mag) and x [40, 6]"
    acts, pi_gate = _encoded_pair(fn, sae, x, what, "gated_encode", ("acts", "pi_gate"), (40, 12))
    with torch.no_grad():
        W, scale, b_gate, b_mag, b_dec = sae.W_enc, sae.r_mag.exp(), sae.b_gate, sae.b_mag, sae.b_dec
        h = (x - b_dec) @ W
        pg, pm = h + b_gate, h * scale + b_mag
        gate = (pg > 0).float()
        want = gate * F.relu(pm)
    if torch.allclose(pi_gate, want, atol=1e-5) and torch.allclose(acts, pg, atol=1e-5):
        fail("the two outputs are swapped: return (acts, pi_gate), acts first.")
    name_mistake(pi_gate, [
        (x @ W + b_gate, "π_gate does not subtract b_dec from x first: π_gate = (x − b_dec) W_enc + b_gate."),
        ((x + b_dec) @ W + b_gate, "centre the input by subtracting b_dec, not adding it: x − b_dec."),
        (F.relu(pg), "the second output is π_gate before any ReLU: (x − b_dec) W_enc + b_gate."),
        (gate, "the second output is π_gate itself (the pre-activation), not the gate mask 1[π_gate > 0]."),
        (h * scale + b_gate, "the gate path uses W_enc as it is: exp(r_mag) rescales only the magnitude path."),
        (h + b_mag, "b_gate and b_mag are swapped: π_gate uses b_gate, π_mag uses b_mag."),
        (h, "π_gate needs its bias: (x − b_dec) W_enc + b_gate."),
    ], atol=1e-5)
    assert_close(pi_gate, pg, "the second output is π_gate = (x − b_dec) W_enc + b_gate (before any ReLU).")
    name_mistake(acts, [
        (gate * F.relu(h * sae.r_mag + b_mag), "the magnitude path rescales W_enc by exp(r_mag), not by r_mag "
                                               "(r_mag is a log-scale)."),
        (gate * F.relu(h + b_mag), "the magnitude path is missing its rescaling: W_enc ⊙ exp(r_mag)."),
        (F.relu(pg) * F.relu(pm), "the gate is the Heaviside step 1[π_gate > 0] (0 or 1), not ReLU(π_gate)."),
        (gate * F.relu((h + b_mag) * scale), "b_mag is added after the rescaling: π_mag = (x − b_dec)(W_enc ⊙ "
                                             "exp r_mag) + b_mag, so b_mag is not multiplied by exp(r_mag)."),
        (gate * F.relu(h * scale + b_gate), "b_gate and b_mag are swapped: π_mag uses b_mag."),
        (gate * F.relu(x @ W * scale + b_mag), "the magnitude path does not subtract b_dec: both paths start "
                                               "from x − b_dec."),
        (gate * pm, "the magnitude needs its ReLU: f = 1[π_gate > 0] ⊙ ReLU(π_mag)."),
        (F.relu(pm), "the gate is missing: multiply ReLU(π_mag) by 1[π_gate > 0]."),
    ], atol=1e-5)
    if ((acts != 0) & (pg <= 0)).any():
        fail("a latent with π_gate ≤ 0 is active: the gate 1[π_gate > 0] must switch it off.")
    assert_close(acts, want, "acts = 1[π_gate > 0] ⊙ ReLU((x − b_dec)(W_enc ⊙ exp r_mag) + b_mag); "
                 "exp(r_mag) scales each latent's column of W_enc.")
    print("gated_encode matches DeepMind's gated SAE on copied weights.")


# ---- exercise 3: the gated loss ------------------------------------------------------------------
_KEYS = ("recon", "sparsity", "aux")


def _terms(got, name: str) -> dict[str, torch.Tensor]:
    if not isinstance(got, dict):
        fail(f"`{name}` returned a {type(got).__name__}; return a dict with the keys 'recon', 'sparsity', 'aux'.")
    if set(got) != set(_KEYS):
        fail(f"return a dict with exactly the keys 'recon', 'sparsity' and 'aux'; got {sorted(map(str, got))}.")
    return {k: tensor_result(got[k], f"{name}(...)['{k}']", shape=()) for k in _KEYS}


def check_gated_loss_terms(fn) -> None:
    assert_own_code(fn)
    sae = _gated(seed=8)
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(9))
    acts, pi_gate = sae.encode_with_pre(x)
    # leaves: where each term sends gradients shows in their .grad
    x_hat, pi_gate = sae.decode(acts).detach().requires_grad_(), pi_gate.detach().clone().requires_grad_()
    what = ("a gated SAE (d_in 6, d_sae 12, l1_coeff 0.3, decoder rows not unit-norm), x and x_hat [30, 6], "
            "pi_gate [30, 12]")
    before = snapshot(x=x, x_hat=x_hat, pi_gate=pi_gate)
    got = _terms(call(fn, _guarded(sae), x, x_hat, pi_gate, what=what, name="gated_loss_terms"), "gated_loss_terms")
    assert_untouched(before, "gated_loss_terms", x=x, x_hat=x_hat, pi_gate=pi_gate)
    c = sae.cfg.l1_coeff
    with torch.no_grad():
        err2, ga, pg, A = (x - x_hat).pow(2), F.relu(pi_gate), pi_gate.detach(), acts.detach()
        norms, W_dec, b_dec = sae.W_dec.norm(dim=-1), sae.W_dec, sae.b_dec
    name_mistake(got["recon"], [
        (err2.mean(), "recon is averaged over every element: sum over d_in (the last axis), then average over "
                      "tokens, (x − x̂)².sum(-1).mean()."),
        (err2.sum(), "recon is summed over the tokens too: sum over d_in, then .mean() over tokens."),
        ((x - x_hat).norm(dim=-1).mean(), "recon is the squared error ‖x − x̂‖², not the norm ‖x − x̂‖."),
    ], atol=1e-5, rtol=1e-4)
    assert_close(got["recon"], err2.sum(-1).mean(), "recon = Σ_d (x − x̂)², averaged over tokens.")
    name_mistake(got["sparsity"], [
        (c * ga.sum(-1).mean(), "weight each latent's ReLU(π_gate) by the norm of its decoder row, ‖W_dec[i]‖ "
                                "(the decoder here is not unit-norm)."),
        (c * (A * norms).sum(-1).mean(), "the L1 goes on the gate path, ReLU(π_gate), not on the acts: that is "
                                         "what keeps the magnitudes free of shrinkage."),
        (c * (A * 1).sum(-1).mean(), "the L1 goes on the gate path, ReLU(π_gate) weighted by ‖W_dec[i]‖, not on "
                                     "the acts."),
        (c * (pg.abs() * norms).sum(-1).mean(), "the L1 is on ReLU(π_gate), not |π_gate|: negative π_gate "
                                                "costs nothing."),
        ((ga * norms).sum(-1).mean(), "l1_coeff is missing: sparsity = l1_coeff · Σ_i ReLU(π_gate)_i ‖W_dec[i]‖."),
        (c * (ga * norms).mean(), "sparsity is averaged over the latents too: sum over d_sae, then average over "
                                  "tokens."),
        (c * (ga * norms.pow(2)).sum(-1).mean(), "weight by the norm ‖W_dec[i]‖, not its square."),
    ], atol=1e-5, rtol=1e-4)
    assert_close(got["sparsity"], c * (ga * norms).sum(-1).mean(),
                 "sparsity = l1_coeff · Σ_i ReLU(π_gate)_i ‖W_dec[i]‖, averaged over tokens.")
    via_gate = ga @ W_dec + b_dec
    name_mistake(got["aux"], [
        ((x - ga @ W_dec).pow(2).sum(-1).mean(), "x̂_gate = ReLU(π_gate) W_dec + b_dec: the decoder bias is missing."),
        ((x - (pg @ W_dec + b_dec)).pow(2).sum(-1).mean(), "x̂_gate decodes ReLU(π_gate), not π_gate itself."),
        (err2.sum(-1).mean(), "aux is the reconstruction from the gate path, x̂_gate = ReLU(π_gate) W_dec + b_dec, "
                              "not from acts (that is recon)."),
        ((x - via_gate).pow(2).mean(), "aux is averaged over every element: sum over d_in, then average over tokens."),
    ], atol=1e-5, rtol=1e-4)
    assert_close(got["aux"], (x - via_gate).pow(2).sum(-1).mean(), "aux = Σ_d (x − x̂_gate)², averaged over tokens, "
                 "where x̂_gate = ReLU(π_gate) W_dec + b_dec with the decoder frozen.")
    _gradients(sae, got, pi_gate)
    print("gated_loss_terms matches the reference; the L1 never touches the magnitude path and the "
          "aux loss leaves the decoder alone.")


def _gradients(sae, got: dict[str, torch.Tensor], pi_gate: torch.Tensor) -> None:
    """Where each term sends gradients: aux and sparsity reach π_gate, aux not the decoder."""
    for name in ("aux", "sparsity"):
        if not got[name].requires_grad:
            fail(f"the {name} term is cut off from autograd (.detach(), .item() or torch.no_grad() on the gate "
                 "path): it must send a gradient to π_gate so the gate learns.")
        sae.zero_grad(set_to_none=True)
        pi_gate.grad = None
        call(got[name].backward, retain_graph=True, name=f"{name}.backward()")
        g = pi_gate.grad
        if g is None or not g.abs().max() > 0:
            fail(f"the {name} term sends no gradient to π_gate: it is cut off from autograd on the gate path "
                 "(no .detach() on ReLU(π_gate)).")
        if name == "aux":
            for p, how in (("W_dec", "W_dec.detach()"), ("b_dec", "b_dec.detach()")):
                g = getattr(sae, p).grad
                if g is not None and g.abs().max() > 0:
                    fail(f"the aux loss sends a gradient to {p}: use {how} in x̂_gate, so only the gate path "
                         "learns from it and the decoder is trained by recon alone.")
        for p in ("b_mag", "r_mag"):
            g = getattr(sae, p).grad
            if g is not None and g.abs().max() > 0:
                fail(f"the {name} term sends a gradient to {p}: it must depend on π_gate only.")
