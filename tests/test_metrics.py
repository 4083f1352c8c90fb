"""Metrics: definitions checked on cases with known answers, and the splice on a real (random) LM."""

from __future__ import annotations

import math

import pytest
import torch
from conftest_saes import make_sae, tiny_lm, tokens

from utils import metrics


def test_l0_counts_nonzero():
    acts = torch.tensor([[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]])
    assert metrics.l0(acts).item() == 1.5  # the negative entry counts: `!= 0`, not `> 0`
    assert metrics.l0(acts[None]).item() == 1.5


def test_explained_variance_definition():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=gen) + 5.0  # far from zero: the two EVs differ a lot
    assert abs(metrics.explained_variance(x, x.mean(0).expand_as(x)).item()) < 1e-6  # predicting x̄ → 0
    assert metrics.explained_variance(x, x).item() == 1.0  # perfect → 1
    noisy = x + 0.5 * torch.randn(x.shape, generator=gen)
    ev = metrics.explained_variance(noisy, x).item()
    # by hand: 1 − Σ‖noise‖² / Σ‖x − x̄‖², the noise is independent of x
    expect = 1 - (noisy - x).pow(2).sum() / (noisy - noisy.mean(0)).pow(2).sum()
    assert abs(ev - expect.item()) < 1e-5
    ev0 = metrics.explained_variance_about_zero(noisy, x).item()
    assert ev0 > 0.99 > ev  # about zero, the offset's ‖x̄‖² inflates the denominator
    # predicting the mean scores high about zero: the trap of SAELens #659
    assert metrics.explained_variance_about_zero(x, x.mean(0).expand_as(x)).item() > 0.9


def test_mse_and_shrinkage():
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    assert metrics.mse(x, torch.zeros_like(x)).item() == pytest.approx(15 / 4)
    assert metrics.relative_reconstruction_bias(x, 0.5 * x).item() == pytest.approx(0.5)
    assert metrics.relative_reconstruction_bias(x, x).item() == pytest.approx(1.0)


def test_firing_dead_dense():
    acts = torch.zeros(10, 4)
    acts[:, 0] = 1.0  # fires always
    acts[:3, 1] = 2.0  # 30%
    acts[0, 2] = -1.0  # once
    freq = metrics.firing_frequency(acts)
    torch.testing.assert_close(freq, torch.tensor([1.0, 0.3, 0.1, 0.0]))
    torch.testing.assert_close(metrics.firing_frequency(acts.reshape(2, 5, 4)), freq)  # any leading dims
    assert metrics.dead_fraction(freq) == 0.25
    assert metrics.dense_fraction(freq, 0.1) == 0.5  # "more than", so the 10% latent is not dense
    assert metrics.dense_fraction(freq, 0.05) == 0.75


def test_evaluate_dict():
    sae = make_sae("topk", k=3)
    x = torch.randn(300, 12)
    out = metrics.evaluate(sae, x, batch_size=64)
    assert out["l0"] == pytest.approx(3.0, abs=0.05)  # ≤ 3 (a ReLU can drop one) and almost always 3
    x_hat = sae.decode(sae.encode(x))
    assert out["explained_variance"] == pytest.approx(metrics.explained_variance(x, x_hat).item(), abs=1e-5)
    assert out["dead_fraction"] == metrics.dead_fraction(metrics.firing_frequency(sae.encode(x)))
    assert out["tokens"] == 300


def test_evaluate_counts_firing_like_the_other_metrics():
    # batched evaluation, the one-shot metrics and resampling's window count agree on every latent
    from utils.resample import firing_counts

    sae = make_sae("relu").eval()
    with torch.no_grad():
        sae.b_enc[:10] = -50.0  # 10 latents that never fire
    x = torch.randn(250, 12)
    acts = sae.encode(x)
    freq = metrics.firing_frequency(acts)
    out = metrics.evaluate(sae, x, batch_size=64)
    assert out["dead_fraction"] == metrics.dead_fraction(freq) == pytest.approx(10 / 40, abs=0.03)
    assert out["l0"] == pytest.approx(metrics.l0(acts).item(), rel=1e-6)
    torch.testing.assert_close(firing_counts(sae, x, batch_size=64) / 250, freq)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm()


def _sae_for(lm, variant="relu", seed=0):
    return make_sae(variant, d_in=lm.cfg.d_model, d_sae=48, seed=seed)


def test_splice_with_error_term_reproduces_clean_loss(lm):
    toks = tokens(4)
    hook = "blocks.0.hook_resid_post"
    sae = _sae_for(lm).eval()
    clean = lm(toks, return_type="loss").item()
    with_err = lm.run_with_hooks(toks, return_type="loss",
                                 fwd_hooks=[(hook, metrics.splice_hook(sae, with_error=True))]).item()
    spliced = lm.run_with_hooks(toks, return_type="loss", fwd_hooks=[(hook, metrics.splice_hook(sae))]).item()
    assert abs(with_err - clean) < 2e-6  # a few fp32 ulps of a loss near 4
    assert abs(spliced - clean) > 1e-3  # the hook does replace the activation


def test_downstream_loss_against_manual_hooks(lm):
    toks = tokens(10, seed=1)
    hook = "blocks.1.hook_resid_pre"
    sae = _sae_for(lm, seed=2)
    r = metrics.downstream_loss(lm, sae, toks, hook, batch_size=3, n_boot=300)
    clean = lm(toks, return_type="loss").item()
    zero = lm.run_with_hooks(toks, return_type="loss", fwd_hooks=[(hook, lambda a, hook: a * 0)]).item()
    _, cache = lm.run_with_cache(toks, names_filter=hook)
    mean = cache[hook].reshape(-1, lm.cfg.d_model).mean(0)
    mean_abl = lm.run_with_hooks(toks, return_type="loss",
                                 fwd_hooks=[(hook, lambda a, hook: mean.expand_as(a).clone())]).item()
    spliced = lm.run_with_hooks(toks, return_type="loss", fwd_hooks=[(hook, metrics.splice_hook(sae))]).item()
    assert r.clean_ce == pytest.approx(clean, abs=1e-5)
    assert r.zero_ablated_ce == pytest.approx(zero, abs=1e-5)
    assert r.mean_ablated_ce == pytest.approx(mean_abl, abs=1e-5)
    assert r.spliced_ce == pytest.approx(spliced, abs=1e-5)
    assert r.delta_ce == pytest.approx(spliced - clean, abs=1e-5)
    assert r.frac_recovered_zero == pytest.approx((zero - spliced) / (zero - clean), abs=1e-4)
    assert r.frac_recovered_mean == pytest.approx((mean_abl - spliced) / (mean_abl - clean), abs=1e-4)
    lo, hi = r.delta_ce_ci
    assert lo <= r.delta_ce <= hi and hi - lo > 0


def test_delta_ce_bootstrap_interval_matches_normal_approximation(lm):
    # over sequences, the percentile bootstrap of a mean ≈ mean ± 1.96 sd/√n (n = 40 sequences)
    toks = tokens(40, seed=3)
    hook = "blocks.1.hook_resid_pre"
    sae = _sae_for(lm, seed=4)
    r = metrics.downstream_loss(lm, sae, toks, hook, batch_size=20, n_boot=4000)
    per_tok = lambda hooks: lm.run_with_hooks(toks, return_type="loss", loss_per_token=True,  # noqa: E731
                                              fwd_hooks=hooks).mean(-1)
    per_seq = per_tok([(hook, metrics.splice_hook(sae))]) - per_tok([])
    half = 1.96 * per_seq.std() / math.sqrt(len(per_seq))
    lo, hi = r.delta_ce_ci
    assert (hi - lo) / 2 == pytest.approx(half.item(), rel=0.2)
    assert (lo + hi) / 2 == pytest.approx(per_seq.mean().item(), abs=0.25 * half.item())


def test_downstream_loss_perfect_sae_recovers_everything(lm):
    # an "SAE" that is the identity on d_model: W_enc = I, W_dec = I, no sparsity
    from utils.saes import build_sae

    d = lm.cfg.d_model
    sae = build_sae("relu", d_in=d, d_sae=2 * d)
    with torch.no_grad():  # ReLU(x) − ReLU(−x) = x
        sae.W_enc.copy_(torch.cat([torch.eye(d), -torch.eye(d)], 1))
        sae.W_dec.copy_(torch.cat([torch.eye(d), -torch.eye(d)], 0))
        sae.b_enc.zero_(), sae.b_dec.zero_()
    r = metrics.downstream_loss(lm, sae, tokens(4), "blocks.0.hook_resid_post", n_boot=100)
    assert abs(r.delta_ce) < 1e-5
    assert r.frac_recovered_zero == pytest.approx(1.0, abs=1e-4)
    assert r.frac_recovered_mean == pytest.approx(1.0, abs=1e-3)


def test_random_dictionary_baseline():
    from utils.saes import TopKSAE, random_dictionary_baseline

    x = torch.randn(200, 12) + 3.0
    base = random_dictionary_baseline(12, 40, 4, x=x, seed=1)
    assert isinstance(base, TopKSAE) and not base.training
    acts = base.encode(x)
    assert ((acts != 0).sum(-1) <= 4).all()
    torch.testing.assert_close(base.b_dec, x.mean(0))
    torch.testing.assert_close(base.W_dec.norm(dim=-1), torch.ones(40))
    assert not torch.equal(base.W_dec, random_dictionary_baseline(12, 40, 4, seed=2).W_dec)
    assert not math.isnan(metrics.explained_variance(x, base.decode(acts)).item())
    assert not hasattr(metrics, "random_dictionary_baseline")  # metrics does not build SAEs
