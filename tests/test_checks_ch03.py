"""utils.checks.ch03: each check passes a correct answer, rejects a planted mistake with the message
that names it, and rejects an answer that merely calls the course's reference."""

from __future__ import annotations

import pytest
import torch

from utils import losses, metrics
from _helpers import fails as _fails
from _helpers import mine as _mine
from utils.checks import ch03 as checks
from utils.saes import SeedReLUConfig, SeedSparseAutoencoder






# ---- exercise 1 ------------------------------------------------------------------------------------
def test_sae_loss():
    checks.check_sae_loss(_mine(lambda x, r, lat, c: (x - r).pow(2).mean() + c * lat.abs().mean()))
    _fails(checks.check_sae_loss, _mine(lambda x, r, lat, c: (x - r).pow(2).sum() + c * lat.abs().sum()),
           match="summed")
    _fails(checks.check_sae_loss, _mine(lambda x, r, lat, c: (x - r).pow(2).mean() + c * lat.mean()),
           match=r"\.abs\(\)")
    _fails(checks.check_sae_loss, _mine(lambda x, r, lat, c: (x - r).pow(2).mean() + c * lat.pow(2).mean()),
           match="L2")

    @_mine
    def cheat(x, r, lat, c):
        return losses.sae_loss(x, r, lat, c)

    _fails(checks.check_sae_loss, cheat, match="course library")


# ---- exercise 2 ------------------------------------------------------------------------------------
def test_l1_gradient():
    checks.check_l1_gradient(_mine(lambda z, c: c * torch.sign(z) / z.numel()))
    _fails(checks.check_l1_gradient, _mine(lambda z, c: c * torch.sign(z)), match="1/N")
    _fails(checks.check_l1_gradient, _mine(lambda z, c: c * z / z.numel()), match="L2")

    @_mine
    def with_autograd(z, c):
        z = z.detach().clone().requires_grad_()
        (c * z.abs().mean()).backward()
        return z.grad

    _fails(checks.check_l1_gradient, with_autograd, match="formula")


# ---- exercise 3 ------------------------------------------------------------------------------------
def test_optimal_latent():
    checks.check_optimal_latent(_mine(lambda x, lam: (x - lam / 2).clamp_min(0)))
    _fails(checks.check_optimal_latent, _mine(lambda x, lam: (x - lam).clamp_min(0)), match="factor 2")
    _fails(checks.check_optimal_latent, _mine(lambda x, lam: x - lam / 2), match="clamp")


# ---- exercise 4 ------------------------------------------------------------------------------------
class SparseAutoencoder(SeedSparseAutoencoder):
    def __init__(self, d_model, n_latents, seed=None):
        super().__init__(SeedReLUConfig(d_in=d_model, d_sae=n_latents, init_seed=seed))

    def forward(self, x):  # the seed's pair, as chapter 03's copy of the class returns it
        latents = self.encode(x)
        return self.decode(latents), latents


def _trainer(*, normalize=True, use_l1=True):
    @_mine
    def train_toy_sae(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):
        sae = SparseAutoencoder(activations.shape[-1], n_latents, seed=seed)
        sae.normalize_decoder_()
        opt = torch.optim.Adam(sae.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        history = []
        for _ in range(epochs):
            for idx in torch.randperm(len(activations), generator=g).split(batch_size):
                x = activations[idx]
                rec, lat = sae(x)
                recon, sparsity = (x - rec).pow(2).mean(), lat.abs().mean()
                loss = recon + (l1_coeff * sparsity if use_l1 else 0)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if normalize:
                    sae.normalize_decoder_()
                history.append({"step": len(history), "recon_loss": recon.item(),
                                "sparsity_loss": sparsity.item(), "l0": (lat != 0).float().sum(-1).mean().item()})
        return sae, history

    return train_toy_sae


def test_train_toy_sae():
    checks.check_train_toy_sae(_trainer())
    _fails(checks.check_train_toy_sae, _trainer(normalize=False), match="normalize_decoder_")
    _fails(checks.check_train_toy_sae, _trainer(use_l1=False), match="l1_coeff")


def test_train_toy_sae_rejects_the_library_trainer():
    @_mine
    def train_toy_sae(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):
        from utils.saes import build_sae
        from utils.train import TrainConfig, train_sae
        sae = build_sae("seed_relu", d_in=activations.shape[-1], d_sae=n_latents, l1_coeff=l1_coeff)
        return train_sae(sae, activations, TrainConfig(steps=epochs)).sae, []

    _fails(checks.check_train_toy_sae, train_toy_sae, match="course library")


# ---- exercise 5 ------------------------------------------------------------------------------------
def test_l0_and_ev():
    good = _mine(lambda x, xh, lat: ((lat != 0).float().sum(-1).mean().item(),
                                     1 - ((x - xh).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()))
    checks.check_l0_and_ev(good)
    about_zero = _mine(lambda x, xh, lat: (good(x, xh, lat)[0], 1 - ((x - xh).pow(2).sum() / x.pow(2).sum()).item()))
    _fails(checks.check_l0_and_ev, about_zero, match="about zero")
    seed_style = _mine(lambda x, xh, lat: (good(x, xh, lat)[0], 1 - ((x - xh).pow(2).mean() / x.var()).item()))
    _fails(checks.check_l0_and_ev, seed_style, match="scalar mean")
    fraction = _mine(lambda x, xh, lat: ((lat != 0).float().mean().item(), good(x, xh, lat)[1]))
    _fails(checks.check_l0_and_ev, fraction, match="count")

    @_mine
    def cheat(x, xh, lat):
        return metrics.l0(lat).item(), metrics.explained_variance(x, xh).item()

    _fails(checks.check_l0_and_ev, cheat, match="course library")
