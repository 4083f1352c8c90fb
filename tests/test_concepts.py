"""utils.data.concepts: scoring latents and probes against ground-truth concept labels, by hand and on planted data."""

from __future__ import annotations

import math

import pytest
import torch

from utils.data import concept_latent_table, concept_precision_recall, linear_probe_auroc, precision_at_recall


def test_concept_precision_recall_by_hand():
    acts = torch.tensor([[0.0, 1.0, 0.5], [2.0, 0.0, 0.0], [3.0, 0.2, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([True, True, False, False])
    p, r = concept_precision_recall(acts, labels)
    # latent 0 fires on rows 1, 2 (one labelled); latent 1 on rows 0, 2; latent 2 on row 0 only
    torch.testing.assert_close(p, torch.tensor([0.5, 0.5, 1.0]))
    torch.testing.assert_close(r, torch.tensor([0.5, 0.5, 0.5]))
    p, r = concept_precision_recall(acts, labels, threshold=0.6)             # "fires" means > 0.6
    torch.testing.assert_close(p, torch.tensor([0.5, 1.0, 0.0]))              # latent 2 never fires: precision 0
    torch.testing.assert_close(r, torch.tensor([0.5, 0.5, 0.0]))
    # any leading shape; labels may be numpy (the corpus's LabelledTokens)
    p3, r3 = concept_precision_recall(acts.reshape(2, 2, 3), labels.reshape(2, 2).numpy())
    torch.testing.assert_close((p3, r3), concept_precision_recall(acts, labels))


def test_precision_at_recall_hand_values():
    scores = torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    labels = torch.tensor([1, 0, 0, 1, 0, 1])
    p, r, t = precision_at_recall(scores, labels, 0.5)
    assert (p, r, t) == (2 / 3, 2 / 3, 2.0)  # cut at 2.0: {4, 3, 2} holds 2 of the 3 positives
    assert precision_at_recall(scores, labels, 1.0)[0] == 0.0  # a latent must fire to predict


def test_concept_latent_table_finds_a_planted_latent():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(4000, 2, generator=g) < 0.1
    acts = torch.relu(torch.randn(4000, 50, generator=g) - 1.5)
    acts[:, 7] = y[:, 0] * (1 + torch.rand(4000, generator=g))
    acts[:, 9] = y[:, 1] * (1 + torch.rand(4000, generator=g)) + (torch.rand(4000, generator=g) < 0.01)
    rows = concept_latent_table(acts, y, ["a", "b"])
    assert [r["latent"] for r in rows] == [7, 9]
    assert rows[0]["precision"] == 1.0 and rows[1]["precision"] > 0.85
    assert rows[0]["auroc"] > 0.99 and rows[0]["base_rate"] == pytest.approx(float(y[:, 0].float().mean()))


def test_concept_latent_table_records_nan_where_auroc_is_undefined():
    acts = torch.rand(50, 4)
    y = torch.zeros(50, 2, dtype=torch.bool)
    y[:, 1] = True                                                          # "absent" nowhere, "everywhere" on all
    absent, everywhere = concept_latent_table(acts, y, ["absent", "everywhere"])
    assert absent["latent"] is None and math.isnan(absent["auroc"]) and absent["base_rate"] == 0.0
    assert everywhere["latent"] is not None and everywhere["base_rate"] == 1.0 and math.isnan(everywhere["auroc"])


def test_linear_probe_separates_a_linear_concept():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 16, generator=g)
    y = (x[:, 3] + 0.3 * torch.randn(2000, generator=g)) > 0.5
    score, w = linear_probe_auroc(x[:1000], y[:1000], x[1000:], y[1000:])
    assert score > 0.95 and w.abs().argmax() == 3


def test_linear_probe_records_nan_for_a_concept_absent_from_the_test_split():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 4, generator=g)
    y = x[:, 0] > 0
    score, w = linear_probe_auroc(x[:200], y[:200], x[200:], torch.zeros(100, dtype=torch.bool))
    assert math.isnan(score) and w.shape == (4,) and w.abs().argmax() == 0     # the probe is still fitted


def test_linear_probe_weights_are_in_raw_units():
    """score = x · w + constant ranks the test set as the probe does (the world's precision figure relies on it)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1500, 6, generator=g) * torch.tensor([1.0, 10.0, 0.1, 1.0, 5.0, 1.0])   # unequal scales
    y = (x[:, 1] / 10 - x[:, 2] / 0.1 + 0.5 * torch.randn(1500, generator=g)) > 1.0
    score, w = linear_probe_auroc(x[:1000], y[:1000], x[1000:], y[1000:])
    from utils.detection import auroc

    assert score == pytest.approx(float(auroc(x[1000:] @ w, y[1000:])), abs=1e-6)
    assert w[1] > 0 > w[2]
