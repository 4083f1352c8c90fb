"""utils.steering: steering adds the decoder direction, ablation through the SAE keeps the error term
(and agrees with SAELens' own use_error_term route), concept probabilities are probability masses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _helpers import tiny_hooked
from utils import steering as S
from utils.data.corpus import LabelledTokens


@pytest.fixture(scope="module")
def tiny():
    from utils.interop import to_saelens

    model, course, tokens = tiny_hooked(n_ctx=32, k=4, n_seq=4, seq=12)
    return model, to_saelens(course), course, tokens


def test_steering_hook_adds_direction_everywhere():
    d = torch.tensor([1.0, -2.0])
    act = torch.zeros(2, 3, 2)
    out = S.steering_hook(d, 0.5)(act)
    assert torch.equal(out, torch.tensor([0.5, -1.0]).expand(2, 3, 2)) and act.abs().sum() == 0  # no in-place edit
    late = S.steering_hook(d, 1.0, from_pos=2)(act)
    assert late[:, :2].abs().sum() == 0 and torch.equal(late[:, 2], d.expand(2, 2))


def test_decoder_direction_unit(tiny):
    _, lens, _, _ = tiny
    v = S.decoder_direction(lens, 5)
    assert v.norm().item() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(S.decoder_direction(lens, 5, normalize=False) / lens.W_dec[5].norm(), v)


def test_ablation_matches_saelens_error_term_route(tiny):
    model, lens, course, tokens = tiny
    hook = "blocks.1.hook_resid_pre"
    _, cache = model.run_with_cache_with_saes(tokens, saes=[lens])
    acts = cache[f"{hook}.hook_sae_acts_post"]
    j = int((acts != 0).float().sum((0, 1)).argmax())                           # a latent that fires

    def zero_j(a, hook):
        a[..., j] = 0.0
        return a

    with model.saes(saes=[lens], use_error_term=True):
        ref = model.run_with_hooks(tokens, fwd_hooks=[(f"{hook}.hook_sae_acts_post", zero_j)])
    ours = model.run_with_hooks(tokens, fwd_hooks=[(hook, S.ablation_hook(lens, j))])
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    clean = model(tokens)
    assert (ours - clean).abs().max() > 1e-4                                    # it did something
    ours_course = model.run_with_hooks(tokens, fwd_hooks=[(hook, S.ablation_hook(course, [j]))])
    torch.testing.assert_close(ours_course, ref, atol=1e-4, rtol=1e-4)          # same with the course's SAE


def test_ablating_a_silent_latent_changes_nothing(tiny):
    model, lens, _, tokens = tiny
    hook = "blocks.1.hook_resid_pre"
    _, cache = model.run_with_cache_with_saes(tokens, saes=[lens])
    silent = torch.nonzero((cache[f"{hook}.hook_sae_acts_post"] != 0).sum((0, 1)) == 0)
    if len(silent) == 0:
        pytest.skip("every latent fires on this batch")
    out = model.run_with_hooks(tokens, fwd_hooks=[(hook, S.ablation_hook(lens, int(silent[0])))])
    torch.testing.assert_close(out, model(tokens), atol=1e-5, rtol=1e-5)


def test_clamp_to_current_value_is_identity(tiny):
    model, lens, _, tokens = tiny
    hook = "blocks.1.hook_resid_pre"
    out = model.run_with_hooks(tokens, fwd_hooks=[(hook, S.clamp_hook(lens, 0, 0.0))])
    x = S.ablation_hook(lens, 0)                                                 # clamp to 0 == ablate
    torch.testing.assert_close(out, model.run_with_hooks(tokens, fwd_hooks=[(hook, x)]), atol=1e-5, rtol=1e-5)


def test_concept_token_ids_by_hand():
    tokens = np.array([[0, 5, 5, 6, 7], [0, 5, 6, 6, 7]])
    labels = np.zeros((2, 5, 2), bool)
    labels[0, 1, 1] = labels[0, 2, 1] = labels[1, 1, 1] = True                   # token 5: 3/3 labelled
    labels[0, 3, 1] = True                                                      # token 6: 1/3
    labels[:, 4, 1] = True                                                      # token 7: 2/2, but rare
    lt = LabelledTokens(tokens, labels, ("a", "b"))
    assert S.concept_token_ids(lt, "b", min_count=3).tolist() == [5]
    assert S.concept_token_ids(lt, "b", min_count=2).tolist() == [5, 7]
    assert S.concept_token_ids(lt, "b", min_count=1, min_purity=0.3).tolist() == [5, 6, 7]
    assert S.concept_token_ids(lt, "b", min_count=2, exclude=[5]).tolist() == [7]
    assert S.concept_token_ids(lt, "a", min_count=1).tolist() == []


def test_concept_probability_is_a_probability_mass(tiny):
    model, lens, _, tokens = tiny
    everything = torch.arange(model.cfg.d_vocab)
    p_all = S.concept_probability(model, tokens, everything, batch_size=3)
    torch.testing.assert_close(p_all, torch.ones_like(p_all), atol=1e-4, rtol=0)
    ids = torch.tensor([3, 10, 11])
    p = S.concept_probability(model, tokens, ids)
    want = model(tokens).softmax(-1)[..., ids].sum(-1)
    torch.testing.assert_close(p, want, atol=1e-6, rtol=1e-5)
    # steering towards the unembedding direction of token 10 raises its probability
    d = model.W_U[:, 10].detach()
    eff = S.intervention_effect(model, tokens, torch.tensor([10]), [("blocks.1.hook_resid_pre",
                                                                      S.steering_hook(d / d.norm(), 20.0))])
    assert eff["after"] > eff["base"] and eff["delta"] == pytest.approx(eff["after"] - eff["base"])


def test_generate_is_seeded_and_hooks_change_it(tiny):
    model, lens, _, _ = tiny
    a = S.generate(model, "The", max_new_tokens=8, seed=3)
    b = S.generate(model, "The", max_new_tokens=8, seed=3)
    assert a == b and a.startswith("The")
    d = model.W_U[:, 42].detach()
    c = S.generate(model, "The", max_new_tokens=8, seed=3,
                   fwd_hooks=[("blocks.1.hook_resid_pre", S.steering_hook(d / d.norm(), 200.0))])
    assert c != a
    assert model.hook_dict["blocks.1.hook_resid_pre"].fwd_hooks == []                # hooks removed afterwards


@pytest.mark.parametrize("make_hook", [lambda sae: S.ablation_hook(sae, [0, 3]),
                                       lambda sae: S.clamp_hook(sae, 2, 5.0)], ids=["ablation", "clamp"])
def test_hooks_compute_on_the_saes_device_and_dtype(tiny, make_hook):
    import copy

    _, lens, _, _ = tiny
    act = torch.randn(2, 5, lens.W_dec.shape[1])                                 # the model's activation, CPU
    with torch.no_grad():
        want = make_hook(lens)(act)
        wide = make_hook(copy.deepcopy(lens).double())(act)                      # an SAE in another dtype
        assert wide.dtype == act.dtype and wide.device == act.device               # handed back as it came
        torch.testing.assert_close(wide, want, atol=1e-5, rtol=1e-5)
        # an SAE on another device (meta stands in for a GPU): the activation is moved to it, so the hook
        # computes there; only handing back a meta result is impossible, and that is the error we see
        elsewhere = copy.deepcopy(lens).to("meta")
        with pytest.raises(NotImplementedError, match="meta tensor"):
            make_hook(elsewhere)(act)
