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

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from utils import losses as L
from utils.saes.base import SAE, SAEConfig


@dataclass(kw_only=True)
class ReLUConfig(SAEConfig):
    l1_coeff: float = 1e-1  # λ, per token (losses summed over d_in); sweep it for the L0 you want


class ReLUSAE(SAE):
    """f = ReLU(W_encᵀ(x − b_dec) + b_enc), L = ‖x − x̂‖² + λ Σ_i f_i ‖W_dec[i]‖ (Bricken et al. 2023)."""

    config_class = ReLUConfig
    cfg: ReLUConfig

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        pre_acts = self.pre_activation(x)  # [... d_sae]
        return F.relu(pre_acts), pre_acts

    def loss_terms(self, x, x_hat, acts, pre_acts):
        return {
            "recon": L.reconstruction_loss(x, x_hat),
            "sparsity": self.sparsity_scale * self.cfg.l1_coeff * L.l1_penalty(acts, self.W_dec),
        }


@dataclass(kw_only=True)
class SeedReLUConfig(SAEConfig):
    l1_coeff: float = 1e-3  # the seed's l1_coeff: multiplies mean |latent| over tokens × latents
    unit_norm_decoder: bool = False  # the seed does not constrain its decoder


class SeedSAE(SAE):
    """What the seed's SAEs share: a bias-free `nn.Linear` decoder, no b_dec, the seed's own initialisation.

    An adapter onto the base: W_dec (and, per variant, W_enc and b_enc) are views of the seed's
    layers in the course's naming, so the trainer, metrics, resampling and interop use them like
    any other variant's; b_dec is a constant zero buffer `_zero_b_dec` (nothing to subtract or
    learn). A subclass creates `decoder` and that buffer in `init_weights_`.
    """

    @property
    def W_dec(self) -> Float[Tensor, "d_sae d_in"]:
        return self.decoder.weight.T  # a latent's direction is a column of the Linear's weight

    @property
    def b_dec(self) -> Float[Tensor, "d_in"]:
        return self._zero_b_dec

    def init_b_dec_(self, b) -> None:
        """The seed has no decoder bias: its encoder bias does all the centring."""

    def init_encoder_scale_(self, x) -> float:
        """The seed's initialisation is kept as the seed wrote it."""
        return 1.0

    def decode(self, acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_in"]:
        return self.decoder(acts)

    def loss_terms(self, x, x_hat, acts, pre_acts):
        return L.seed_loss_terms(x, x_hat, acts, self.cfg.l1_coeff, self.sparsity_scale)

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        w, g = self.decoder.weight, self.decoder.weight.grad  # the gradient lives on the Linear, not the view
        if g is not None:
            g.sub_((g * w).sum(0, keepdim=True) * w)


class SeedSparseAutoencoder(SeedSAE):
    """The seed's SAE: `nn.Linear` encoder with bias, bias-free `nn.Linear` decoder, the seed's loss.

        latents = ReLU(encoder(x)),  reconstructed = decoder(latents),  loss = sae_loss(...)

    The seed's `forward` returns the pair `(reconstructed, latents)`; this adapter keeps the
    course's contract, `forward(x) -> SAEOutput(x_hat, acts, losses)`, so the seed's pair is
    `out.x_hat, out.acts`. W_enc and b_enc are views of `encoder`.
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

    @property
    def W_enc(self) -> Float[Tensor, "d_in d_sae"]:
        return self.encoder.weight.T

    @property
    def b_enc(self) -> Float[Tensor, "d_sae"]:
        return self.encoder.bias

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        pre_acts = self.encoder(x)
        return F.relu(pre_acts), pre_acts  # Sparsity via ReLU (the seed's comment)


__all__ = ["ReLUConfig", "ReLUSAE", "SeedReLUConfig", "SeedSAE", "SeedSparseAutoencoder"]
