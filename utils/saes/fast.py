"""Fast training steps for the library's own SAEs: the readable path's numbers, with less work.

Opt-in: the trainer uses this module only with `TrainConfig(fast_kernels=True)` (the benchmarks do).
The variant files hold the readable forms, the ones to read next to the papers; each kernel
here computes the same values and gradients, which tests/test_saes.py checks against them.

    ReLU         `FusedReLUSAE`: forward and L1 loss in one autograd Function with a hand-written
                 backward, saving the elementwise passes autograd adds around the five matmuls.
    TopK,        the code as k entries per token (`SparseCode`); the decoder is an `embedding_bag`
    BatchTopK    and the encoder's backward an index-add over those entries (`SparseEncode`), so
                 both cost O(k) per token instead of O(d_sae) (sparsify's fused encoder).

What leaves this module is plain: the reconstruction, the loss terms and a `Firing` summary for
the trainer's counters and logs. Sparse formats stay inside. Only the exact classes below get a
kernel: a subclass (a chapter's `YourTopK`, say) may have changed what they compute, so it
takes the readable path.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from utils import losses as L
from utils.saes.base import SAE, Firing
from utils.saes.relu import ReLUSAE
from utils.saes.topk import BatchTopKSAE, TopKSAE


class FastOutput(NamedTuple):
    """One training step's forward: what the trainer needs, whichever path computed it."""

    x_hat: Float[Tensor, "batch d_in"]
    """Reconstruction of the input."""
    losses: dict[str, Tensor]
    """The variant's loss terms, as `SAE.output` gives them."""
    firing: Firing
    """How the latents fired, for the dead-latent counters, the logged L0 and BatchTopK's threshold."""


def train_output(sae: SAE, x: Float[Tensor, "batch d_in"]) -> FastOutput:
    """The training forward of `sae` on `x`, by its fast kernel if it has one (else the readable path)."""
    kernel = _KERNELS.get(type(sae))
    if kernel is None or not sae.training or x.ndim != 2:
        out = sae.output(x)
        return FastOutput(out.x_hat, out.losses, sae.firing(out.acts))
    return kernel(sae, x)


# ---- ReLU: the fused step -----------------------------------------------------------------------
class FusedReLUSAE(torch.autograd.Function):
    """The standard ReLU SAE's training forward and loss in one function, with a hand-written backward.

    forward:  f = ReLU((x − b_dec) W_enc + b_enc),  x̂ = f W_dec + b_dec,
              recon = Σ‖x̂ − x‖² / B,  l1 = Σ_i (Σ_b f_bi) ‖W_dec[i]‖ / B,  fired = Σ_b f_b > 0
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
        fired = act_sums > 0  # acts ≥ 0: a latent fired on the batch iff its sum is positive
        ctx.mark_non_differentiable(fired)
        return x_hat, acts, err.pow(2).sum() / B, act_sums @ norms / B, fired

    @staticmethod
    def backward(ctx: Any, g_x_hat_in: Tensor | None, g_acts_in: Tensor | None, g_recon: Tensor | None,
                 g_l1: Tensor | None, g_fired: None = None):
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


def _relu_step(sae: ReLUSAE, x: Tensor) -> FastOutput:
    if torch.is_autocast_enabled(x.device.type):  # the hand-written backward assumes one dtype
        out = sae.output(x)
        return FastOutput(out.x_hat, out.losses, sae.firing(out.acts))
    x_hat, acts, recon, l1, fired = FusedReLUSAE.apply(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec)
    losses = {"recon": recon, "sparsity": sae.sparsity_scale * sae.cfg.l1_coeff * l1}
    return FastOutput(x_hat, losses, Firing(fired, x.shape[0], acts=acts.detach()))


# ---- TopK and BatchTopK: the sparse step ----------------------------------------------------------
class SparseCode(NamedTuple):
    """Selected entries of a flat batch's code: token `rows[e]`, latent `cols[e]`, pre-activation `values[e]`."""

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


def _topk_code(sae: TopKSAE, pre_acts: Tensor) -> SparseCode:
    """`TopKSAE.select` as entries: the k largest pre-activations of each token."""
    B, k = pre_acts.shape[0], sae.cfg.k
    top = pre_acts.topk(k, dim=-1, sorted=False)
    rows = torch.arange(B, device=pre_acts.device).repeat_interleave(k)
    offsets = torch.arange(0, B * k, k, device=pre_acts.device)
    return SparseCode(rows, top.indices.reshape(-1), top.values.reshape(-1), offsets)


def _batch_topk_code(sae: BatchTopKSAE, pre_acts: Tensor) -> SparseCode:
    """`BatchTopKSAE.select` (training) as entries: the k·B largest of ReLU(z) over the batch."""
    B, d_sae = pre_acts.shape
    flat = pre_acts.reshape(-1)
    top = flat.relu().topk(min(sae.cfg.k * B, flat.numel()), sorted=False)
    flat_idx = top.indices.sort().values  # group entries by token for embedding_bag
    rows, cols = flat_idx // d_sae, flat_idx % d_sae
    offsets = torch.zeros(B, dtype=torch.long, device=pre_acts.device)
    offsets[1:] = torch.bincount(rows, minlength=B).cumsum(0)[:-1]
    return SparseCode(rows, cols, flat[flat_idx], offsets)


def _sparse_auxk(residual: Tensor, pre_acts: Tensor, W_dec: Tensor, dead: Tensor, k_aux: int, *,
                 sae: TopKSAE, x_cent: Tensor) -> Tensor:
    """`losses.auxk_loss` for `TopKSAE.aux_terms`, decoding the dead latents' entries sparsely."""
    top = L.top_dead(pre_acts, dead, k_aux)
    cols = top.indices.reshape(-1)
    offsets = torch.arange(0, cols.numel(), top.indices.shape[-1], device=cols.device)
    values = SparseEncode.apply(x_cent, sae.b_dec, sae.W_enc, sae.b_enc, top.values.reshape(-1), cols, offsets)
    if sae.cfg.auxk_relu:
        values = values.relu()
    e_hat = F.embedding_bag(cols, W_dec, offsets, mode="sum", per_sample_weights=values)
    return L.reconstruction_loss(residual, e_hat)


def _topk_step(sae: TopKSAE, x: Tensor, *, select, min_active: bool) -> FastOutput:
    with torch.no_grad():  # the encoder's gradients come from SparseEncode, at the selected entries only
        x_cent = x - sae.b_dec
        # Under autocast the matmul comes out in bf16/fp16; embedding_bag needs the code in
        # W_dec's dtype (the selection itself tolerates the rounding, as in SAELens).
        pre_acts = torch.addmm(sae.b_enc, x_cent, sae.W_enc).to(sae.W_dec.dtype)  # [batch d_sae]
        code = select(sae, pre_acts)
    # the ReLU in autograd, after the entries' values: a selected negative pre-activation is then
    # 0 with no gradient, exactly as in the readable `select`
    values = SparseEncode.apply(x_cent, sae.b_dec, sae.W_enc, sae.b_enc, code.values, code.cols, code.offsets).relu()
    x_hat = F.embedding_bag(code.cols, sae.W_dec, code.offsets, mode="sum", per_sample_weights=values) + sae.b_dec
    losses = {"recon": L.reconstruction_loss(x, x_hat),
              **sae.aux_terms(x, x_hat, pre_acts, partial(_sparse_auxk, sae=sae, x_cent=x_cent))}
    with torch.no_grad():  # values ≥ 0 after the ReLU: a latent fired iff its values sum to more than 0
        values = values.detach()
        fired = values.new_zeros(sae.cfg.d_sae).index_add_(0, code.cols, values) > 0
        smallest = values.masked_fill(values <= 0, torch.inf).min() if min_active else None
        firing = Firing(fired, x.shape[0], n_active=(values > 0).sum().float(),
                        min_active=smallest if smallest is not None and smallest.isfinite() else None)
    return FastOutput(x_hat, losses, firing)


_KERNELS = {
    ReLUSAE: _relu_step,
    TopKSAE: partial(_topk_step, select=_topk_code, min_active=False),
    BatchTopKSAE: partial(_topk_step, select=_batch_topk_code, min_active=True),
}
