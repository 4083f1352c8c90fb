"""Scoring latents and probes against the corpus's ground-truth concept labels.

`concept_precision_recall` scores every latent against one concept at a threshold;
`precision_at_recall` finds one latent's best threshold; `concept_latent_table` finds, for every
concept, the SAE latent that predicts it best (the ground truth chapter 06's latent labels are
graded against); `linear_probe_auroc` is the supervised ceiling the world records per concept.
AUROC and the logistic probe themselves live in `utils.detection`.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from utils.detection import auroc, logistic_probe


def concept_precision_recall(acts: Float[Tensor, "... d_sae"], labels: Tensor | np.ndarray, threshold: float = 0.0
                             ) -> tuple[Float[Tensor, "d_sae"], Float[Tensor, "d_sae"]]:
    """Per latent, treating `act > threshold` as predicting the concept: precision P(label | fires)
    and recall P(fires | label), over all tokens of `acts`. A latent that never fires has precision 0."""
    fires = (acts.reshape(-1, acts.shape[-1]) > threshold).float()
    y = torch.as_tensor(labels).reshape(-1).float().to(fires.device)
    tp = y @ fires                                                     # [d_sae]
    return tp / fires.sum(0).clamp_min(1), tp / y.sum().clamp_min(1)


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

    Candidates are the `candidates` latents with the best precision when firing, discounted when
    they fire on fewer than `min_recall` of the positives (a cheap screen); each is then scored
    exactly. Rows: concept, latent, precision, recall, threshold, auroc, base_rate (a concept
    absent from the tokens gets latent None and nan scores).
    """
    acts = torch.as_tensor(acts).float()
    labels = torch.as_tensor(labels).bool()
    rows = []
    for c, name in enumerate(concepts):
        y = labels[:, c]
        n_pos = int(y.sum())
        if n_pos == 0:
            rows.append({"concept": name, "latent": None, "precision": float("nan"), "recall": float("nan"),
                         "threshold": float("nan"), "auroc": float("nan"), "base_rate": 0.0})
            continue
        # screen: precision when firing, discounted when the latent fires on too few positives
        prec_fire, recall_fire = concept_precision_recall(acts, y)
        score = torch.where(recall_fire >= min_recall, prec_fire, prec_fire * recall_fire / min_recall)
        best = None
        for j in score.topk(min(candidates, acts.shape[1])).indices.tolist():
            p, r, t = precision_at_recall(acts[:, j], y, min_recall)
            if best is None or p > best[1]:
                best = (j, p, r, t)
        j, p, r, t = best
        both = n_pos < len(y)   # a concept on every token has no negatives: AUROC undefined
        rows.append({"concept": name, "latent": j, "precision": p, "recall": r, "threshold": t,
                     "auroc": float(auroc(acts[:, j], y)) if both else float("nan"), "base_rate": n_pos / len(y)})
    return rows


def linear_probe_auroc(x_train: Float[Tensor, "n d"], y_train, x_test: Float[Tensor, "m d"], y_test, *,
                       steps: int = 300, l2: float = 1e-3) -> tuple[float, Float[Tensor, "d"]]:
    """A class-balanced logistic probe (`utils.detection.logistic_probe`) fitted on `x_train`; its
    AUROC on `x_test`, and its weights in raw input units (score = x · w + constant).

    Like `concept_latent_table`, it records nan for a concept whose test labels hold one class
    only (absent from the test tokens, or on all of them), where AUROC is undefined.
    """
    x_train, x_test = torch.as_tensor(x_train).float(), torch.as_tensor(x_test).float()
    y_train, y_test = torch.as_tensor(np.asarray(y_train)).bool(), torch.as_tensor(np.asarray(y_test)).bool()
    probe = logistic_probe(x_train, y_train, l2=l2, steps=steps, balanced=True)
    both = 0 < int(y_test.sum()) < len(y_test)
    return (float(auroc(probe.score(x_test), y_test)) if both else float("nan")), probe.w / probe.scale
