"""ReLU SAEs trained with an L1 penalty: the seed's version and the standard form.

Seed (chapter 02 starts here):      f = ReLU(W_e x + b_e),               x̂ = W_d f
Standard (Bricken et al. 2023):     f = ReLU(W_encᵀ(x − b_dec) + b_enc), x̂ = f W_dec + b_dec,
                                    ‖W_dec[i]‖ = 1,  L = ‖x − x̂‖² + λ Σ_i f_i ‖W_dec[i]‖

The standard form differs in three ways that matter in training: subtracting b_dec centres
the data before encoding (b_dec starts at the geometric median), the decoder bias lets the
reconstruction be off-centre without spending latents, and unit-norm decoder rows stop the
L1 penalty being dodged by shrinking f while growing W_dec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from utils import losses as L
from utils.saes.base import SAE, SAEConfig, SAEOutput, shape_checked


class FusedReLUSAE(torch.autograd.Function):
    """The standard ReLU SAE's training forward and loss in one function, with a hand-written backward.

    forward:  f = ReLU((x − b_dec) W_enc + b_enc),  x̂ = f W_dec + b_dec,
              recon = Σ‖x̂ − x‖² / B,  l1 = Σ_i (Σ_b f_bi) ‖W_dec[i]‖ / B
    backward: g_x̂ = 2 g_recon (x̂ − x) / B
              g_z = (g_x̂ W_decᵀ + g_l1 ‖W_dec‖ / B) ⊙ 1[f > 0]
              g_W_enc = (x − b_dec)ᵀ g_z,  g_b_enc = Σ_b g_z,  g_b_dec = Σ_b g_x̂ − W_enc g_b_enc
              g_W_dec = fᵀ g_x̂ + (g_l1 / B) (Σ_b f_b) ⊙ W_dec / ‖W_dec‖
    Same numbers as autograd on the readable path (tests check it); it only saves the
    half-dozen elementwise passes over [batch d_sae] tensors that autograd would add around
    the five matmuls, which is what limits the step's speed at small d_in.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor):
        ctx.set_materialize_grads(False)  # unused outputs get None, not a [B d_sae] tensor of zeros
        B = x.shape[0]
        x_cent = x - b_dec
        acts = torch.addmm(b_enc, x_cent, W_enc).relu_()  # [B d_sae]
        x_hat = torch.addmm(b_dec, acts, W_dec)  # [B d_in]
        err = x_hat - x
        norms = W_dec.norm(dim=-1)
        act_sums = acts.sum(0)
        ctx.save_for_backward(x_cent, acts, err, W_enc, W_dec, norms, act_sums)
        return x_hat, acts, err.pow(2).sum() / B, act_sums @ norms / B

    @staticmethod
    def backward(ctx: Any, g_x_hat_in: Tensor, g_acts_in: Tensor, g_recon: Tensor, g_l1: Tensor):
        x_cent, acts, err, W_enc, W_dec, norms, act_sums = ctx.saved_tensors
        B = acts.shape[0]
        zero = err.new_zeros(())  # a loss term that was not used gets None (grads are not materialised)
        g_recon, g_l1 = (zero if g is None else g for g in (g_recon, g_l1))
        g_x_hat = err * (2.0 * g_recon / B)
        if g_x_hat_in is not None:
            g_x_hat = g_x_hat + g_x_hat_in
        g_z = torch.addmm(norms * (g_l1 / B), g_x_hat, W_dec.T)  # [B d_sae], the L1 term fused in
        if g_acts_in is not None:
            g_z.add_(g_acts_in)
        # ReLU': 1[f > 0], in place (a fresh [B d_sae] output costs more than the masking itself)
        torch.ops.aten.threshold_backward.grad_input(g_z, acts, 0.0, grad_input=g_z)
        g_b_enc = g_z.sum(0)
        g_W_enc = x_cent.T @ g_z
        g_W_dec = acts.T @ g_x_hat
        g_W_dec.addcmul_((act_sums * g_l1 / B / norms.clamp_min(1e-12))[:, None], W_dec)
        g_b_dec = g_x_hat.sum(0) - W_enc @ g_b_enc
        g_x = None
        if ctx.needs_input_grad[0]:
            g_x = g_z @ W_enc.T - err * (2.0 * g_recon / B)
        return g_x, g_W_enc, g_b_enc, g_W_dec, g_b_dec


@dataclass(kw_only=True)
class ReLUConfig(SAEConfig):
    l1_coeff: float = 1e-1  # λ, per token (losses summed over d_in); sweep it for the L0 you want


class ReLUSAE(SAE):
    """f = ReLU(W_encᵀ(x − b_dec) + b_enc), L = ‖x − x̂‖² + λ Σ_i f_i ‖W_dec[i]‖ (Bricken et al. 2023)."""

    config_class = ReLUConfig
    cfg: ReLUConfig

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        pre_acts = (x - self.b_dec) @ self.W_enc + self.b_enc  # [... d_sae]
        return F.relu(pre_acts), pre_acts

    @shape_checked
    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        return self.encode_with_pre(x)[0]

    def loss_terms(self, x, x_hat, acts, pre_acts):
        return {
            "recon": L.reconstruction_loss(x, x_hat),
            "sparsity": self.sparsity_scale * self.cfg.l1_coeff * L.l1_penalty(acts, self.W_dec),
        }

    def output(self, x: Float[Tensor, "... d_in"]) -> SAEOutput:
        if not (self.training and x.ndim == 2 and not torch.is_autocast_enabled(x.device.type)):
            return super().output(x)
        x_hat, acts, recon, l1 = FusedReLUSAE.apply(x, self.W_enc, self.b_enc, self.W_dec, self.b_dec)
        return SAEOutput(x_hat, acts, {"recon": recon, "sparsity": self.sparsity_scale * self.cfg.l1_coeff * l1})


@dataclass(kw_only=True)
class SeedReLUConfig(SAEConfig):
    l1_coeff: float = 1e-3  # the seed's l1_coeff: multiplies mean |latent| over tokens × latents
    unit_norm_decoder: bool = False  # the seed does not constrain its decoder


class SeedSparseAutoencoder(SAE):
    """The seed's SAE, exactly: `nn.Linear` encoder with bias, bias-free `nn.Linear` decoder.

        latents = ReLU(encoder(x)),  reconstructed = decoder(latents),  loss = sae_loss(...)

    `forward` returns `(reconstructed, latents)` as the seed's does; `output` gives the course's
    `SAEOutput` so the trainer, metrics and interop treat it like every other variant. The
    W_enc / W_dec / b_enc / b_dec attributes are views of the Linear weights (b_dec is a
    constant zero: the seed has no decoder bias, so there is nothing to subtract or learn).
    """

    config_class = SeedReLUConfig
    cfg: SeedReLUConfig
    LATENT_AXES = {"encoder.weight": 0, "encoder.bias": 0, "decoder.weight": 1}

    def init_weights_(self, gen: torch.Generator | None) -> None:
        if gen is not None:  # nn.Linear draws from the global RNG; make init_seed reproducible
            state = torch.random.get_rng_state()
            torch.manual_seed(int(torch.randint(2**31, (), generator=gen)))
        self.encoder = nn.Linear(self.cfg.d_in, self.cfg.d_sae)
        self.decoder = nn.Linear(self.cfg.d_sae, self.cfg.d_in, bias=False)
        if gen is not None:
            torch.random.set_rng_state(state)
        self.register_buffer("_zero_b_dec", torch.zeros(self.cfg.d_in), persistent=False)

    # Views in the course's naming, so shared code (metrics, interop, resampling) can read them.
    @property
    def W_enc(self) -> Float[Tensor, "d_in d_sae"]:
        return self.encoder.weight.T

    @property
    def b_enc(self) -> Float[Tensor, "d_sae"]:
        return self.encoder.bias

    @property
    def W_dec(self) -> Float[Tensor, "d_sae d_in"]:
        return self.decoder.weight.T

    @property
    def b_dec(self) -> Float[Tensor, "d_in"]:
        return self._zero_b_dec

    def init_b_dec_(self, b) -> None:
        """No decoder bias to initialise: the seed's encoder bias does all the centring."""

    def init_encoder_scale_(self, x) -> float:
        """The seed's nn.Linear initialisation is kept as the seed wrote it."""
        return 1.0

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        pre_acts = self.encoder(x)
        return F.relu(pre_acts), pre_acts

    def decode(self, acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_in"]:
        return self.decoder(acts)

    def loss_terms(self, x, x_hat, acts, pre_acts):
        return L.seed_loss_terms(x, x_hat, acts, self.cfg.l1_coeff, self.sparsity_scale)

    def forward(self, x):
        # Encode
        pre_acts = self.encoder(x)
        latents = F.relu(pre_acts)  # Sparsity via ReLU
        # Decode
        reconstructed = self.decoder(latents)
        return reconstructed, latents

    @torch.no_grad()
    def reinit_latents_(self, idx, dec_dirs, enc_dirs) -> None:
        self.decoder.weight[:, idx] = dec_dirs.T
        self.encoder.weight[idx] = enc_dirs
        self.encoder.bias[idx] = 0.0
        self.tokens_since_fired[idx] = 0.0

    @torch.no_grad()
    def fold_input_scale_(self, c: float) -> None:
        self.encoder.bias.div_(c)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        w = self.decoder.weight  # [d_in d_sae]: a latent's direction is a column here
        w.div_(w.norm(dim=0, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        w, g = self.decoder.weight, self.decoder.weight.grad
        if g is not None:
            g.sub_((g * w).sum(0, keepdim=True) * w)


__all__ = ["ReLUConfig", "ReLUSAE", "SeedReLUConfig", "SeedSparseAutoencoder", "SAEOutput"]
