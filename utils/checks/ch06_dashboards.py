"""Chapter 06, section 3-4 checks: latent search, top activating examples, logit attribution, activation
histogram, find_interpretable_latents. Each names the mistake it most likely found (see `ch06`)."""

from __future__ import annotations

import torch

from utils import activations as ref_act
from utils.checks import (assert_close, assert_own_code, assert_untouched, fail, matches, name_mistake, snapshot,
                          tensor_result)
from utils.checks.ch06_util import as_floats, as_ints, run, standard_sae

_NONE_HINT = ((r"NoneType", "With baseline=None there is nothing to subtract: test `if baseline is not None:` before "
                            "using it, and rank by the mean over the prompts alone."),)


# ---- search by behaviour --------------------------------------------------------------------------
def _search_result(got, k, what):
    if isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], torch.Tensor) and got[0].is_floating_point() \
            and isinstance(got[1], torch.Tensor) and not got[1].is_floating_point():
        fail("you returned `topk`'s result as it is: it is (values, indices); return (latents, scores), the indices "
             "first (`top.indices.tolist(), top.values.tolist()`).")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"search_latents should return a pair (latents, scores); got {type(got).__name__}.")
    lat, scores = as_ints(got[0]), as_floats(got[1])
    if lat is None or scores is None:
        shape = tuple(torch.as_tensor(got[0]).shape) if isinstance(got[0], torch.Tensor) else None
        fail(f"search_latents returned {('latents of shape ' + str(shape)) if shape else 'something other than flat lists'}"
             f" for {what}: one score per latent means averaging over *every* leading axis of each input — "
             "x.reshape(-1, x.shape[-1]).mean(0) — whatever its number of axes (the notebook passes a 3-D baseline "
             "[n_seq, seq, d_sae]; x.mean(0) leaves a [seq, d_sae] table).")
    if len(lat) != k or len(scores) != k:
        fail(f"asked for k = {k}, got {len(lat)} latents and {len(scores)} scores: use the `k` argument.")
    return lat, scores


def check_search_latents(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(3)
    acts = torch.rand(3, 5, 12, generator=g) * (torch.rand(3, 5, 12, generator=g) > 0.6)
    acts[..., 4] += 3.0                                       # on everywhere: high mean on both sets
    acts[1, 2, 7] = 9.0                                       # one spike: high max, lowish mean
    acts[:, :, 9] = torch.tensor([0.0, 0.0, 0.0, 0.0, 2.2])   # fires rarely but strongly: high mean when firing
    base = torch.rand(4, 10, 12, generator=g) * 0.2           # 40 baseline tokens vs 15 prompt tokens: sums ≠ means
    base[..., 4] += 3.0
    base[..., 2] += 0.6                                       # a latent busier on ordinary text than on the prompts
    what = "prompts [3, 5, 12] and a 3-D baseline [4, 10, 12] (as the notebook passes)"
    before = snapshot(acts=acts, baseline=base)
    got = run(fn, acts, base, 3, what=what, name="search_latents", hints=_NONE_HINT)
    assert_untouched(before, "search_latents", acts=acts, baseline=base)
    lat, scores = _search_result(got, 3, what)
    a, b = acts.reshape(-1, 12), base.reshape(-1, 12)
    right = a.mean(0) - b.mean(0)
    want = right.topk(3)
    variants = (
        (a.mean(0), "latent 4 fires everywhere, on the baseline too: subtract each latent's mean activation on "
                    "the baseline tokens from its mean on the prompts."),
        (a.amax(0) - b.mean(0), "rank by the mean activation over the prompts' tokens, not the maximum (one spike "
                                "is not a behaviour)."),
        (a.amax(0) - b.amax(0), "rank by mean activations, not maxima (one spike is not a behaviour)."),
        (a.sum(0) - b.sum(0), "you subtracted sums: the prompts have 15 tokens and the baseline 40, so compare "
                              "means (.mean(0) over the flattened tokens), not sums."),
        (a.mean(0) / b.mean(0).clamp_min(1e-6), "you divided by the baseline; the score is a difference, mean on "
                                                "the prompts − mean on the baseline."),
        ((a.mean(0) - b.mean(0)).abs(), "you ranked by |difference|: a latent busier on the baseline than on the "
                                        "prompts is not specific to them. Keep the sign: mean − baseline mean."),
        (a.sum(0) / (a != 0).sum(0).clamp_min(1) - b.mean(0),
         "you averaged only over the tokens where a latent fires; the score is the mean over *all* the prompts' "
         "tokens (a latent that fires once, strongly, is not what the prompts share)."),
        (b.mean(0) - a.mean(0), "the difference is the wrong way round: mean on the prompts − mean on the baseline."),
    )
    if lat != want.indices.tolist():
        for score, message in variants:
            if lat == score.topk(3).indices.tolist():
                fail(message)
        fail(f"got latents {lat}, expected {want.indices.tolist()}: score = mean over the prompts' tokens − mean over the "
             "baseline tokens, then the k largest, best first.")
    if not matches(scores, want.values, atol=1e-5):
        for score, message in variants:                        # the right latents, the scores of a mistake
            if matches(scores, score[lat], atol=1e-5, rtol=1e-4):
                fail(message)
    assert_close(torch.tensor(scores), want.values, "return the scores of those latents: mean on the prompts − mean on "
                 "the baseline.", atol=1e-5)
    flat = run(fn, acts.reshape(-1, 12), base, 3, what="2-D prompts [15, 12] and a 3-D baseline",
               name="search_latents", hints=_NONE_HINT)
    if _search_result(flat, 3, "2-D prompts [15, 12] and a 3-D baseline")[0] != lat:
        fail("a [15, 12] tensor of the same tokens gives other latents: average over every axis but the last.")
    only = run(fn, acts, None, 2, what="baseline=None", name="search_latents", hints=_NONE_HINT)
    only_lat, only_scores = _search_result(only, 2, "baseline=None")
    if only_lat != a.mean(0).topk(2).indices.tolist() or not matches(only_scores, a.mean(0).topk(2).values, atol=1e-5):
        fail("with baseline=None, rank by the mean over the prompts alone (scores = those means).")
    print("search_latents ranks latents by behaviour correctly.")


# ---- top activating examples ----------------------------------------------------------------------
def _example(e, i):
    if not isinstance(e, (tuple, list)) or len(e) != 6:
        fail(f"example {i} should be a tuple (seq, pos, act, window_tokens, window_acts, center): six fields, as "
             f"dashboards.TopExample takes them; got {type(e).__name__}"
             + (f" of {len(e)}" if isinstance(e, (tuple, list)) else "") + ".")
    return e


def check_top_activations(fn) -> None:
    assert_own_code(fn)
    acts = torch.zeros(3, 8)
    acts[0, 0], acts[1, 0] = 50.0, 0.3      # BOS: large in row 0, small in row 1 (it shows in a window)
    acts[0, 6], acts[1, 2], acts[2, 7], acts[2, 1] = 4.0, 7.0, 1.5, 0.5
    acts[1, 3], acts[1, 1] = 2.0, -1.0      # a negative activation inside the window of the (1, 2) peak
    tokens = torch.arange(24).reshape(3, 8)
    vocab = [f"<{i}>" for i in range(24)]
    what = "latent_acts [3, 8] (5 positive tokens after position 0), k = 6, window = (3, 1)"
    before = snapshot(latent_acts=acts, tokens=tokens)
    got = run(fn, acts, tokens, vocab, k=6, window=(3, 1), what=what, name="compute_top_activations",
              hints=((r"IndexError", "Check how you turn a flat topk index back into (sequence, position): divmod(i, "
                                     "seq_len), with seq_len = latent_acts.shape[1] (the number of columns)."),))
    assert_untouched(before, "compute_top_activations", latent_acts=acts, tokens=tokens)
    if not isinstance(got, (list, tuple)):
        fail(f"compute_top_activations should return a list of examples; got {type(got).__name__}.")
    got = [_example(e, i) for i, e in enumerate(got)]
    peaks = [(1, 2), (0, 6), (1, 3), (2, 7), (2, 1)]                     # the 5 positive activations, largest first
    where = [(_int(e[0]), _int(e[1])) for e in got]
    if (0, 0) in where or (1, 0) in where:
        fail("an example sits at position 0 (BOS); skip position 0, where many latents fire on the attention sink "
             "rather than on text (set column 0 to -inf on a copy before topk).")
    if where == [divmod(1 * 8 + 2, 3), divmod(6, 3), divmod(11, 3), divmod(23, 3), divmod(17, 3)][:len(where)] \
            and where != peaks[:len(where)]:
        fail("(seq, pos) are wrong: a flat index i over [n_seq, seq_len] is sequence i // seq_len, position "
             "i % seq_len — divide by the sequence length (the number of columns), not the number of sequences.")
    if len(got) > len(peaks) and where[:len(peaks)] == peaks:
        fail(f"the latent fires on 5 tokens but you returned {len(got)} examples: stop at the first activation ≤ 0 "
             "(k is a maximum, not a quota).")
    if where != peaks:
        fail(f"examples at {where}, expected {peaks}: the largest activations first, as (sequence, position) pairs of "
             "the flattened topk, position 0 skipped.")
    for (s, p), e in zip(peaks, got):
        lo, hi = max(0, p - 3), min(8, p + 2)
        want_tokens, want_acts = vocab[s * 8 + lo:s * 8 + hi], acts[s, lo:hi].clamp_min(0).tolist()
        if not matches([float(e[2])], [acts[s, p].item()], atol=1e-6):
            fail(f"act of example ({s}, {p}) is {e[2]!r}, expected {acts[s, p].item()}: the peak's activation.")
        toks = list(e[3])
        if toks == list(range(s * 8 + lo, s * 8 + hi)) or toks == tokens[s, lo:hi].tolist():
            fail("window_tokens are token ids: map each id to its text with vocab[id].")
        if toks != want_tokens:
            for l2, h2 in ((p - 2, p + 2), (p - 3, p + 1), (p - 4, p + 2), (p - 3, p + 3)):    # clipped, one off
                if toks == vocab[s * 8 + max(0, l2):s * 8 + min(8, h2)]:
                    fail(f"the window of example ({s}, {p}) is {toks}, expected {want_tokens}: `window = (left, right)` "
                         "tokens on each side of the peak, the peak included — tokens[lo:hi] with lo = pos − left and "
                         "hi = pos + right + 1 (off by one?).")
            if p - 3 < 0 and (not toks or len(toks) < hi - max(lo, p - 3)):
                fail(f"the window of example ({s}, {p}) is {toks}, expected {want_tokens}: clip the window at the start "
                     "of the sequence, max(0, pos − left); a negative start wraps around in Python slicing.")
            fail(f"window tokens {toks} of example ({s}, {p}) should be {want_tokens}.")
        center = _int(e[5])
        if center != p - lo:
            if center == 3:
                fail(f"center of example ({s}, {p}) is 3 = left, but its window is clipped at the start of the sequence: "
                     f"center is the peak's index inside the window, pos − lo = {p - lo}.")
            fail(f"center of example ({s}, {p}) should be {p - lo}, the index of the peak token inside the window.")
        wa = as_floats(e[4])
        if wa is None or len(wa) != len(want_acts):
            fail(f"window_acts of example ({s}, {p}) should be {len(want_acts)} floats, one per window token.")
        if not matches(wa, want_acts, atol=1e-6):
            if matches(wa, acts[s, lo:hi].tolist(), atol=1e-6):
                fail("window_acts keep negative activations: clamp them to 0 (.clamp_min(0)), as the exercise asks.")
            if s == 1 and matches(wa[1:], want_acts[1:], atol=1e-6) and lo == 0:
                fail("the window's activation at position 0 comes from your masked copy (−inf → 0): read window_acts "
                     "from the original latent_acts, not from the copy where position 0 was set to −inf.")
            fail(f"window_acts {wa} of example ({s}, {p}) should be {want_acts}: the latent's activation on each "
                 "window token, negatives clamped to 0.")
    few = run(fn, torch.tensor([[0.0, 0.0, 2.0, 0.0]]), torch.arange(4)[None], vocab, k=10, window=(1, 1),
              what="one sequence of 4 tokens with k = 10", name="compute_top_activations",
              hints=((r"selected index k out of range", "topk(k) asks for more values than the tensor has (here k = 10 "
                      "for 4 tokens): take topk(min(k, a.numel())) and stop at the first activation ≤ 0."),))
    if len(few) != 1:
        fail(f"with one firing token and k = 10, return one example (got {len(few)}): stop at activations ≤ 0.")
    print("compute_top_activations picks and windows the examples correctly.")


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        fail(f"seq, pos and center should be ints; got {v!r}.")


# ---- logit attribution ----------------------------------------------------------------------------
def check_logit_attribution(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(5)
    w_dec, W_U = torch.randn(16, generator=g) * 0.7, torch.randn(16, 50, generator=g)   # ‖w_dec‖ ≈ 2.8, not 1
    what = "w_dec [16] (not unit norm), W_U [16, 50], k = 4"
    before = snapshot(w_dec=w_dec, W_U=W_U)
    got = run(fn, w_dec, W_U, 4, what=what, name="compute_logit_attribution",
              hints=((r"shapes cannot be multiplied|size mismatch", "The direct effect on the logits is w_dec @ W_U: "
                      "[d_model] @ [d_model, d_vocab] → [d_vocab] (W_U @ w_dec does not line up)."),))
    assert_untouched(before, "compute_logit_attribution", w_dec=w_dec, W_U=W_U)
    if not isinstance(got, (tuple, list)) or len(got) != 4:
        fail("return four things: top_ids, top_values, bottom_ids, bottom_values.")
    ti, tv, bi, bv = as_ints(got[0]), as_floats(got[1]), as_ints(got[2]), as_floats(got[3])
    if ti is not None and as_ints(got[1]) is not None and tv is not None and as_floats(got[2]) is not None \
            and bi is None:
        fail("the four results are in the wrong order: (top_ids, top_values, bottom_ids, bottom_values).")
    if None in (ti, tv, bi, bv):
        fail("return (top_ids, top_values, bottom_ids, bottom_values): two flat lists (or 1-D tensors) of k token ids "
             "and two of k values.")
    logits = w_dec @ W_U
    top, bottom = logits.topk(4), logits.topk(4, largest=False)
    if bi == logits.abs().topk(4, largest=False).indices.tolist() and bi != bottom.indices.tolist():
        fail("bottom tokens are the most negative logit effects (topk with largest=False on the signed values), not "
             "the smallest in magnitude.")
    if bi == bottom.indices.flip(0).tolist():
        fail("bottom_ids are in the wrong order: most negative first (topk(k, largest=False) sorts them that way).")
    if ti != top.indices.tolist() or bi != bottom.indices.tolist():
        fail("top_ids / bottom_ids are not the expected tokens: compute w_dec @ W_U (shape [d_vocab]) and take "
             "topk(k) and topk(k, largest=False).")
    name_mistake(torch.tensor(tv + bv), [
        (torch.cat([top.values, bottom.values]) / w_dec.norm(),
         "the values are divided by ‖w_dec‖: don't normalise w_dec; the attribution is w_dec @ W_U exactly as given."),
        (torch.cat([top.values, -bottom.values]),
         "bottom_values have the wrong sign: (-logits).topk(k) finds the right tokens, but report their logit effects "
         "themselves (negative numbers), e.g. with logits.topk(k, largest=False)."),
        (torch.cat([logits.softmax(-1)[top.indices], logits.softmax(-1)[bottom.indices]]),
         "these are probabilities: report the raw logit effects w_dec @ W_U, no softmax."),
        (torch.cat([top.values, bottom.values]) - logits.mean(),
         "you subtracted the mean logit: report w_dec @ W_U as it is."),
    ], atol=1e-5)
    assert_close(torch.tensor(tv), top.values, "top_values: the logit effects of top_ids, largest first.")
    assert_close(torch.tensor(bv), bottom.values, "bottom_values: the (negative) logit effects, most negative first.")
    print("compute_logit_attribution is right.")


# ---- activation histogram -------------------------------------------------------------------------
def check_histogram(fn) -> None:
    assert_own_code(fn)
    acts = torch.tensor([[0.0, 0.2, 0.0, 1.2], [0.0, 0.0, 0.3, 0.0], [2.0, 0.0, 0.0, 0.0]])   # 4 of 12 tokens fire
    what = "latent_acts [3, 4] (2-D, as the notebook passes), bins = 4"
    before = snapshot(latent_acts=acts)
    got = run(fn, acts, 4, what=what, name="compute_activation_histogram")
    assert_untouched(before, "compute_activation_histogram", latent_acts=acts)
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        fail("return three things: (counts, edges, density).")
    counts, edges, density = got
    if isinstance(density, torch.Tensor) and density.numel() > 1:
        fail("the third result should be the density, one number; check the order: (counts, edges, density).")
    c, e = as_floats(counts), as_floats(edges)
    if c is not None and e is not None and len(c) == 5 and len(e) == 4:
        fail("counts and edges are swapped: return (counts, edges, density), counts with `bins` values, edges with "
             "bins + 1.")
    if c is None or e is None:
        fail("counts and edges should be 1-D (a tensor or a list of numbers).")
    d = float(density)
    if abs(d - 4 / 12) > 1e-6:
        for value, message in (
            (1.0, "density is the fraction of *all* tokens on which the latent fires, not of the firing ones."),
            (4.0, "density is a fraction (firing tokens / all tokens), not a count."),
            (4 / 3, "density divided by len(latent_acts), the number of rows of a 2-D input: divide by the number of "
                    "tokens, latent_acts.numel()."),
            (4 / 4, "density divided by the number of bins; it is firing tokens / all tokens."),
        ):
            if abs(d - value) < 1e-6:
                fail(message)
        fail(f"density = {d:.4f}, expected {4 / 12:.4f}: the fraction of all tokens with activation != 0.")
    if sum(c) == acts.numel():
        fail("the histogram should count only the tokens where the latent fires (act != 0), not the zeros.")
    if len(e) == 4:
        fail(f"edges has {len(e)} values for 4 bins: bins + 1 edges, torch.linspace(0, max, bins + 1).")
    if matches(e, torch.linspace(0.2, 2.0, 5), atol=1e-5):
        fail("the bins start at the smallest activation: they span 0 to the maximum (torch.histc(..., min=0, max=max), "
             "torch.linspace(0, max, bins + 1)).")
    assert_close(torch.tensor(e), torch.linspace(0.0, 2.0, 5),
                 "edges: bins + 1 equally spaced values from 0 to the maximum activation (torch.linspace).")
    assert_close(torch.tensor(c), torch.tensor([2.0, 0.0, 1.0, 1.0]),      # edges 0, 0.5, 1, 1.5, 2: 0.2, 0.3 | — | 1.2 | 2.0
                 "counts: how many non-zero activations fall in each bin (torch.histc with min=0, max=max).")
    print("compute_activation_histogram is right.")


# ---- find_interpretable_latents -------------------------------------------------------------------
def bos_trap(sae, model, tokens):
    """A 12-latent SAELens SAE at `sae`'s hook whose latent 5 reads the BOS residual's direction, with a bias
    that keeps it silent on every other token, and whose other latents are orthogonal to it (silent on BOS):
    latent 5 is the strongest latent when BOS counts, and never fires when it does not."""
    hook = ref_act.sae_hook_name(sae)
    x = ref_act.cache_activations(model, hook, tokens, flatten=False).double()     # [n_seq seq d] on the CPU
    d = x.shape[-1]
    u = x[0, 0] / x[0, 0].norm()                    # BOS: the same residual in every row
    g = torch.Generator().manual_seed(11)
    W = torch.randn(d, 12, generator=g, dtype=torch.float64)
    W = W - u[:, None] * (u @ W)[None]              # orthogonal to u: zero on BOS
    W = W / W.norm(dim=0)
    others = float((x[:, 1:].reshape(-1, d) @ W).amax())
    on_bos, elsewhere = float(x[0, 0].norm()), float((x[:, 1:] @ u).max())
    if on_bos <= elsewhere:                         # no outlier at BOS (not seen): a plain direction, still tested
        elsewhere = 0.0
    scale = 2 * max(others, 1.0) / max(on_bos - elsewhere, 1e-6)
    W[:, 5] = u * scale
    b = torch.zeros(12, dtype=torch.float64)
    b[5] = -scale * (on_bos + elsewhere) / 2        # fires only above the midpoint: BOS alone
    return standard_sae(W.float(), b.float(), (W / W.norm(dim=0)).T.float().contiguous(), torch.zeros(d), like=sae)


def check_find_interpretable_latents(fn, sae, model, tokens) -> None:
    assert_own_code(fn)
    tokens = tokens[:8]
    what = f"{tuple(tokens.shape)} tokens, n_latents = 6, n_examples = 3"
    got = run(fn, sae, model, tokens, n_latents=6, n_examples=3, what=what, name="find_interpretable_latents")
    acts = ref_act.sae_latents(model, sae, tokens)                                    # [n_seq seq d_sae], CPU
    _compare_found(got, acts, 6, 3)
    trap = bos_trap(sae, model, tokens)
    got = run(fn, trap, model, tokens, n_latents=3, n_examples=2, name="find_interpretable_latents",
              what="an SAE with a latent that peaks on BOS, n_latents = 3, n_examples = 2")
    _compare_found(got, ref_act.sae_latents(model, trap, tokens), 3, 2)
    print("find_interpretable_latents matches the reference.")


def _compare_found(got, acts, n_latents, n_examples) -> None:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        fail("return (latents, values, positions).")
    lat = as_ints(got[0])
    if lat is None or len(lat) != n_latents:
        fail(f"latents should be a flat list of n_latents = {n_latents} ints, strongest first.")
    seq_len = acts.shape[1]
    a = acts[:, 1:].reshape(-1, acts.shape[-1])                                       # [tokens d_sae], BOS dropped
    top = a.topk(n_examples, dim=0)
    want = top.values[0].topk(n_latents).indices.tolist()
    if lat != want:
        with_bos = acts.reshape(-1, acts.shape[-1])
        for score, message in (
            (with_bos.amax(0), "your ranking includes position 0 (BOS), where this latent peaks: leave position 0 out, "
                               "acts[:, 1:], before looking for the largest activations."),
            (a.mean(0), "you ranked latents by their mean activation; rank them by their largest activation (the "
                        "seed's 'max-activating tokens')."),
            (top.values.sum(0), "you ranked latents by the sum of their top examples; rank them by their single "
                                "largest activation (values[:, 0])."),
        ):
            if lat == score.topk(n_latents).indices.tolist():
                fail(message)
        if sorted(lat) == sorted(want):
            fail("the right latents, in the wrong order: strongest (largest maximum activation) first.")
        fail(f"latents {lat} should be {want}: rank latents by their maximum activation over all tokens but BOS.")
    values = tensor_result(got[1], "values (the second result)")
    if tuple(values.shape) == (n_examples, n_latents) and n_examples != n_latents:
        fail(f"values has shape {tuple(values.shape)} = [n_examples, n_latents]: transpose it to [n_latents, "
             "n_examples], one row per latent (topk over dim 0 gives one column per latent).")
    want_values = top.values[:, want].T
    assert_close(values.cpu(), want_values, "values[i] are latent i's largest activations, descending.", atol=1e-4)
    p = tensor_result(got[2], "positions (the third result)", shape=(n_latents, n_examples, 2)).cpu().long()
    idx = top.indices[:, want].T                                                      # flat indices over seq − 1 columns
    right = torch.stack([idx // (seq_len - 1), idx % (seq_len - 1) + 1], -1)
    if torch.equal(p, right):
        return
    if torch.equal(p, right.flip(-1)):
        fail("positions hold (position, sequence); each entry should be (sequence, position).")
    if torch.equal(p[..., 0], right[..., 0]) and torch.equal(p[..., 1] + 1, right[..., 1]):
        fail("positions are off by one: after dropping BOS, add 1 back so they index the original sequence.")
    if torch.equal(p, torch.stack([idx // seq_len, idx % seq_len + 1], -1)) or \
            torch.equal(p, torch.stack([idx // seq_len, idx % seq_len], -1)):
        fail(f"(sequence, position) are decoded with the full length {seq_len}: after dropping BOS each row has "
             f"seq − 1 = {seq_len - 1} columns, so a flat index i is sequence i // (seq − 1), position i % (seq − 1) + 1.")
    fail("positions[i, j] should be the (sequence, position) of values[i, j] in the original tokens (position ≥ 1).")
