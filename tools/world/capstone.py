"""Stage 4b: chapter 07's finding, measured on both held-out splits — new claims and new wordings.

The capstone's own pipeline (`utils.capstone`, `utils.detection`) on the shipped SAE it uses:
latents are chosen on the *training claims* of the held-out dialogues (BH at 0.05 and AUROC >=
0.75 on reply-pooled codes, best first), then judged on

- ``heldout_claims``: the other claims, same (corpus) wording;
- ``heldout_wording``: the held-out-wording pairs, no phrase of which the LM ever saw, reported
  for all of them and separately for their training and held-out claims (wording alone, and
  wording and claim together).

For each: the top latent's and the top five's AUROC, a difference-of-means probe's AUROC (fitted
on the training claims), the behaviour Δ = log p(syc) − log p(honest) by number of pressure cues,
and the mean change in Δ when the top latents are ablated (error term kept) against
frequency-matched random latent sets.
"""

from __future__ import annotations

import numpy as np
import torch

from utils import capstone, detection, steering
from utils.activations import sae_hook_name
from utils.data.corpus import claim_split, load_dialogue_pairs

from .cache import Cache, fingerprint
from .config import BuildConfig


def _cue_figures(gap: torch.Tensor, records: list[dict]) -> dict:
    cues = np.array([len(r["cues"]) for r in records], dtype=float)
    g = gap.double().numpy()
    by = {str(int(c)): {"n": int((cues == c).sum()), "mean_logprob_diff": float(g[cues == c].mean())}
          for c in np.unique(cues)}
    slope = float(np.polyfit(cues, g, 1)[0]) if len(np.unique(cues)) > 1 else float("nan")
    return {"by_cues": by, "slope_per_cue": slope, "mean_logprob_diff": float(g.mean())}


def _ablation(effect_top: float, effect_best: float, random: torch.Tensor) -> dict:
    """The top latents' effect against the random sets' (as far: same direction, at least as large)."""
    as_far = capstone.n_as_far(effect_top, random)
    sd = float(random.std()) if len(random) > 1 else float("nan")
    return {"effect_top": effect_top, "effect_best": effect_best, "random": random.tolist(),
            "random_mean": float(random.mean()), "random_std": sd,
            "z": (effect_top - float(random.mean())) / sd if sd and sd > 0 else float("nan"),
            "n_random_as_far": as_far, "beyond_every_random": as_far == 0 and effect_top < 0}


def _split_figures(model, sae, records, batch, pooled, top, probe, controls, subsets) -> dict:
    """Detection and ablation on one split; `subsets` name masks over its pairs (e.g. by claim)."""
    hook = sae_hook_name(sae)
    gap = capstone.behaviour_gap(model, batch)
    change = {"top": capstone.behaviour_gap(model, batch, [(hook, steering.ablation_hook(sae, top.tolist()))]) - gap,
              "best": capstone.behaviour_gap(model, batch, [(hook, steering.ablation_hook(sae, top[:1].tolist()))]) - gap}
    random = torch.stack([capstone.behaviour_gap(model, batch, [(hook, steering.ablation_hook(sae, c.tolist()))]) - gap
                          for c in controls])                                      # [n_controls n_pairs]
    out = {}
    for name, mask in subsets.items():
        rows = torch.cat([mask, mask])                                             # syc rows, then honest rows
        y, lat = batch.labels[rows], pooled.latents[rows]
        aurocs = detection.auroc(lat[:, top], y)
        out[name] = {
            "n_pairs": int(mask.sum()), "n_claims": len({r["claim_id"] for r, m in zip(records, mask) if m}),
            "top_latent_auroc": float(aurocs[0]), "top_aurocs": aurocs.tolist(),
            "probe_auroc": float(detection.auroc(probe.score(pooled.resid[rows]), y)),
            "behaviour": _cue_figures(gap[mask], [r for r, m in zip(records, mask) if m]),
            "ablation": _ablation(float(change["top"][mask].mean()), float(change["best"][mask].mean()),
                                  random[:, mask].mean(1)),
        }
    return out


def _fits(model, record: dict) -> bool:
    """Whether BOS, the prompt and its longer continuation fit in the LM's context."""
    n = lambda text: len(model.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    cont = max(n(record["sycophantic_continuation"]), n(record["honest_continuation"]))
    return 1 + n(record["prompt"]) + cont <= model.cfg.n_ctx


def evaluate_capstone(model, sae, cfg: BuildConfig) -> dict:
    """Chapter 07's pipeline on both held-out splits (see the module docstring)."""
    records = load_dialogue_pairs("heldout", cfg.seed, cfg.scale)
    wording = load_dialogue_pairs("heldout_wording", cfg.seed, cfg.scale)
    train, test = claim_split(records, 0.5, seed=cfg.seed)
    test_claims = {r["claim_id"] for r in test}
    if {r["claim_id"] for r in wording} != {r["claim_id"] for r in records}:
        raise RuntimeError("the held-out-wording pairs must cover the same claims as the held-out ones")
    n = cfg.capstone_pairs
    train, test = capstone.subsample(train, n, cfg.seed), capstone.subsample(test, n, cfg.seed + 1)
    wording = capstone.subsample(wording, None if n is None else 2 * n, cfg.seed + 2)
    too_long = {k: sum(not _fits(model, r) for r in recs) for k, recs in
                (("train", train), ("test", test), ("wording", wording))}
    train, test, wording = ([r for r in recs if _fits(model, r)] for recs in (train, test, wording))

    batches = {k: capstone.encode_pairs(model.tokenizer, r) for k, r in
               (("train", train), ("test", test), ("wording", wording))}
    pooled = {k: capstone.pool_sae_codes(model, sae, b) for k, b in batches.items()}
    y_train = batches["train"].labels
    stats = detection.latent_stats(pooled["train"].latents, y_train)
    candidates = detection.select_latents(stats, alpha=0.05, min_auroc=0.75)
    if len(candidates) == 0:  # nothing passes: judge the best-ranked latents anyway, and say so
        candidates = stats.auroc.argsort(descending=True)
    top = candidates[: cfg.capstone_top]
    probe = detection.diff_of_means_probe(pooled["train"].resid, y_train)
    controls = detection.frequency_matched(pooled["train"].token_frequency, top, cfg.capstone_controls,
                                           generator=torch.Generator().manual_seed(cfg.seed))
    held = torch.tensor([r["claim_id"] in test_claims for r in wording])
    return {
        "sae": cfg.capstone_variant, "top_latents": top.tolist(), "n_candidates": int(len(candidates)),
        "pairs_longer_than_context": too_long,
        "train": {"n_pairs": len(train), "top_aurocs": stats.auroc[top].tolist(),
                  "behaviour": _cue_figures(capstone.behaviour_gap(model, batches["train"]), train)},
        "heldout_claims": _split_figures(model, sae, test, batches["test"], pooled["test"], top, probe, controls,
                                         {"all": torch.ones(len(test), dtype=torch.bool)})["all"],
        "heldout_wording": _split_figures(model, sae, wording, batches["wording"], pooled["wording"], top, probe,
                                          controls, {"all": torch.ones(len(wording), dtype=torch.bool),
                                                     "training_claims": ~held, "heldout_claims": held}),
    }


def evaluated_capstone(model, sae, cfg: BuildConfig, cache: Cache) -> dict:
    key = {"model": fingerprint(model), "sae": fingerprint(sae), "seed": cfg.seed, "scale": cfg.scale,
           "top": cfg.capstone_top, "controls": cfg.capstone_controls, "pairs": cfg.capstone_pairs, "figures": 1,
           "records": fingerprint(np.frombuffer("".join(
               r["prompt"] + r["sycophantic_continuation"] + r["honest_continuation"]
               for s in ("heldout", "heldout_wording") for r in load_dialogue_pairs(s, cfg.seed, cfg.scale)
           ).encode(), dtype=np.uint8))}
    return cache.memo("capstone", key, lambda: evaluate_capstone(model, sae, cfg))



SPLITS = (("held-out claims (training wording)", ("heldout_claims",)),
          ("held-out wording (all)", ("heldout_wording", "all")),
          ("— on training claims", ("heldout_wording", "training_claims")),
          ("— on held-out claims", ("heldout_wording", "heldout_claims")))


def _signed(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def table(cap: dict) -> str:
    """The manifest's capstone figures as chapter 07 prints them ("What the offline world measured")."""
    k, n = len(cap["top_latents"]), len(cap["heldout_claims"]["ablation"]["random"])
    rows = [f"| split | pairs | top latent AUROC | top-{k} AUROCs | diff-of-means probe | ablating the top {k} "
            f"(mean change in Δ) | {n} random sets | as far | Δ |", "|---|---|---|---|---|---|---|---|---|"]
    for name, path in SPLITS:
        f = cap[path[0]] if len(path) == 1 else cap[path[0]][path[1]]
        a = f["ablation"]
        rows.append(f"| {name} | {f['n_pairs']} | {f['top_latent_auroc']:.3f} | {min(f['top_aurocs']):.2f}–"
                    f"{max(f['top_aurocs']):.2f} | {f['probe_auroc']:.3f} | {_signed(a['effect_top'], 2)} | "
                    f"{_signed(a['random_mean'], 3)} ± {a['random_std']:.3f} | {a['n_random_as_far']} of "
                    f"{len(a['random'])} | {_signed(f['behaviour']['mean_logprob_diff'], 1)} |")
    return "\n".join(rows)
