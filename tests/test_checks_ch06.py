"""utils.checks.ch06: each check passes the reference-style answer, rejects a planted mistake with the
message that names it, and rejects an answer that merely calls the course's reference."""

from __future__ import annotations

import pytest
import torch

from utils import latent_search, steering
from utils.activations import sae_latents
from _helpers import fails as _fails
from _helpers import tiny_hooked
from _helpers import mine as _mine
from utils.checks import CheckFailed
from utils.checks import ch06 as checks

# Answers are defined here as a student would write them; assert_own_code wants them to live in
# `__main__`, so each is re-homed there before it is checked.






@pytest.fixture(scope="module")
def world():
    model, sae, tokens = tiny_hooked(n_ctx=64, k=6, n_seq=6, seq=20, saelens=True)
    with torch.no_grad():
        yield model, sae, tokens


# ---- SAELens and evaluation ------------------------------------------------------------------------
def test_top_latents(world):
    model, sae, _ = world

    @_mine
    def good(model, sae, prompt, k=10):
        _, cache = model.run_with_cache_with_saes(prompt, saes=[sae])
        top = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0, -1].topk(k)
        return top.indices.tolist(), top.values.tolist()

    @_mine
    def anywhere(model, sae, prompt, k=10):
        _, cache = model.run_with_cache_with_saes(prompt, saes=[sae])
        top = cache[f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"][0].amax(0).topk(k)
        return top.indices.tolist(), top.values.tolist()

    checks.check_top_latents(good, model, sae)
    _fails(checks.check_top_latents, anywhere, model, sae, match="last token")


def _evaluate(drop_bos=True, ev="mean", l0="ne"):
    def evaluate_sae(sae, model, hook_name, tokens):
        _, cache = model.run_with_cache(tokens, names_filter=hook_name)
        a = cache[hook_name][:, 1:] if drop_bos else cache[hook_name]
        x = a.reshape(-1, a.shape[-1])
        acts = sae.encode(x)
        x_hat = sae.decode(acts)
        err = (x - x_hat).pow(2)
        den = {"mean": (x - x.mean(0)).pow(2).sum(), "zero": x.pow(2).sum(),
               "seed": x.var() * x.numel()}[ev]
        n = (acts != 0) if l0 == "ne" else (acts > 0)
        return {"mse": float(err.mean()), "l0": float(n.float().sum(-1).mean()),
                "explained_variance": float(1 - err.sum() / den)}
    return _mine(evaluate_sae)


def test_evaluate_sae(world):
    model, sae, tokens = world
    checks.check_evaluate_sae(_evaluate(), model, sae, tokens)
    _fails(checks.check_evaluate_sae, _evaluate(ev="seed"), model, sae, tokens, match="acts.var")
    _fails(checks.check_evaluate_sae, _evaluate(ev="zero"), model, sae, tokens, match="about zero")
    _fails(checks.check_evaluate_sae, _evaluate(drop_bos=False), model, sae, tokens, match="BOS")
    _fails(checks.check_evaluate_sae, _evaluate(l0="gt"), model, sae, tokens, match="acts != 0")


def _downstream(ablate_to="mean_all", flip=False):
    def downstream_loss(model, sae, tokens):
        h = sae.cfg.metadata.hook_name
        clean, cache = model.run_with_cache(tokens, return_type="loss", names_filter=h)
        mean = cache[h].mean((0, 1)) if ablate_to == "mean_all" else cache[h].mean(1, keepdim=True)
        s = float(model.run_with_saes(tokens, saes=[sae], return_type="loss"))
        z = float(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(h, lambda a, hook: a * 0)]))
        m = float(model.run_with_hooks(tokens, return_type="loss",
                                       fwd_hooks=[(h, lambda a, hook: mean.expand_as(a).clone())]))
        c = float(clean)
        rz, rm = (z - s) / (z - c), (m - s) / (m - c)
        if flip:
            rz = 1 - rz
        return {"clean": c, "spliced": s, "zero_ablated": z, "mean_ablated": m, "recovered_zero": rz,
                "recovered_mean": rm}
    return _mine(downstream_loss)


def test_downstream_loss(world):
    model, sae, tokens = world
    checks.check_downstream_loss(_downstream(), model, sae, tokens)
    _fails(checks.check_downstream_loss, _downstream(ablate_to="per_seq"), model, sae, tokens, match="mean_ablated")
    _fails(checks.check_downstream_loss, _downstream(flip=True), model, sae, tokens, match="1 minus")


# ---- dashboards ------------------------------------------------------------------------------------
def test_search_latents():
    @_mine
    def good(acts, baseline, k=10):
        s = acts.reshape(-1, acts.shape[-1]).mean(0)
        if baseline is not None:
            s = s - baseline.reshape(-1, baseline.shape[-1]).mean(0)
        t = s.topk(k)
        return t.indices.tolist(), t.values.tolist()

    @_mine
    def no_baseline(acts, baseline, k=10):
        t = acts.reshape(-1, acts.shape[-1]).mean(0).topk(k)
        return t.indices.tolist(), t.values.tolist()

    checks.check_search_latents(good)
    _fails(checks.check_search_latents, no_baseline, match="baseline")


def _top(skip_bos=True, right_extra=0):
    def compute_top_activations(latent_acts, tokens, vocab, k=10, window=(8, 3)):
        a = latent_acts.clone()
        if skip_bos:
            a[:, 0] = float("-inf")
        L = a.shape[1]
        v, i = a.flatten().topk(k)
        out = []
        for val, idx in zip(v.tolist(), i.tolist()):
            if val <= 0:
                break
            s, p = divmod(idx, L)
            lo, hi = max(0, p - window[0]), min(L, p + window[1] + 1 + right_extra)
            out.append((s, p, val, [vocab[t] for t in tokens[s, lo:hi].tolist()],
                        latent_acts[s, lo:hi].clamp_min(0).tolist(), p - lo))
        return out
    return _mine(compute_top_activations)


def test_top_activations():
    checks.check_top_activations(_top())
    _fails(checks.check_top_activations, _top(skip_bos=False), match="BOS")
    _fails(checks.check_top_activations, _top(right_extra=1), match="off by one")


def test_logit_attribution():
    @_mine
    def good(w_dec, W_U, k=10):
        lg = w_dec @ W_U
        t, b = lg.topk(k), lg.topk(k, largest=False)
        return t.indices, t.values, b.indices, b.values

    @_mine
    def by_magnitude(w_dec, W_U, k=10):
        lg = w_dec @ W_U
        t, b = lg.topk(k), lg.abs().topk(k, largest=False)
        return t.indices, t.values, b.indices, lg[b.indices]

    checks.check_logit_attribution(good)
    _fails(checks.check_logit_attribution, by_magnitude, match="most negative")


def test_histogram():
    @_mine
    def good(latent_acts, bins=30):
        a = latent_acts.flatten()
        on = a[a != 0]
        return torch.histc(on, bins, 0, float(on.max())), torch.linspace(0, float(on.max()), bins + 1), on.numel() / a.numel()

    @_mine
    def density_of_firing(latent_acts, bins=30):
        c, e, _ = good(latent_acts, bins)
        return c, e, 1.0

    checks.check_histogram(good)
    _fails(checks.check_histogram, density_of_firing, match="all")


def _find(skip_bos=True):
    def find_interpretable_latents(sae, model, prompts, n_latents=10, n_examples=5):
        name = f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"
        _, cache = model.run_with_cache_with_saes(prompts, saes=[sae], names_filter=name)
        acts = cache[name][:, 1:] if skip_bos else cache[name]
        L = acts.shape[1]
        top = acts.reshape(-1, acts.shape[-1]).topk(n_examples, dim=0)
        lat = top.values[0].topk(n_latents).indices
        idx = top.indices[:, lat].T
        pos = torch.stack([idx // L, idx % L + (1 if skip_bos else 0)], -1)
        return lat.tolist(), top.values[:, lat].T, pos
    return _mine(find_interpretable_latents)


def test_find_interpretable_latents(world):
    model, sae, tokens = world
    checks.check_find_interpretable_latents(_find(), sae, model, tokens)
    with pytest.raises(CheckFailed):
        checks.check_find_interpretable_latents(_find(skip_bos=False), sae, model, tokens)


def test_concept_precision_recall():
    @_mine
    def good(acts, labels, threshold=0.0):
        f = (acts > threshold).float()
        tp = labels.float() @ f
        return tp / f.sum(0).clamp_min(1), tp / labels.float().sum().clamp_min(1)

    @_mine
    def swapped(acts, labels, threshold=0.0):
        p, r = good(acts, labels, threshold)
        return r, p

    checks.check_concept_precision_recall(good)
    _fails(checks.check_concept_precision_recall, swapped, match="swapped")


def test_latent_for_concept_shape():
    checks.check_latent_for_concept({"code": 3, "science": (4, 0.5)}, ["code", "science"])
    _fails(checks.check_latent_for_concept, {}, ["code"], match="dict")
    _fails(checks.check_latent_for_concept, {"poetry": 1}, ["code"], match="unknown")
    _fails(checks.check_latent_for_concept, {"code": torch.tensor(3)}, ["code"], match="plain int")
    _fails(checks.check_latent_for_concept, {"code": 1024}, ["code"], 1024, match="does not exist")
    _fails(checks.check_latent_for_concept, {"code": (3, 0.5, 1)}, ["code"], match="pair")
    _fails(checks.check_latent_for_concept, {"code": (3, float("nan"))}, ["code"], match="finite")


# ---- steering ---------------------------------------------------------------------------------------
def test_steering_hook():
    @_mine
    def good(direction, coeff):
        def hook_fn(act, hook):
            return act + coeff * direction
        return hook_fn

    @_mine
    def last_only(direction, coeff):
        def hook_fn(act, hook):
            act = act.clone()
            act[:, -1] += coeff * direction
            return act
        return hook_fn

    checks.check_steering_hook(good)
    _fails(checks.check_steering_hook, last_only, match="last position")


def test_concept_probability(world):
    model, _, tokens = world

    @_mine
    def good(model, tokens, token_ids, fwd_hooks=()):
        return model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks)).softmax(-1)[..., token_ids].sum(-1)

    @_mine
    def logits(model, tokens, token_ids, fwd_hooks=()):
        return model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))[..., token_ids].sum(-1)

    @_mine
    def ignores_hooks(model, tokens, token_ids, fwd_hooks=()):
        return model(tokens).softmax(-1)[..., token_ids].sum(-1)

    checks.check_concept_probability(good, model, tokens)
    _fails(checks.check_concept_probability, logits, model, tokens, match="softmax")
    _fails(checks.check_concept_probability, ignores_hooks, model, tokens, match="hooks")


def test_answers_that_call_the_reference_score_zero(world):
    @_mine
    def lazy_search(acts, baseline, k=10):
        return latent_search.search_latents(acts, baseline, k)

    @_mine
    def lazy_hook(direction, coeff):
        return steering.steering_hook(direction, coeff)

    _fails(checks.check_search_latents, lazy_search, match="course library")
    _fails(checks.check_steering_hook, lazy_hook, match="course library")
    _fails(checks.check_steering_hook, steering.steering_hook, match="not from your notebook")


def test_concept_scores_by_hand(world):
    model, sae, tokens = world
    import numpy as np

    from utils.data.corpus import LabelledTokens

    acts = sae_latents(model, sae, tokens)
    j = int((acts[:, 1:] > 0).float().sum((0, 1)).argmax())
    fires = (acts[..., j] > 0).numpy()
    labels = np.zeros((*tokens.shape, 2), bool)
    labels[..., 0] = fires                              # concept "a" = exactly where latent j fires
    labels[:, 0] = True                                 # BOS labelled: must be ignored
    lt = LabelledTokens(tokens.numpy(), labels, ("a", "b"))
    s = checks.concept_scores({"a": j, "b": (j, 0.0)}, sae, model, tokens, lt)
    assert s["a"]["precision"] == pytest.approx(1.0) and s["a"]["recall"] == pytest.approx(1.0)
    assert s["b"]["precision"] == 0.0 and s["b"]["positives"] == 0
    assert s["a"]["fires"] == int(fires[:, 1:].sum()) == s["a"]["positives"]
    assert s["b"]["fires"] == s["a"]["fires"]
    assert checks.concept_scores({}, sae, model, tokens, lt) == {}
