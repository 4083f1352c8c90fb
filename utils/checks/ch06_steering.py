"""Chapter 06, section 5 checks: the steering hook, a concept's probability, and the steer-up / ablate-down
experiment (recomputed here with the reference interventions, so that a wrong baseline, text or
hook is named). Each names the mistake it most likely found (see `ch06`)."""

from __future__ import annotations

import math

import torch

from utils import activations as ref_act
from utils import steering as ref_steer
from utils.checks import assert_close, assert_own_code, assert_untouched, fail, matches, name_mistake, snapshot, tensor_result
from utils.checks.ch06_util import run


# ---- steering -------------------------------------------------------------------------------------
_HOOK_HINTS = ((r"unexpected keyword argument 'hook'|takes 1 positional argument",
                "TransformerLens calls a hook as hook_fn(act, hook=hook_point): define the inner function with two "
                "parameters, def hook_fn(act, hook)."),)


def check_steering_hook(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(8)
    act, d = torch.randn(2, 5, 6, generator=g), torch.randn(6, generator=g) * 0.8      # ‖d‖ ≈ 2, not 1
    hook_fn = run(fn, d, 3.0, what="direction [6] (not unit norm), coeff 3.0", name="steering_hook")
    if not callable(hook_fn):
        fail(f"steering_hook should return the hook function itself (a closure, `return hook_fn`); got "
             f"{type(hook_fn).__name__}.")
    before = snapshot(direction=d)
    out = run(hook_fn, act.clone(), hook=None, what="act [2 batch, 5 positions, 6]", name="the hook steering_hook returned",
              hints=_HOOK_HINTS)
    assert_untouched(before, "steering_hook", direction=d)
    if out is None:
        fail("the hook must return the modified activation (return act + coeff * direction).")
    out = tensor_result(out, "the hook", shape=(2, 5, 6), what="act [2, 5, 6]").float()
    want = act + 3.0 * d
    steered = torch.isclose(out, want, atol=1e-5).all(-1)                             # [batch pos]
    if not steered.all():
        if matches(out[:, -1], want[:, -1], atol=1e-5) and matches(out[:, :-1], act[:, :-1], atol=1e-5):
            fail("you only steered the last position: add the direction at every position.")
        if matches(out[:, 1:], want[:, 1:], atol=1e-5) and matches(out[:, :1], act[:, :1], atol=1e-5):
            fail("you skipped position 0: the exercise adds the direction at every position, BOS included.")
        name_mistake(out, [
            (act + 3.0 * d / d.norm(), "don't renormalise inside the hook: add coeff × direction exactly as given (the "
                                       "caller decides the direction's scale)."),
            (act - 3.0 * d, "the direction is subtracted: steering adds coeff × direction."),
            (act * 3.0 * d, "you multiplied the activation by the direction: steering adds, act + coeff * direction."),
            (act + d, "coeff is missing: add coeff * direction."),
            (act + 3.0, "the direction is missing: add coeff * direction (a [d_model] vector), not the number coeff."),
        ], atol=1e-5)
        assert_close(out, want, "the hook returns act + coeff * direction at every position.")
    again = run(fn, d, -0.5, what="direction [6], coeff -0.5", name="steering_hook")
    out2 = run(again, act.clone(), hook=None, what="act [2, 5, 6]", name="the hook", hints=_HOOK_HINTS)
    assert_close(tensor_result(out2, "the hook", shape=(2, 5, 6)), act - 0.5 * d,
                 "a second hook with coeff −0.5 should add −0.5 × direction: each hook keeps its own coeff.")
    print("steering_hook adds the direction at every position.")


def check_concept_probability(fn, model, tokens) -> None:
    assert_own_code(fn)
    tokens = tokens[:3, :24]
    ids = torch.arange(0, model.cfg.d_vocab, 7)
    what = f"tokens {tuple(tokens.shape)}, {len(ids)} token ids, no hooks"
    shape = tuple(tokens.shape)
    got = run(fn, model, tokens, ids, what=what, name="concept_probability")
    got = tensor_result(got, "concept_probability")
    logits = model(tokens).float()
    if tuple(got.shape) != shape:
        if tuple(got.shape) == shape[:1]:
            fail(f"you returned one probability per sequence, shape {tuple(got.shape)}: the exercise asks for every "
                 f"position, shape {shape} (don't take [:, -1]).")
        if tuple(got.shape) in ((shape[0], shape[1] - 1),):
            fail(f"shape {tuple(got.shape)}: keep every position, {shape}; the probability at position t is about the "
                 "token after it, no shift needed.")
        fail(f"return one probability per position, shape {shape}; got {tuple(got.shape)}.")
    probs = logits.softmax(-1)
    want = probs[..., ids].sum(-1)
    if not matches(got, want, atol=1e-5):
        name_mistake(got, [
            (logits[..., ids].sum(-1), "you summed logits: apply softmax over the vocabulary first, then sum the "
                                       "probabilities of token_ids."),
            (logits.log_softmax(-1)[..., ids].sum(-1), "you summed log-probabilities; sum probabilities (softmax)."),
            (logits.softmax(1)[..., ids].sum(-1), "softmax ran over the sequence axis: normalise over the vocabulary, "
                                                  "the last axis (softmax(-1))."),
            (logits.softmax(0)[..., ids].sum(-1), "softmax ran over the batch axis: normalise over the vocabulary, the "
                                                  "last axis (softmax(-1))."),
            (probs[..., ids].mean(-1), "you averaged the token_ids' probabilities: P(next token ∈ token_ids) is their "
                                       "sum."),
            (logits[..., ids].softmax(-1).sum(-1), "you took the softmax over token_ids only, so they always sum to 1: "
                                                   "normalise over the whole vocabulary, then pick token_ids."),
            (probs[..., ids].amax(-1), "you took the largest probability among token_ids; sum them."),
        ], atol=1e-4)
        assert_close(got, want, "P(next token ∈ token_ids) = softmax(logits)[..., token_ids].sum(-1).", atol=1e-5)
    d = model.W_U[:, int(ids[3])].detach()
    hooks = [("blocks.0.hook_resid_post", ref_steer.steering_hook(d / d.norm(), 30.0))]
    got_h = tensor_result(run(fn, model, tokens, ids, hooks, what="the same tokens with a steering hook in fwd_hooks",
                              name="concept_probability"), "concept_probability", shape=shape)
    want_h = ref_steer.concept_probability(model, tokens, ids, hooks)
    if matches(got_h, want, atol=1e-5) and not matches(want_h, want, atol=1e-5):
        fail("fwd_hooks made no difference: run the model with them attached, model.run_with_hooks(tokens, "
             "fwd_hooks=list(fwd_hooks)).")
    assert_close(got_h, want_h, "with fwd_hooks, run the model with those hooks attached (model.run_with_hooks(tokens, "
                 "fwd_hooks=fwd_hooks)).", atol=1e-5)
    print("concept_probability is right, with and without hooks.")


# ---- steer up, ablate down ------------------------------------------------------------------------
EFFECT_KEYS = ("steer_base", "steer_after", "ablate_base", "ablate_after")


def _steer_inputs(steer, effects, d_sae) -> tuple[int, float, dict[str, float]]:
    if not isinstance(steer, dict) or steer.get("latent") is None or steer.get("coeff") is None:
        fail("fill in STEER = {'latent': ..., 'coeff': ...}: the latent you steer with and the coefficient.")
    j, coeff = steer["latent"], steer["coeff"]
    if not isinstance(j, int) or isinstance(j, bool):
        fail(f"STEER['latent'] must be a plain int (use int(...)), got {type(j).__name__}.")
    if not 0 <= j < d_sae:
        fail(f"STEER['latent'] = {j} does not exist; this SAE has latents 0 to {d_sae - 1}.")
    if isinstance(coeff, bool) or not isinstance(coeff, (int, float)) or not math.isfinite(coeff):
        fail(f"STEER['coeff'] must be a finite Python number (use float(...)), got {coeff!r}.")
    if not isinstance(effects, dict) or not set(effects) >= set(EFFECT_KEYS):
        have = sorted(effects) if isinstance(effects, dict) else type(effects).__name__
        fail(f"fill in EFFECTS with the keys {list(EFFECT_KEYS)} (it has {have}).")
    for k in EFFECT_KEYS:
        v = effects[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            fail(f"EFFECTS['{k}'] = {v!r}: each effect should be a finite Python float (float(...) of a mean).")
    return j, float(coeff), {k: float(effects[k]) for k in EFFECT_KEYS}


def _without_error_term(sae, j):
    """The ablation a student writes without the error term: the SAE's reconstruction with latent j zeroed."""
    def hook(act, hook=None):
        x = act.to(sae.W_dec.device, sae.W_dec.dtype)
        acts = sae.encode(x).clone()
        acts[..., j] = 0.0
        return sae.decode(acts).to(act.device, act.dtype)
    return hook


def check_steer(steer, effects, model, sae, plain_tokens, code_tokens, token_ids) -> None:
    """STEER and EFFECTS, recomputed with the reference interventions on the same texts (positions 1 onwards)."""
    j, coeff, got = _steer_inputs(steer, effects, sae.cfg.d_sae)
    hook = ref_act.sae_hook_name(sae)

    def prob(tokens, hooks=()):
        return ref_steer.concept_probability(model, tokens, token_ids, hooks)          # [batch seq], CPU

    def m1(p):
        return float(p[:, 1:].mean())

    steer_hooks = [(hook, ref_steer.steering_hook(ref_steer.decoder_direction(sae, j), coeff))]
    ablate_hooks = [(hook, ref_steer.ablation_hook(sae, j))]
    runs = {"steer_base": (plain_tokens, ()), "steer_after": (plain_tokens, steer_hooks),
            "ablate_base": (code_tokens, ()), "ablate_after": (code_tokens, ablate_hooks)}
    probs = {k: prob(*v) for k, v in runs.items()}
    want = {k: m1(p) for k, p in probs.items()}

    def same(a, b):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9)

    position0 = ("you averaged over every position, BOS included: EFFECTS are means over positions 1 onwards "
                 "(p[:, 1:].mean()); position 0's prediction says nothing about the concept.")
    for k in EFFECT_KEYS:
        if same(got[k], want[k]):
            continue
        tokens, hooks = runs[k]
        other = code_tokens if tokens is plain_tokens else plain_tokens
        if same(got[k], float(probs[k].mean())):
            fail(f"EFFECTS['{k}']: {position0}")
        if k.startswith("steer") and same(got[k], m1(prob(other, hooks))):
            fail(f"EFFECTS['{k}'] was measured on the code text: steering is measured on the plain text (plain_tokens), "
                 "where the concept is rare and a rise shows.")
        if k.startswith("ablate") and same(got[k], m1(prob(other, hooks))):
            fail(f"EFFECTS['{k}'] was measured on the plain text: ablation is measured on the code text (code_tokens), "
                 "where the latent fires and removing it can lower the concept's probability.")
        if k == "ablate_after" and same(got[k], m1(prob(code_tokens, [(hook, _without_error_term(sae, j))]))):
            fail("your ablation drops the SAE's error term: the model sees x̂ with latent j zeroed, so the whole "
                 "reconstruction error is removed along with the latent. Keep the error term: "
                 "steering.ablation_hook(sae, latent) (or model.saes(saes=[sae], use_error_term=True) with a hook on "
                 "hook_sae_acts_post).")
        if k == "steer_after":
            raw = [(hook, ref_steer.steering_hook(sae.W_dec[j].detach().float(), coeff))]
            if not matches(sae.W_dec[j].norm().cpu(), 1.0, atol=1e-4) and same(got[k], m1(prob(plain_tokens, raw))):
                fail("you steered along the raw decoder row W_dec[latent]: use its unit direction, "
                     "steering.decoder_direction(sae, latent), so that coeff is in residual-stream units.")
            fail(f"EFFECTS['steer_after'] = {got[k]:.5g}, but steering latent {j} with coeff {coeff:g} gives "
                 f"{want[k]:.5g}: STEER must hold the latent and the coefficient you measured with (the coefficient in "
                 "residual-stream units, the sweep's multiple × typical), steered with "
                 "steering_hook(steering.decoder_direction(sae, latent), coeff).")
        fail(f"EFFECTS['{k}'] = {got[k]:.5g}, expected {want[k]:.5g}: the mean concept probability (positions 1 onwards) "
             f"on the {'plain' if tokens is plain_tokens else 'code'} text"
             + (" with the intervention attached." if hooks else ", with no hook."))
    if not want["steer_after"] > 1.5 * want["steer_base"]:
        fail(f"steering latent {j} with coeff {coeff:g} changes the concept's probability by "
             f"{100 * (want['steer_after'] / want['steer_base'] - 1):+.0f}%, not the +50% asked: take a larger "
             "coefficient from the sweep (in residual-stream units: the sweep's multiple × typical, not the multiple "
             "alone), or a latent that means the concept.")
    if not want["ablate_after"] < want["ablate_base"]:
        fail(f"ablating latent {j} does not lower the concept's probability on the code text: is it a latent of the "
             "concept (one that fires on code)?")
    print(f"steering latent {j} raises P({'concept'}) by {100 * (want['steer_after'] / want['steer_base'] - 1):+.0f}% "
          f"on plain text; ablating it changes it by {100 * (want['ablate_after'] / want['ablate_base'] - 1):+.0f}% on "
          "code text.")
