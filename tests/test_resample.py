"""Anthropic resampling, step by step, and dead-latent detection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest_saes import make_sae

from utils.resample import find_dead_latents, firing_counts, reset_adam_state_, resample_dead_latents_


def test_firing_counts_and_dead():
    sae = make_sae("relu", d_in=4, d_sae=6)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, -1.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0],
                                      [0, 0, 0, 1.0, 0, 0], [0, 0, 0, 0, 0, 0]]))
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, -1.0, 0.5]))
        sae.b_dec.zero_()
    x = torch.tensor([[1.0, 0, 0, 0], [2.0, 1.0, 0, 0], [-1.0, 0, -1.0, 0]])
    # latent 0 fires on x₀,x₁; latent 1 on x₂; latent 2 on x₁; latent 3 never (pre = 0);
    # latent 4 never (bias −1); latent 5 always (bias 0.5)
    torch.testing.assert_close(firing_counts(sae, x, batch_size=2), torch.tensor([2.0, 1, 1, 0, 0, 3]))
    assert find_dead_latents(sae, x).tolist() == [False, False, False, True, True, False]


def _trained_optimizer(sae, x):
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        sae.loss(x).backward()
        opt.step()
    return opt


def test_resample_follows_bricken_steps():
    sae = make_sae("relu", d_in=8, d_sae=20).train()
    x = torch.randn(64, 8)
    opt = _trained_optimizer(sae, x)
    dead = torch.zeros(20, dtype=torch.bool)
    dead[[2, 7, 11]] = True
    before = {n: p.detach().clone() for n, p in sae.named_parameters()}
    mean_alive_norm = sae.W_enc.norm(dim=0)[~dead].mean()
    n = resample_dead_latents_(sae, x, dead, optimizer=opt, generator=torch.Generator().manual_seed(0))
    assert n == 3
    # (4) decoder rows: unit-norm copies of some input as the encoder sees it (x − b_dec)
    cands = F.normalize(x - sae.b_dec, dim=-1)
    for i in (2, 7, 11):
        assert (cands @ sae.W_dec[i]).max() > 1 - 1e-5
    # (5) encoder rows: same direction, norm 0.2 × mean alive encoder norm; bias 0
    torch.testing.assert_close(sae.W_enc[:, dead].norm(dim=0), (0.2 * mean_alive_norm).expand(3))
    torch.testing.assert_close(F.normalize(sae.W_enc[:, dead].T, dim=-1), sae.W_dec[dead])
    assert not sae.b_enc[dead].any()
    # alive latents untouched
    for name, p in sae.named_parameters():
        axis = sae.LATENT_AXES.get(name)
        if axis is not None:
            keep = (~dead).nonzero().squeeze(-1)
            torch.testing.assert_close(p.index_select(axis, keep), before[name].index_select(axis, keep))
    # (6) Adam moments of the resampled rows reset, the others kept
    st = opt.state[sae.W_enc]
    assert not st["exp_avg"][:, dead].any() and not st["exp_avg_sq"][:, dead].any()
    assert st["exp_avg_sq"][:, ~dead].any()
    assert not opt.state[sae.W_dec]["exp_avg"][dead].any() and not opt.state[sae.b_enc]["exp_avg"][dead].any()


def test_sampling_is_proportional_to_squared_loss():
    # A "perfect" SAE on one input and a bad one on the other: x̂ = 0 makes the loss ‖x‖².
    sae = make_sae("relu", d_in=2, d_sae=4)
    with torch.no_grad():
        sae.W_dec.zero_(), sae.b_dec.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0 ** 0.5], [0.0, 0.0]])  # losses 1, 2, 0 → weights 1 : 4 : 0
    hits = torch.zeros(3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(400):
        with torch.no_grad():
            sae.W_dec.zero_()
        dead = torch.ones(4, dtype=torch.bool)
        resample_dead_latents_(sae, x, dead, generator=gen)
        picked = sae.W_dec.abs().argmax(-1)  # direction e₀ ← input 0, e₁ ← input 1
        hits[0] += (picked == 0).sum()
        hits[1] += (picked == 1).sum()
    frac = hits[1] / hits.sum()
    assert 0.75 < frac < 0.85, frac  # 4 / (1 + 4) = 0.8; never the zero-loss input (no NaN rows)
    assert torch.isfinite(sae.W_dec).all()


@pytest.mark.parametrize("variant", ["gated", "jumprelu", "seed_relu", "seed_gated", "topk"])
def test_resample_other_variants(variant):
    sae = make_sae(variant, d_in=8, d_sae=20).train()
    x = torch.randn(64, 8)
    opt = _trained_optimizer(sae, x)
    dead = torch.zeros(20, dtype=torch.bool)
    dead[:5] = True
    assert resample_dead_latents_(sae, x, dead, optimizer=opt) == 5
    assert (sae.W_dec[:5].norm(dim=-1) - 1).abs().max() < 1e-5
    named = dict(sae.named_parameters())
    for name, axis in sae.LATENT_AXES.items():
        st = opt.state[named[name]]
        assert not st["exp_avg"].index_select(axis, torch.arange(5)).any(), name
    # a second reset with an empty index is harmless
    reset_adam_state_(opt, sae, torch.tensor([], dtype=torch.long))
    assert resample_dead_latents_(sae, x, torch.zeros(20, dtype=torch.bool)) == 0
