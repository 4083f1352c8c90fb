"""Finding latents that detect a behaviour, soundly: rank statistics, corrections, probes.

Pure functions on a matrix of per-example scores (one row per example, one column per latent,
e.g. a latent's mean activation over a reply) and a boolean label per example:

    stats = latent_stats(scores_train, y_train)             # AUROC, Cohen's d, p-values per latent
    keep = benjamini_hochberg(stats.p_value, alpha=0.05)    # corrected for thousands of tests
    auroc(scores_test[:, top], y_test)                      # judged on claims never used to choose

`seed_ratio_search` is the seed's 3x activation-ratio loop, kept as the reference the chapter
criticises; the probes (difference of means, logistic regression) are the baseline a latent
must beat. Nothing here prints.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


# ---- the seed's search ---------------------------------------------------------------------------
def seed_ratio_search(scores: Float[Tensor, "n d"], labels: Bool[Tensor, "n"],
                      ratio: float = 3.0) -> Int[Tensor, "k"]:
    """The seed's capstone loop, vectorised: latents whose mean over positive examples exceeds
    `ratio` × their mean over negative ones.

        for latent_idx in range(sae.n_latents):
            sycophantic_activation = sae_latents[sycophantic_prompts, :, latent_idx].mean()
            honest_activation = sae_latents[honest_prompts, :, latent_idx].mean()
            if sycophantic_activation > 3 * honest_activation: ...

    A latent that fires once on one positive example and never on a negative one passes
    (x > 3 · 0 for any x > 0); one that never fires does not (0 > 0 is False).
    """
    labels = labels.bool()
    pos, neg = scores[labels].mean(0), scores[~labels].mean(0)
    return torch.nonzero(pos > ratio * neg).flatten()


# ---- rank statistics -----------------------------------------------------------------------------
class Ranks(NamedTuple):
    ranks: Float[Tensor, "n d"]
    """1-based ranks of each column's values, ties given their average rank."""
    tie_term: Float[Tensor, "d"]
    """Σ over tie groups of (t³ − t), per column (0 when all values differ)."""


def rank_data(scores: Float[Tensor, "n d"]) -> Ranks:
    """Average ranks per column (scipy's `rankdata(method="average")`, vectorised over columns)."""
    x = scores.double().T.contiguous()  # [d n]: searchsorted works along the last axis
    s = x.sort(-1).values
    below = torch.searchsorted(s, x, right=False)  # how many values are < x
    at_or_below = torch.searchsorted(s, x, right=True)  # how many are ≤ x
    ranks = (below + at_or_below + 1).double() / 2
    t = (at_or_below - below).double()  # size of x's tie group; each group of size t appears t times
    return Ranks(ranks.T, (t.pow(2) - 1).sum(-1))  # Σ_elements (t² − 1) = Σ_groups (t³ − t)


def auroc(scores: Float[Tensor, "n ..."], labels: Bool[Tensor, "n"] | Int[Tensor, "n"]) -> Float[Tensor, "..."]:
    """Area under the ROC curve of each column as a detector of `labels`.

    AUROC = P(score of a random positive > score of a random negative) + ½ P(tie)
          = (R₊ − n₊(n₊ + 1)/2) / (n₊ n₋),   R₊ the sum of the positives' average ranks
    (the Mann–Whitney U statistic over n₊ n₋). 0.5 is chance; 1 a perfect detector.

    This is the course's one AUROC. An empty class raises ValueError: AUROC compares the two
    classes, so with one missing it is undefined, and a silent nan would travel into a table
    or a ranking. A caller that tabulates many concepts decides what to record for one that is
    absent (`utils.data.concept_latent_table` records nan).
    """
    labels = labels.bool().reshape(-1)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs at least one positive and one negative example; the labels have "
                         f"{n_pos} positive and {n_neg} negative. Check the split (both classes on each "
                         "side) and that the labels are the concept you meant.")
    flat = scores.reshape(scores.shape[0], -1)
    ranks = rank_data(flat).ranks
    u = ranks[labels].sum(0) - n_pos * (n_pos + 1) / 2
    return (u / (n_pos * n_neg)).float().reshape(scores.shape[1:])


def cohens_d(scores: Float[Tensor, "n ..."], labels: Bool[Tensor, "n"]) -> Float[Tensor, "..."]:
    """(mean₊ − mean₋) / pooled standard deviation, per column; 0 where both groups are constant."""
    labels = labels.bool()
    x = scores.double()
    pos, neg = x[labels], x[~labels]
    n1, n0 = pos.shape[0], neg.shape[0]
    pooled = ((n1 - 1) * pos.var(0, unbiased=True) + (n0 - 1) * neg.var(0, unbiased=True)) / (n1 + n0 - 2)
    diff = pos.mean(0) - neg.mean(0)
    sd = pooled.sqrt()
    return torch.where(sd > 0, diff / sd.clamp_min(1e-300), torch.zeros_like(diff)).float()


# ---- p-values ------------------------------------------------------------------------------------
def _normal_sf(z: Tensor) -> Tensor:
    """P(Z > z) for a standard normal, accurate far into the tail (erfc, not 1 − cdf)."""
    return 0.5 * torch.special.erfc(z / math.sqrt(2))


def mann_whitney_pvalue(scores: Float[Tensor, "n d"], labels: Bool[Tensor, "n"]) -> Float[Tensor, "d"]:
    """Two-sided p-value of "this column separates the classes", per column.

    The Mann–Whitney U test's normal approximation with the tie correction and a continuity
    correction (scipy's `mannwhitneyu(..., method="asymptotic")`). A constant column (a latent
    that never fires) has p = 1. Unlike a permutation test it can return the tiny p-values a
    correction over thousands of latents needs.
    """
    labels = labels.bool()
    n1, n0 = int(labels.sum()), int((~labels).sum())
    n = n1 + n0
    r = rank_data(scores)
    u = r.ranks[labels].sum(0) - n1 * (n1 + 1) / 2
    mu = n1 * n0 / 2
    var = n1 * n0 / 12 * ((n + 1) - r.tie_term / (n * (n - 1)))
    z = ((u - mu).abs() - 0.5).clamp_min(0) / var.clamp_min(1e-300).sqrt()
    p = (2 * _normal_sf(z)).clamp(max=1.0)
    return torch.where(var > 0, p, torch.ones_like(p)).float()


def permutation_pvalue(scores: Float[Tensor, "n d"], labels: Bool[Tensor, "n"], n_perm: int = 1000, *,
                       generator: torch.Generator | None = None) -> Float[Tensor, "d"]:
    """Two-sided permutation p-value of each column's AUROC: (1 + #{|AUC_perm − ½| ≥ |AUC − ½|}) / (1 + n_perm).

    Ranks do not depend on the labels, so every permutation's AUROC for every column is one
    matrix product. The smallest possible value is 1 / (n_perm + 1): with d columns, a
    Bonferroni threshold α/d needs n_perm ≳ d/α permutations before anything can pass.
    """
    labels = labels.bool()
    n1, n0 = int(labels.sum()), int((~labels).sum())
    ranks = rank_data(scores).ranks  # [n d] double
    observed = (ranks[labels].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    perms = torch.stack([labels[torch.randperm(len(labels), generator=generator)] for _ in range(n_perm)])
    aucs = (perms.double() @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0)  # [n_perm d]
    extreme = ((aucs - 0.5).abs() >= (observed - 0.5).abs() - 1e-12).sum(0)
    return ((1 + extreme) / (1 + n_perm)).float()


# ---- multiple comparisons ------------------------------------------------------------------------
def bonferroni(p_values: Float[Tensor, "m"], alpha: float = 0.05) -> Bool[Tensor, "m"]:
    """Reject where p ≤ α / m: the chance of *any* false positive among m tests stays ≤ α."""
    return p_values <= alpha / p_values.numel()


def benjamini_hochberg(p_values: Float[Tensor, "m"], alpha: float = 0.05) -> Bool[Tensor, "m"]:
    """Benjamini–Hochberg step-up: the expected share of false discoveries among the rejected ≤ α.

    Sort p ascending; find the largest k with p_(k) ≤ k α / m; reject the k smallest.
    """
    m = p_values.numel()
    order = p_values.argsort()
    sorted_p = p_values[order]
    below = sorted_p <= alpha * torch.arange(1, m + 1, dtype=sorted_p.dtype) / m
    reject = torch.zeros(m, dtype=torch.bool)
    if below.any():
        k = int(torch.nonzero(below).max()) + 1
        reject[order[:k]] = True
    return reject


def bh_adjusted(p_values: Float[Tensor, "m"]) -> Float[Tensor, "m"]:
    """BH-adjusted p-values (q-values): reject at level α exactly where q ≤ α."""
    m = p_values.numel()
    order = p_values.double().argsort()
    scaled = p_values.double()[order] * m / torch.arange(1, m + 1, dtype=torch.float64)
    q = scaled.flip(0).cummin(0).values.flip(0).clamp(max=1.0)  # monotone from the largest p down
    out = torch.empty(m, dtype=torch.float64)
    out[order] = q
    return out.float()


# ---- the sound search ----------------------------------------------------------------------------
class LatentStats(NamedTuple):
    """Per latent, on one split:

    - auroc: detection AUROC (0.5 chance; < 0.5 means it fires on the *other* class);
    - cohens_d: standardised mean difference, positives minus negatives;
    - p_value: two-sided Mann–Whitney p-value (uncorrected);
    - q_value: Benjamini–Hochberg adjusted p-value over all latents;
    - frequency: fraction of examples on which the latent is non-zero.
    """

    auroc: Float[Tensor, "d"]
    cohens_d: Float[Tensor, "d"]
    p_value: Float[Tensor, "d"]
    q_value: Float[Tensor, "d"]
    frequency: Float[Tensor, "d"]


def latent_stats(scores: Float[Tensor, "n d"], labels: Bool[Tensor, "n"]) -> LatentStats:
    """Every statistic the sound search ranks latents by, computed on one split."""
    p = mann_whitney_pvalue(scores, labels)
    return LatentStats(auroc(scores, labels), cohens_d(scores, labels), p, bh_adjusted(p),
                       (scores != 0).float().mean(0))


def select_latents(stats: LatentStats, *, alpha: float = 0.05, min_auroc: float = 0.75,
                   top: int | None = None) -> Int[Tensor, "k"]:
    """Latents that pass BH at `alpha` *and* detect the positive class with AUROC ≥ `min_auroc`,
    best first (a significant but tiny effect is not a detector)."""
    keep = (stats.q_value <= alpha) & (stats.auroc >= min_auroc)
    idx = torch.nonzero(keep).flatten()
    idx = idx[stats.auroc[idx].argsort(descending=True, stable=True)]
    return idx if top is None else idx[:top]


class HeldOut(NamedTuple):
    """The chosen latents' AUROC and activation ratio (mean over positives / mean over negatives; inf
    where the negatives' mean is 0) on the split that chose them and on the held-out one."""

    latents: Int[Tensor, "k"]
    train_auroc: Float[Tensor, "k"]
    test_auroc: Float[Tensor, "k"]
    train_ratio: Float[Tensor, "k"]
    test_ratio: Float[Tensor, "k"]


def held_out(latents: Int[Tensor, "k"], train: Float[Tensor, "n d"], y_train: Bool[Tensor, "n"],
             test: Float[Tensor, "m d"], y_test: Bool[Tensor, "m"]) -> HeldOut:
    """The chosen latents judged again on examples never used to choose them."""
    def ratio(x, y):
        pos, neg = x[y.bool()].mean(0), x[~y.bool()].mean(0)
        return torch.where(neg > 0, pos / neg.clamp_min(1e-30),
                           torch.where(pos > 0, torch.full_like(pos, math.inf), torch.full_like(pos, math.nan)))

    tr, te = train[:, latents], test[:, latents]
    return HeldOut(latents, auroc(tr, y_train), auroc(te, y_test), ratio(tr, y_train), ratio(te, y_test))


def frequency_matched(frequency: Float[Tensor, "d"], chosen: Int[Tensor, "k"], n_draws: int, *,
                      pool: int = 20, generator: torch.Generator | None = None) -> Int[Tensor, "n_draws k"]:
    """Random control sets: for each chosen latent, one of the `pool` other latents whose firing
    frequency is closest in log space, drawn anew for every draw (no latent twice in a set)."""
    log_f = frequency.double().clamp_min(1e-6).log()
    excluded = torch.zeros(frequency.numel(), dtype=torch.bool)
    excluded[chosen] = True
    pools = [(log_f - log_f[c]).abs().masked_fill(excluded, math.inf).argsort(stable=True)[:pool].tolist()
             for c in chosen.tolist()]
    out = torch.empty(n_draws, len(pools), dtype=torch.long)
    for i in range(n_draws):
        used: set[int] = set()
        for j, candidates in enumerate(pools):
            free = [k for k in candidates if k not in used]
            out[i, j] = free[int(torch.randint(len(free), (1,), generator=generator))]
            used.add(int(out[i, j]))
    return out


# ---- probes --------------------------------------------------------------------------------------
class LinearProbe(NamedTuple):
    """score(x) = (x − mean) / scale · w + b; positive means "predict the positive class"."""

    w: Float[Tensor, "d"]
    b: Float[Tensor, ""]
    mean: Float[Tensor, "d"]
    scale: Float[Tensor, "d"]

    def score(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n"]:
        return ((x.float() - self.mean) / self.scale) @ self.w + self.b


def diff_of_means_probe(x: Float[Tensor, "n d"], labels: Bool[Tensor, "n"]) -> LinearProbe:
    """w = mean₊ − mean₋ (unit norm), b places the threshold halfway between the class means."""
    labels = labels.bool()
    x = x.float()
    mu1, mu0 = x[labels].mean(0), x[~labels].mean(0)
    w = mu1 - mu0
    w = w / w.norm().clamp_min(1e-12)
    b = -((mu1 + mu0) / 2) @ w
    return LinearProbe(w, b, torch.zeros_like(mu1), torch.ones_like(mu1))


def logistic_probe(x: Float[Tensor, "n d"], labels: Bool[Tensor, "n"], *, l2: float = 1e-2,
                   steps: int = 200, balanced: bool = False) -> LinearProbe:
    """L2-regularised logistic regression on standardised features, fitted with L-BFGS from zero.

    Loss = mean BCE + l2 · ‖w‖². Standardising makes l2 mean the same for every site and model.
    `balanced` weights each class to half the loss, for rare concepts (a probe for a label on
    3% of tokens would otherwise learn mostly to say "no"). The course's one logistic probe: the
    capstone's baseline and the world's per-concept probes (`utils.data.linear_probe_auroc`).
    """
    x = x.float()
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / scale
    y = labels.float()
    weight = None
    if balanced:
        pos = y.mean().clamp(1e-6, 1 - 1e-6)
        weight = torch.where(y > 0, 0.5 / pos, 0.5 / (1 - pos))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y, weight=weight)
        loss = bce + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LinearProbe(w.detach(), b.detach(), mean, scale)
