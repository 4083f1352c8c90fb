"""Toy data with known features, MMCS, and a small-size version of the recovery bars.

The full-size bars (256 dims, 512 features, MMCS ≥ 0.99 for every variant, dead ≤ 5% at 2×
width) are measured by benchmarks/bench_saes.py; here a smaller toy (32 dims, 64 features) at
the same 2× width checks that every variant still learns its features.
"""

from __future__ import annotations

import pytest
import torch

from utils.synthetic import (
    SyntheticSource,
    ToyFeatureConfig,
    ToyFeatures,
    fraction_recovered,
    max_cosine,
    mmcs,
    run_recovery,
)


def test_toy_features_follow_their_config():
    data = ToyFeatures(ToyFeatureConfig(d_in=16, n_feats=40, mean_active=3.0, prob_decay=0.95, seed=2))
    torch.testing.assert_close(data.features.norm(dim=-1), torch.ones(40))
    assert data.probs.sum().item() == pytest.approx(3.0, rel=1e-5)
    ratios = data.probs[1:] / data.probs[:-1]
    torch.testing.assert_close(ratios, torch.full((39,), 0.95))
    x, c = data.sample(20_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, c @ data.features)
    assert ((c >= 0) & (c <= 1)).all()
    assert (c != 0).float().sum(-1).mean().item() == pytest.approx(3.0, rel=0.03)
    freq = (c != 0).float().mean(0)
    assert freq[:5].mean() > 3 * freq[-5:].mean()  # a long tail of rare features
    # same seed, same directions; the source yields fresh batches
    again = ToyFeatures(ToyFeatureConfig(d_in=16, n_feats=40, mean_active=3.0, prob_decay=0.95, seed=2))
    torch.testing.assert_close(again.features, data.features)
    it = iter(SyntheticSource(data, batch_size=8))
    a, b = next(it), next(it)
    assert a.shape == (8, 16) and not torch.equal(a, b)


def test_a_fresh_sae_does_not_start_on_the_true_features():
    # An SAE's decoder is torch.randn(d_sae, d_in) from its init_seed; if the toy drew its features
    # from the same stream, an SAE with init_seed == seed would "recover" them untrained.
    from utils.saes import build_sae

    data = ToyFeatures(ToyFeatureConfig(d_in=32, n_feats=64, seed=0))
    for d_sae in (64, 128):
        sae = build_sae("relu", d_in=32, d_sae=d_sae, init_seed=0)
        assert mmcs(sae.W_dec.detach(), data.features) < 0.7


def test_mmcs_by_hand():
    feats = torch.eye(3)
    # a dictionary with the features permuted and rescaled: every feature found exactly
    assert mmcs(torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 5.0], [3.0, 0.0, 0.0]]), feats) == pytest.approx(1.0)
    # one row between e1 and e2 (cos 1/√2 with both), one exactly e3
    d = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(max_cosine(d, feats), torch.tensor([2**-0.5, 2**-0.5, 1.0]))
    assert mmcs(d, feats) == pytest.approx((2 * 2**-0.5 + 1) / 3)
    assert fraction_recovered(d, feats, 0.9) == pytest.approx(1 / 3)
    # reversed: each dictionary row's best true feature
    assert mmcs(feats, d) == pytest.approx((2**-0.5 + 1) / 2)
    # a sign flip is not a match (decoder directions have a sign)
    assert mmcs(-feats[:1], feats[:1]) == pytest.approx(-1.0)


# Settings for 32 dims / 64 features / ~3 active, at 2x width (128 latents), 1200 steps. The
# SAE starts from random directions (not the features': see the test above); at this size all
# but BatchTopK get MMCS >= 0.99 (BatchTopK 0.95-0.96 over two seeds), so the floors below fail
# if a variant stops learning its features.
SMALL = {
    "relu": {"l1_coeff": 0.3},
    "gated": {"l1_coeff": 1.0},
    "jumprelu": {"l0_coeff": 0.03, "bandwidth": 0.05, "init_threshold": 0.05},
    "topk": {"k": 3},
    "batchtopk": {"k": 3},
}
FLOOR = {"batchtopk": (0.93, 0.75)}  # (MMCS, fraction matched); the others: (0.98, 0.95)


@pytest.fixture(scope="module")
def small_toy():
    return ToyFeatures(ToyFeatureConfig(d_in=32, n_feats=64, mean_active=3, prob_decay=0.99, seed=0))


@pytest.mark.parametrize("variant", list(SMALL))
def test_small_toy_recovery(variant, small_toy):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    r = run_recovery(variant, data=small_toy, d_sae=128, steps=1200, batch_size=512, eval_tokens=8192,
                     train_kwargs={"lr": 3e-3}, **SMALL[variant])
    mmcs_floor, matched_floor = FLOOR.get(variant, (0.98, 0.95))
    assert r["mmcs"] >= mmcs_floor, r["mmcs"]
    assert r["frac_matched"] >= matched_floor, r["frac_matched"]
    assert r["l0"] < 8  # sparse: the true L0 is 3
