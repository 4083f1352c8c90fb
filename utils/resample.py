"""Dead latents: firing frequency, detection, and Anthropic's resampling (Bricken et al. 2023).

A latent is *dead* if it has not fired on any of the last N tokens (a fixed window; the
threshold matters: a latent firing once per 10⁵ tokens is rare, not dead, and a 10⁴-token
window would call it dead). AuxK (in `utils.saes.topk`) is the modern alternative to
resampling; chapter 05 compares them. The trainer calls `resample_dead_latents_`, or the
function passed as `train_sae(..., resample_fn=...)` with the same signature.

Resampling, as in "Towards Monosemanticity" (Neuron Resampling appendix):
  1. find latents that did not fire in the window;
  2. score a sample of inputs by the SAE's loss on them;
  3. draw one input per dead latent with probability ∝ loss²;
  4. its (centred) direction, normalised, becomes the latent's decoder row;
  5. the encoder row is the same direction scaled to 0.2 × the mean alive encoder norm,
     and the encoder bias is zeroed;
  6. Adam's moment estimates of every touched row are reset (stale moments would throw the
     fresh row straight back to where the old one died).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from utils.saes.base import SAE, count_fired


@torch.no_grad()
def firing_counts(sae: SAE, x: Float[Tensor, "n d_in"], batch_size: int = 4096) -> Float[Tensor, "d_sae"]:
    """How many of the inputs each latent fires on (`count_fired`), encoded in batches, in eval mode."""
    was_training = sae.training
    sae.eval()
    counts = torch.zeros(sae.cfg.d_sae, device=x.device)
    for xb in x.split(batch_size):
        counts += count_fired(sae.encode(xb))
    sae.train(was_training)
    return counts


def find_dead_latents(sae: SAE, x: Float[Tensor, "n d_in"], batch_size: int = 4096) -> Bool[Tensor, "d_sae"]:
    """Latents that fire on none of the inputs (the window is `x`: choose its size deliberately)."""
    return firing_counts(sae, x, batch_size) == 0


@torch.no_grad()
def per_input_loss(sae: SAE, x: Float[Tensor, "n d_in"], batch_size: int = 4096) -> Float[Tensor, "n"]:
    """‖x − x̂‖² per input: the reconstruction loss the SAE is trained on."""
    out = [(xb - sae.decode(sae.encode(xb))).pow(2).sum(-1) for xb in x.split(batch_size)]
    return torch.cat(out)


@torch.no_grad()
def reset_adam_state_(optimizer: torch.optim.Optimizer, sae: SAE, idx: Tensor) -> None:
    """Zero Adam's first and second moments of latents `idx` in every per-latent parameter."""
    params = dict(sae.named_parameters())
    for name, axis in sae.LATENT_AXES.items():
        p = params.get(name)
        state = optimizer.state.get(p) if p is not None else None
        if not state:
            continue
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].index_fill_(axis, idx.to(state[key].device), 0.0)


@torch.no_grad()
def resample_dead_latents_(
    sae: SAE,
    x: Float[Tensor, "n d_in"],
    dead: Bool[Tensor, "d_sae"],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    enc_scale: float = 0.2,
    generator: torch.Generator | None = None,
) -> int:
    """Anthropic's resampling of the `dead` latents from inputs `x`; returns how many were resampled.

    Inputs are drawn with replacement, with probability ∝ (‖x − x̂‖²)²: "proportional to the
    square of the autoencoder's loss on that input" (dictionary_learning uses ‖x − x̂‖ instead).
    Directions are x − b_dec, the input as the encoder sees it.
    """
    idx = dead.nonzero().squeeze(-1)
    if idx.numel() == 0:
        return 0
    was_training = sae.training
    sae.eval()
    loss = per_input_loss(sae, x)
    sae.train(was_training)
    weights = loss.pow(2).double().cpu()
    if not torch.isfinite(weights).all() or weights.sum() <= 0:
        weights = torch.ones_like(weights)
    pick = torch.multinomial(weights, idx.numel(), replacement=True, generator=generator).to(x.device)
    dirs = x[pick] - sae.b_dec
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    alive = ~dead
    enc_norms = sae.W_enc.norm(dim=0)  # [d_sae]: one encoder direction per latent
    mean_alive = enc_norms[alive].mean() if alive.any() else enc_norms.mean()
    sae.reinit_latents_(idx, dirs, dirs * enc_scale * mean_alive)
    if optimizer is not None:
        reset_adam_state_(optimizer, sae, idx)
    return int(idx.numel())
