"""Scoring activations against the corpus's ground-truth concept labels.

`auroc` and `precision_at_recall` score one direction or latent against one concept;
`concept_latent_table` finds, for every concept, the SAE latent that predicts it best (the
ground truth `find_interpretable_latents` is graded against in chapter 06); `linear_probe_auroc`
is the supervised baseline (chapter 07) and the tiny LM's check that it learnt the registers.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor


def auroc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative).

    Ties count one half (the Mann-Whitney U statistic); nan if a class is empty.
    """
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    y = torch.as_tensor(labels).flatten().bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(s)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=torch.float64)
    # average ranks over ties
    uniq, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_at_recall(scores, labels, min_recall: float = 0.5) -> tuple[float, float, float]:
    """Best precision over thresholds `score >= t > 0` that keep recall >= `min_recall`.

    Returns (precision, recall, threshold); (0, 0, inf) when the score is positive on fewer than
    `min_recall` of the positives (a latent must fire to predict).
    """
    s = torch.as_tensor(scores, dtype=torch.float32).flatten()
    y = torch.as_tensor(labels).flatten().bool()
    n_pos = int(y.sum())
    if n_pos == 0:
        return 0.0, 0.0, float("inf")
    order = torch.argsort(s, descending=True)
    s_sorted, y_sorted = s[order], y[order].double()
    tp = torch.cumsum(y_sorted, 0)
    # only cut between distinct values, and only at positive scores
    last_of_value = torch.ones_like(s_sorted, dtype=torch.bool)
    last_of_value[:-1] = s_sorted[1:] != s_sorted[:-1]
    ok = last_of_value & (s_sorted > 0) & (tp / n_pos >= min_recall)
    if not ok.any():
        return 0.0, 0.0, float("inf")
    precision = tp / torch.arange(1, len(s) + 1, dtype=torch.float64)
    precision = torch.where(ok, precision, torch.full_like(precision, -1.0))
    i = int(precision.argmax())
    return float(precision[i]), float(tp[i] / n_pos), float(s_sorted[i])


def concept_latent_table(acts: Float[Tensor, "tokens d_sae"], labels: Bool[Tensor, "tokens concepts"],
                         concepts: tuple[str, ...] | list[str], *, min_recall: float = 0.5,
                         candidates: int = 32) -> list[dict]:
    """For each concept, the latent with the best precision at recall >= `min_recall`.

    Candidates are the `candidates` latents with the highest mean activation on the concept's
    tokens relative to everywhere (a cheap screen); each is then scored exactly.
    Rows: concept, latent, precision, recall, threshold, auroc, base_rate.
    """
    acts = torch.as_tensor(acts).float()
    labels = torch.as_tensor(labels).bool()
    rows = []
    fired = acts > 0
    for c, name in enumerate(concepts):
        y = labels[:, c]
        n_pos = int(y.sum())
        if n_pos == 0:
            rows.append({"concept": name, "latent": None, "precision": float("nan"), "recall": float("nan"),
                         "threshold": float("nan"), "auroc": float("nan"), "base_rate": 0.0})
            continue
        # screen: fraction of positives on which the latent fires, times its precision when firing
        recall_fire = fired[y].float().mean(0)
        prec_fire = fired[y].float().sum(0) / fired.float().sum(0).clamp_min(1)
        score = torch.where(recall_fire >= min_recall, prec_fire, prec_fire * recall_fire / min_recall)
        best = None
        for j in score.topk(min(candidates, acts.shape[1])).indices.tolist():
            p, r, t = precision_at_recall(acts[:, j], y, min_recall)
            if best is None or p > best[1]:
                best = (j, p, r, t)
        j, p, r, t = best
        rows.append({"concept": name, "latent": j, "precision": p, "recall": r, "threshold": t,
                     "auroc": auroc(acts[:, j], y), "base_rate": n_pos / len(y)})
    return rows


def linear_probe_auroc(x_train: Float[Tensor, "n d"], y_train, x_test: Float[Tensor, "m d"], y_test, *,
                       steps: int = 300, weight_decay: float = 1e-3, seed: int = 0) -> tuple[float, Tensor]:
    """Class-balanced logistic regression on `x_train`; its AUROC on `x_test`, and the weights."""
    g = torch.Generator().manual_seed(seed)
    x_train, x_test = torch.as_tensor(x_train).float(), torch.as_tensor(x_test).float()
    y = torch.as_tensor(np.asarray(y_train)).float()
    mu, sd = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    xs = (x_train - mu) / sd
    w = (torch.randn(xs.shape[1], generator=g) * 0.01).requires_grad_()
    b = torch.zeros(()).requires_grad_()
    pos = y.mean().clamp(1e-6, 1 - 1e-6)
    weight = torch.where(y > 0, 0.5 / pos, 0.5 / (1 - pos))
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, y, weight=weight)
                + weight_decay * w.pow(2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        scores = ((x_test - mu) / sd) @ w + b
    return auroc(scores, torch.as_tensor(np.asarray(y_test))), (w.detach() / sd)
