"""Visible checks for chapter 06 (SAELens, evaluation, dashboards, steering).

Each compares the student's function with the course's reference (`utils.metrics`,
`utils.dashboards`, `utils.latent_search`, `utils.steering`) on the same inputs and, when they
differ, tests the mistakes students most often make so that the message can name one.
"""

from __future__ import annotations

import math

import torch

from utils import activations as ref_act
from utils import dashboards as ref_dash
from utils import latent_search as ref_search
from utils import metrics as ref_metrics
from utils import steering as ref_steer
from utils.data import concept_precision_recall as ref_concept_precision_recall
from utils.checks import assert_close, assert_own_code, fail

PROMPT = "def mean(values):\n    total = sum(values)\n    return total / len(values)"


def _as_list(x) -> list:
    return torch.as_tensor(x).flatten().tolist() if not isinstance(x, list) else list(x)


# ---- 1. SAELens -----------------------------------------------------------------------------------
def check_top_latents(fn, model, sae) -> None:
    assert_own_code(fn)
    hook = ref_act.sae_hook_name(sae)
    ids = model.to_tokens(PROMPT)
    acts = ref_act.sae_latents(model, sae, ids)[0]                                 # [seq d_sae]
    want = acts[-1].topk(5)
    got = fn(model, sae, PROMPT, 5)
    if not (isinstance(got, tuple) and len(got) == 2):
        fail("return a pair (latents, values): two lists (or tensors) of length k.")
    lat, val = (_as_list(g) for g in got)
    if len(lat) != 5:
        fail(f"asked for k = 5 latents, got {len(lat)}.")
    if lat == acts.amax(0).topk(5).indices.tolist() and lat != want.indices.tolist():
        fail("these are the latents with the largest activation anywhere in the prompt: the exercise "
             "asks for the activations at the prompt's last token (index -1 of the sequence).")
    if sorted(lat) == sorted(want.indices.tolist()) and lat != want.indices.tolist():
        fail("the right latents in the wrong order: sort by activation, largest first.")
    if lat != want.indices.tolist():
        fail("not the latents with the largest activation at the last token. Read the activations from "
             f"the cache key '{hook}.hook_sae_acts_post' after model.run_with_cache_with_saes(prompt, saes=[sae]).")
    assert_close(torch.tensor(val), want.values, "the values should be those latents' activations.", atol=1e-4)
    print("top_latents matches the SAE's activations at the last token.")


# ---- 2. evaluation -------------------------------------------------------------------------------
class _SignedSAE(torch.nn.Module):
    """A stand-in SAE whose code has negative entries (some variants' codes do, and so do
    hooked interventions): L0 must count `!= 0`, not `> 0`."""

    def __init__(self, d_in: int, hook_name: str):
        super().__init__()
        g = torch.Generator().manual_seed(6)
        self.register_buffer("W_enc", torch.randn(d_in, 8, generator=g))
        self.register_buffer("W_dec", torch.randn(8, d_in, generator=g) * 0.1)
        self.register_buffer("b_dec", torch.zeros(d_in))
        self.cfg = type("cfg", (), {"d_sae": 8, "hook_name": hook_name})()

    def encode(self, x):
        pre = x @ self.W_enc
        return torch.where(pre.abs() > pre.abs().median(), pre, torch.zeros_like(pre))

    def decode(self, acts):
        return acts @ self.W_dec + self.b_dec


def check_evaluate_sae(fn, model, sae, tokens) -> None:
    assert_own_code(fn)
    hook = ref_act.sae_hook_name(sae)
    tokens = tokens[:4]
    got = fn(sae, model, hook, tokens)
    for key in ("mse", "l0", "explained_variance"):
        if key not in got:
            fail(f"the returned dict needs the key {key!r} (it has {sorted(got)}).")
    x_all = ref_act.cache_activations(model, hook, tokens, flatten=False, device=ref_act.module_device(sae))
    x = x_all[:, 1:].reshape(-1, x_all.shape[-1])
    want = ref_metrics.evaluate(sae, x)
    with torch.no_grad():
        x_hat = sae.decode(sae.encode(x))
        with_bos = ref_metrics.evaluate(sae, x_all.reshape(-1, x_all.shape[-1]))
    ev = float(got["explained_variance"])
    seed_ev = float(1 - (x - x_hat).pow(2).mean() / x.var())
    if abs(ev - want["explained_variance"]) > 1e-3:
        if abs(ev - seed_ev) < 1e-3:
            fail("this is the seed's 1 − mse / acts.var(): acts.var() pools every element of every "
                 "dimension around one global mean. Divide Σ‖x − x̂‖² by Σ‖x − x̄‖², with x̄ the mean "
                 "over tokens of each dimension (x.mean(0)).")
        if abs(ev - want["explained_variance_about_zero"]) < 1e-3:
            fail("you measured the variance about zero (Σ‖x‖², SAELens #659): subtract the mean over "
                 "tokens, x.mean(0), before squaring.")
        if abs(ev - with_bos["explained_variance"]) < 1e-3:
            fail("you kept position 0 (BOS): drop it, acts[:, 1:], before computing the metrics.")
        fail(f"explained_variance = {ev:.4f}, expected {want['explained_variance']:.4f}: "
             "1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over all (token, dimension) pairs, BOS excluded.")
    if abs(float(got["mse"]) - want["mse"]) > 1e-4 * max(1.0, want["mse"]):
        if abs(float(got["mse"]) - want["mse"] * x.shape[-1]) < 1e-3 * want["mse"] * x.shape[-1]:
            fail("mse is the mean over every element (token and dimension), like the seed's l2_loss; "
                 "you summed over dimensions.")
        fail(f"mse = {float(got['mse']):.5g}, expected {want['mse']:.5g} ((x − x̂)² averaged over all elements).")
    if abs(float(got["l0"]) - want["l0"]) > 1e-3:
        fail(f"l0 = {float(got['l0']):.3f}, expected {want['l0']:.3f}: the mean over tokens of the number of "
             "latents that are not zero.")
    signed = _SignedSAE(x.shape[-1], hook).to(x.device)
    got_signed = float(fn(signed, model, hook, tokens)["l0"])
    want_signed = ref_metrics.evaluate(signed, x)["l0"]
    if abs(got_signed - want_signed) > 1e-3:
        fail("on an SAE whose code has negative entries your l0 is wrong: count latents with acts != 0, "
             "not acts > 0 (the seed's version).")
    print(f"evaluate_sae matches: l0 {want['l0']:.2f}, explained variance {want['explained_variance']:.4f}, "
          f"mse {want['mse']:.4g}.")


def check_downstream_loss(fn, model, sae, tokens) -> None:
    assert_own_code(fn)
    tokens = tokens[:4]
    got = fn(model, sae, tokens)
    keys = ("clean", "spliced", "zero_ablated", "mean_ablated", "recovered_zero", "recovered_mean")
    missing = [k for k in keys if k not in got]
    if missing:
        fail(f"the returned dict needs the keys {list(keys)}; missing {missing}.")
    want = ref_metrics.downstream_loss(model, sae, tokens, ref_act.sae_hook_name(sae), n_boot=10)
    ref = {"clean": want.clean_ce, "spliced": want.spliced_ce, "zero_ablated": want.zero_ablated_ce,
           "mean_ablated": want.mean_ablated_ce, "recovered_zero": want.frac_recovered_zero,
           "recovered_mean": want.frac_recovered_mean}
    hints = {
        "clean": "the model's own cross-entropy: model(tokens, return_type='loss').",
        "spliced": "run with the SAE spliced in and no error term: model.run_with_saes(tokens, saes=[sae], "
                   "return_type='loss').",
        "zero_ablated": "replace the activation at the SAE's hook by zeros (a hook returning torch.zeros_like(act)).",
        "mean_ablated": "replace the activation by its mean over every token of the batch, one value per "
                        "dimension (act.mean((0, 1))), broadcast to every position.",
        "recovered_zero": "(zero − spliced) / (zero − clean): 1 when the SAE costs nothing, 0 when it is as "
                          "bad as deleting the activation.",
        "recovered_mean": "(mean − spliced) / (mean − clean), the same against mean ablation.",
    }
    for k in keys:
        if not math.isclose(float(got[k]), ref[k], rel_tol=1e-3, abs_tol=1e-4):
            if k.startswith("recovered") and math.isclose(float(got[k]), 1 - ref[k], rel_tol=1e-3, abs_tol=1e-4):
                fail(f"{k} is 1 minus what it should be: {hints[k]}")
            fail(f"{k} = {float(got[k]):.4f}, expected {ref[k]:.4f}: {hints[k]}")
    print("downstream_loss matches: " + ", ".join(f"{k} {ref[k]:.3f}" for k in keys))


# ---- 3. dashboards -------------------------------------------------------------------------------
def check_search_latents(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(3)
    acts = torch.rand(3, 5, 12, generator=g) * (torch.rand(3, 5, 12, generator=g) > 0.6)
    acts[..., 4] += 3.0                                       # on everywhere: high mean on both sets
    acts[1, 2, 7] = 9.0                                       # one spike: high max, lowish mean
    base = torch.rand(40, 12, generator=g) * 0.2
    base[:, 4] += 3.0
    got = fn(acts, base, 3)
    want = ref_search.search_latents(acts, base, 3)
    lat = _as_list(got[0])
    if lat == ref_search.search_latents(acts, None, 3)[0] and lat != want[0]:
        fail("latent 4 fires everywhere, on the baseline too: subtract each latent's mean activation on the "
             "baseline tokens from its mean on the prompts.")
    flat = acts.reshape(-1, 12)
    if lat == (flat.amax(0) - base.mean(0)).topk(3).indices.tolist() and lat != want[0]:
        fail("rank by the mean activation over the prompts' tokens, not the maximum (one spike is not a behaviour).")
    if lat != want[0]:
        fail(f"got latents {lat}, expected {want[0]}: score = mean over the prompts' tokens − mean over the "
             "baseline tokens, then the k largest.")
    assert_close(torch.tensor(_as_list(got[1])), torch.tensor(want[1]), "return the scores of those latents.")
    only = fn(acts, None, 2)
    if _as_list(only[0]) != ref_search.search_latents(acts, None, 2)[0]:
        fail("with baseline=None, rank by the mean over the prompts alone.")
    print("search_latents ranks latents by behaviour correctly.")


def check_top_activations(fn) -> None:
    assert_own_code(fn)
    acts = torch.zeros(3, 8)
    acts[0, 0] = 50.0                   # BOS
    acts[0, 6], acts[1, 2], acts[2, 7], acts[2, 1] = 4.0, 7.0, 1.5, 0.5
    acts[1, 3] = 2.0
    tokens = torch.arange(24).reshape(3, 8)
    vocab = [f"<{i}>" for i in range(24)]
    got = [tuple(e) for e in fn(acts, tokens, vocab, k=4, window=(3, 1))]
    want = [tuple(e) for e in ref_dash.compute_top_activations(acts, tokens, vocab, k=4, window=(3, 1))]
    if got and got[0][:2] == (0, 0):
        fail("your top example is position 0 (BOS); skip position 0, where many latents fire on the "
             "attention sink rather than on text.")
    if len(got) != len(want):
        fail(f"expected {len(want)} examples, got {len(got)} (return at most k, largest first).")
    for g, w in zip(got, want):
        if tuple(g[:2]) != tuple(w[:2]):
            fail(f"example ({g[0]}, {g[1]}) should be ({w[0]}, {w[1]}): largest activations first, "
                 "as (sequence, position) pairs of the flattened top-k.")
        if len(g) < 6:
            fail("each example is a tuple (seq, pos, act, tokens, acts, center).")
        if list(g[3]) != list(w[3]):
            if len(g[3]) == len(w[3]) + 1 or len(g[3]) == len(w[3]) - 1:
                fail(f"window tokens {g[3]} should be {w[3]}: `window = (left, right)` tokens on each side "
                     "of the peak, the peak included, clipped at the sequence's ends (off by one?).")
            fail(f"window tokens {g[3]} should be {w[3]}.")
        if g[5] != w[5]:
            fail(f"center should be {w[5]}, the index of the peak token inside the window.")
        assert_close(torch.tensor([g[2], *g[4]]), torch.tensor([w[2], *w[4]]),
                     "act is the peak's activation and acts the activations on the window's tokens.")
    few = fn(torch.tensor([[0.0, 0.0, 2.0, 0.0]]), torch.arange(4)[None], vocab, k=3, window=(1, 1))
    if len(few) != 1:
        fail("only tokens where the latent fires (activation > 0) are examples: with one firing token, "
             "return one example even if k is larger.")
    print("compute_top_activations picks and windows the examples correctly.")


def check_logit_attribution(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(5)
    w_dec, W_U = torch.randn(16, generator=g), torch.randn(16, 50, generator=g)
    got = fn(w_dec, W_U, 4)
    if len(got) != 4:
        fail("return four things: top_ids, top_values, bottom_ids, bottom_values.")
    logits = w_dec @ W_U
    if _as_list(got[2]) == logits.abs().topk(4, largest=False).indices.tolist():
        fail("bottom tokens are the most negative logit effects (topk with largest=False on the signed "
             "values), not the smallest in magnitude.")
    for name, a, b in (("top_ids", got[0], logits.topk(4).indices), ("bottom_ids", got[2], logits.topk(4, largest=False).indices)):
        if _as_list(a) != b.tolist():
            fail(f"{name} are not the expected tokens: compute w_dec @ W_U (shape [d_vocab]) and take topk.")
    assert_close(torch.tensor(_as_list(got[1])), logits.topk(4).values, "top_values: the logit effects of top_ids.")
    assert_close(torch.tensor(_as_list(got[3])), logits.topk(4, largest=False).values,
                 "bottom_values: the (negative) logit effects, most negative first.")
    print("compute_logit_attribution is right.")


def check_histogram(fn) -> None:
    assert_own_code(fn)
    acts = torch.tensor([[0.0, 0.2, 0.0, 1.0], [0.0, 0.0, 0.6, 0.0], [2.0, 0.0, 0.0, 0.0]])
    counts, edges, density = fn(acts, 4)
    want = ref_dash.compute_activation_histogram(acts, 4)
    if abs(float(density) - want.density) > 1e-6:
        if abs(float(density) - 1.0) < 1e-6:
            fail("density is the fraction of *all* tokens on which the latent fires, not of the firing ones.")
        fail(f"density = {float(density):.4f}, expected {want.density:.4f} (fraction of tokens with act != 0).")
    if torch.as_tensor(counts).sum() == acts.numel():
        fail("the histogram should count only the tokens where the latent fires (act != 0).")
    assert_close(torch.as_tensor(edges, dtype=torch.float32), torch.tensor(want.edges),
                 "edges: bins + 1 equally spaced values from 0 to the maximum activation (torch.linspace).")
    assert_close(torch.as_tensor(counts, dtype=torch.float32), torch.tensor(want.counts, dtype=torch.float32),
                 "counts: how many non-zero activations fall in each bin (torch.histc with min=0, max=max).")
    print("compute_activation_histogram is right.")


def check_find_interpretable_latents(fn, sae, model, tokens) -> None:
    assert_own_code(fn)
    tokens = tokens[:8]
    want = ref_search.find_interpretable_latents(sae, model, tokens, n_latents=6, n_examples=3)
    got = fn(sae, model, tokens, n_latents=6, n_examples=3)
    if len(got) != 3:
        fail("return (latents, values, positions).")
    lat, values, positions = got
    lat = _as_list(lat)
    if sorted(lat) == sorted(want.latents) and lat != want.latents:
        fail("the right latents, in the wrong order: strongest (largest maximum activation) first.")
    if lat != want.latents:
        acts = ref_act.sae_latents(model, sae, tokens)
        if lat == acts.reshape(-1, acts.shape[-1]).amax(0).topk(6).indices.tolist():
            fail("your ranking includes position 0 (BOS); leave it out, acts[:, 1:].")
        fail(f"latents {lat} should be {want.latents}: rank latents by their maximum activation over all "
             "tokens but BOS.")
    assert_close(torch.as_tensor(values), want.values, "values[i] are latent i's largest activations, descending.",
                 atol=1e-4)
    p = torch.as_tensor(positions).cpu()
    if p.shape == want.positions.shape and torch.equal(p[..., 1] + 1, want.positions[..., 1]):
        fail("positions are off by one: after dropping BOS, add 1 back so they index the original sequence.")
    if not torch.equal(p.long(), want.positions):
        fail("positions[i, j] should be the (sequence, position) of values[i, j] in the original tokens.")
    print("find_interpretable_latents matches the reference.")


def check_concept_precision_recall(fn) -> None:
    assert_own_code(fn)
    acts = torch.tensor([[0.0, 1.0, 0.5], [2.0, 0.0, 0.0], [3.0, 0.2, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([True, True, False, False])
    p, r = fn(acts, labels)
    want_p, want_r = ref_concept_precision_recall(acts, labels)
    if torch.allclose(torch.as_tensor(p, dtype=torch.float32), want_r) and not torch.allclose(want_p, want_r):
        fail("precision and recall are swapped: precision = P(label | latent fires), recall = P(fires | label).")
    assert_close(p, want_p, "precision per latent = (#tokens where it fires AND labelled) / (#tokens where it fires); "
                 "0 for a latent that never fires (clamp the denominator).")
    assert_close(r, want_r, "recall per latent = (#tokens where it fires AND labelled) / (#labelled tokens).")
    p2, _ = fn(acts, labels, threshold=0.6)
    assert_close(p2, ref_concept_precision_recall(acts, labels, 0.6)[0],
                 "with a threshold, a latent 'fires' when its activation is > threshold.")
    print("concept_precision_recall is right.")


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


def check_latent_for_concept(choice, concepts, d_sae: int | None = None) -> None:
    if not isinstance(choice, dict) or not choice:
        fail("LATENT_FOR_CONCEPT should be a dict {concept: latent} (or {concept: (latent, threshold)}).")
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
        if isinstance(v, (tuple, list)) and not (isinstance(v[1], (int, float)) and math.isfinite(v[1])):
            fail(f"{c}: the threshold must be a finite number (use float(...)), got {v[1]!r}.")
    print(f"{len(choice)} concepts labelled; they are scored on held-out tokens below.")


# ---- 5. steering ---------------------------------------------------------------------------------
def check_steering_hook(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(8)
    act, d = torch.randn(2, 5, 6, generator=g), torch.randn(6, generator=g)
    original = act.clone()
    out = fn(d, 3.0)(act.clone(), hook=None)
    want = ref_steer.steering_hook(d, 3.0)(act)
    if out is None:
        fail("the hook must return the modified activation.")
    if torch.allclose(out[:, -1], want[:, -1]) and torch.allclose(out[:, :-1], original[:, :-1]):
        fail("you only steered the last position: add the direction at every position.")
    if torch.allclose(out, act + 3.0 * d / d.norm()):
        fail("don't renormalise inside the hook: add coeff × direction exactly as given (the caller decides "
             "the direction's scale).")
    assert_close(out, want, "the hook returns act + coeff * direction at every position.")
    print("steering_hook adds the direction at every position.")


def check_concept_probability(fn, model, tokens) -> None:
    assert_own_code(fn)
    tokens = tokens[:3, :24]
    ids = torch.arange(0, model.cfg.d_vocab, 7)
    got = torch.as_tensor(fn(model, tokens, ids))
    want = ref_steer.concept_probability(model, tokens, ids)
    if got.shape != want.shape:
        fail(f"return one probability per position, shape {tuple(want.shape)}; got {tuple(got.shape)}.")
    logits = model(tokens)
    if torch.allclose(got, logits[..., ids].sum(-1), atol=1e-4):
        fail("you summed logits: apply softmax over the vocabulary first, then sum the probabilities of token_ids.")
    if torch.allclose(got, logits.log_softmax(-1)[..., ids].sum(-1), atol=1e-4):
        fail("you summed log-probabilities; sum probabilities (softmax) instead.")
    assert_close(got, want, "P(next token ∈ token_ids) = softmax(logits)[..., token_ids].sum(-1).", atol=1e-5)
    d = model.W_U[:, int(ids[3])].detach()
    hooks = [("blocks.0.hook_resid_post", ref_steer.steering_hook(d / d.norm(), 30.0))]
    got_h = torch.as_tensor(fn(model, tokens, ids, hooks))
    assert_close(got_h, ref_steer.concept_probability(model, tokens, ids, hooks),
                 "with fwd_hooks, run the model with those hooks attached (model.run_with_hooks(tokens, "
                 "fwd_hooks=fwd_hooks)).", atol=1e-5)
    print("concept_probability is right, with and without hooks.")
