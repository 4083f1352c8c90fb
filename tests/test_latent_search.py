"""utils.latent_search: search by behaviour against a baseline; the seed's strongest latents against brute force."""

from __future__ import annotations

import pytest
import torch

from _helpers import tiny_hooked
from utils import latent_search as L
from utils.activations import sae_latents


def test_search_latents_subtracts_baseline():
    acts = torch.tensor([[5.0, 1.0, 0.0], [5.0, 3.0, 0.0]])
    base = torch.tensor([[5.0, 0.0, 0.0]])
    assert L.search_latents(acts, k=1)[0] == [0]
    ids, scores = L.search_latents(acts, base, k=2)
    assert ids[0] == 1 and scores[0] == pytest.approx(2.0)
    # any leading shapes, and a baseline with different ones (chapter 06 passes [seq d] and [n seq d])
    ids3, scores3 = L.search_latents(acts[None], base[None].expand(4, 1, 3), k=2)
    assert ids3 == ids and scores3 == pytest.approx(scores)


@pytest.fixture(scope="module")
def tiny():
    return tiny_hooked(n_ctx=32, k=4, n_seq=6, seq=16, saelens=True)


def test_find_interpretable_latents_against_brute_force(tiny):
    model, sae, tokens = tiny
    acts = sae_latents(model, sae, tokens)                                   # [6 16 d_sae]
    acts[:, 0] += 100.0                                                      # BOS must be skipped
    found = L.find_interpretable_latents(sae, model, tokens, n_latents=4, n_examples=3, acts=acts)
    body = acts[:, 1:]
    peak = body.amax((0, 1))
    assert found.latents == peak.topk(4).indices.tolist()                    # strongest first, BOS ignored
    for i, j in enumerate(found.latents):
        top = body[..., j].flatten().topk(3).values
        torch.testing.assert_close(found.values[i], top)
        for (s, p), v in zip(found.positions[i].tolist(), found.values[i].tolist()):
            assert p >= 1 and acts[s, p, j].item() == pytest.approx(v)      # positions index the original tokens
    fresh = L.find_interpretable_latents(sae, model, tokens, n_latents=4, n_examples=3)   # runs the model itself
    assert fresh.latents == sae_latents(model, sae, tokens)[:, 1:].amax((0, 1)).topk(4).indices.tolist()
