"""The toy model of superposition (Elhage et al. 2022, "Toy Models of Superposition").

n sparse features x ∈ [0, 1]^n are squeezed into m < n hidden dimensions and read back out:

    h = W x,   x' = ReLU(Wᵀ h + b),   L = E_x Σ_i I_i (x_i − x'_i)²

Each feature is 0 with probability S (the sparsity) and otherwise U[0, 1]; I_i is its
importance. Many models (one per sparsity, and several seeds each) train at once as
*instances* along a leading dimension, so a whole sparsity sweep is one batched run.
Chapter 01's reference solutions; chapter 03+ reuse the model to make SAE training data.

The ladder recipe (chapter 01): n = 20, m = 5, I_i = 0.9^i, S ∈ {0, 0.7, 0.9, 0.97}, four
seeds per sparsity, batch 1024, Adam at lr 1e-2 with cosine decay, 2,000 steps, keep the
lowest-loss seed. It represents 5, 10, 12 and 16 features (‖W_i‖ > 0.5) with D* ≈ 1, 0.5,
0.37 and 0.25, the numbers in `LADDER_REFERENCE`. With I_i = 0.7^i (the importance of
Elhage et al.'s illustration of this setup) the same recipe, or 10,000 steps at lr 1e-3,
packs far fewer: about 5, 7, 9 and 10–11 (and 11–12 even at S = 0.999), because features
10–19 then carry under 3% of feature 0's weight and are not worth their interference.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm


@dataclass(kw_only=True)
class ToyConfig:
    n_feats: int = 20  # n: number of true features
    d_hidden: int = 5  # m: hidden dimensions (m < n forces a choice)
    n_inst: int = 4  # models trained side by side


# The superposition ladder: 20 features in 5 dimensions, importance 0.9^i. Sparsity ->
# (features represented, D* = m / ‖W‖_F²), the known result (an independent replication's
# measurement, see the module docstring); chapter 01 prints its own run next to these.
LADDER_REFERENCE = {0.0: (5, 1.0), 0.7: (10, 0.5), 0.9: (12, 0.37), 0.97: (16, 0.25)}


def generate_batch(
    n_inst: int,
    n_feats: int,
    feature_probability: Float[Tensor, "inst"] | float,
    batch: int,
    *,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch inst feats"]:
    """Features that are U[0,1] with probability p (= 1 − S) and 0 otherwise, per instance."""
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    values = torch.rand(batch, n_inst, n_feats, generator=generator)
    on = torch.rand(batch, n_inst, n_feats, generator=generator) < p[None, :, None]
    return values * on


class ToyModel(nn.Module):
    """x' = ReLU(Wᵀ W x + b), one independent (W, b) per instance."""

    def __init__(self, cfg: ToyConfig, *, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        W = torch.empty(cfg.n_inst, cfg.d_hidden, cfg.n_feats)
        nn.init.xavier_normal_(W, generator=generator)  # per-instance fan-in/out scaling
        self.W = nn.Parameter(W)  # [inst d_hidden feats]
        self.b_final = nn.Parameter(torch.zeros(cfg.n_inst, cfg.n_feats))  # [inst feats]

    def hidden(self, x: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst d_hidden"]:
        return einops.einsum(self.W, x, "inst hid feats, batch inst feats -> batch inst hid")

    def forward(self, x: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst feats"]:
        h = self.hidden(x)
        out = einops.einsum(self.W, h, "inst hid feats, batch inst hid -> batch inst feats")
        return torch.relu(out + self.b_final)


def importance_weighted_loss(
    out: Float[Tensor, "batch inst feats"],
    x: Float[Tensor, "batch inst feats"],
    importance: Float[Tensor, "feats"],
) -> Float[Tensor, "inst"]:
    """Σ_i I_i (x_i − x'_i)², averaged over the batch: one loss per instance."""
    return ((x - out).pow(2) * importance).sum(-1).mean(0)


def train_toy_model(
    model: nn.Module,
    feature_probability: Float[Tensor, "inst"],
    importance: Float[Tensor, "feats"],
    *,
    steps: int = 10_000,
    batch: int = 1024,
    lr: float = 1e-2,
    seed: int = 0,
    progress: bool = True,
    loss_fn=importance_weighted_loss,
) -> list[dict]:
    """Adam with a cosine-decayed learning rate (lr → lr/20); returns a history of plain dicts.

    lr 1e-2 settles the 20 → 5 ladder in 1,000–2,000 steps; lr 1e-3 for 10,000 steps (the
    paper's Colab settings) lands in the same places. `model` and `loss_fn` may be the
    student's own (chapter 01 trains their classes).
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: train for at least one step.")
    feature_probability = torch.as_tensor(feature_probability, dtype=torch.float32)
    if ((feature_probability < 0) | (feature_probability > 1)).any():
        raise ValueError("feature_probability is the chance a feature is ON (1 − sparsity S); "
                         f"it must lie in [0, 1], got {feature_probability.tolist()}.")
    g = torch.Generator().manual_seed(seed)
    n_inst, n_feats = model.W.shape[0], model.W.shape[-1]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.05)
    history = []
    bar = tqdm(range(steps), disable=not progress, desc="toy model", mininterval=1.0)
    # The tensors are tiny (a few MB): extra CPU threads only add synchronisation, and on a busy
    # machine they cost up to 10x the CPU time of one thread. Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in bar:
            x = generate_batch(n_inst, n_feats, feature_probability, batch, generator=g)
            loss = loss_fn(model(x), x, importance)  # [inst]
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # instances are independent: summing keeps their gradients apart
            opt.step()
            sched.step()
            if step % 100 == 0 or step == steps - 1:
                history.append({"step": step, "loss": loss.detach().tolist()})
                bar.set_postfix(loss=f"{loss.mean().item():.4f}")
    finally:
        torch.set_num_threads(threads)
    return history


def dimensions_per_feature(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst feats"]:
    """D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)²: the share of a hidden dimension feature i gets.

    1 for a feature with a dimension to itself, 1/2 for an antipodal pair, 0 when dropped.
    """
    W = W.detach()
    norms = W.norm(dim=1)  # [inst feats]
    W_hat = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = einops.einsum(W_hat, W, "inst hid i, inst hid j -> inst i j").pow(2).sum(-1)
    return norms.pow(2) / overlaps.clamp_min(1e-8)


def n_represented(W: Float[Tensor, "inst d_hidden feats"], threshold: float = 0.5) -> Tensor:
    """How many features each instance represents: those with ‖W_i‖ above `threshold`."""
    return (W.detach().norm(dim=1) > threshold).sum(-1)


def dimensions_per_feature_overall(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst"]:
    """D* = m / ‖W‖_F²: hidden dimensions per (norm-weighted) represented feature."""
    return W.shape[1] / W.detach().pow(2).sum((1, 2))


def best_instances(losses: Tensor, n_groups: int) -> Tensor:
    """Index of the lowest-loss seed in each group of `n_inst / n_groups` instances.

    Instances are laid out group-major (all seeds of sparsity 0, then of the next ...).
    """
    per_group = losses.reshape(n_groups, -1)
    return per_group.argmin(-1) + torch.arange(n_groups) * per_group.shape[1]
