"""utils.checks.ch03 from the student's side: every correct way of writing an answer passes (not only
the reference's), an error inside the answer comes back as a message instead of a traceback, and an
answer that calls the course's reference is rejected. The common mistakes, each with the message
that must name it, are the catalogue in tests/mistakes/ch03.py (run by tests/test_mistakes.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from _helpers import fails as _fails
from _helpers import mine as _mine
from utils import losses, metrics
from utils.checks import ch03 as checks
from utils.saes import SeedReLUConfig, SeedSparseAutoencoder


# ---- exercise 1 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [
    lambda x, r, lat, c: (x - r).pow(2).mean() + c * lat.abs().mean(),
    lambda x, r, lat, c: F.mse_loss(r, x) + c * F.l1_loss(lat, torch.zeros_like(lat)),
    lambda x, r, lat, c: torch.mean((x - r) ** 2) + c * torch.mean(torch.abs(lat)),
])
def test_sae_loss_accepts_every_correct_form(answer):
    checks.check_sae_loss(_mine(answer))


def test_sae_loss_messages():
    # the float the issue reported: a message, not "'float' object has no attribute 'backward'"
    _fails(checks.check_sae_loss, _mine(lambda x, r, lat, c: float((x - r).pow(2).mean() + c * lat.abs().mean())),
           match="Python float")
    _fails(checks.check_sae_loss, _mine(lambda x, r, lat, c: (x - r).pow(2).sum(-1).mean() + c * lat.abs().mean()),
           match="reconstruction term is summed over the last axis")
    _fails(checks.check_sae_loss, _mine(lambda x, r, lat, c: (x - r).pow(2).mean() + c * lat.abs().mean(0)),
           match=r"returned shape \(32,\)")
    _fails(checks.check_sae_loss, _mine(lambda x, r, lat, c: (x - r.T).pow(2).mean()),
           match=r"(?s)raised RuntimeError on x, reconstructed .* shapes do not line up")

    @_mine
    def cheat(x, r, lat, c):
        return losses.sae_loss(x, r, lat, c)

    _fails(checks.check_sae_loss, cheat, match="course library")


# ---- exercise 2 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [
    lambda z, c: c * torch.sign(z) / z.numel(),
    lambda z, c: c * (z > 0).float() / z.numel() - c * (z < 0).float() / z.numel(),
    lambda z, c: torch.where(z == 0, torch.zeros_like(z), c * z.sign()) / z.nelement(),
])
def test_l1_gradient_accepts_every_correct_form(answer):
    checks.check_l1_gradient(_mine(answer))


def test_l1_gradient_messages():
    _fails(checks.check_l1_gradient, _mine(lambda z, c: c * torch.sign(z) / len(z)), match=r"latents\.shape\[0\]")
    _fails(checks.check_l1_gradient, _mine(lambda z, c: None), match="returned None")


# ---- exercise 3 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [
    lambda x, lam: (x - lam / 2).clamp_min(0),
    lambda x, lam: torch.relu(x - lam / 2),
    lambda x, lam: torch.maximum(x - 0.5 * lam, torch.zeros_like(x)),
])
def test_optimal_latent_accepts_every_correct_form(answer):
    checks.check_optimal_latent(_mine(answer))


def test_optimal_latent_messages():
    _fails(checks.check_optimal_latent, _mine(lambda x, lam: (x - lam).clamp_min(0)), match="factor 2")
    _fails(checks.check_optimal_latent, _mine(lambda x, lam: (x - lam / 4).clamp_min(0)),
           match="gradient descent on the 1-D loss")  # no known mistake: the general hint


# ---- exercise 4 ------------------------------------------------------------------------------------
class SparseAutoencoder(SeedSparseAutoencoder):  # the notebook's class
    def __init__(self, d_model, n_latents, seed=None):
        super().__init__(SeedReLUConfig(d_in=d_model, d_sae=n_latents, init_seed=seed))

    def forward(self, x):  # the seed's pair, as chapter 03's copy of the class returns it
        latents = self.encode(x)
        return self.decode(latents), latents


def _stats(x, rec, lat) -> dict:
    return {"recon_loss": (x - rec).pow(2).mean().item(), "sparsity_loss": lat.abs().mean().item(),
            "l0": (lat != 0).float().sum(-1).mean().item()}


def _trainer(*, normalize=True, use_l1=True, style="randperm"):
    """A correct loop in one of several styles, or with a planted mistake."""

    @_mine
    def train_toy_sae(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):
        sae = SparseAutoencoder(activations.shape[-1], n_latents, seed=seed)
        sae.normalize_decoder_()
        opt = torch.optim.Adam(sae.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        loader = DataLoader(TensorDataset(activations), batch_size=batch_size, shuffle=True, generator=g)
        history = []
        for _ in range(epochs):
            batches = ([b] for (b,) in loader) if style == "dataloader" else \
                ([activations[i]] for i in torch.randperm(len(activations), generator=g).split(batch_size))
            for (x,) in batches:
                rec, lat = sae(x)
                loss = (x - rec).pow(2).mean() + (l1_coeff * lat.abs().mean() if use_l1 else 0)
                if style != "zero_grad_last":
                    opt.zero_grad()
                loss.backward()
                opt.step()
                if normalize:
                    sae.normalize_decoder_()
                if style == "zero_grad_last":
                    opt.zero_grad()
                if style == "log_after_step":  # the batch's numbers after the update
                    with torch.no_grad():
                        rec, lat = sae(x)
                history.append({"step": len(history), **_stats(x, rec, lat)})
        return sae, history

    return train_toy_sae


@pytest.mark.parametrize("style", ["randperm", "dataloader", "zero_grad_last", "log_after_step"])
def test_train_toy_sae_accepts_every_correct_loop(style):
    checks.check_train_toy_sae(_trainer(style=style))


def test_train_toy_sae_messages():
    _fails(checks.check_train_toy_sae, _trainer(normalize=False), match="normalize_decoder_")
    _fails(checks.check_train_toy_sae, _trainer(use_l1=False), match="no sparsity part")

    @_mine
    def crashes(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):
        sae = SparseAutoencoder(activations.shape[-1], n_latents, seed=seed)
        return sae, [sae(activations.T)]  # a transposed batch

    _fails(checks.check_train_toy_sae, crashes, match=r"raised RuntimeError on activations \[1000, 12\]")


def test_train_toy_sae_rejects_the_library_trainer():
    @_mine
    def train_toy_sae(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):
        from utils.saes import build_sae
        from utils.train import TrainConfig, train_sae
        sae = build_sae("seed_relu", d_in=activations.shape[-1], d_sae=n_latents, l1_coeff=l1_coeff)
        return train_sae(sae, activations, TrainConfig(steps=epochs)).sae, []

    _fails(checks.check_train_toy_sae, train_toy_sae, match="course library")


# ---- exercise 5 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [
    lambda x, xh, lat: ((lat != 0).float().sum(-1).mean().item(),
                        1 - ((x - xh).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()),
    lambda x, xh, lat: (torch.count_nonzero(lat).item() / lat.shape[0],
                        1 - (F.mse_loss(xh, x, reduction="sum") / (x - x.mean(dim=0, keepdim=True)).pow(2).sum()).item()),
    lambda x, xh, lat: ((lat != 0).sum(-1).float().mean().item(),
                        1 - ((x - xh).pow(2).sum(-1).mean() / x.var(0, unbiased=False).sum()).item()),
])
def test_l0_and_ev_accepts_every_correct_form(answer):
    checks.check_l0_and_ev(_mine(answer))


def test_l0_and_ev_messages():
    good = _mine(lambda x, xh, lat: ((lat != 0).float().sum(-1).mean().item(),
                                     1 - ((x - xh).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()))
    _fails(checks.check_l0_and_ev, _mine(lambda x, xh, lat: list(good(x, xh, lat))), match="return the pair")
    _fails(checks.check_l0_and_ev, _mine(lambda x, xh, lat: (good(x, xh, lat)[0], good(x, xh, lat)[1] / 2)),
           match=r"1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²")  # no known mistake: the general hint

    @_mine
    def cheat(x, xh, lat):
        return metrics.l0(lat).item(), metrics.explained_variance(x, xh).item()

    _fails(checks.check_l0_and_ev, cheat, match="course library")
