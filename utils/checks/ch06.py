"""Visible checks for chapter 06 (SAELens, evaluation, dashboards, steering). Each names the mistake
it most likely found.

Every check runs the student's code through `call` (an exception becomes a message), checks what
comes back, then compares it with the right value *and* with the value each common mistake would
give, computed here from the definitions on the same inputs, so that a message names the mistake
rather than printing a bare difference. The inputs are chosen so that those values differ: an SAE
whose codes are negative, ablation baselines recomputed for every wrong mean, a 3-D baseline as the
notebook passes, a latent that peaks on BOS, windows clipped at the start of a sequence.

Checks that read notebook state (model, SAE, tokens) move what they build to the SAE's or the
model's device and compare on the CPU, so they run the same in every profile.

Sections 1-2 (SAELens, evaluation) are here; dashboards and latent search in `ch06_dashboards`,
concepts and steering in `ch06_steering`.
"""

from __future__ import annotations

import math

import torch

from utils import activations as ref_act
from utils import metrics as ref_metrics
from utils.checks import CheckFailed, assert_close, assert_own_code, call, fail
from utils.checks.ch06_dashboards import (bos_trap, check_find_interpretable_latents, check_histogram,  # noqa: F401
                                          check_logit_attribution, check_search_latents, check_top_activations)
from utils.checks.ch06_concepts import (check_concept_precision_recall, check_latent_for_concept,  # noqa: F401
                                        concept_scores, recovered)
from utils.checks.ch06_steering import check_concept_probability, check_steer, check_steering_hook  # noqa: F401
from utils.checks.ch06_util import as_floats, as_ints, heads, run, standard_sae  # noqa: F401 (hidden tests use them)

PROMPT = "def mean(values):\n    total = sum(values)\n    return total / len(values)"


# ---- 1. SAELens -----------------------------------------------------------------------------------
_CACHE_HINTS = (
    (r"KeyError.*hook_sae", "The SAE's hook points (`…hook_sae_acts_post`) are in the cache only when the SAE is "
                            "attached: use model.run_with_cache_with_saes(prompt, saes=[sae])."),
    (r"has no attribute 'hook_name'", "SAELens keeps the hook in the SAE's metadata: sae.cfg.metadata.hook_name."),
)


def _latents_at(model, sae, prompt, *, prepend_bos=True):
    """The SAE's latents [seq d_sae] on `prompt` (on the CPU)."""
    tokens = model.to_tokens(prompt, prepend_bos=prepend_bos)
    return ref_act.sae_latents(model, sae, tokens)[0]


def check_top_latents(fn, model, sae) -> None:
    assert_own_code(fn)
    what = f"the prompt {PROMPT!r} with k = 5"
    got = run(fn, model, sae, PROMPT, 5, what=what, name="top_latents", hints=_CACHE_HINTS)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"top_latents should return a pair (latents, values), two lists of length k; got {_kind(got)}.")
    lat, val = as_ints(got[0]), as_floats(got[1])
    if lat is None and as_ints(got[1]) is not None:
        fail("the pair is the wrong way round: return (latents, values), the latent indices first. (`topk` gives "
             "(values, indices): pick `.indices` and `.values` by name.)")
    if lat is None or val is None:
        fail("top_latents should return (latents, values): a flat list of k ints and a flat list of k floats "
             f"(got {_kind(got[0])} and {_kind(got[1])}).")
    if len(lat) != 5 or len(val) != 5:
        fail(f"asked for k = 5 latents, got {len(lat)} latents and {len(val)} values: use the `k` argument.")
    acts = _latents_at(model, sae, PROMPT)                                       # [seq d_sae]
    want = acts[-1].topk(5)
    if lat != want.indices.tolist():
        name_list(lat, want.indices.tolist(), [
            (acts[0], "these are the latents of position 0, the BOS token: the exercise asks for the prompt's last "
                      "token, index -1 of the sequence axis."),
            (acts.amax(0), "these are the latents with the largest activation anywhere in the prompt: the exercise "
                           "asks for the activations at the prompt's last token (index -1 of the sequence)."),
            (acts.mean(0), "you averaged the latents over the prompt's positions: the exercise asks for the "
                           "activations at the last token only (index -1 of the sequence)."),
            (_latents_at(model, sae, PROMPT, prepend_bos=False)[-1],
             "you ran the prompt without its BOS token (prepend_bos=False): pass the prompt string as it is "
             "(run_with_cache_with_saes prepends BOS, as the SAE was trained with)."),
        ])
        if sorted(lat) == sorted(want.indices.tolist()):
            fail("the right latents in the wrong order: sort by activation, largest first (topk does).")
        fail("not the latents with the largest activation at the last token. Read the activations from the cache key "
             f"'{ref_act.sae_hook_name(sae)}.hook_sae_acts_post' after model.run_with_cache_with_saes(prompt, "
             "saes=[sae]), then [0, -1].topk(k).")
    assert_close(torch.tensor(val), want.values, "the values should be those latents' activations at the last token, "
                 "largest first.", atol=1e-4)
    print("top_latents matches the SAE's activations at the last token.")


def name_list(got: list[int], want: list[int], variants) -> None:
    """Fail with the message of the first variant (a [.. d_sae] score whose top-k is `got`)."""
    for scores, message in variants:
        if got != want and got == torch.as_tensor(scores).float().cpu().topk(len(want)).indices.tolist():
            fail(message)


def _kind(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}"
    return f"a {type(x).__name__}"


def _float_dict(got, keys, name) -> dict[str, float]:
    """`got` as {key: float}, with a message for a missing key or a value that is not a Python number."""
    if not isinstance(got, dict):
        fail(f"`{name}` should return a dict with the keys {list(keys)}; got {_kind(got)}.")
    missing = [k for k in keys if k not in got]
    if missing:
        fail(f"the dict `{name}` returns needs the keys {list(keys)}; missing {missing} (it has {sorted(got)}).")
    for k in keys:
        if isinstance(got[k], torch.Tensor):
            fail(f"`{name}`['{k}'] is a tensor; return Python floats (float(...) of each number), as the exercise "
                 "asks: they print, compare and go into a table without dragging a device or a graph along.")
        if not isinstance(got[k], (int, float)) or isinstance(got[k], bool) or not math.isfinite(got[k]):
            fail(f"`{name}`['{k}'] = {got[k]!r}: each value should be a finite Python float.")
    return {k: float(got[k]) for k in keys}


# ---- 2. evaluation --------------------------------------------------------------------------------
_EVAL_HINTS = (
    (r"ValueError.*unpack", "A SAELens SAE's forward returns the reconstruction only (not the seed's (recon, "
                            "latents)): call acts = sae.encode(x), then x_hat = sae.decode(acts)."),
    *_CACHE_HINTS,
)


def _signed_sae(d_in: int, like):
    """A SAELens SAE whose codes are signed: exactly 3 non-zero latents per token, some negative."""
    from sae_lens import StandardSAE

    class SignedSAE(StandardSAE):
        def encode(self, x):
            pre = self.hook_sae_acts_pre(self.process_sae_in(x) @ self.W_enc + self.b_enc)
            keep = pre.abs() >= pre.abs().topk(3, dim=-1).values[..., -1:]
            return self.hook_sae_acts_post(torch.where(keep, pre, torch.zeros_like(pre)))

    g = torch.Generator().manual_seed(6)
    return standard_sae(torch.randn(d_in, 8, generator=g) / d_in ** 0.5, torch.zeros(8),
                        torch.randn(8, d_in, generator=g) * 0.1, torch.zeros(d_in), like=like, cls=SignedSAE)


def _ev_variants(x, x_hat, err) -> list[tuple[float, str]]:
    """(explained variance, message) of each common mistake, on activations x [n d] (float64)."""
    per_dim = 1 - err.sum(0) / (x - x.mean(0)).pow(2).sum(0)
    return [(float(v), m) for v, m in (
        (1 - err.mean() / x.var(), "this is the seed's 1 − mse / acts.var(): acts.var() pools every element of "
         "every dimension around one global mean. Divide Σ‖x − x̂‖² by Σ‖x − x̄‖², with x̄ the mean over tokens "
         "of each dimension (x.mean(0))."),
        (1 - err.sum() / x.pow(2).sum(), "you measured the variance about zero (Σ‖x‖² in the denominator): "
         "subtract the mean over tokens, x.mean(0), before squaring."),
        (1 - err.sum() / (x - x.mean(-1, keepdim=True)).pow(2).sum(),
         "x̄ is the mean over tokens of each dimension, x.mean(0) (shape [d_in]); you took each token's mean over "
         "its dimensions (x.mean(-1))."),
        (per_dim.mean(), "you averaged one explained variance per dimension: the exercise pools the sums, "
         "1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over all (token, dimension) pairs, so that dimensions with more variance "
         "count more."),
        (1 - x_hat.var(0).sum() / x.var(0).sum(), "that is a ratio of variances (of x̂ over x); explained variance "
         "is 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖², built from the reconstruction error."),
    )]


def _tie_break(fn, like, named: list[str]) -> list[str]:
    """Of the mistakes in `named` (messages that all match on the LM), those that also match on a 2-d model whose
    activations sit far from the origin, x = (5, 3), (3, 4), (4, 6) (BOS dropped), with an SAE x̂ = x / 2."""
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    with torch.random.fork_rng(devices=[]):
        tiny = HookedSAETransformer(HookedTransformerConfig(n_layers=1, d_model=2, n_heads=1, d_head=2, d_vocab=4,
                                                            n_ctx=4, act_fn="relu", normalization_type=None, device="cpu"))
    emb = torch.tensor([[0.0, 0.0], [5.0, 3.0], [3.0, 4.0], [4.0, 6.0]])
    with torch.no_grad():
        tiny.W_E.copy_(emb)
        tiny.W_pos.zero_()
    eye = torch.eye(2)
    half = standard_sae(eye, torch.zeros(2), eye / 2, torch.zeros(2), like=like).cpu()
    got = run(fn, half, tiny, "blocks.0.hook_resid_pre", torch.tensor([[0, 1, 2, 3]]), name="evaluate_sae",
              what="a 2-d model whose activations are far from the origin and an SAE x̂ = x / 2", hints=_EVAL_HINTS)
    ev = _float_dict(got, ("explained_variance",), "evaluate_sae")["explained_variance"]
    x = emb[1:].double()
    x_hat = x / 2
    both = [m for v, m in _ev_variants(x, x_hat, (x - x_hat).pow(2)) if m in named
            and math.isclose(ev, v, rel_tol=1e-4, abs_tol=1e-6)]
    return both or named


def check_evaluate_sae(fn, model, sae, tokens) -> None:
    assert_own_code(fn)
    hook = ref_act.sae_hook_name(sae)
    tokens = tokens[:4]
    what = f"the SAE at {hook} and {tuple(tokens.shape)} tokens"
    keys = ("mse", "l0", "explained_variance")
    got = _float_dict(run(fn, sae, model, hook, tokens, what=what, name="evaluate_sae", hints=_EVAL_HINTS),
                      keys, "evaluate_sae")
    dev = ref_act.module_device(sae)
    x_all = ref_act.cache_activations(model, hook, tokens, flatten=False, device=dev)     # [n_seq seq d_in]
    x = x_all[:, 1:].reshape(-1, x_all.shape[-1])                                          # BOS dropped
    with torch.no_grad():
        acts = sae.encode(x)
        x_hat = sae.decode(acts)
        acts_all = sae.encode(x_all.reshape(-1, x.shape[-1]))
        x_hat_all = sae.decode(acts_all)
    x, x_hat, acts = x.double().cpu(), x_hat.double().cpu(), acts.cpu()
    x_all, x_hat_all, acts_all = x_all.reshape(-1, x.shape[-1]).double().cpu(), x_hat_all.double().cpu(), acts_all.cpu()
    err = (x - x_hat).pow(2)
    want = {"mse": float(err.mean()), "l0": float((acts != 0).float().sum(-1).mean()),
            "explained_variance": float(1 - err.sum() / (x - x.mean(0)).pow(2).sum())}
    err_all = (x_all - x_hat_all).pow(2)
    with_bos = {"mse": float(err_all.mean()), "l0": float((acts_all != 0).float().sum(-1).mean()),
                "explained_variance": float(1 - err_all.sum() / (x_all - x_all.mean(0)).pow(2).sum())}
    close = {k: math.isclose(got[k], want[k], rel_tol=1e-3, abs_tol=1e-5) for k in keys}
    if not all(close.values()) and any(math.isclose(got[k], with_bos[k], rel_tol=1e-4, abs_tol=1e-6)
                                       for k in keys if not close[k]):
        fail("you kept position 0 (BOS): drop it, acts[:, 1:], before computing the metrics (its residual is an "
             "outlier the SAE is not asked to model).")
    ev = got["explained_variance"]
    if not close["explained_variance"]:
        named = [m for v, m in _ev_variants(x, x_hat, err) if math.isclose(ev, v, rel_tol=1e-4, abs_tol=1e-6)]
        if len(named) > 1:          # on the LM's residual (mean ≈ 0) several mistakes coincide: a residual far from 0
            named = _tie_break(fn, sae, named)
        if named:
            fail(named[0])
        fail(f"explained_variance = {ev:.4f}, expected {want['explained_variance']:.4f}: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² "
             "over all (token, dimension) pairs, x̄ = x.mean(0), BOS excluded.")
    if not close["mse"]:
        d, n = x.shape[-1], x.shape[0]
        for factor, message in ((d, "you summed the squared error over the dimensions of each token; mse is the mean "
                                    "over every element (token and dimension), like the seed's l2_loss: .mean()."),
                                (n * d, "you summed the squared error; mse is its mean over every element: .mean()."),
                                (n, "you summed over tokens; mse is the mean over every element: .mean().")):
            if math.isclose(got["mse"], want["mse"] * factor, rel_tol=1e-3):
                fail(message)
        if math.isclose(got["mse"], want["mse"] ** 0.5, rel_tol=1e-3):
            fail("that is the root of the mean squared error; mse is the mean of (x − x̂)², no square root.")
        fail(f"mse = {got['mse']:.5g}, expected {want['mse']:.5g}: (x − x̂)² averaged over all elements, BOS excluded.")
    if not close["l0"]:
        for value, message in (
            (want["l0"] / sae.cfg.d_sae, "l0 is a count, the mean over tokens of the number of latents != 0; you "
             "gave the fraction of latents (a mean over the latent axis too): .sum(-1).mean()."),
            (want["l0"] * x.shape[0], "l0 is the mean over tokens of the number of active latents; you summed over "
             "tokens: .sum(-1).mean()."),
        ):
            if math.isclose(got["l0"], value, rel_tol=1e-4):
                fail(message)
        fail(f"l0 = {got['l0']:.3f}, expected {want['l0']:.3f}: the mean over tokens of the number of latents that "
             "are not zero.")
    signed = _signed_sae(x.shape[-1], sae)
    got_signed = _float_dict(run(fn, signed, model, hook, tokens, name="evaluate_sae", hints=_EVAL_HINTS,
                                 what=f"an SAE whose codes have negative entries (3 latents != 0 per token)"),
                             keys, "evaluate_sae")["l0"]
    if not math.isclose(got_signed, 3.0, abs_tol=1e-4):
        if got_signed < 3.0:
            fail("on an SAE whose code has negative entries your l0 is too small: count latents with acts != 0, not "
                 "acts > 0 (the seed's version).")
        fail(f"on an SAE with exactly 3 non-zero latents per token your l0 is {got_signed:.3f}, not 3.")
    print(f"evaluate_sae matches: l0 {want['l0']:.2f}, explained variance {want['explained_variance']:.4f}, "
          f"mse {want['mse']:.4g}.")


# ---- downstream loss ------------------------------------------------------------------------------
def _ce(model, tokens, hook, fn=None) -> float:
    hooks = [] if fn is None else [(hook, fn)]
    return float(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=hooks))


def _fractions(got: dict) -> dict:
    c, s, z, m = (got[k] for k in ("clean", "spliced", "zero_ablated", "mean_ablated"))
    return {"recovered_zero": (z - s) / (z - c), "recovered_mean": (m - s) / (m - c)}


def _indistinguishable(right: dict) -> bool:
    """The two right fractions (from `_fractions`) are too close for a swap of them to show."""
    return abs(right["recovered_zero"] - right["recovered_mean"]) < 1e-3


def _check_recovered(got: dict) -> None:
    """recovered_zero and recovered_mean against the fractions of the student's own losses."""
    def same(a, b):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)  # float32 arithmetic passes; 1 − r, 1 / r do not

    right = _fractions(got)
    if not _indistinguishable(right) and same(got["recovered_zero"], right["recovered_mean"]) \
            and same(got["recovered_mean"], right["recovered_zero"]):
        fail("recovered_zero and recovered_mean are swapped: recovered_zero = (zero − spliced) / (zero − clean) uses the "
             "zero-ablated loss, recovered_mean = (mean − spliced) / (mean − clean) the mean-ablated one.")
    for k, label in (("recovered_zero", "zero"), ("recovered_mean", "mean")):
        r, v = right[k], got[k]
        if same(v, r):
            continue
        formula = f"({label} − spliced) / ({label} − clean)"
        if same(v, 1 - r):
            fail(f"{k} is 1 minus what it should be (the fraction lost, (spliced − clean) / ({label} − clean)): "
                 f"the fraction recovered is {formula}, 1 when the SAE costs nothing.")
        if r != 0 and same(v, 1 / r):
            fail(f"{k} is upside down: {formula}.")
        fail(f"{k} = {v:.5f}, but your own losses give {r:.5f}: {formula}, 1 when the SAE costs nothing, 0 when it is "
             f"as bad as the {label} ablation.")


def check_downstream_loss(fn, model, sae, tokens) -> None:
    assert_own_code(fn)
    tokens = tokens[:4]
    hook = ref_act.sae_hook_name(sae)
    keys = ("clean", "spliced", "zero_ablated", "mean_ablated", "recovered_zero", "recovered_mean")
    what = f"{tuple(tokens.shape)} tokens and the SAE at {hook}"
    got = _float_dict(run(fn, model, sae, tokens, what=what, name="downstream_loss", hints=_CACHE_HINTS),
                      keys, "downstream_loss")
    x = ref_act.model_activations(model, hook, tokens, flatten=False, device=None)          # [batch seq d]

    def replaced_by(value):
        return lambda act, hook: value.to(act.device, act.dtype).expand_as(act).clone()

    splice = ref_metrics.splice_hook(sae)
    want = {"clean": _ce(model, tokens, hook), "spliced": _ce(model, tokens, hook, splice),
            "zero_ablated": _ce(model, tokens, hook, lambda act, hook: torch.zeros_like(act)),
            "mean_ablated": _ce(model, tokens, hook, replaced_by(x.mean((0, 1))))}

    def same(a, b, tol=1e-4):
        return math.isclose(a, b, rel_tol=tol, abs_tol=1e-5)

    if not same(got["clean"], want["clean"]):
        fail(f"clean = {got['clean']:.4f}, expected {want['clean']:.4f}: the model's own cross-entropy on tokens, "
             "model(tokens, return_type='loss') (or the loss that run_with_cache returns), no hook attached.")
    if not same(got["spliced"], want["spliced"]):
        if same(got["spliced"], want["clean"]):
            fail("spliced equals the clean loss: with use_error_term=True the SAE changes nothing. Splice the SAE "
                 "without the error term: model.run_with_saes(tokens, saes=[sae], return_type='loss').")
        fail(f"spliced = {got['spliced']:.4f}, expected {want['spliced']:.4f}: run with the SAE spliced in and no error "
             "term, model.run_with_saes(tokens, saes=[sae], return_type='loss').")
    if not same(got["zero_ablated"], want["zero_ablated"]):
        if same(got["zero_ablated"], want["mean_ablated"]) and same(got["mean_ablated"], want["zero_ablated"]):
            fail("zero_ablated and mean_ablated are swapped: zero ablation replaces the activation by zeros, mean "
                 "ablation by its mean over the tokens.")
        fail(f"zero_ablated = {got['zero_ablated']:.4f}, expected {want['zero_ablated']:.4f}: replace the activation at "
             "the SAE's hook by zeros (a hook returning torch.zeros_like(act)).")
    if not same(got["mean_ablated"], want["mean_ablated"]):
        for value, message in (
            (x.mean(1, keepdim=True), "you took one mean per sequence (act.mean(1)); mean ablation uses one mean per "
             "dimension over every token of the batch, act.mean((0, 1)), the same vector at every position."),
            (x.mean(0), "you took one mean per position (a mean over the batch axis only); mean ablation uses one mean "
             "per dimension over every token of the batch, act.mean((0, 1))."),
            (x.mean(-1, keepdim=True), "you averaged over the model dimension (each token's own mean, act.mean(-1)); "
             "mean ablation replaces the activation by the mean *over tokens*, one value per dimension: "
             "act.mean((0, 1))."),
            (x[:, 1:].mean((0, 1)), "you left BOS out of the mean: mean ablation uses the mean over every token of "
             "`tokens`, BOS included (act.mean((0, 1)))."),
            (x[0].mean(0), "you took the mean of the first sequence only: average over every token of the batch, "
             "act.mean((0, 1))."),
        ):
            if same(got["mean_ablated"], _ce(model, tokens, hook, replaced_by(value))):
                fail(message)
        fail(f"mean_ablated = {got['mean_ablated']:.4f}, expected {want['mean_ablated']:.4f}: replace the activation by "
             "its mean over every token of the batch, one value per dimension (act.mean((0, 1))), broadcast to every "
             "position.")
    if _indistinguishable(_fractions(got)):  # the SAE costs (almost) nothing here: both fractions ≈ 1, a swap would not show
        d = sae.cfg.d_in
        keep = torch.eye(d)[:, : d // 2]                    # x̂ = x with its second half of dimensions zeroed:
        costly = standard_sae(torch.cat([keep, -keep], 1), torch.zeros(2 * (d // 2)),   # a costly SAE (x / 2
                              torch.cat([keep.T, -keep.T], 0), torch.zeros(d), like=sae)  # would not be: LayerNorm)
        _check_recovered(_float_dict(run(fn, model, costly, tokens[:2], name="downstream_loss", hints=_CACHE_HINTS,
                                         what="an SAE that keeps half of the dimensions, on 2 sequences"),
                                     keys, "downstream_loss"))
    _check_recovered(got)
    print("downstream_loss matches: " + ", ".join(f"{k} {got[k]:.4f}" for k in keys))


