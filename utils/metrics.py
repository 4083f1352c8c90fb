"""How good is an SAE? Sparsity, reconstruction, dead latents, and the cost to the model.

Pure functions: they return numbers (tensors or NamedTuples), never print.

Traps this module avoids (notes/sae-sota.md §3):
- L0 counts `acts != 0`, not `acts > 0` (a variant may produce negative codes).
- Explained variance is about the data's mean: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖². Measured about zero
  (SAELens #659), the denominator Σ‖x‖² includes ‖x̄‖², the part a bias alone explains,
  so the score reads far higher (0.98 vs 0.78 in #659) for the same SAE. Both are here.
- Loss recovered against *zero* ablation flatters any SAE on a residual stream (zeroing it
  wrecks the model, so anything looks good by comparison): report raw ΔCE with a bootstrap
  interval, and recovery against *mean* ablation too.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from utils.saes.base import SAE, count_fired


def _flat(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


def l0(acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, ""]:
    """Mean number of non-zero latents per token."""
    return count_fired(acts).sum() / acts.shape[:-1].numel()


def mse(x: Float[Tensor, "... d_in"], x_hat: Float[Tensor, "... d_in"]) -> Float[Tensor, ""]:
    """Mean squared error over every element (× d_in gives the per-token loss used in training)."""
    return (x - x_hat).pow(2).mean()


def explained_variance(x: Float[Tensor, "... d_in"], x_hat: Float[Tensor, "... d_in"]) -> Float[Tensor, ""]:
    """1 − Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ the mean over all tokens given: 0 for predicting x̄, 1 for x̂ = x."""
    x, x_hat = _flat(x).double(), _flat(x_hat).double()
    return (1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).float()


def explained_variance_about_zero(x: Float[Tensor, "... d_in"], x_hat: Float[Tensor, "... d_in"]) -> Float[Tensor, ""]:
    """1 − Σ‖x − x̂‖² / Σ‖x‖²: what SAELens' "explained_variance" computes (#659); reads higher."""
    x, x_hat = _flat(x).double(), _flat(x_hat).double()
    return (1 - (x - x_hat).pow(2).sum() / x.pow(2).sum()).float()


def relative_reconstruction_bias(x: Float[Tensor, "... d_in"], x_hat: Float[Tensor, "... d_in"]) -> Float[Tensor, ""]:
    """γ = E‖x̂‖² / E[x·x̂] (Gated SAE paper, Eq. 10): < 1 means shrinkage, ≈ 1 none."""
    x, x_hat = _flat(x).double(), _flat(x_hat).double()
    return (x_hat.pow(2).sum() / (x * x_hat).sum()).float()


def firing_frequency(acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "d_sae"]:
    """Fraction of the given tokens on which each latent fires (the window is the tokens given)."""
    return count_fired(acts) / acts.shape[:-1].numel()


def dead_fraction(freq: Float[Tensor, "d_sae"]) -> float:
    """Fraction of latents that never fired in the window `freq` was measured on."""
    return float((freq == 0).float().mean())


def dense_fraction(freq: Float[Tensor, "d_sae"], threshold: float = 0.1) -> float:
    """Fraction of latents firing on more than `threshold` of tokens (SAEBench's freq_over_10_percent)."""
    return float((freq > threshold).float().mean())


@torch.no_grad()
def evaluate(sae: SAE | nn.Module, x: Float[Tensor, "tokens d_in"], batch_size: int = 4096) -> dict[str, float]:
    """Every reconstruction and sparsity metric on a fixed set of tokens, as a plain dict."""
    was_training = sae.training
    sae.eval()
    x = _flat(x)
    x_hat, fired = [], torch.zeros(sae.cfg.d_sae, device=x.device)
    for xb in x.split(batch_size):
        acts = sae.encode(xb)
        x_hat.append(sae.decode(acts))
        fired += count_fired(acts)
    sae.train(was_training)
    x_hat = torch.cat(x_hat)
    freq = fired / x.shape[0]
    return {
        "l0": float(fired.sum()) / x.shape[0],
        "mse": float(mse(x, x_hat)),
        "explained_variance": float(explained_variance(x, x_hat)),
        "explained_variance_about_zero": float(explained_variance_about_zero(x, x_hat)),
        "relative_reconstruction_bias": float(relative_reconstruction_bias(x, x_hat)),
        "dead_fraction": dead_fraction(freq),
        "dense_fraction": dense_fraction(freq),
        "tokens": x.shape[0],
    }


# ---- downstream loss ----------------------------------------------------------------------------
class DownstreamLoss(NamedTuple):
    """The LM's next-token cross-entropy (nats/token) with the site intact, replaced, or ablated."""

    clean_ce: float
    """The unmodified model."""
    spliced_ce: float
    """The SAE's reconstruction x̂ in place of the activation."""
    zero_ablated_ce: float
    """The activation set to 0."""
    mean_ablated_ce: float
    """The activation set to its mean over the evaluated tokens (or the `mean_act` given)."""
    delta_ce: float
    """spliced − clean: the SAE's cost in nats per token."""
    delta_ce_ci: tuple[float, float]
    """Bootstrap interval of delta_ce, resampling whole sequences (tokens of one sequence correlate)."""
    frac_recovered_zero: float
    """(zero − spliced) / (zero − clean): SAELens' "CE loss score"; flattering on residual streams."""
    frac_recovered_mean: float
    """(mean − spliced) / (mean − clean): the stricter baseline."""


def splice_hook(sae: SAE | nn.Module, *, with_error: bool = False):
    """A TransformerLens hook replacing an activation by the SAE's reconstruction.

    `with_error=True` adds back the error term x − x̂, which must reproduce the clean model
    (to rounding): a test that the splice is wired to the right place and shape.
    """

    def hook(act: Tensor, hook=None) -> Tensor:
        x = act.float()
        x_hat = sae.decode(sae.encode(x))
        if with_error:
            x_hat = x_hat + (x - x_hat)
        return x_hat.to(act.dtype)

    return hook


def _per_token_ce(model, tokens: Tensor, hooks: list) -> Tensor:
    return model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)


@torch.no_grad()
def downstream_loss(model, sae: SAE | nn.Module, tokens: Int[Tensor, "batch seq"], hook_name: str, *, batch_size: int = 16,
                    mean_act: Float[Tensor, "d_in"] | None = None, n_boot: int = 1000, ci: float = 0.95,
                    seed: int = 0) -> DownstreamLoss:
    """Cross-entropy of `model` on `tokens` clean, with `sae` spliced in at `hook_name`, and ablated."""
    was_training = sae.training
    sae.eval()
    batches = tokens.split(batch_size)
    clean, total, count = [], None, 0

    def store(act, hook):
        nonlocal total, count
        a = act.float().reshape(-1, act.shape[-1])
        total = a.sum(0) if total is None else total + a.sum(0)
        count += a.shape[0]

    for t in batches:
        clean.append(_per_token_ce(model, t, [(hook_name, store)]))
    mean = mean_act.float() if mean_act is not None else total / count

    def run(hook_fn) -> Tensor:
        return torch.cat([_per_token_ce(model, t, [(hook_name, hook_fn)]) for t in batches])

    clean = torch.cat(clean)  # [n_seq seq-1]
    zero = run(lambda act, hook: torch.zeros_like(act))
    mean_abl = run(lambda act, hook: mean.to(act.dtype).expand_as(act).clone())
    spliced = run(splice_hook(sae))
    sae.train(was_training)

    per_seq = (spliced - clean).double().mean(-1)  # [n_seq]
    gen = torch.Generator().manual_seed(seed)
    boot = per_seq[torch.randint(len(per_seq), (n_boot, len(per_seq)), generator=gen)].mean(-1)
    lo, hi = torch.quantile(boot, torch.tensor([(1 - ci) / 2, (1 + ci) / 2], dtype=boot.dtype)).tolist()
    c, s, z, m = (float(v.double().mean()) for v in (clean, spliced, zero, mean_abl))
    return DownstreamLoss(
        clean_ce=c, spliced_ce=s, zero_ablated_ce=z, mean_ablated_ce=m, delta_ce=s - c, delta_ce_ci=(lo, hi),
        frac_recovered_zero=(z - s) / (z - c) if z != c else float("nan"),
        frac_recovered_mean=(m - s) / (m - c) if m != c else float("nan"),
    )
