"""Chapter 06, section 4 checks: precision and recall of a latent on a concept, and naming latents (scored on
validation here, on held-out text by the hidden test with `concept_scores`). Each names the mistake it most
likely found (see `ch06`)."""

from __future__ import annotations

import math

import torch

from utils import activations as ref_act
from utils.checks import (assert_close, assert_own_code, assert_untouched, fail, matches, name_mistake, snapshot,
                          tensor_result)
from utils.checks.ch06_util import run
from utils.data import concept_precision_recall as ref_concept_precision_recall

GOOD_PRECISION, MIN_FIRES, MIN_CONCEPTS = 0.8, 20, 3     # what "recovered" means (exercise 10)


# ---- precision and recall -------------------------------------------------------------------------
def check_concept_precision_recall(fn) -> None:
    assert_own_code(fn)
    # 6 tokens, 4 latents. Latent 3 never fires; latent 2 sits exactly at the threshold 0.5 on two tokens.
    acts = torch.tensor([[0.0, 1.0, 0.5, 0.0], [2.0, 0.0, 0.0, 0.0], [3.0, 0.2, 0.5, 0.0],
                         [0.0, 0.0, 0.9, 0.0], [0.7, 0.6, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([True, True, False, False, True, True])   # 4 labelled tokens, 3 firing per latent: p ≠ r
    what = "acts [6 tokens, 4 latents] (latent 3 never fires), labels [6] bool"
    before = snapshot(acts=acts, labels=labels)
    got = run(fn, acts, labels, what=what, name="concept_precision_recall")
    assert_untouched(before, "concept_precision_recall", acts=acts, labels=labels)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail("return a pair (precision, recall), each a tensor with one value per latent.")
    p = tensor_result(got[0], "concept_precision_recall's precision")
    r = tensor_result(got[1], "concept_precision_recall's recall")
    for name, t in (("precision", p), ("recall", r)):
        if tuple(t.shape) == (6,):
            fail(f"{name} has one value per token (shape (6,)); it should have one per latent, shape (4,): count "
                 "over the token axis (axis 0), e.g. labels.float() @ fires.")
        if tuple(t.shape) != (4,):
            fail(f"{name} has shape {tuple(t.shape)}; it should have one value per latent, shape (4,).")
    if not torch.isfinite(p.float()).all() or not torch.isfinite(r.float()).all():
        fail("latent 3 never fires, and your precision is 0/0 = nan for it: clamp the denominator (.clamp_min(1)) so "
             "that a latent that never fires gets precision 0.")
    fires, y = (acts > 0).float(), labels.float()
    tp = y @ fires
    want_p, want_r = tp / fires.sum(0).clamp_min(1), tp / y.sum()
    ge = (acts >= 0).float()
    name_mistake(torch.cat([p.float(), r.float()]), [
        (torch.cat([want_r, want_p]), "precision and recall are swapped: precision = P(label | latent fires) divides "
                                      "by the tokens where it fires, recall = P(fires | label) by the labelled tokens."),
        (torch.cat([(y @ ge) / ge.sum(0), (y @ ge) / y.sum()]),
         "a latent fires when its activation is > threshold, strictly: with `>=`, every token counts as firing at "
         "threshold 0."),
        (torch.cat([want_p, tp / len(y)]), "recall divides by the labelled tokens (labels.sum()), not by all tokens."),
        (torch.cat([tp / len(y), want_r]), "precision divides by the tokens where the latent fires (fires.sum(0)), not "
                                           "by all tokens."),
        (torch.cat([tp / y.sum(), tp / fires.sum(0).clamp_min(1)]), "precision and recall are swapped: precision "
         "divides by the tokens where the latent fires, recall by the labelled tokens."),
    ], atol=1e-5)
    assert_close(p, want_p, "precision per latent = (#tokens where it fires AND labelled) / (#tokens where it fires); "
                 "0 for a latent that never fires (clamp the denominator).")
    assert_close(r, want_r, "recall per latent = (#tokens where it fires AND labelled) / (#labelled tokens).")
    got2 = run(fn, acts, labels, threshold=0.5, what=what + ", threshold = 0.5", name="concept_precision_recall")
    p2 = tensor_result(got2[0] if isinstance(got2, (tuple, list)) else got2, "precision")
    want2 = ref_concept_precision_recall(acts, labels, 0.5)[0]
    if not matches(p2, want2, atol=1e-5):
        if matches(p2, want_p, atol=1e-5):
            fail("threshold = 0.5 gives the same precision as threshold 0: use the `threshold` argument, "
                 "fires = acts > threshold.")
        if matches(p2, ref_concept_precision_recall(acts + 1e-6, labels, 0.5)[0], atol=1e-5):
            fail("a latent fires when its activation is > threshold, strictly: at threshold 0.5 an activation of "
                 "exactly 0.5 does not count (`>` not `>=`).")
        assert_close(p2, want2, "with a threshold, a latent 'fires' when its activation is > threshold.")
    print("concept_precision_recall is right.")


# ---- naming latents -------------------------------------------------------------------------------
def concept_scores(choice: dict, sae, model, tokens, labelled, *, chunk: int = 64) -> dict[str, dict]:
    """Precision, recall and number of firing tokens on `tokens` (BOS excluded) of each chosen (latent, threshold)
    for its concept."""
    out = {}
    if not choice:
        return out
    items = {c: (v if isinstance(v, (tuple, list)) else (v, 0.0)) for c, v in choice.items()}
    latents = [int(v[0]) for v in items.values()]
    acts = ref_act.sae_latents(model, sae, tokens, latents, batch_size=chunk)[:, 1:]
    for i, (c, (j, thr)) in enumerate(items.items()):
        y = torch.as_tensor(labelled.label(c))[:, 1:]
        p, r = ref_concept_precision_recall(acts[..., i:i + 1], y, float(thr))
        out[c] = {"latent": int(j), "threshold": float(thr), "precision": float(p[0]), "recall": float(r[0]),
                  "fires": int((acts[..., i] > float(thr)).sum()), "positives": int(y.sum())}
    return out


def recovered(scores: dict[str, dict]) -> list[str]:
    """The concepts whose latent is right (precision ≥ 0.8) often enough (≥ 20 firing tokens) to count."""
    return [c for c, s in scores.items() if s["precision"] >= GOOD_PRECISION and s["fires"] >= MIN_FIRES]


def check_latent_for_concept(choice, concepts, d_sae: int | None = None, acts=None, labels=None) -> None:
    """The choice's format, then (given the validation `acts` [tokens d_sae] and `labels` {concept: [tokens] bool})
    its scores on validation, where each choice that would not count is named with the reason."""
    if not isinstance(choice, dict) or not choice:
        fail("LATENT_FOR_CONCEPT should be a dict {concept: latent} (or {concept: (latent, threshold)}).")
    if all(isinstance(k, int) for k in choice) and all(isinstance(v, str) for v in choice.values()):
        fail("the dict goes the other way: {concept: latent}, concept names as keys (e.g. {'code': 123}).")
    unknown = [c for c in choice if c not in concepts]
    if unknown:
        fail(f"unknown concepts {unknown}; choose among {list(concepts)}.")
    for c, v in choice.items():
        if isinstance(v, (tuple, list)) and len(v) != 2:
            fail(f"{c}: give a latent, or a pair (latent, threshold); got {v!r}.")
        j = v[0] if isinstance(v, (tuple, list)) else v
        if not isinstance(j, int) or isinstance(j, bool):
            fail(f"{c}: the latent must be a plain int (use int(...)), got {type(j).__name__}.")
        if d_sae is not None and not 0 <= j < d_sae:
            fail(f"{c}: latent {j} does not exist; this SAE has latents 0 to {d_sae - 1}.")
        if isinstance(v, (tuple, list)) and (isinstance(v[1], bool) or not isinstance(v[1], (int, float))
                                             or not math.isfinite(v[1])):
            fail(f"{c}: the threshold must be a finite Python number (use float(...)), got {v[1]!r}.")
    if len(choice) < MIN_CONCEPTS:
        fail(f"you named {len(choice)} concept(s); at least {MIN_CONCEPTS} must be recovered on held-out text, so name "
             f"at least {MIN_CONCEPTS} (more is fine: the ones that miss cost nothing).")
    if acts is None or labels is None:
        print(f"{len(choice)} concepts labelled; they are scored on held-out tokens below.")
        return
    acts = torch.as_tensor(acts).float().cpu()
    rows, problems = {}, []
    for c, v in choice.items():
        j, thr = (v[0], float(v[1])) if isinstance(v, (tuple, list)) else (v, 0.0)
        a, y = acts[:, j], torch.as_tensor(labels[c]).bool().cpu()
        fires = a > thr
        n, prec = int(fires.sum()), float((fires & y).sum() / max(int(fires.sum()), 1))
        rows[c] = (n, prec)
        if n >= MIN_FIRES and prec >= GOOD_PRECISION:
            continue
        peak = float(a.max())
        scaled = a > thr * peak
        if 0 < thr <= 1 < peak and int(scaled.sum()) >= MIN_FIRES and \
                float((scaled & y).sum() / max(int(scaled.sum()), 1)) >= GOOD_PRECISION:
            problems.append(f"{c}: latent {j} with threshold {thr:g} fires on {n} validation tokens with precision "
                            f"{prec:.2f}, but above {thr:g} × its maximum ({thr * peak:.2f}) it would pass: the "
                            "threshold looks like a fraction of the maximum. Store it in activation units "
                            "(q × the latent's maximum), the unit the latent's activations are compared with.")
        elif n < MIN_FIRES:
            problems.append(f"{c}: latent {j} fires on only {n} validation tokens (above {thr:g}): too rare for its "
                            f"precision ({prec:.2f}) to mean anything, and a concept counts only when its latent fires "
                            f"on ≥ {MIN_FIRES} held-out tokens. Prefer a latent that fires on a few dozen tokens.")
        else:
            problems.append(f"{c}: latent {j} has precision {prec:.2f} on validation ({n} firing tokens), below "
                            f"{GOOD_PRECISION}: when it fires, the concept is often absent (a broad latent, e.g. the "
                            "best-F1 one). Pick a purer latent, or raise its threshold.")
    good = [c for c, (n, prec) in rows.items() if n >= MIN_FIRES and prec >= GOOD_PRECISION]
    if len(good) < MIN_CONCEPTS:
        fail(f"only {len(good)} of your choices reach precision ≥ {GOOD_PRECISION} on ≥ {MIN_FIRES} validation tokens "
             f"({MIN_CONCEPTS} needed, and held-out text is usually a little harder):\n" + "\n".join(problems))
    print(f"{len(choice)} concepts labelled, {len(good)} reach precision ≥ {GOOD_PRECISION} on ≥ {MIN_FIRES} validation "
          "tokens; they are scored on held-out tokens below.")
