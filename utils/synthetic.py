"""Toy data with known features, to test that an SAE recovers them (Sharkey, Braun & Millidge 2022).

    x = Σ_i c_i F_i,   F_i uniform on the unit sphere of R^d,   c_i ~ U[0, 1] with probability p_i, else 0

with p_i ∝ decay^i scaled so that on average `mean_active` features are on, the setup of
HoagyC/sparse_coding (256 dims, 512 features, 5 active, decay 0.99). Because the F_i are
known, recovery is measurable: the mean max cosine similarity (MMCS) between each true
feature and its best-matching decoder row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor


FEATURE_STREAM = 0x5EED_0000  # offset of the feature directions' RNG seed (see ToyFeatures.__init__)


@dataclass(kw_only=True)
class ToyFeatureConfig:
    d_in: int = 256  # dimension of the data
    n_feats: int = 512  # number of true features (more than d_in: they are in superposition)
    mean_active: float = 5.0  # expected number of active features per sample
    prob_decay: float = 0.99  # p_i ∝ decay^i: a long tail of rare features
    noise_std: float = 0.0  # isotropic Gaussian noise added to every sample
    seed: int = 0  # seed of the feature directions


class ToyFeatures:
    """The true features and a sampler of sparse combinations of them."""

    def __init__(self, cfg: ToyFeatureConfig | None = None):
        self.cfg = cfg = cfg or ToyFeatureConfig()
        # Not manual_seed(cfg.seed): an SAE initialised with init_seed == cfg.seed draws its decoder
        # rows from that same stream (torch.randn(d_sae, d_in)), so it would start *on* the true
        # features and "recover" them without learning anything.
        gen = torch.Generator().manual_seed(FEATURE_STREAM + cfg.seed)
        feats = torch.randn(cfg.n_feats, cfg.d_in, generator=gen)
        self.features: Float[Tensor, "feats d_in"] = feats / feats.norm(dim=-1, keepdim=True)
        p = cfg.prob_decay ** torch.arange(cfg.n_feats, dtype=torch.float64)
        self.probs: Float[Tensor, "feats"] = (p * cfg.mean_active / p.sum()).clamp(max=1.0).float()

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(x [n d_in], coefficients [n feats])."""
        on = torch.rand(n, self.cfg.n_feats, generator=generator) < self.probs
        coeffs = torch.rand(n, self.cfg.n_feats, generator=generator) * on
        x = coeffs @ self.features
        if self.cfg.noise_std:
            x = x + self.cfg.noise_std * torch.randn(x.shape, generator=generator)
        return x, coeffs


class SyntheticSource:
    """Fresh toy batches forever: an activation source for `train_sae` that never repeats data."""

    def __init__(self, data: ToyFeatures, batch_size: int = 1024, seed: int = 1):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.d_in = data.cfg.d_in

    def __iter__(self) -> Iterator[Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        while True:
            yield self.data.sample(self.batch_size, gen)[0]


def max_cosine(dictionary: Float[Tensor, "n d_in"], features: Float[Tensor, "feats d_in"]) -> Float[Tensor, "feats"]:
    """For each true feature, the largest cosine similarity with any dictionary row."""
    D = dictionary / dictionary.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    F = features / features.norm(dim=-1, keepdim=True)
    return (F @ D.T).max(dim=-1).values


def mmcs(dictionary: Float[Tensor, "n d_in"], features: Float[Tensor, "feats d_in"]) -> float:
    """Mean max cosine similarity, true features → dictionary (1.0: every feature found exactly).

    Swap the arguments for dictionary → true features, which penalises junk and duplicates.
    """
    return float(max_cosine(dictionary, features).mean())


def fraction_recovered(dictionary: Float[Tensor, "n d_in"], features: Float[Tensor, "feats d_in"],
                       threshold: float = 0.9) -> float:
    """Fraction of true features whose best dictionary match has cosine > threshold."""
    return float((max_cosine(dictionary, features) > threshold).float().mean())


def run_recovery(variant: str, *, d_sae: int | None = None, data: ToyFeatures | None = None, steps: int = 2000,
                 batch_size: int = 1024, train_kwargs: dict | None = None, eval_tokens: int = 16_384,
                 seed: int = 0, **sae_kwargs) -> dict:
    """Train one variant on toy data and measure recovery: the benchmark's and the tests' shared recipe."""
    import time

    from utils import metrics
    from utils.saes import build_sae
    from utils.train import TrainConfig, train_sae

    data = data or ToyFeatures()
    d_sae = d_sae or data.cfg.n_feats
    sae = build_sae(variant, d_in=data.cfg.d_in, d_sae=d_sae, init_seed=seed, **sae_kwargs)
    cfg = TrainConfig(**{"steps": steps, "log_every": max(1, steps // 20), **(train_kwargs or {})})
    t0 = time.perf_counter()
    result = train_sae(sae, SyntheticSource(data, batch_size, seed=seed + 1), cfg, progress=False)
    seconds = time.perf_counter() - t0
    x_eval = data.sample(eval_tokens, torch.Generator().manual_seed(seed + 12345))[0]
    ev = metrics.evaluate(result.sae, x_eval)
    W_dec = result.sae.W_dec.detach()
    return {
        "variant": variant, "d_sae": d_sae, "steps": steps, "seconds": seconds,
        "mmcs": mmcs(W_dec, data.features), "mmcs_reverse": mmcs(data.features, W_dec),
        "frac_matched": fraction_recovered(W_dec, data.features, 0.9),
        "dead_fraction": ev["dead_fraction"], "l0": ev["l0"], "explained_variance": ev["explained_variance"],
        "sae": result.sae, "history": result.history,
    }
