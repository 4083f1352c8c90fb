"""Gated SAEs, side by side: the seed's sigmoid gate and DeepMind's Heaviside gate.

Seed ("Gated SAE (DeepMind)" in the seed, but not DeepMind's):

    f = σ(W_gate x) ⊙ ReLU(W_mag x),          L = sae_loss(x, x̂, f, λ)

    Two independent encoders, a soft gate, and an L1 on f itself: the gate never has to
    decide, every latent stays a little open, and the L1 still shrinks magnitudes.

DeepMind (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated SAEs", §3):

    π_gate = (x − b_dec) W_enc + b_gate,       π_mag = (x − b_dec)(W_enc ⊙ exp r_mag) + b_mag
    f = 1[π_gate > 0] ⊙ ReLU(π_mag),           x̂ = f W_dec + b_dec
    L = ‖x − x̂‖² + λ ‖ReLU(π_gate)‖₁ + ‖x − (ReLU(π_gate) W_dec.detach() + b_dec.detach())‖²

    A hard gate decides *which* latents fire; the magnitude path, sharing the encoder
    direction up to a per-latent rescaling, says *how much*. The L1 sits on the gate path
    only, so magnitudes are not shrunk; since the Heaviside gate has no gradient, the
    auxiliary loss (decoder frozen) is what teaches the gate path to reconstruct.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from utils import losses as L
from utils.saes.base import SAE, SAEConfig
from utils.saes.relu import SeedSAE


@dataclass(kw_only=True)
class GatedConfig(SAEConfig):
    l1_coeff: float = 1e-1  # λ on ‖ReLU(π_gate)‖₁ (decoder-norm weighted), per token


class GatedSAE(SAE):
    """f = 1[π_gate > 0] ⊙ ReLU(π_mag) with shared encoder directions (Rajamanoharan et al. 2024, §3.2)."""

    config_class = GatedConfig
    cfg: GatedConfig
    LATENT_AXES = {"W_enc": 1, "W_dec": 0, "b_gate": 0, "b_mag": 0, "r_mag": 0}

    def init_weights_(self, gen: torch.Generator | None) -> None:
        super().init_weights_(gen)
        del self.b_enc  # the gate and magnitude paths have their own biases
        self.b_gate = nn.Parameter(torch.zeros(self.cfg.d_sae))
        self.b_mag = nn.Parameter(torch.zeros(self.cfg.d_sae))
        self.r_mag = nn.Parameter(torch.zeros(self.cfg.d_sae))  # log of the magnitude rescaling

    @property
    def b_enc(self) -> Tensor:
        """The gate bias: it decides firing, as b_enc does in the other variants."""
        return self.b_gate

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        h = (x - self.b_dec) @ self.W_enc  # one matmul serves both paths:
        pi_gate = h + self.b_gate  # [... d_sae]
        pi_mag = h * self.r_mag.exp() + self.b_mag  # = (x − b_dec)(W_enc ⊙ exp r_mag) + b_mag
        acts = (pi_gate > 0).to(pi_mag.dtype) * F.relu(pi_mag)
        return acts, pi_gate

    def loss_terms(self, x, x_hat, acts, pre_acts):
        gate_acts = F.relu(pre_acts)
        via_gate = gate_acts @ self.W_dec.detach() + self.b_dec.detach()
        return {
            "recon": L.reconstruction_loss(x, x_hat),
            "sparsity": self.sparsity_scale * self.cfg.l1_coeff * L.l1_penalty(gate_acts, self.W_dec),
            "aux": L.reconstruction_loss(x, via_gate),
        }

    @torch.no_grad()
    def reinit_latents_(self, idx, dec_dirs, enc_dirs) -> None:
        super().reinit_latents_(idx, dec_dirs, enc_dirs)  # W_dec, W_enc and b_enc (= b_gate)
        self.b_mag[idx] = 0.0
        self.r_mag[idx] = 0.0

    @torch.no_grad()
    def fold_input_scale_(self, c: float) -> None:
        super().fold_input_scale_(c)  # b_dec and b_enc (= b_gate)
        self.b_mag.div_(c)

    @torch.no_grad()
    def scale_encoder_(self, s: float) -> None:
        # π_gate and π_mag both scale by s: the gate's decisions are unchanged, f and the auxiliary
        # loss's ReLU(π_gate) reconstruction both scale by s.
        super().scale_encoder_(s)  # W_enc and b_enc (= b_gate)
        self.b_mag.mul_(s)


@dataclass(kw_only=True)
class SeedGatedConfig(SAEConfig):
    l1_coeff: float = 1e-3  # the seed's l1_coeff in sae_loss (mean over tokens × latents)
    unit_norm_decoder: bool = False  # the seed does not constrain its decoder


class SeedGatedSAE(SeedSAE):
    """The seed's gated SAE: f = σ(W_gate x) ⊙ ReLU(W_mag x), bias-free, decoded by a bias-free Linear.

    The seed writes `self.W_gate @ x` for a single vector; here W_gate and W_mag are
    [d_sae d_in] as in the seed, applied to a batch as x W_gateᵀ. The seed's `forward` returns
    `(reconstructed, latents)`; this adapter returns the course's `SAEOutput`, whose
    `x_hat, acts` are that pair. W_enc is a view of the magnitude encoder. Not representable in SAELens.
    """

    config_class = SeedGatedConfig
    cfg: SeedGatedConfig
    LATENT_AXES = {"W_gate": 0, "W_mag": 0, "decoder.weight": 1}

    def init_weights_(self, gen: torch.Generator | None) -> None:
        d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
        bound = d_in**-0.5  # nn.Linear's default scale
        self.W_gate = nn.Parameter(torch.empty(d_sae, d_in).uniform_(-bound, bound, generator=gen))
        self.W_mag = nn.Parameter(torch.empty(d_sae, d_in).uniform_(-bound, bound, generator=gen))
        self.decoder = nn.Linear(d_sae, d_in, bias=False)
        with torch.no_grad():
            self.decoder.weight.uniform_(-(d_sae**-0.5), d_sae**-0.5, generator=gen)
        self.register_buffer("_zero", torch.zeros(d_sae), persistent=False)
        self.register_buffer("_zero_b_dec", torch.zeros(d_in), persistent=False)

    @property
    def W_enc(self) -> Tensor:
        """The magnitude encoder (the gate has its own, independent one)."""
        return self.W_mag.T

    @property
    def b_enc(self) -> Tensor:
        return self._zero

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        # Separate magnitude and gate (the seed's comments)
        gate = torch.sigmoid(x @ self.W_gate.T)
        magnitude = F.relu(x @ self.W_mag.T)
        return gate * magnitude, gate  # Element-wise product

    @torch.no_grad()
    def reinit_latents_(self, idx, dec_dirs, enc_dirs) -> None:
        super().reinit_latents_(idx, dec_dirs, enc_dirs)  # decoder and W_mag (b_enc is a constant zero)
        self.W_gate[idx] = enc_dirs

    @torch.no_grad()
    def fold_input_scale_(self, c: float) -> None:
        # Bias-free and positively homogeneous in x except for the gate σ(W_gate x), which is
        # scale dependent: undo the scale inside the gate instead.
        self.W_gate.mul_(c)
