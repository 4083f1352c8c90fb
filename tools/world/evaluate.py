"""Stage 4a: the figures of the LM and of each SAE that the manifest records.

LM: validation loss against a bigram model, a linear probe per concept (its AUROC and its
precision at recall 0.5: the ceiling for a single direction), the behaviour by pressure cues.
SAE: reconstruction and downstream loss on held-out tokens, and the concepts it recovers the way
chapter 06 grades them (a latent and threshold chosen on validation tokens, scored on held-out).
"""

from __future__ import annotations

import numpy as np
import torch

from utils.data import corpus
from utils.data.doc import CONCEPTS
from utils.activations import encode, model_activations

from .cache import Cache, fingerprint
from .config import BuildConfig

BAR_PRECISION, BAR_FIRES = 0.8, 20   # chapter 06: a concept is recovered at precision >= 0.8 on >= 20 tokens


# --- the LM -------------------------------------------------------------------------------------
def bigram_loss(train: np.ndarray, tokens: np.ndarray, vocab: int, alpha: float = 0.1) -> float:
    """Cross-entropy (nats) of an add-`alpha` bigram model of `train` on the next tokens of `tokens`."""
    counts = np.zeros((vocab, vocab), np.float64)
    np.add.at(counts, (train[:-1], train[1:]), 1)
    logp = np.log(counts + alpha) - np.log(counts.sum(1, keepdims=True) + alpha * vocab)
    return float(-logp[tokens[:, :-1], tokens[:, 1:]].mean())


@torch.no_grad()
def lm_loss(model, tokens: np.ndarray, batch: int = 32) -> float:
    t = torch.from_numpy(tokens)
    return float(torch.cat([model(b, return_type="loss", loss_per_token=True).flatten()
                            for b in t.split(batch)]).mean())


@torch.no_grad()
def residuals(model, tokens: np.ndarray, hook_name: str, batch: int = 32) -> torch.Tensor:
    """[n_seq, seq, d_model] activations at `hook_name`."""
    t = torch.from_numpy(tokens)
    return torch.cat([model_activations(model, hook_name, b, flatten=False) for b in t.split(batch)])


def probe_scores(train_x, train_lt, test_x, test_lt) -> tuple[dict[str, float], dict[str, float]]:
    """Per concept, a linear probe's AUROC and its precision at recall >= 0.5 (BOS excluded).

    The second is the best a single supervised direction does at recall 0.5: where even the probe
    cannot reach precision 0.8 there, no single SAE latent at this site should be expected to.
    """
    from utils.data.concepts import linear_probe_auroc, precision_at_recall

    xs, xt = train_x[:, 1:].reshape(-1, train_x.shape[-1]), test_x[:, 1:].reshape(-1, test_x.shape[-1])
    ys, yt = train_lt.labels[:, 1:].reshape(-1, len(CONCEPTS)), test_lt.labels[:, 1:].reshape(-1, len(CONCEPTS))
    aurocs, precisions = {}, {}
    for i, c in enumerate(CONCEPTS):
        aurocs[c], w = linear_probe_auroc(xs, ys[:, i], xt, yt[:, i])
        # sigmoid: positive scores in the probe's order (precision_at_recall cuts only at scores > 0)
        precisions[c] = precision_at_recall(torch.sigmoid(xt.float() @ w), torch.from_numpy(yt[:, i]), 0.5)[0]
    return aurocs, precisions


def evaluate_lm(model, cfg: BuildConfig, stream, val, held, val_x, held_x, cache: Cache) -> dict:
    """The LM's figures (losses, probes), cached under the model and its data."""
    def compute():
        aurocs, precisions = probe_scores(val_x, val, held_x, held)
        return {"val_loss": lm_loss(model, val.tokens),
                "bigram_val_loss": bigram_loss(stream.tokens, val.tokens, cfg.vocab_size),
                "probe_auroc": aurocs, "probe_precision_at_recall_0.5": precisions}

    key = {"model": fingerprint(model), "val": fingerprint(val.tokens), "held": fingerprint(held.tokens),
           "labels": fingerprint(held.labels), "train": fingerprint(stream.tokens), "figures": 3}
    return cache.memo("lm_eval", key, compute)


# --- the SAEs -----------------------------------------------------------------------------------
def choose_concept_latents(acts: torch.Tensor, labels: torch.Tensor, *, min_precision: float = 0.9,
                           min_fires: int = 30, fractions=(0.0, 0.3, 0.6)) -> dict[str, tuple[int, float]]:
    """Chapter 06's reference choice: per concept, the latent and threshold (a fraction of the latent's
    maximum) with the best recall among those at precision >= `min_precision` firing on >= `min_fires`
    tokens of `acts` [tokens d_sae] (validation tokens); concepts with no such latent are left out."""
    peak = acts.amax(0).clamp_min(1e-6)
    relative = acts / peak
    y = labels.float()
    best: dict[str, tuple[float, tuple[int, float]]] = {}
    for q in fractions:
        # utils.data.concept_precision_recall for every concept at once: one pass over the
        # activations per fraction instead of one per concept (tests/test_world.py holds the two equal)
        fires = (relative > q).float()
        n_fires = fires.sum(0)
        tp = y.T @ fires                                                   # [concepts, d_sae]
        precision, recall = tp / n_fires.clamp_min(1), tp / y.sum(0).clamp_min(1)[:, None]
        enough = n_fires >= min_fires
        for i, c in enumerate(CONCEPTS):
            p, r = precision[i], recall[i]
            r = torch.where((p >= min_precision) & enough, r, torch.zeros_like(r))
            j = int(r.argmax())
            if float(r[j]) > best.get(c, (0.0, None))[0]:
                best[c] = (float(r[j]), (j, q * float(peak[j])))
    return {c: choice for c, (_, choice) in best.items()}


def concept_recovery(sae, val_x, val, held_x, held) -> list[dict]:
    """Each concept's latent chosen on validation tokens, scored on held-out tokens (BOS excluded)."""
    from utils.data.concepts import concept_precision_recall

    flat = (lambda x: x[:, 1:].reshape(-1, x.shape[-1]))  # noqa: E731
    va, ha = encode(sae, flat(val_x)), encode(sae, flat(held_x))
    vy = torch.from_numpy(val.labels[:, 1:].reshape(-1, len(CONCEPTS)))
    hy = torch.from_numpy(held.labels[:, 1:].reshape(-1, len(CONCEPTS)))
    rows = []
    for c, (j, thr) in choose_concept_latents(va, vy).items():
        i = CONCEPTS.index(c)
        p, r = concept_precision_recall(ha[:, j:j + 1], hy[:, i], thr)
        fires = int((ha[:, j] > thr).sum())
        rows.append({"concept": c, "latent": j, "threshold": thr, "precision": float(p[0]), "recall": float(r[0]),
                     "fires": fires, "recovered": float(p[0]) >= BAR_PRECISION and fires >= BAR_FIRES})
    return rows


def evaluate_sae(sae, model, cfg: BuildConfig, val_x, val, held_x, held) -> dict:
    """Reconstruction on held-out tokens (BOS excluded), downstream loss, concept recovery."""
    from utils import metrics

    x = held_x[:, 1:].reshape(-1, held_x.shape[-1])
    rec = metrics.evaluate(sae, x)
    n_seq = min(len(held.tokens), cfg.eval_seqs // 2)
    ds = metrics.downstream_loss(model, sae, torch.from_numpy(held.tokens[:n_seq]), cfg.hook_name)
    rows = concept_recovery(sae, val_x, val, held_x, held)
    return {"metrics": {**rec, **ds._asdict()}, "concepts": rows,
            "concepts_recovered": sum(r["recovered"] for r in rows)}


def evaluated_sae(variant: str, sae, model, cfg: BuildConfig, val_x, val, held_x, held, cache: Cache) -> dict:
    """`evaluate_sae`, cached under the SAE, the model and the evaluation tokens."""
    key = {"variant": variant, "sae": fingerprint(sae), "model": fingerprint(model), "val": fingerprint(val.tokens),
           "held": fingerprint(held.tokens), "labels": fingerprint(held.labels), "eval_seqs": cfg.eval_seqs,
           "figures": 2}
    return cache.memo(f"eval_{variant}", key, lambda: evaluate_sae(sae, model, cfg, val_x, val, held_x, held))


def corpus_figures(stream: corpus.TokenStream, held: corpus.LabelledTokens) -> dict:
    return {"train_tokens": int(len(stream.tokens)),
            "concept_rate_train": {c: float(stream.labels[:, i].mean()) for i, c in enumerate(CONCEPTS)},
            "concept_rate_heldout": {c: float(held.labels[:, 1:, i].mean()) for i, c in enumerate(CONCEPTS)}}
