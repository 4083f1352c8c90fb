"""TopK (Gao et al. 2024, arXiv 2406.04093) and BatchTopK (Bussmann et al. 2024, arXiv 2412.06410) SAEs.

    z = (x − b_dec) W_enc + b_enc,     f = ReLU(TopK_k(z)),     x̂ = f W_dec + b_dec,     L = ‖x − x̂‖²

No sparsity penalty: L0 is set directly, so there is no L1 shrinkage (Gao et al. §2.3).
Dead latents are the price; two mitigations from §2.4: the encoder starts as the decoder's
transpose, and the AuxK loss lets the top-k_aux dead latents model the residual x − x̂.

BatchTopK keeps the k·B largest activations of a whole batch instead of k per token, so
easy tokens can use fewer latents and hard ones more, at the same mean L0. At inference it
becomes a JumpReLU with one global threshold θ, the running mean of the smallest kept
activation (Bussmann et al. §3), so a token's code no longer depends on its batch.

Sparse decoding: with k ≪ d_sae, multiplying the mostly-zero [batch d_sae] code by W_dec
wastes most of the decoder's forward and backward. With `sparse_decode`, the encoder's
backward and the decoder touch only the selected latents (`embedding_bag`, as sparsify does),
and in training mode `acts` comes back as a torch sparse COO tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from utils import losses as L
from utils.saes.base import SAE, SAEConfig, SAEOutput, shape_checked


class SparseCode(NamedTuple):
    """Selected latents of a flat batch: token `rows[e]`, latent `cols[e]`, value `values[e]`."""

    rows: Int[Tensor, "nnz"]
    cols: Int[Tensor, "nnz"]
    values: Float[Tensor, "nnz"]
    offsets: Int[Tensor, "batch"]  # start of each token's entries (rows are sorted)


def _sparse_weight_grad(cols: Tensor, offsets: Tensor, g: Tensor, dense: Tensor, n: int) -> Tensor:
    """G[j] = Σ_{e: cols[e] = j} g[e] · dense[row(e)]  ([n d]) without a [nnz d] intermediate.

    That sum is exactly the weight gradient of `embedding_bag(cols, W, offsets, g)` for an
    upstream gradient `dense`, which torch computes with an index-add kernel.
    """
    W = torch.zeros(n, dense.shape[-1], dtype=dense.dtype, device=dense.device, requires_grad=True)
    with torch.enable_grad():
        out = F.embedding_bag(cols, W, offsets, mode="sum", per_sample_weights=g)
        return torch.autograd.grad(out, W, dense)[0]


class SparseEncode(torch.autograd.Function):
    """Values of z = (x − b_dec) W_enc + b_enc at given (row, col) entries, with a sparse backward.

    forward:  v[e] = z[rows[e], cols[e]]          (z itself is computed densely by the caller)
    backward: ∂W_enc[:, j] = Σ_{e: cols[e]=j} g[e] (x − b_dec)[rows[e]],  ∂b_enc[j] = Σ_{e: cols[e]=j} g[e],
              ∂b_dec = −W_enc ∂b_enc  (b_dec enters z only through x − b_dec)
    So the encoder's backward costs O(nnz · d_in) instead of a dense [d_in d_sae] matmul.
    """

    @staticmethod
    def forward(ctx: Any, x_cent: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, values: Tensor,
                cols: Tensor, offsets: Tensor) -> Tensor:
        ctx.save_for_backward(x_cent, W_enc, cols, offsets)
        return values.clone()

    @staticmethod
    def backward(ctx: Any, g: Tensor):
        x_cent, W_enc, cols, offsets = ctx.saved_tensors
        g = g.contiguous()
        g_W = _sparse_weight_grad(cols, offsets, g, x_cent, W_enc.shape[1]).T
        g_b_enc = torch.zeros(W_enc.shape[1], dtype=g.dtype, device=g.device).index_add_(0, cols, g)
        g_b_dec = -(W_enc @ g_b_enc)
        return None, g_b_dec, g_W, g_b_enc, None, None, None


@dataclass(kw_only=True)
class TopKConfig(SAEConfig):
    k: int = 32  # active latents per token
    auxk_coeff: float = 1 / 32  # α of the AuxK loss (Gao et al. §A.2)
    k_aux: int | None = None  # dead latents used by AuxK; None: d_in // 2 (Gao et al. App. B.1)
    dead_tokens: int = 1_000_000  # a latent is dead for AuxK after this many tokens without firing (10M in Gao)
    auxk_normalize: bool = False  # divide AuxK by the residual's variance, as OpenAI's reference code does
    auxk_relu: bool = False  # ReLU on the dead latents' values in AuxK (OpenAI, sparsify); SAELens: raw
    sparse_decode: bool = True  # decode with embedding_bag and a sparse encoder backward


class TopKSAE(SAE):
    """f = ReLU(TopK_k((x − b_dec) W_enc + b_enc)); L = ‖x − x̂‖² + α AuxK (Gao et al. 2024, §2.3, §A.2)."""

    config_class = TopKConfig
    cfg: TopKConfig

    # ---- the dense form: what the equations say ------------------------------------------
    def select(self, pre_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        top = pre_acts.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values.relu())

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        pre_acts = (x - self.b_dec) @ self.W_enc + self.b_enc  # [... d_sae]
        return self.select(pre_acts), pre_acts

    @shape_checked
    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        return self.encode_with_pre(x)[0]

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

    def loss_terms(self, x, x_hat, acts, pre_acts):
        terms = {"recon": L.reconstruction_loss(x, x_hat)}
        dead = self.dead_mask(self.cfg.dead_tokens)
        n_dead = int(dead.sum())
        if n_dead and self.cfg.auxk_coeff:
            res = (x - x_hat).detach()
            aux = L.auxk_loss(res, pre_acts, self.W_dec, dead, self.k_aux(), relu=self.cfg.auxk_relu)
            terms["aux"] = self.auxk_scale(n_dead, res) * aux
        return terms

    # ---- the sparse form: same numbers, O(k) decoder and encoder backward -------------------
    def sparse_select(self, pre_acts: Float[Tensor, "batch d_sae"]) -> SparseCode:
        """The k largest entries per token (ReLU applied), as a SparseCode."""
        B, k = pre_acts.shape[0], self.cfg.k
        top = pre_acts.topk(k, dim=-1, sorted=False)
        rows = torch.arange(B, device=pre_acts.device).repeat_interleave(k)
        offsets = torch.arange(0, B * k, k, device=pre_acts.device)
        return SparseCode(rows, top.indices.reshape(-1), top.values.reshape(-1).relu(), offsets)

    def sparse_output(self, x: Float[Tensor, "batch d_in"]) -> SAEOutput:
        x_cent = x - self.b_dec
        with torch.no_grad():
            # Under autocast the matmul comes out in bf16/fp16; embedding_bag needs the code in
            # W_dec's dtype (the selection itself tolerates the rounding, as in SAELens).
            pre_acts = torch.addmm(self.b_enc, x_cent, self.W_enc).to(self.W_dec.dtype)  # [batch d_sae]
            code = self.sparse_select(pre_acts)
        values = SparseEncode.apply(x_cent.detach(), self.b_dec, self.W_enc, self.b_enc, code.values,
                                    code.cols, code.offsets)
        x_hat = F.embedding_bag(code.cols, self.W_dec, code.offsets, mode="sum", per_sample_weights=values)
        x_hat = x_hat + self.b_dec
        terms = {"recon": L.reconstruction_loss(x, x_hat)}
        dead = self.dead_mask(self.cfg.dead_tokens)
        n_dead = int(dead.sum())
        if n_dead and self.cfg.auxk_coeff:
            k_aux = min(self.k_aux(), n_dead)
            with torch.no_grad():
                aux = pre_acts.masked_fill_(~dead, -torch.inf).topk(k_aux, dim=-1, sorted=False)
                cols = aux.indices.reshape(-1)
                offsets = torch.arange(0, x.shape[0] * k_aux, k_aux, device=x.device)
            # Raw values by default (SAELens), so latents with negative pre-activations still learn.
            aux_vals = SparseEncode.apply(x_cent.detach(), self.b_dec, self.W_enc, self.b_enc,
                                          aux.values.reshape(-1), cols, offsets)
            if self.cfg.auxk_relu:
                aux_vals = aux_vals.relu()
            e_hat = F.embedding_bag(cols, self.W_dec, offsets, mode="sum", per_sample_weights=aux_vals)
            res = (x - x_hat).detach()
            terms["aux"] = self.auxk_scale(n_dead, res) * L.reconstruction_loss(res, e_hat)
        acts = torch.sparse_coo_tensor(torch.stack([code.rows, code.cols]), values, pre_acts.shape,
                                       check_invariants=False)
        return SAEOutput(x_hat, acts, terms)

    def output(self, x: Float[Tensor, "... d_in"]) -> SAEOutput:
        if self.cfg.sparse_decode and self.training and x.ndim == 2:
            return self.sparse_output(x)
        return super().output(x)


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

    def _batch_top(self, pre_acts: Tensor) -> torch.return_types.topk:
        flat = pre_acts.reshape(-1)
        n = min(int(self.cfg.k * pre_acts.reshape(-1, pre_acts.shape[-1]).shape[0]), flat.numel())
        return flat.relu().topk(n, sorted=False)

    def select(self, pre_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        if not self.training:
            return pre_acts * (pre_acts > self.threshold.to(pre_acts.dtype))
        top = self._batch_top(pre_acts)
        return torch.zeros_like(pre_acts).reshape(-1).scatter(0, top.indices, top.values).reshape(pre_acts.shape)

    def sparse_select(self, pre_acts: Float[Tensor, "batch d_sae"]) -> SparseCode:
        B, d_sae = pre_acts.shape
        top = self._batch_top(pre_acts)
        order = top.indices.sort().indices  # group entries by token for embedding_bag
        flat_idx, values = top.indices[order], top.values[order]
        rows, cols = flat_idx // d_sae, flat_idx % d_sae
        offsets = torch.zeros(B, dtype=torch.long, device=pre_acts.device)
        offsets[1:] = torch.bincount(rows, minlength=B).cumsum(0)[:-1]
        return SparseCode(rows, cols, values, offsets)

    @torch.no_grad()
    def after_optimizer_step_(self, out: SAEOutput) -> None:
        super().after_optimizer_step_(out)
        vals = out.acts._values() if out.acts.is_sparse else out.acts.reshape(-1)
        vals = vals[vals > 0]
        if vals.numel():
            lr = self.cfg.threshold_lr
            self.threshold.mul_(1 - lr).add_(lr * vals.min().double())

    @torch.no_grad()
    def fold_input_scale_(self, c: float) -> None:
        super().fold_input_scale_(c)
        self.threshold.div_(c)
