"""JumpReLU SAEs (Rajamanoharan et al. 2024b, "Jumping Ahead", arXiv 2407.14435).

    z = (x − b_dec) W_enc + b_enc,     f = JumpReLU_θ(z) = z ⊙ H(z − θ),     x̂ = f W_dec + b_dec
    L = ‖x − x̂‖² + λ ‖f‖₀

A latent is either off or at least θ_i: small, noisy activations are cut without shrinking
the large ones (as an L1 would). H has zero derivative almost everywhere, so θ learns through
straight-through estimators with a rectangle kernel K of bandwidth ε (Eqs. 11–12):

    ∂JumpReLU/∂θ := −(θ/ε) K((z − θ)/ε),     ∂H(z − θ)/∂θ := −(1/ε) K((z − θ)/ε)

θ is stored directly, not as log θ: Adam moves a parameter by about lr per step, so log θ
moves θ by only θ·lr and thresholds barely change (SAELens #718). θ stays fp32 (SAELens #728).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from utils import losses as L
from utils.saes.base import SAE, SAEConfig


def jump_relu(x, threshold):
    """The seed's `jump_relu`, verbatim. Note it is *not* the paper's JumpReLU.

    ReLU(x − θ)·1[x > θ] = ReLU(x − θ): a ReLU shifted right by θ, continuous at θ, so an
    active latent is reported θ too small. The paper's JumpReLU keeps x itself above θ
    (`jumprelu` below) and so jumps from 0 to θ.
    """
    return F.relu(x - threshold) * (x > threshold)


def jumprelu(z: Float[Tensor, "... d_sae"], threshold: Float[Tensor, "d_sae"] | Float[Tensor, ""]
             ) -> Float[Tensor, "... d_sae"]:
    """The paper's JumpReLU_θ(z) = z · H(z − θ) (Eq. 4), without gradients to θ."""
    return z * (z > threshold)


class JumpReLUSTE(torch.autograd.Function):
    """JumpReLU_θ(z) with the threshold's straight-through estimator (Eq. 11).

    forward:  z · 1[z > θ]
    backward: ∂/∂z = 1[z > θ];   ∂/∂θ := −(θ/ε) K((z − θ)/ε)
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        mask = z > theta
        ctx.save_for_backward(z, theta, mask)
        ctx.eps = eps
        return z * mask

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        z, theta, mask = ctx.saved_tensors
        g_z = grad * mask
        g_theta = -(theta / ctx.eps) * L.rectangle((z - theta) / ctx.eps) * grad
        return g_z, g_theta.reshape(-1, theta.shape[-1]).sum(0).to(theta.dtype), None


@dataclass(kw_only=True)
class JumpReLUConfig(SAEConfig):
    l0_coeff: float = 1e-2  # λ on the expected L0; Adam saturates it above ~1 (SAELens #719): sweep downward
    bandwidth: float = 1e-3  # ε of the STE kernel, in input units: 0.001 at E‖x‖² = 1 (the paper)
    init_threshold: float = 1e-3  # θ at initialisation, in input units


class JumpReLUSAE(SAE):
    """f = z ⊙ H(z − θ), learned per-latent θ, L0 penalty through an STE (Rajamanoharan et al. 2024b)."""

    config_class = JumpReLUConfig
    cfg: JumpReLUConfig
    LATENT_AXES = {**SAE.LATENT_AXES, "threshold": 0}

    def init_weights_(self, gen: torch.Generator | None) -> None:
        super().init_weights_(gen)
        self.threshold = nn.Parameter(torch.full((self.cfg.d_sae,), self.cfg.init_threshold))

    def _apply(self, fn, *args, **kwargs):
        # `.to(bfloat16)` etc. must not round θ: Adam's lr-sized steps would vanish (SAELens #728).
        out = super()._apply(fn, *args, **kwargs)
        if self.threshold.dtype != torch.float32:
            self.threshold.data = self.threshold.data.float()
        return out

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        pre_acts = self.pre_activation(x)  # [... d_sae]
        theta = self.threshold.to(pre_acts.dtype)
        acts = JumpReLUSTE.apply(pre_acts, theta, self.cfg.bandwidth) if self.training else jumprelu(pre_acts, theta)
        return acts, pre_acts

    def loss_terms(self, x, x_hat, acts, pre_acts):
        theta = self.threshold.to(pre_acts.dtype)
        return {
            "recon": L.reconstruction_loss(x, x_hat),
            "sparsity": self.sparsity_scale * self.cfg.l0_coeff * L.l0_penalty(pre_acts, theta, self.cfg.bandwidth),
        }

    @torch.no_grad()
    def after_optimizer_step_(self, firing) -> None:
        super().after_optimizer_step_(firing)
        # θ < 0 would let negative pre-activations through; project rather than clamp in the
        # graph, which would zero θ's gradient and pin it at 0 (SAELens does the same).
        self.threshold.clamp_(min=0.0)

    @torch.no_grad()
    def reinit_latents_(self, idx, dec_dirs, enc_dirs) -> None:
        super().reinit_latents_(idx, dec_dirs, enc_dirs)
        self.threshold[idx] = self.cfg.init_threshold

    @torch.no_grad()
    def fold_input_scale_(self, c: float) -> None:
        super().fold_input_scale_(c)
        self.threshold.div_(c)

    @torch.no_grad()
    def scale_encoder_(self, s: float) -> None:
        super().scale_encoder_(s)
        self.threshold.mul_(s)  # z·H(z − θ) scaled by s is (sz)·H(sz − sθ)
