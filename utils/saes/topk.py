"""TopK (Gao et al. 2024, arXiv 2406.04093) and BatchTopK (Bussmann et al. 2024, arXiv 2412.06410) SAEs.

    z = (x − b_dec) W_enc + b_enc,     f = ReLU(TopK_k(z)),     x̂ = f W_dec + b_dec,     L = ‖x − x̂‖²

No sparsity penalty: L0 is set directly, so there is no L1 shrinkage (Gao et al. §2.3).
Dead latents are the price; two mitigations from §2.4: the encoder starts as the decoder's
transpose, and the AuxK loss lets the top-k_aux dead latents model the residual x − x̂.

BatchTopK keeps the k·B largest activations of a whole batch instead of k per token, so
easy tokens can use fewer latents and hard ones more, at the same mean L0. At inference it
becomes a JumpReLU with one global threshold θ, the running mean of the smallest kept
activation (Bussmann et al. §3), so a token's code no longer depends on its batch.

This file is the dense, readable form. With k ≪ d_sae most of the decoder's work multiplies
zeros; `utils.saes.fast` (the trainer's `TrainConfig(fast_kernels=True)`) computes the same training
step touching only the selected latents, as sparsify does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from jaxtyping import Float
from torch import Tensor

from utils import losses as L
from utils.saes.base import SAE, Firing, SAEConfig


@dataclass(kw_only=True)
class TopKConfig(SAEConfig):
    k: int = 32  # active latents per token
    auxk_coeff: float = 1 / 32  # α of the AuxK loss (Gao et al. §A.2)
    k_aux: int | None = None  # dead latents used by AuxK; None: d_in // 2 (Gao et al. App. B.1)
    dead_tokens: int = 1_000_000  # a latent is dead for AuxK after this many tokens without firing (10M in Gao)
    auxk_normalize: bool = False  # divide AuxK by the residual's variance, as OpenAI's reference code does
    auxk_relu: bool = False  # ReLU on the dead latents' values in AuxK (OpenAI, sparsify); SAELens: raw


class TopKSAE(SAE):
    """f = ReLU(TopK_k((x − b_dec) W_enc + b_enc)); L = ‖x − x̂‖² + α AuxK (Gao et al. 2024, §2.3, §A.2)."""

    config_class = TopKConfig
    cfg: TopKConfig

    def select(self, pre_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        """ReLU(TopK_k(z)): the k largest pre-activations of each token, the rest zero."""
        top = pre_acts.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values.relu())

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        pre_acts = self.pre_activation(x)  # [... d_sae]
        return self.select(pre_acts), pre_acts

    def k_aux(self) -> int:
        return self.cfg.k_aux if self.cfg.k_aux is not None else self.cfg.d_in // 2

    def auxk_scale(self, n_dead: int, residual: Tensor) -> Tensor | float:
        """α, times min(n_dead / k_aux, 1) when few latents are dead (SAELens, after sparsify).

        With `auxk_normalize`, also 1 / Σ‖e − ē‖² per token: the loss becomes the fraction of the
        residual's variance the dead latents leave unexplained, as in OpenAI's reference code
        (`normalized_mse`), so α = 1/32 keeps its weight however small the residual gets. SAELens
        leaves it unnormalised (the default here, and what chapter 05 derives).
        """
        scale = self.cfg.auxk_coeff * min(n_dead / self.k_aux(), 1.0)
        if self.cfg.auxk_normalize:
            e = residual.reshape(-1, residual.shape[-1])
            scale = scale / (e - e.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
        return scale

    def loss_terms(self, x, x_hat, acts, pre_acts, *, aux_loss_fn: L.AuxLossFn | None = None):
        """‖x − x̂‖², and α·AuxK once some latents are dead (`aux_terms`)."""
        return {"recon": L.reconstruction_loss(x, x_hat), **self.aux_terms(x, x_hat, pre_acts, aux_loss_fn)}

    def aux_terms(self, x: Tensor, x_hat: Tensor, pre_acts: Tensor,
                  aux_loss_fn: L.AuxLossFn | None = None) -> dict[str, Tensor]:
        """{"aux": α · scale · AuxK} when some latents have been silent for `dead_tokens`, else {}.

        `aux_loss_fn(residual, pre_acts, W_dec, dead, k_aux)` is the AuxK reconstruction loss
        (default: `losses.auxk_loss`). The dead mask, k_aux and the scaling stay here, once: a
        student's `auxk_loss` (chapter 05, via `train_sae(aux_loss_fn=...)`) and the fast path's
        sparse kernel plug in at that one point.
        """
        dead = self.dead_mask(self.cfg.dead_tokens)
        n_dead = int(dead.sum())
        if not (n_dead and self.cfg.auxk_coeff):
            return {}
        if aux_loss_fn is None:
            aux_loss_fn = partial(L.auxk_loss, relu=self.cfg.auxk_relu)
        res = (x - x_hat).detach()
        return {"aux": self.auxk_scale(n_dead, res) * aux_loss_fn(res, pre_acts, self.W_dec, dead, self.k_aux())}


@dataclass(kw_only=True)
class BatchTopKConfig(TopKConfig):
    threshold_lr: float = 0.01  # EMA rate of the inference threshold θ (SAELens' topk_threshold_lr)


class BatchTopKSAE(TopKSAE):
    """Training: keep the k·B largest of ReLU(z) over the batch. Inference: f = z ⊙ H(z − θ) (Bussmann et al. 2024)."""

    config_class = BatchTopKConfig
    cfg: BatchTopKConfig

    def init_weights_(self, gen: torch.Generator | None) -> None:
        super().init_weights_(gen)
        # θ = EMA of the smallest kept activation; fp64 as SAELens, so tiny EMA steps register.
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64))

    def select(self, pre_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        if not self.training:
            return pre_acts * (pre_acts > self.threshold.to(pre_acts.dtype))
        flat = pre_acts.relu().reshape(-1)
        n_tokens = pre_acts.reshape(-1, pre_acts.shape[-1]).shape[0]
        top = flat.topk(min(self.cfg.k * n_tokens, flat.numel()), sorted=False)
        return torch.zeros_like(flat).scatter(0, top.indices, top.values).reshape(pre_acts.shape)

    @torch.no_grad()
    def firing(self, acts: Float[Tensor, "... d_sae"]) -> Firing:
        """Also the smallest kept activation, which the inference threshold tracks."""
        smallest = acts.detach().masked_fill(acts <= 0, torch.inf).amin()
        return super().firing(acts)._replace(min_active=smallest if smallest.isfinite() else None)

    @torch.no_grad()
    def after_optimizer_step_(self, firing: Firing) -> None:
        super().after_optimizer_step_(firing)
        if firing.min_active is not None:
            lr = self.cfg.threshold_lr
            self.threshold.mul_(1 - lr).add_(lr * firing.min_active.double())

    @torch.no_grad()
    def fold_input_scale_(self, c: float) -> None:
        super().fold_input_scale_(c)
        self.threshold.div_(c)
