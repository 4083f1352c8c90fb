"""Visible check for chapter 05's exercise 2: claims about the seed's `resample_dead_neurons`.

The check does not recite an answer key: it runs the seed's function (the notebook's own, passed
in) on small seed SAEs and decides each claim from what it observes (shapes, what the run changed,
what it raised with gradients on, its signature) or from the window arithmetic of exercise 1, and
shows the student the observation that contradicts each wrong answer.
"""

from __future__ import annotations

import copy
import inspect

import torch

from utils.checks import fail
from utils.saes import build_sae

# The claims of exercise 2, by id (the text of each is in the chapter).
CLAIM_IDS = tuple("ABCDEFGHIJ")


def _observe_seed(resample_dead_neurons) -> dict:
    """Run the seed's function on small seed SAEs and record what it does (and what it cannot do)."""
    obs = {}
    wide = build_sae("seed_relu", d_in=6, d_sae=24, init_seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g) * 0.5 + torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    obs["mean_shape"] = tuple(x.mean(dim=0).shape)
    obs["weight_shape"] = tuple(wide.encoder.weight.shape)
    # A square SAE (d_in = d_sae), so the seed's input-sized mask can index it at all.
    sq = build_sae("seed_relu", d_in=6, d_sae=6, init_seed=1)
    try:
        resample_dead_neurons(copy.deepcopy(sq), x)
        obs["grad_error"] = None
    except Exception as e:  # noqa: BLE001 - what it raises is the observation
        obs["grad_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    ran = copy.deepcopy(sq)
    with torch.no_grad():
        try:
            resample_dead_neurons(ran, x)
        except Exception as e:  # noqa: BLE001
            fail(f"the seed's resample_dead_neurons raised {type(e).__name__} inside torch.no_grad() on a square "
                 "SAE; pass the notebook's own resample_dead_neurons (the read-only cell) to check_claims.")
    W0, W1 = sq.encoder.weight.detach(), ran.encoder.weight.detach()
    changed = (W0 != W1).any(-1)
    new_rows = W1[changed]
    obs["n_changed"] = int(changed.sum())
    obs["rows_are_raw_inputs"] = bool(changed.any()) and bool(
        torch.stack([(x == r).all(-1).any() for r in new_rows]).all())
    obs["new_norm"] = float(new_rows.norm(dim=-1).mean()) if changed.any() else float("nan")
    obs["old_norm"] = float(W0.norm(dim=-1).mean())
    obs["decoder_unchanged"] = torch.equal(sq.decoder.weight, ran.decoder.weight)
    obs["bias_unchanged"] = torch.equal(sq.encoder.bias, ran.encoder.bias)
    try:
        src = inspect.getsource(resample_dead_neurons)
    except (OSError, TypeError):  # source not available: judge by the signature alone
        src = ""
    obs["touches_optimizer"] = "optimizer" in inspect.signature(resample_dead_neurons).parameters or "optim" in src
    # G: how often would sampling ∝ loss² pick an input that top-k never picks?
    with torch.no_grad():
        errors = (x - ran(x)[0]).pow(2).sum(-1)
    k = max(obs["n_changed"], 1)
    outside = torch.ones_like(errors, dtype=torch.bool)
    outside[errors.topk(k).indices] = False
    w = errors.pow(2)
    obs["p_outside_topk"] = float(w[outside].sum() / w.sum())
    obs["k"] = k
    obs["p_silent_batch"] = (1 - 1e-4) ** 4096  # a latent firing once per 10,000 tokens, one batch of 4,096
    return obs


def _truths(o: dict) -> dict[str, tuple[bool, str]]:
    """Each claim's truth as the observations decide it, with the evidence to show the student."""
    d_sae, d_in = o["weight_shape"]
    j_defects = [c for c, bad in (("D", o["decoder_unchanged"]), ("E", not o["touches_optimizer"]),
                                  ("F", o["bias_unchanged"]), ("C", o["rows_are_raw_inputs"])) if bad]
    return {
        "A": (o["mean_shape"] != (d_sae,),
              f"`activations.mean(dim=0)` on activations of shape (64, {d_in}) has shape {o['mean_shape']}: one "
              f"entry per input dimension, while the SAE has {d_sae} latents"),
        "B": (o["p_silent_batch"] < 1e-3,
              f"a latent firing on 1 token in 10,000 is silent on a batch of 4,096 tokens with probability "
              f"(1 − 1e-4)^4096 = {o['p_silent_batch']:.0%}, and fires later"),
        "C": (o["rows_are_raw_inputs"],
              f"run under torch.no_grad() on a square seed SAE, each rewritten encoder row is exactly one input "
              f"row (norm {o['new_norm']:.2f} against {o['old_norm']:.2f} for the old rows)"
              if o["n_changed"] else "the run rewrote no encoder row"),
        "D": (o["decoder_unchanged"], "after a run under torch.no_grad(), `decoder.weight` is "
                                      + ("unchanged" if o["decoder_unchanged"] else "changed")),
        "E": (not o["touches_optimizer"], "the function takes no optimizer and never touches one"
              if not o["touches_optimizer"] else "the function works with an optimizer"),
        "F": (o["bias_unchanged"], "after a run under torch.no_grad(), `encoder.bias` is "
                                   + ("unchanged" if o["bias_unchanged"] else "changed")),
        "G": (o["p_outside_topk"] == 0.0,
              f"top-k always takes the same {o['k']} highest-error inputs, while sampling ∝ loss² picks an input "
              f"outside them with probability {o['p_outside_topk']:.0%} per draw (on the check's inputs)"),
        "H": (o["weight_shape"] == (d_in, d_sae),
              f"`nn.Linear(d_model={d_in}, n_latents={d_sae}).weight` has shape {o['weight_shape']} = "
              "(n_latents, d_model): its rows are latents"),
        "I": (o["grad_error"] is not None and "leaf" in o["grad_error"],
              f"with gradients enabled it raised {o['grad_error']}" if o["grad_error"] else
              "with gradients enabled it ran"),
        "J": (not j_defects,
              f"whatever the mask, the function still has the defects of claim(s) {', '.join(j_defects)}"
              if j_defects else "nothing else is wrong with it"),
    }


def check_claims(claims, resample_dead_neurons) -> None:
    """Compare TRUE_CLAIMS with what the check observes when it runs the seed's function."""
    if claims is None:
        fail("set TRUE_CLAIMS to the set of letters (A to J) of the claims you think are true.")
    if isinstance(claims, str):
        fail("TRUE_CLAIMS should be a set of letters like {'A', 'C'}, not one string.")
    try:
        chosen = {str(c).strip().upper() for c in claims}
    except TypeError:
        fail("TRUE_CLAIMS should be a set (or list) of claim letters.")
    unknown = chosen - set(CLAIM_IDS)
    if unknown:
        fail(f"unknown claim ids {sorted(unknown)}: use letters from {', '.join(CLAIM_IDS)}.")
    if not chosen or chosen == set(CLAIM_IDS):
        fail("mark the claims you believe are true: some are true and some are false.")
    truths = _truths(_observe_seed(resample_dead_neurons))
    wrong = [f"- claim {c}: you marked it {'true' if c in chosen else 'false'}, but {evidence}."
             for c, (true, evidence) in truths.items() if (c in chosen) != true]
    if wrong:
        fail("the check ran the seed's resample_dead_neurons on small seed SAEs; what it saw contradicts "
             f"{len(wrong)} of your answers:\n" + "\n".join(wrong))
    print(f"{len(chosen)} claims marked true; they agree with what the seed's code does when run.")
