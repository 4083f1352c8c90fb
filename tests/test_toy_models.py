"""utils.toy_models: data semantics, the geometry measures on hand-built W, and the ladder.

Expected values are worked out by hand (geometry) or come from the known result for 20
features in 5 dimensions with importance 0.9^i (5 / 10 / 12 / 16 features represented at
S = 0 / 0.7 / 0.9 / 0.97, D* ≈ 1 / 0.5 / 0.37 / 0.25), not from running this code.
"""

import math

import pytest
import torch

from utils import toy_models as tm


def test_generate_batch_feature_probability_is_one_minus_sparsity():
    # Elhage et al.'s sparsity S is the chance a feature is ZERO; generate_batch takes 1 − S.
    x = tm.generate_batch(2, 400, torch.tensor([0.1, 0.9]), 500, generator=torch.Generator().manual_seed(0))
    on = (x != 0).float().mean((0, 2))
    assert abs(on[0].item() - 0.1) < 0.01 and abs(on[1].item() - 0.9) < 0.01
    assert x.min() >= 0 and x.max() <= 1


def test_dimensions_per_feature_on_known_geometries():
    # Columns: e1 alone (D = 1), an antipodal pair on e2 (D = 1/2 each), a dropped feature (D = 0).
    W = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, -1.0, 0.0]]])
    assert torch.allclose(tm.dimensions_per_feature(W), torch.tensor([[1.0, 0.5, 0.5, 0.0]]), atol=1e-6)
    # Regular pentagon in 2 dimensions: 2/5 each; D* = m / ‖W‖_F² = 2 / 5.
    ang = torch.arange(5) * 2 * math.pi / 5
    P = torch.stack([ang.cos(), ang.sin()])[None]
    assert torch.allclose(tm.dimensions_per_feature(P), torch.full((1, 5), 0.4), atol=1e-5)
    assert tm.dimensions_per_feature_overall(P).item() == pytest.approx(0.4, abs=1e-5)


def test_n_represented_counts_norms_above_threshold():
    W = torch.tensor([[[0.9, 0.0, 0.3], [0.0, 0.6, 0.0]]])  # norms 0.9, 0.6, 0.3
    assert tm.n_represented(W).tolist() == [2]
    assert tm.n_represented(W, threshold=0.7).tolist() == [1]


def test_best_instances_picks_lowest_loss_per_group():
    losses = torch.tensor([3.0, 1.0, 2.0, 0.5, 0.7, 0.6])  # two groups of three
    assert tm.best_instances(losses, 2).tolist() == [1, 3]


def test_train_rejects_sparsity_passed_as_probability_out_of_range():
    model = tm.ToyModel(tm.ToyConfig(n_inst=1))
    with pytest.raises(ValueError, match="1 − sparsity"):
        tm.train_toy_model(model, torch.tensor([1.5]), torch.ones(20), steps=1, progress=False)


def test_ladder_reproduces_known_result():
    """20 features in 5 dims, importance 0.9^i, best of 4 seeds: the known counts and D*."""
    S = torch.tensor([0.0, 0.7, 0.9, 0.97])
    seeds = 4
    model = tm.ToyModel(tm.ToyConfig(n_feats=20, d_hidden=5, n_inst=len(S) * seeds),
                        generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    hist = tm.train_toy_model(model, (1 - S).repeat_interleave(seeds), 0.9 ** torch.arange(20),
                              steps=800, batch=512, progress=False)
    assert torch.get_num_threads() == threads, "train_toy_model must restore the thread count"
    best = tm.best_instances(torch.tensor(hist[-1]["loss"]), len(S))
    W = model.W.detach()[best]
    n = tm.n_represented(W).tolist()
    d_star = tm.dimensions_per_feature_overall(W).tolist()
    # S = 0: one dimension per feature (a 6th/7th feature may still be fading after 800 steps).
    assert d_star[0] == pytest.approx(1.0, abs=0.06) and 5 <= n[0] <= 7
    # S = 0.7: ten features as five antipodal pairs.
    assert n[1] == 10 and d_star[1] == pytest.approx(0.5, abs=0.03)
    assert torch.allclose(tm.dimensions_per_feature(W[1:2])[0][W[1].norm(dim=0) > 0.5],
                          torch.tensor(0.5), atol=0.05)
    # S = 0.9 and 0.97: larger polytopes.
    assert 12 <= n[2] <= 13 and d_star[2] == pytest.approx(0.37, abs=0.04)
    assert 16 <= n[3] <= 17 and d_star[3] == pytest.approx(0.25, abs=0.02)
