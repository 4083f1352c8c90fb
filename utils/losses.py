"""SAE losses as small pure functions (the openai/sparse_autoencoder style).

Convention for the course's own variants (as SAELens and Gao et al.): squared errors are
summed over `d_in` and averaged over tokens, so a loss is "per token". The seed's `sae_loss`
averages over every element instead; it is kept exactly as the seed wrote it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def sae_loss(x, reconstructed, latents, l1_coeff):
    """The seed's loss, verbatim: mean squared error plus l1_coeff × mean |latent|.

    Both means run over every element (tokens × dims, tokens × latents), so l1_coeff is not
    comparable with the per-token coefficients used by `l1_penalty`.
    """
    # 1. Reconstruction: match the original
    reconstruction_loss = (x - reconstructed).pow(2).mean()
    # 2. Sparsity: few latents should be active
    sparsity_loss = latents.abs().mean()
    return reconstruction_loss + l1_coeff * sparsity_loss


def seed_loss_terms(x, x_hat, acts, l1_coeff, scale: float = 1.0) -> dict:
    """The two terms of the seed's `sae_loss` as the SAE classes' loss dict, so that
    sum(terms) == sae_loss(x, x_hat, acts, scale · l1_coeff) (`scale`: the L1 warm-up)."""
    return {"recon": (x - x_hat).pow(2).mean(), "sparsity": scale * l1_coeff * acts.abs().mean()}


def reconstruction_loss(x: Float[Tensor, "... d_in"], x_hat: Float[Tensor, "... d_in"]) -> Float[Tensor, ""]:
    """Σ_d (x − x̂)², averaged over tokens."""
    return (x - x_hat).pow(2).sum(-1).mean()


def l1_penalty(acts: Float[Tensor, "... d_sae"], W_dec: Float[Tensor, "d_sae d_in"]) -> Float[Tensor, ""]:
    """Σ_i |f_i| ‖W_dec[i]‖, averaged over tokens.

    Weighting by the decoder norm makes the penalty invariant to trading scale between a
    latent and its decoder row (Anthropic's April 2024 update); with unit-norm rows it is the
    plain L1. Written as a matrix-vector product: one pass over `acts`.
    """
    acts = acts.reshape(-1, acts.shape[-1])
    return (acts.abs() @ W_dec.norm(dim=-1)).mean()


def rectangle(u: Tensor) -> Tensor:
    """The rectangle kernel K(u) = 1[|u| < ½] (JumpReLU paper, §4)."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class StepSTE(torch.autograd.Function):
    """H(z − θ), with a straight-through estimate of its derivative in θ (Rajamanoharan et al. 2024b, Eq. 12).

    forward:  H(z − θ) = 1[z > θ]
    backward: ∂/∂θ := −(1/ε) K((z − θ)/ε);  ∂/∂z := 0 (DeepMind's version: only θ learns from L0).
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        z, theta = ctx.saved_tensors
        g_theta = -(1.0 / ctx.eps) * rectangle((z - theta) / ctx.eps) * grad
        return None, g_theta.reshape(-1, theta.shape[-1]).sum(0).to(theta.dtype), None


def l0_penalty(
    pre_acts: Float[Tensor, "... d_sae"], threshold: Float[Tensor, "d_sae"], bandwidth: float
) -> Float[Tensor, ""]:
    """‖f‖₀ = Σ_i H(z_i − θ_i) averaged over tokens, differentiable in θ through the STE."""
    return StepSTE.apply(pre_acts, threshold, bandwidth).sum(-1).mean()


# What `train_sae(..., aux_loss_fn=...)` and `TopKSAE.loss_terms` take: chapter 05's signature.
AuxLossFn = Callable[[Tensor, Tensor, Tensor, Tensor, int], Tensor]  # (residual, pre_acts, W_dec, dead, k_aux)


def top_dead(pre_acts: Float[Tensor, "... d_sae"], dead: Bool[Tensor, "d_sae"], k_aux: int) -> Any:
    """AuxK's selection: per token, the min(k_aux, n_dead) largest pre-activations among dead latents.

    Returns torch's (values, indices) pair, both [tokens min(k_aux, n_dead)].
    """
    z = pre_acts.reshape(-1, pre_acts.shape[-1]).masked_fill(~dead, -torch.inf)
    return z.topk(min(k_aux, int(dead.sum())), dim=-1, sorted=False)


def auxk_loss(
    residual: Float[Tensor, "... d_in"],
    pre_acts: Float[Tensor, "... d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    dead: Bool[Tensor, "d_sae"],
    k_aux: int,
    relu: bool = False,
) -> Float[Tensor, ""]:
    """AuxK (Gao et al. 2024, §A.2): the top-k_aux *dead* latents reconstruct the main residual.

        ê = TopK_aux(z restricted to dead latents) W_dec,   L_aux = ‖e − ê‖²,   e = x − x̂ detached

    No b_dec in ê: the residual already contains the decoder bias's contribution (sparsify #132
    added it twice). The raw pre-activations are used, not their ReLU, so a dead latent whose
    pre-activation is negative everywhere still receives a gradient (as SAELens does).
    With `relu`, the selected values go through the ReLU first, as in OpenAI's reference code and
    sparsify: only dead latents with positive pre-activations learn, and none learns to reconstruct
    with a negative coefficient.
    Returns 0 when nothing is dead; scaling by min(n_dead/k_aux, 1) and α is the caller's.
    """
    if not dead.any():
        return pre_acts.new_zeros(())
    top = top_dead(pre_acts, dead, k_aux)
    values = top.values.relu() if relu else top.values
    z = pre_acts.reshape(-1, pre_acts.shape[-1])
    e_hat = torch.zeros_like(z).scatter(-1, top.indices, values) @ W_dec
    return reconstruction_loss(residual.reshape(-1, residual.shape[-1]).detach(), e_hat)
