"""Chapter 06 (SAELens, evaluation, dashboards, steering): common mistakes per exercise, written as a
student would (issue 17 names several: zero and mean ablation swapped, steer_choice without the error
term / over position 0 / on the plain text, a 3-D baseline, BOS kept, format-only latent choices)."""

from mistakes import Mistake

CHAPTER = "06_saelens_dashboards"


def _m(test, name, source, names, subtle=False):
    return Mistake(test, name, source, names=names, subtle=subtle)


# ---- exercise 1: top_latents --------------------------------------------------------------------
_TL = '''
def top_latents(model, sae, prompt: str, k: int = 10) -> tuple[list[int], list[float]]:
    """The k latents most active at the last token of `prompt`, and their activations."""
{body}'''


def _tl(name, body, names, subtle=False):
    return _m("test_top_latents", name, _TL.format(body=body), names, subtle)


TOP_LATENTS = [
    _tl("anywhere_in_prompt", '''    _, cache = model.run_with_cache_with_saes(prompt, saes=[sae])
    acts = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0]
    top = acts.max(dim=0).values.topk(k)
    return top.indices.tolist(), top.values.tolist()
''', r"anywhere in the prompt", subtle=True),
    _tl("first_token", '''    _, cache = model.run_with_cache_with_saes(prompt, saes=[sae])
    last = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0, 0]
    top = last.topk(k)
    return top.indices.tolist(), top.values.tolist()
''', r"position 0.*BOS"),
    _tl("mean_over_positions", '''    _, cache = model.run_with_cache_with_saes(prompt, saes=[sae])
    acts = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0]
    top = acts.mean(0).topk(k)
    return top.indices.tolist(), top.values.tolist()
''', r"averaged the latents over the prompt's positions", subtle=True),
    _tl("topk_order", '''    _, cache = model.run_with_cache_with_saes(prompt, saes=[sae])
    last = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0, -1]
    values, indices = last.topk(k)
    return values.tolist(), indices.tolist()
''', r"wrong way round"),
    _tl("no_sae_attached", '''    _, cache = model.run_with_cache(prompt)
    last = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0, -1]
    top = last.topk(k)
    return top.indices.tolist(), top.values.tolist()
''', r"only when the SAE is attached"),
    _tl("no_bos", '''    tokens = model.to_tokens(prompt, prepend_bos=False)
    _, cache = model.run_with_cache_with_saes(tokens, saes=[sae])
    last = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0, -1]
    top = last.topk(k)
    return top.indices.tolist(), top.values.tolist()
''', r"without its BOS token", subtle=True),
    _tl("ascending", '''    _, cache = model.run_with_cache_with_saes(prompt, saes=[sae])
    last = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0, -1]
    values, indices = last.sort()
    return indices[-k:].tolist(), values[-k:].tolist()
''', r"wrong order", subtle=True),
    _tl("k_ignored", '''    _, cache = model.run_with_cache_with_saes(prompt, saes=[sae])
    last = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0, -1]
    top = last.topk(10)
    return top.indices.tolist(), top.values.tolist()
''', r"use the `k` argument"),
]

# ---- exercise 2: evaluate_sae -------------------------------------------------------------------
_EV = '''
def evaluate_sae(sae, model, hook_name: str, tokens: torch.Tensor) -> dict[str, float]:
    """MSE, L0 and explained variance (about the mean) of `sae` at `hook_name` on `tokens`, BOS excluded."""
    _, cache = model.run_with_cache(tokens, names_filter=hook_name)
{body}'''
_X = "    x = cache[hook_name][:, 1:].reshape(-1, cache[hook_name].shape[-1])\n"
_ENC = "    acts = sae.encode(x)\n    x_hat = sae.decode(acts)\n"


def _ev(name, body, names, subtle=False):
    return _m("test_evaluate_sae", name, _EV.format(body=body), names, subtle)


EVALUATE_SAE = [
    _ev("seed_var", _X + _ENC + '''    mse = (x - x_hat).pow(2).mean()
    return {"mse": float(mse), "l0": float((acts != 0).float().sum(-1).mean()),
            "explained_variance": float(1 - mse / x.var())}
''', r"acts\.var\(\)", subtle=True),
    _ev("about_zero", _X + _ENC + '''    err = (x - x_hat).pow(2)
    return {"mse": float(err.mean()), "l0": float((acts != 0).float().sum(-1).mean()),
            "explained_variance": float(1 - err.sum() / x.pow(2).sum())}
''', r"about zero", subtle=True),
    _ev("keeps_bos", '''    x = cache[hook_name].reshape(-1, cache[hook_name].shape[-1])
''' + _ENC + '''    err = (x - x_hat).pow(2)
    return {"mse": float(err.mean()), "l0": float((acts != 0).float().sum(-1).mean()),
            "explained_variance": float(1 - err.sum() / (x - x.mean(0)).pow(2).sum())}
''', r"kept position 0 \(BOS\)", subtle=True),
    _ev("l0_positive", _X + _ENC + '''    err = (x - x_hat).pow(2)
    return {"mse": float(err.mean()), "l0": float((acts > 0).float().sum(-1).mean()),
            "explained_variance": float(1 - err.sum() / (x - x.mean(0)).pow(2).sum())}
''', r"acts != 0", subtle=True),
    _ev("mse_summed_over_dims", _X + _ENC + '''    err = (x - x_hat).pow(2)
    return {"mse": float(err.sum(-1).mean()), "l0": float((acts != 0).float().sum(-1).mean()),
            "explained_variance": float(1 - err.sum() / (x - x.mean(0)).pow(2).sum())}
''', r"summed the squared error over the dimensions"),
    _ev("seed_forward", _X + '''    x_hat, acts = sae(x)
    err = (x - x_hat).pow(2)
    return {"mse": float(err.mean()), "l0": float((acts != 0).float().sum(-1).mean()),
            "explained_variance": float(1 - err.sum() / (x - x.mean(0)).pow(2).sum())}
''', r"forward returns the reconstruction only"),
    _ev("mean_over_dims", _X + _ENC + '''    err = (x - x_hat).pow(2)
    total = (x - x.mean(-1, keepdim=True)).pow(2)
    return {"mse": float(err.mean()), "l0": float((acts != 0).float().sum(-1).mean()),
            "explained_variance": float(1 - err.sum() / total.sum())}
''', r"each token's mean over its dimensions", subtle=True),
    _ev("per_dim_ev", _X + _ENC + '''    err = (x - x_hat).pow(2)
    ev_per_dim = 1 - err.sum(0) / (x - x.mean(0)).pow(2).sum(0)
    return {"mse": float(err.mean()), "l0": float((acts != 0).float().sum(-1).mean()),
            "explained_variance": float(ev_per_dim.mean())}
''', r"one explained variance per dimension", subtle=True),
    _ev("l0_fraction", _X + _ENC + '''    err = (x - x_hat).pow(2)
    return {"mse": float(err.mean()), "l0": float((acts != 0).float().mean()),
            "explained_variance": float(1 - err.sum() / (x - x.mean(0)).pow(2).sum())}
''', r"fraction of latents", subtle=True),
    _ev("returns_tensors", _X + _ENC + '''    err = (x - x_hat).pow(2)
    return {"mse": err.mean(), "l0": (acts != 0).float().sum(-1).mean(),
            "explained_variance": 1 - err.sum() / (x - x.mean(0)).pow(2).sum()}
''', r"return Python floats"),
]

# ---- exercise 3: downstream_loss ----------------------------------------------------------------
_DL = '''
def downstream_loss(model, sae, tokens: torch.Tensor) -> dict[str, float]:
    """Cross-entropy clean, with the SAE spliced in, zero- and mean-ablated; fractions recovered."""
    hook_name = sae.cfg.metadata.hook_name
    clean, cache = model.run_with_cache(tokens, return_type="loss", names_filter=hook_name)
{mean}    spliced = model.run_with_saes(tokens, saes=[sae], {splice}return_type="loss")
    zero = model.run_with_hooks(tokens, return_type="loss",
                                fwd_hooks=[(hook_name, lambda act, hook: torch.zeros_like(act))])
    mean_abl = model.run_with_hooks(tokens, return_type="loss",
                                    fwd_hooks=[(hook_name, lambda act, hook: mean.expand_as(act).clone())])
    c, s, z, m = (float(v) for v in (clean, spliced, zero, mean_abl))
{ret}'''
_MEAN = "    mean = cache[hook_name].mean((0, 1))\n"
_RET = '''    return {"clean": c, "spliced": s, "zero_ablated": z, "mean_ablated": m,
            "recovered_zero": (z - s) / (z - c), "recovered_mean": (m - s) / (m - c)}
'''


def _dl(name, names, subtle=False, mean=_MEAN, splice="", ret=_RET):
    return _m("test_downstream_loss", name, _DL.format(mean=mean, splice=splice, ret=ret), names, subtle)


DOWNSTREAM_LOSS = [
    _dl("recoveries_swapped", r"recovered_zero and recovered_mean are swapped", subtle=True, ret='''    return {"clean": c, "spliced": s, "zero_ablated": z, "mean_ablated": m,
            "recovered_zero": (m - s) / (m - c), "recovered_mean": (z - s) / (z - c)}
'''),
    _dl("ablations_swapped", r"zero_ablated and mean_ablated are swapped", ret='''    return {"clean": c, "spliced": s, "zero_ablated": m, "mean_ablated": z,
            "recovered_zero": (m - s) / (m - c), "recovered_mean": (z - s) / (z - c)}
'''),
    _dl("mean_per_sequence", r"one mean per sequence", subtle=True,
        mean="    mean = cache[hook_name].mean(1, keepdim=True)\n"),
    _dl("mean_over_d_model", r"averaged over the model dimension",
        mean="    mean = cache[hook_name].mean(-1, keepdim=True)\n"),
    _dl("mean_without_bos", r"left BOS out of the mean", subtle=True,
        mean="    mean = cache[hook_name][:, 1:].mean((0, 1))\n"),
    _dl("with_error_term", r"use_error_term", splice="use_error_term=True, "),
    _dl("fraction_lost", r"1 minus what it should be", ret='''    return {"clean": c, "spliced": s, "zero_ablated": z, "mean_ablated": m,
            "recovered_zero": (s - c) / (z - c), "recovered_mean": (s - c) / (m - c)}
'''),
    _dl("returns_tensors", r"return Python floats", ret='''    return {"clean": clean, "spliced": spliced, "zero_ablated": zero, "mean_ablated": mean_abl,
            "recovered_zero": (zero - spliced) / (zero - clean), "recovered_mean": (mean_abl - spliced) / (mean_abl - clean)}
'''),
]

# ---- exercise 4: search_latents -----------------------------------------------------------------
_SL = '''
def search_latents(acts: torch.Tensor, baseline: torch.Tensor | None, k: int = 10) -> tuple[list[int], list[float]]:
    """The k latents most active on `acts`' tokens relative to `baseline`'s."""
{body}'''


def _sl(name, body, names, subtle=False):
    return _m("test_search_latents", name, _SL.format(body=body), names, subtle)


_TOP = "    top = score.topk(k)\n    return top.indices.tolist(), top.values.tolist()\n"

SEARCH_LATENTS = [
    _sl("no_baseline", '''    score = acts.reshape(-1, acts.shape[-1]).mean(0)
''' + _TOP, r"fires everywhere"),
    _sl("baseline_mean0_3d", '''    score = acts.reshape(-1, acts.shape[-1]).mean(0)
    if baseline is not None:
        score = score - baseline.mean(0)
''' + _TOP, r"3-D baseline", subtle=True),
    _sl("max_not_mean", '''    score = acts.reshape(-1, acts.shape[-1]).max(0).values
    if baseline is not None:
        score = score - baseline.reshape(-1, baseline.shape[-1]).mean(0)
''' + _TOP, r"not the maximum"),
    _sl("sums", '''    score = acts.reshape(-1, acts.shape[-1]).sum(0)
    if baseline is not None:
        score = score - baseline.reshape(-1, baseline.shape[-1]).sum(0)
''' + _TOP, r"subtracted sums", subtle=True),
    _sl("ratio", '''    score = acts.reshape(-1, acts.shape[-1]).mean(0)
    if baseline is not None:
        score = score / (baseline.reshape(-1, baseline.shape[-1]).mean(0) + 1e-6)
''' + _TOP, r"divided by the baseline", subtle=True),
    _sl("abs_difference", '''    score = acts.reshape(-1, acts.shape[-1]).mean(0)
    if baseline is not None:
        score = (score - baseline.reshape(-1, baseline.shape[-1]).mean(0)).abs()
''' + _TOP, r"\|difference\|", subtle=True),
    _sl("baseline_none_unhandled", '''    score = acts.reshape(-1, acts.shape[-1]).mean(0) - baseline.reshape(-1, baseline.shape[-1]).mean(0)
''' + _TOP, r"baseline=None"),
    _sl("returns_topk", '''    score = acts.reshape(-1, acts.shape[-1]).mean(0)
    if baseline is not None:
        score = score - baseline.reshape(-1, baseline.shape[-1]).mean(0)
    return score.topk(k)
''', r"topk.*\(values, indices\)"),
]

# ---- exercise 5: compute_top_activations --------------------------------------------------------
_TA = '''
def compute_top_activations(latent_acts: torch.Tensor, tokens: torch.Tensor, vocab: list[str], k: int = 10,
                            window: tuple[int, int] = (8, 3)) -> list[tuple]:
    """The latent's k strongest tokens (BOS skipped), each with a window of context."""
{prep}    seq_len = a.shape[1]
    values, flat = a.flatten().topk({topk})
    examples = []
    for v, i in zip(values.tolist(), flat.tolist()):
{stop}        s, p = {divmod}
        lo, hi = {lohi}
        examples.append((s, p, v, [{tok} for t in tokens[s, lo:hi].tolist()],
                         {wacts}[s, lo:hi].float(){clamp}.tolist(), {center}))
    return examples
'''
_TA_DEFAULT = dict(prep='    a = latent_acts.float().clone()\n    a[:, 0] = float("-inf")\n',
                   topk="min(k, a.numel())", stop="        if v <= 0:\n            break\n",
                   divmod="divmod(i, seq_len)", lohi="max(0, p - window[0]), min(seq_len, p + window[1] + 1)",
                   tok="vocab[t]", wacts="latent_acts", clamp=".clamp_min(0)", center="p - lo")


def _ta(name, names, subtle=False, **changes):
    return _m("test_top_activations", name, _TA.format(**{**_TA_DEFAULT, **changes}), names, subtle)


TOP_ACTIVATIONS = [
    _ta("keeps_bos", r"position 0 \(BOS\)", prep="    a = latent_acts.float().clone()\n"),
    _ta("mutates_input", r"changed its input `latent_acts` in place", subtle=True,
        prep='    a = latent_acts\n    a[:, 0] = float("-inf")\n'),
    _ta("no_early_stop", r"stop at the first activation ≤ 0", stop=""),
    _ta("no_clip_left", r"clip the window at the start", lohi="p - window[0], p + window[1] + 1"),
    _ta("window_right_off_by_one", r"off by one", subtle=True, lohi="max(0, p - window[0]), min(seq_len, p + window[1])"),
    _ta("center_is_left", r"center is the peak's index inside the window", subtle=True, center="window[0]"),
    _ta("no_clamp", r"clamp them to 0", subtle=True, clamp=""),
    _ta("window_from_masked_copy", r"masked copy", subtle=True, wacts="a"),
    _ta("token_ids", r"vocab\[id\]", tok="t"),
    _ta("divmod_by_n_seq", r"divmod\(i, seq_len\)", divmod="divmod(i, a.shape[0])"),
    _ta("topk_k_unclamped", r"one example|stop at activations ≤ 0|topk", topk="k"),
]

# ---- exercise 6: compute_logit_attribution ------------------------------------------------------
_LA = '''
def compute_logit_attribution(w_dec: torch.Tensor, W_U: torch.Tensor, k: int = 10):
    """Top and bottom k tokens of w_dec @ W_U, with their values."""
{body}'''


def _la(name, body, names, subtle=False):
    return _m("test_logit_attribution", name, _LA.format(body=body), names, subtle)


LOGIT_ATTRIBUTION = [
    _la("bottom_by_magnitude", '''    logits = w_dec @ W_U
    top, bottom = logits.topk(k), logits.abs().topk(k, largest=False)
    return top.indices, top.values, bottom.indices, logits[bottom.indices]
''', r"not the smallest in magnitude"),
    _la("transposed", '''    logits = W_U @ w_dec
    top, bottom = logits.topk(k), logits.topk(k, largest=False)
    return top.indices, top.values, bottom.indices, bottom.values
''', r"w_dec @ W_U"),
    _la("normalised", '''    w = w_dec / w_dec.norm()
    logits = w @ W_U
    top, bottom = logits.topk(k), logits.topk(k, largest=False)
    return top.indices, top.values, bottom.indices, bottom.values
''', r"don't normalise w_dec", subtle=True),
    _la("negated_bottom", '''    logits = w_dec @ W_U
    top, bottom = logits.topk(k), (-logits).topk(k)
    return top.indices, top.values, bottom.indices, bottom.values
''', r"bottom_values have the wrong sign", subtle=True),
    _la("softmax", '''    probs = (w_dec @ W_U).softmax(-1)
    top, bottom = probs.topk(k), probs.topk(k, largest=False)
    return top.indices, top.values, bottom.indices, bottom.values
''', r"probabilities"),
    _la("bottom_least_negative_first", '''    logits = w_dec @ W_U
    order = logits.argsort(descending=True)
    top, bottom = order[:k], order[-k:]
    return top, logits[top], bottom, logits[bottom]
''', r"most negative first", subtle=True),
    _la("wrong_order", '''    logits = w_dec @ W_U
    top, bottom = logits.topk(k), logits.topk(k, largest=False)
    return top.indices, bottom.indices, top.values, bottom.values
''', r"wrong order"),
]

# ---- exercise 7: compute_activation_histogram ---------------------------------------------------
_AH = '''
def compute_activation_histogram(latent_acts: torch.Tensor, bins: int = 30):
    """(counts, edges, density) of the latent's non-zero activations."""
    a = latent_acts.float().flatten()
    on = a[a != 0]
    hi = float(on.max())
{body}'''


def _ah(name, body, names, subtle=False):
    return _m("test_histogram", name, _AH.format(body=body), names, subtle)


HISTOGRAM = [
    _ah("density_of_firing", '''    counts = torch.histc(on, bins=bins, min=0.0, max=hi)
    return counts, torch.linspace(0.0, hi, bins + 1), on.numel() / on.numel()
''', r"fraction of \*all\* tokens"),
    _ah("density_len_rows", '''    counts = torch.histc(on, bins=bins, min=0.0, max=hi)
    return counts, torch.linspace(0.0, hi, bins + 1), on.numel() / len(latent_acts)
''', r"len\(latent_acts\)", subtle=True),
    _ah("zeros_in_histogram", '''    counts = torch.histc(a, bins=bins, min=0.0, max=hi)
    return counts, torch.linspace(0.0, hi, bins + 1), on.numel() / a.numel()
''', r"only the tokens where the latent fires", subtle=True),
    _ah("edges_bins", '''    counts = torch.histc(on, bins=bins, min=0.0, max=hi)
    return counts, torch.linspace(0.0, hi, bins), on.numel() / a.numel()
''', r"bins \+ 1"),
    _ah("range_from_min", '''    counts = torch.histc(on, bins=bins)
    return counts, torch.linspace(float(on.min()), hi, bins + 1), on.numel() / a.numel()
''', r"start at the smallest activation", subtle=True),
    _ah("density_count", '''    counts = torch.histc(on, bins=bins, min=0.0, max=hi)
    return counts, torch.linspace(0.0, hi, bins + 1), on.numel()
''', r"not a count"),
    _ah("swapped_outputs", '''    counts = torch.histc(on, bins=bins, min=0.0, max=hi)
    return torch.linspace(0.0, hi, bins + 1), counts, on.numel() / a.numel()
''', r"swapped"),
]

# ---- exercise 8: find_interpretable_latents -----------------------------------------------------
_FI = '''
def find_interpretable_latents(sae, model, prompts: torch.Tensor, n_latents: int = 10, n_examples: int = 5):
    """Steps 1-2 of the seed's exercise: (latents, values, positions) of the strongest latents."""
    name = f"{{sae.cfg.metadata.hook_name}}.hook_sae_acts_post"
    _, cache = model.run_with_cache_with_saes(prompts, saes=[sae], names_filter=name)
{body}'''


def _fi(name, body, names, subtle=False):
    return _m("test_find_interpretable_latents", name, _FI.format(body=body), names, subtle)


FIND_LATENTS = [
    _fi("keeps_bos", '''    acts = cache[name]
    seq = acts.shape[1]
    top = acts.reshape(-1, acts.shape[-1]).topk(n_examples, dim=0)
    latents = top.values[0].topk(n_latents).indices
    idx = top.indices[:, latents].T
    positions = torch.stack([idx // seq, idx % seq], dim=-1)
    return latents.tolist(), top.values[:, latents].T, positions
''', r"includes position 0 \(BOS\)", subtle=True),
    _fi("positions_off_by_one", '''    acts = cache[name][:, 1:]
    seq = acts.shape[1]
    top = acts.reshape(-1, acts.shape[-1]).topk(n_examples, dim=0)
    latents = top.values[0].topk(n_latents).indices
    idx = top.indices[:, latents].T
    positions = torch.stack([idx // seq, idx % seq], dim=-1)
    return latents.tolist(), top.values[:, latents].T, positions
''', r"off by one", subtle=True),
    _fi("full_length_decoding", '''    acts = cache[name][:, 1:]
    seq = prompts.shape[1]
    top = acts.reshape(-1, acts.shape[-1]).topk(n_examples, dim=0)
    latents = top.values[0].topk(n_latents).indices
    idx = top.indices[:, latents].T
    positions = torch.stack([idx // seq, idx % seq + 1], dim=-1)
    return latents.tolist(), top.values[:, latents].T, positions
''', r"decoded with the full length", subtle=True),
    _fi("rank_by_mean", '''    acts = cache[name][:, 1:]
    seq = acts.shape[1]
    flat = acts.reshape(-1, acts.shape[-1])
    top = flat.topk(n_examples, dim=0)
    latents = flat.mean(0).topk(n_latents).indices
    idx = top.indices[:, latents].T
    positions = torch.stack([idx // seq, idx % seq + 1], dim=-1)
    return latents.tolist(), top.values[:, latents].T, positions
''', r"mean activation"),
    _fi("values_not_transposed", '''    acts = cache[name][:, 1:]
    seq = acts.shape[1]
    top = acts.reshape(-1, acts.shape[-1]).topk(n_examples, dim=0)
    latents = top.values[0].topk(n_latents).indices
    idx = top.indices[:, latents].T
    positions = torch.stack([idx // seq, idx % seq + 1], dim=-1)
    return latents.tolist(), top.values[:, latents], positions
''', r"transpose it"),
    _fi("rank_by_sum_of_top", '''    acts = cache[name][:, 1:]
    seq = acts.shape[1]
    top = acts.reshape(-1, acts.shape[-1]).topk(n_examples, dim=0)
    latents = top.values.sum(0).topk(n_latents).indices
    idx = top.indices[:, latents].T
    positions = torch.stack([idx // seq, idx % seq + 1], dim=-1)
    return latents.tolist(), top.values[:, latents].T, positions
''', r"sum of their top examples", subtle=True),
    _fi("position_sequence_swapped", '''    acts = cache[name][:, 1:]
    seq = acts.shape[1]
    top = acts.reshape(-1, acts.shape[-1]).topk(n_examples, dim=0)
    latents = top.values[0].topk(n_latents).indices
    idx = top.indices[:, latents].T
    positions = torch.stack([idx % seq + 1, idx // seq], dim=-1)
    return latents.tolist(), top.values[:, latents].T, positions
''', r"\(position, sequence\)"),
]

# ---- exercise 9: concept_precision_recall -------------------------------------------------------
_PR = '''
def concept_precision_recall(acts: torch.Tensor, labels: torch.Tensor, threshold: float = 0.0):
    """Per latent: precision and recall of `act > threshold` as a predictor of the concept."""
{body}'''


def _pr(name, body, names, subtle=False):
    return _m("test_concept_precision_recall", name, _PR.format(body=body), names, subtle)


PRECISION_RECALL = [
    _pr("swapped", '''    fires = (acts > threshold).float()
    y = labels.float()
    true_pos = y @ fires
    return true_pos / y.sum().clamp_min(1), true_pos / fires.sum(0).clamp_min(1)
''', r"swapped", subtle=True),
    _pr("greater_equal", '''    fires = (acts >= threshold).float()
    y = labels.float()
    true_pos = y @ fires
    return true_pos / fires.sum(0).clamp_min(1), true_pos / y.sum().clamp_min(1)
''', r"> threshold, strictly", subtle=True),
    _pr("no_clamp", '''    fires = (acts > threshold).float()
    y = labels.float()
    true_pos = y @ fires
    return true_pos / fires.sum(0), true_pos / y.sum()
''', r"never fires.*clamp"),
    _pr("recall_over_all_tokens", '''    fires = (acts > threshold).float()
    y = labels.float()
    true_pos = y @ fires
    return true_pos / fires.sum(0).clamp_min(1), true_pos / len(y)
''', r"recall divides by the labelled tokens", subtle=True),
    _pr("threshold_ignored", '''    fires = (acts > 0).float()
    y = labels.float()
    true_pos = y @ fires
    return true_pos / fires.sum(0).clamp_min(1), true_pos / y.sum().clamp_min(1)
''', r"use the `threshold` argument"),
    _pr("per_token", '''    fires = (acts > threshold).float()
    y = labels.float()
    true_pos = fires * y[:, None]
    return true_pos.sum(1) / fires.sum(1).clamp_min(1), true_pos.sum(1) / y.sum().clamp_min(1)
''', r"one value per token"),
    _pr("in_place_mask", '''    acts[acts <= threshold] = 0
    acts[acts > threshold] = 1
    y = labels.float()
    true_pos = y @ acts
    return true_pos / acts.sum(0).clamp_min(1), true_pos / y.sum().clamp_min(1)
''', r"changed its input `acts` in place", subtle=True),
]

# ---- exercise 10: LATENT_FOR_CONCEPT ------------------------------------------------------------
_LC = '''LATENT_FOR_CONCEPT = {{}}
{body}print(LATENT_FOR_CONCEPT)
'''
_SCAN = '''peak = flat_acts.amax(0).clamp_min(1e-6)
relative = flat_acts / peak
best = {c: (0.0, None) for c in CONCEPTS}
for q in (0.0, 0.3, 0.6):
    enough = (relative > q).sum(0) >= 30
    for c in CONCEPTS:
        p, r = concept_precision_recall(relative, val_labels[c], q)
        r = torch.where((p >= 0.9) & enough, r, torch.zeros_like(r))
        j = int(r.argmax())
        if float(r[j]) > best[c][0]:
'''


def _lc(name, body, names, subtle=False):
    return _m("test_latent_for_concept", name, _LC.format(body=body), names, subtle)


LATENT_FOR_CONCEPT = [
    _lc("rarest_perfect", '''for c in CONCEPTS:
    p, r = concept_precision_recall(flat_acts, val_labels[c])
    LATENT_FOR_CONCEPT[c] = int(p.argmax())          # the most precise latent for each concept
''', r"fires on only \d+ validation tokens", subtle=True),
    _lc("threshold_as_fraction", _SCAN + '''            best[c] = (float(r[j]), (j, q))
LATENT_FOR_CONCEPT = {c: choice for c, (_, choice) in best.items() if choice is not None}
''', r"fraction of the maximum", subtle=True),
    _lc("best_f1", '''LATENT_FOR_CONCEPT = {c: screen[c][0] for c in CONCEPTS}
''', r"precision 0\.\d+ on validation"),
    _lc("tensor_latent", '''for c in CONCEPTS:
    p, r = concept_precision_recall(flat_acts, val_labels[c])
    r = torch.where((p >= 0.9) & ((flat_acts > 0).sum(0) >= 30), r, torch.zeros_like(r))
    LATENT_FOR_CONCEPT[c] = r.argmax()
''', r"plain int"),
    _lc("reversed_dict", '''for c in CONCEPTS:
    p, r = concept_precision_recall(flat_acts, val_labels[c])
    r = torch.where((p >= 0.9) & ((flat_acts > 0).sum(0) >= 30), r, torch.zeros_like(r))
    LATENT_FOR_CONCEPT[int(r.argmax())] = c
''', r"the other way"),
    _lc("only_two", _SCAN + '''            best[c] = (float(r[j]), (j, q * float(peak[j])))
LATENT_FOR_CONCEPT = dict(list({c: ch for c, (_, ch) in best.items() if ch is not None}.items())[:2])
''', r"at least 3"),
]

# ---- exercise 11: steering_hook ------------------------------------------------------------------
_SH = '''
def steering_hook(direction: torch.Tensor, coeff: float):
    """A hook adding coeff · direction to the activation at every position."""
{body}'''


def _sh(name, body, names, subtle=False):
    return _m("test_steering_hook", name, _SH.format(body=body), names, subtle)


STEERING_HOOK = [
    _sh("last_position", '''    def hook_fn(act, hook):
        act = act.clone()
        act[:, -1] += coeff * direction
        return act
    return hook_fn
''', r"only steered the last position", subtle=True),
    _sh("renormalised", '''    def hook_fn(act, hook):
        return act + coeff * direction / direction.norm()
    return hook_fn
''', r"don't renormalise", subtle=True),
    _sh("skips_bos", '''    def hook_fn(act, hook):
        act = act.clone()
        act[:, 1:] += coeff * direction
        return act
    return hook_fn
''', r"skipped position 0", subtle=True),
    _sh("one_parameter", '''    def hook_fn(act):
        return act + coeff * direction
    return hook_fn
''', r"hook_fn\(act, hook"),
    _sh("no_return", '''    def hook_fn(act, hook):
        act = act + coeff * direction
    return hook_fn
''', r"must return the modified activation"),
    _sh("multiplied", '''    def hook_fn(act, hook):
        return act * coeff * direction
    return hook_fn
''', r"multiplied the activation"),
    _sh("returns_call", '''    def hook_fn(act, hook):
        return act + coeff * direction
    return hook_fn(direction, None)
''', r"return the hook function itself"),
]

# ---- exercise 12: concept_probability ------------------------------------------------------------
_CP = '''
def concept_probability(model, tokens: torch.Tensor, token_ids: torch.Tensor, fwd_hooks=()) -> torch.Tensor:
    """P(next token ∈ token_ids) at every position, with the hooks attached."""
{body}'''


def _cp(name, body, names, subtle=False):
    return _m("test_concept_probability", name, _CP.format(body=body), names, subtle)


CONCEPT_PROBABILITY = [
    _cp("summed_logits", '''    logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))
    return logits[..., token_ids].sum(-1)
''', r"summed logits"),
    _cp("log_probs", '''    logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))
    return logits.log_softmax(-1)[..., token_ids].sum(-1)
''', r"log-probabilities"),
    _cp("ignores_hooks", '''    logits = model(tokens)
    return logits.softmax(-1)[..., token_ids].sum(-1)
''', r"fwd_hooks made no difference", subtle=True),
    _cp("softmax_over_ids", '''    logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))
    return logits[..., token_ids].softmax(-1).sum(-1)
''', r"softmax over token_ids only"),
    _cp("mean_not_sum", '''    logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))
    return logits.softmax(-1)[..., token_ids].mean(-1)
''', r"averaged the token_ids' probabilities", subtle=True),
    _cp("softmax_seq_axis", '''    logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))
    return logits.softmax(1)[..., token_ids].sum(-1)
''', r"sequence axis", subtle=True),
    _cp("last_position_only", '''    logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))
    return logits[:, -1].softmax(-1)[..., token_ids].sum(-1)
''', r"one probability per sequence"),
]

# ---- exercise 13: STEER and EFFECTS --------------------------------------------------------------
_ST = '''STEER = {{"latent": None, "coeff": None}}
EFFECTS = {{}}
m = next((m for m, p in zip(multiples, p_concept) if p >= 2 * p_concept[0]), multiples[-1])
{body}print(STEER, {{k: round(v, 4) for k, v in EFFECTS.items()}})
'''
_STEER = '''_steer = [(HOOK, steering_hook(steering.decoder_direction(sae, STEER["latent"]), STEER["coeff"]))]
'''
_ABLATE = '''_ablate = [(HOOK, steering.ablation_hook(sae, STEER["latent"]))]
'''


def _effects(plain="plain_tokens", code="code_tokens", pos="[:, 1:].mean()"):
    return f'''EFFECTS = {{
    "steer_base": float(concept_probability(model, {plain}, concept_ids){pos}),
    "steer_after": float(concept_probability(model, {plain}, concept_ids, _steer){pos}),
    "ablate_base": float(concept_probability(model, {code}, concept_ids){pos}),
    "ablate_after": float(concept_probability(model, {code}, concept_ids, _ablate){pos}),
}}
'''


def _st(name, body, names, subtle=False):
    return _m("test_steer", name, _ST.format(body=body), names, subtle)


_CHOICE = 'STEER = {"latent": steer_latent, "coeff": m * typical}\n'

STEER_CHOICE = [
    _st("ablate_without_error_term", _CHOICE + _STEER + '''

def zero_latent(act, hook):
    acts = sae.encode(act)
    acts[..., STEER["latent"]] = 0.0
    return sae.decode(acts)


_ablate = [(HOOK, zero_latent)]
''' + _effects(), r"drops the SAE's error term", subtle=True),
    _st("position_zero_included", _CHOICE + _STEER + _ABLATE + _effects(pos=".mean()"), r"BOS included", subtle=True),
    _st("ablate_on_plain_text", _CHOICE + _STEER + _ABLATE + _effects(code="plain_tokens"),
        r"measured on the plain text: ablation", subtle=True),
    _st("coeff_as_multiple", 'STEER = {"latent": steer_latent, "coeff": m}\n' + _STEER + _ABLATE + _effects(),
        r"residual-stream units"),
    _st("tensor_latent", 'STEER = {"latent": torch.tensor(steer_latent), "coeff": m * typical}\n' + _STEER + _ABLATE
        + _effects(), r"plain int"),
    _st("steer_on_code_text", _CHOICE + _STEER + _ABLATE + _effects(plain="code_tokens"),
        r"measured on the code text: steering", subtle=True),
    _st("effects_not_filled", _CHOICE, r"fill in EFFECTS"),
]

MISTAKES = (TOP_LATENTS + EVALUATE_SAE + DOWNSTREAM_LOSS + SEARCH_LATENTS + TOP_ACTIVATIONS + LOGIT_ATTRIBUTION
            + HISTOGRAM + FIND_LATENTS + PRECISION_RECALL + LATENT_FOR_CONCEPT + STEERING_HOOK + CONCEPT_PROBABILITY
            + STEER_CHOICE)
