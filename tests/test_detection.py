"""utils.detection: hand-computed values, a brute-force AUROC, and scipy where it is installed."""

from __future__ import annotations

import math

import pytest
import torch

from utils import detection as D


def brute_auroc(s: torch.Tensor, y: torch.Tensor) -> float:
    pos, neg = s[y], s[~y]
    wins = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
    return wins.mean().item()


def test_auroc_hand_values():
    y = torch.tensor([True, True, False, False])
    # perfect, reversed, and a column with ties: pos {1, 0}, neg {0, 0} -> (1 + 1 + 0.5 + 0.5) / 4
    s = torch.tensor([[2.0, 0.0, 1.0], [3.0, 1.0, 0.0], [0.0, 2.0, 0.0], [1.0, 3.0, 0.0]])
    assert torch.allclose(D.auroc(s, y), torch.tensor([1.0, 0.0, 0.75]))
    # a latent that never fires is exactly at chance
    assert D.auroc(torch.zeros(4, 1), y).item() == 0.5
    # sklearn's example: pos {0.35, 0.8}, neg {0.1, 0.4} -> 3 of 4 pairs ordered
    assert D.auroc(torch.tensor([0.1, 0.35, 0.4, 0.8]), torch.tensor([0, 1, 0, 1])).item() == 0.75


@pytest.mark.parametrize("labels", [[True, True, True], [False, False, False]])
def test_auroc_with_an_empty_class_says_what_is_wrong(labels):
    with pytest.raises(ValueError, match=r"positive and one negative.*Check the split"):
        D.auroc(torch.tensor([0.1, 0.5, 0.9]), torch.tensor(labels))


def test_auroc_matches_brute_force_with_heavy_ties():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 3, (37, 9), generator=g).float() * (torch.rand(37, 9, generator=g) < 0.4)
    y = torch.rand(37, generator=g) < 0.4
    got = D.auroc(s, y)
    for j in range(9):
        assert math.isclose(got[j].item(), brute_auroc(s[:, j], y), abs_tol=1e-6)
    assert D.auroc(s[:, 0], y).shape == ()  # a single column works too


def test_rank_data_and_tie_term():
    r = D.rank_data(torch.tensor([[1.0], [1.0], [2.0], [0.0]]))
    assert torch.allclose(r.ranks.flatten().float(), torch.tensor([2.5, 2.5, 4.0, 1.0]))
    assert r.tie_term.item() == 6.0  # one pair: 2³ − 2


def test_cohens_d_hand_value_and_constant_column():
    y = torch.tensor([True, True, False, False])
    # pos {1, 3}: mean 2, var 2; neg {0, 2}: mean 1, var 2 -> pooled sd √2 -> d = 1/√2
    s = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    d = D.cohens_d(s, y)
    assert math.isclose(d[0].item(), 1 / math.sqrt(2), rel_tol=1e-6)
    assert d[1].item() == 0.0


def test_mann_whitney_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(1)
    s = torch.randint(0, 4, (50, 6), generator=g).float() * (torch.rand(50, 6, generator=g) < 0.5)
    y = torch.rand(50, generator=g) < 0.5
    got = D.mann_whitney_pvalue(s, y)
    for j in range(6):
        want = stats.mannwhitneyu(s[y, j].numpy(), s[~y, j].numpy(), alternative="two-sided",
                                  method="asymptotic", use_continuity=True).pvalue
        assert math.isclose(got[j].item(), want, rel_tol=1e-4, abs_tol=1e-7)


def test_mann_whitney_tiny_p_and_constant_column():
    y = torch.arange(200) < 100
    s = torch.stack([y.float(), torch.zeros(200)], 1)
    p = D.mann_whitney_pvalue(s, y)
    assert 0 < p[0].item() < 1e-20  # separable: far below any Bonferroni threshold
    assert p[1].item() == 1.0


def test_permutation_pvalue_floor_and_null():
    g = torch.Generator().manual_seed(2)
    y = torch.arange(40) < 20
    s = torch.stack([y.float() + 0.01 * torch.randn(40, generator=g), torch.randn(40, generator=g)], 1)
    p = D.permutation_pvalue(s, y, n_perm=199, generator=g)
    assert math.isclose(p[0].item(), 1 / 200, rel_tol=1e-6)  # the floor: nothing can be smaller
    assert p[1].item() > 0.05


def test_bonferroni_and_bh_hand_values():
    p = torch.tensor([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # Bonferroni at 0.05 over 10 tests: p ≤ 0.005
    assert D.bonferroni(p, 0.05).tolist() == [True] + [False] * 9
    # BH thresholds k·0.005: 0.005, 0.010, 0.015, 0.020, 0.025, 0.030, ... -> k = 2
    assert D.benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 8
    # step-up: a later p under its threshold rescues earlier ones above theirs
    p2 = torch.tensor([0.03, 0.02, 0.035, 0.04])  # sorted 0.02, 0.03, 0.035, 0.04 vs 0.0125k
    assert D.benjamini_hochberg(p2, 0.05).all()
    assert not D.benjamini_hochberg(torch.tensor([0.5, 0.9]), 0.05).any()


def test_bh_adjusted_agrees_with_bh():
    g = torch.Generator().manual_seed(3)
    p = torch.rand(200, generator=g) ** 3
    for alpha in (0.01, 0.05, 0.2):
        assert torch.equal(D.bh_adjusted(p) <= alpha, D.benjamini_hochberg(p, alpha))


def test_seed_ratio_search_tiny_numbers():
    y = torch.tensor([True, False])
    s = torch.tensor([[0.0, 1e-6, 1.0, 2.0], [0.0, 1e-7, 0.0, 1.0]])
    # never fires: 0 > 3·0 is False; tiny: 1e-6 > 3e-7 is True; once vs never: True; 2 vs 1: False
    assert D.seed_ratio_search(s, y).tolist() == [1, 2]


def test_latent_stats_selection_and_held_out():
    g = torch.Generator().manual_seed(4)
    y = torch.arange(100) < 50
    noise = torch.rand(100, 5, generator=g)
    s = torch.cat([y.float()[:, None] * 2 + noise[:, :1], noise[:, 1:]], 1)  # latent 0 separates
    st = D.latent_stats(s, y)
    assert st.auroc[0].item() == 1.0 and st.q_value[0].item() < 1e-10
    assert D.select_latents(st).tolist() == [0]
    h = D.held_out(torch.tensor([0, 1]), s, y, s, y)
    assert h.test_auroc[0].item() == 1.0 and h.train_ratio.shape == (2,)


def test_frequency_matched_avoids_chosen_and_matches():
    freq = torch.tensor([0.001, 0.0011, 0.5, 0.51, 0.0009, 0.49, 0.0])
    out = D.frequency_matched(freq, torch.tensor([0, 2]), 50, pool=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (50, 2)
    assert set(out[:, 0].tolist()) <= {1, 4} and set(out[:, 1].tolist()) <= {3, 5}


def test_probes_separate_a_linear_concept():
    g = torch.Generator().manual_seed(5)
    y = torch.rand(400, generator=g) < 0.5
    direction = torch.randn(16, generator=g)
    x = torch.randn(400, 16, generator=g) + 1.5 * y.float()[:, None] * direction / direction.norm()
    for probe in (D.diff_of_means_probe(x[:200], y[:200]), D.logistic_probe(x[:200], y[:200])):
        assert D.auroc(probe.score(x[200:]), y[200:]).item() > 0.8
        acc = ((probe.score(x[200:]) > 0) == y[200:]).float().mean().item()
        assert acc > 0.7


def test_balanced_logistic_probe_does_not_ignore_a_rare_class():
    """With 3% positives, a plain probe's threshold says "no" to most positives; balancing the classes
    moves the threshold (score 0) so that about as many positives as negatives are classified right."""
    g = torch.Generator().manual_seed(2)
    y = torch.rand(4000, generator=g) < 0.03
    x = torch.randn(4000, 8, generator=g)
    x[:, 0] += 1.5 * y.float()
    recall = lambda p: (p.score(x[y]) > 0).float().mean().item()             # noqa: E731
    specificity = lambda p: (p.score(x[~y]) <= 0).float().mean().item()      # noqa: E731
    plain, balanced = D.logistic_probe(x, y), D.logistic_probe(x, y, balanced=True)
    assert recall(plain) < 0.3 < 0.6 < recall(balanced)
    assert specificity(balanced) > 0.6
    assert D.auroc(balanced.score(x), y).item() > 0.8 and balanced.w.abs().argmax() == 0


# ---- chapter 07's plumbing (utils.capstone), on a random tiny model: no assets needed ------------
class _CharTokenizer:
    """One token per character (ids 1..), BOS = pad = 0: enough to check masks and batching."""

    bos_token_id = 0
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1 + (ord(c) % 60) for c in text]}


def _tiny_model_and_sae():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from utils.interop import to_saelens
    from utils.saes import build_sae

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=64, n_ctx=64,
                                  act_fn="gelu", normalization_type="LN", seed=0, device="cpu")
    model = HookedTransformer(cfg).eval()
    sae = to_saelens(build_sae("topk", d_in=16, d_sae=32, k=4, init_seed=0, hook_name="blocks.1.hook_resid_pre"))
    return model, sae


def _records():
    return [{"claim_id": f"c{i}", "prompt": "User: x is y" + "!" * i + "\nAssistant:",
             "sycophantic_continuation": " Yes" + "s" * i, "honest_continuation": " No, x is z."} for i in range(5)]


def test_written_pairs_schema_and_claim_split():
    from utils import capstone
    from utils.data.corpus import claim_split

    recs = capstone.written_pairs()
    assert len(recs) == 3 * len(capstone.WRITTEN_CLAIMS)
    for r in recs:
        assert r["prompt"].endswith("Assistant:")
        assert r["sycophantic_continuation"].startswith(" ") and r["honest_continuation"].startswith(" ")
    train, test = claim_split(recs, 0.5, 0)
    assert not {r["claim_id"] for r in train} & {r["claim_id"] for r in test}


def test_encode_pairs_marks_exactly_the_reply():
    from utils import capstone

    recs = _records()
    b = capstone.encode_pairs(_CharTokenizer(), recs)
    assert b.tokens.shape[0] == 10 and b.labels.tolist() == [True] * 5 + [False] * 5
    for i, r in enumerate(recs):
        for row, key in ((i, "sycophantic_continuation"), (i + 5, "honest_continuation")):
            n_prompt, n_reply = 1 + len(r["prompt"]), len(r[key])
            assert int(b.reply[row].sum()) == n_reply and bool(b.reply[row, n_prompt])
            assert int(b.valid[row].sum()) == n_prompt + n_reply and b.tokens[row, 0] == 0


def test_behaviour_gap_and_pooling_ignore_padding_and_batching():
    from utils import capstone, steering
    from utils.activations import sae_hook_name

    model, sae = _tiny_model_and_sae()
    b = capstone.encode_pairs(_CharTokenizer(), _records())
    lp = capstone.reply_logprobs(model, b, batch_size=3)
    for row in (0, 7):  # each row alone, unpadded, by hand
        n = int(b.valid[row].sum())
        t = b.tokens[row:row + 1, :n]
        logp = model(t).log_softmax(-1)[0, :-1].gather(-1, t[0, 1:, None])[:, 0]
        assert math.isclose(lp[row].item(), (logp * b.reply[row, 1:n]).sum().item(), rel_tol=1e-4, abs_tol=1e-4)
    gap = capstone.behaviour_gap(model, b)
    assert torch.allclose(gap, lp[:5] - lp[5:], atol=1e-4)
    pooled = capstone.pool_sae_codes(model, sae, b, batch_size=4)
    assert pooled.latents.shape == (10, 32) and pooled.resid.shape == (10, 16)
    assert torch.allclose(capstone.pool_sae_codes(model, sae, b, batch_size=10).latents, pooled.latents, atol=1e-5)
    for row in (1, 8):  # each row alone, unpadded: the SAE's latents averaged over the reply's tokens
        n = int(b.valid[row].sum())
        _, cache = model.run_with_cache(b.tokens[row:row + 1, :n])
        x = cache["blocks.1.hook_resid_pre"][0]
        reply = b.reply[row, :n]
        torch.testing.assert_close(pooled.resid[row], x[reply].mean(0), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(pooled.latents[row], sae.encode(x)[reply].mean(0), atol=1e-5, rtol=1e-4)
    # ablating every latent through the SAE's error term changes the model's behaviour, a no-op hook does not
    hook = sae_hook_name(sae)
    same = capstone.behaviour_gap(model, b, [(hook, lambda x, hook: x)])
    assert torch.allclose(same, gap, atol=1e-5)
    ablated = capstone.behaviour_gap(model, b, [(hook, steering.ablation_hook(sae, list(range(32))))])
    assert not torch.allclose(ablated, gap, atol=1e-4)


def _remove(resid, sae, latents):  # chapter 07's remove_latents, reference answer
    return resid - sae.encode(resid)[..., latents] @ sae.W_dec[latents]


def _remove_in_place(resid, sae, latents):  # a student's answer that changes its input
    resid -= sae.encode(resid)[..., latents] @ sae.W_dec[latents]
    return resid


def _remove_by_zeroing_codes(resid, sae, latents):  # changes the codes it was given in place
    acts = sae.encode(resid)
    kept = sae.decode(acts)
    acts[..., latents] = 0.0
    return resid - (kept - sae.decode(acts))


@pytest.mark.parametrize("hook_name", ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"])
@pytest.mark.parametrize("remove", [_remove, _remove_in_place, _remove_by_zeroing_codes])
def test_ablation_gaps_are_the_hooked_forward_passes(hook_name, remove):
    """The fast path (the model up to the hook and the SAE's encoder once per batch, for every set)
    gives, set by set, behaviour_gap with the removal hook — also for answers that change their
    inputs in place, and by the readable route for a hook it cannot start a forward pass at."""
    from utils import capstone
    from utils.interop import to_saelens
    from utils.saes import build_sae

    model, _ = _tiny_model_and_sae()
    sae = to_saelens(build_sae("topk", d_in=16, d_sae=32, k=4, init_seed=0, hook_name=hook_name))
    b = capstone.encode_pairs(_CharTokenizer(), _records())
    sets = [torch.tensor([0, 3, 5]), torch.tensor([7]), torch.arange(32)]
    fast = capstone.ablation_gaps(model, sae, b, sets, remove, batch_size=3)
    for s, row in zip(sets, fast):
        hooked = capstone.behaviour_gap(model, b, [(hook_name, lambda x, hook, s=s: remove(x.clone(), sae, s))],
                                        batch_size=3)
        torch.testing.assert_close(row, hooked, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast[2], capstone.behaviour_gap(model, b), atol=1e-4)  # removing every latent matters


def test_ablation_changes_reuses_the_sets_given_and_computes_others_on_demand():
    from utils import capstone
    from utils.activations import sae_hook_name

    model, sae = _tiny_model_and_sae()
    b = capstone.encode_pairs(_CharTokenizer(), _records())
    base = capstone.behaviour_gap(model, b)
    change = capstone.ablation_changes(model, sae, b, base, [torch.tensor([1, 2])], _remove)
    hooked = lambda s: capstone.behaviour_gap(model, b, [(sae_hook_name(sae), lambda x, hook: _remove(x, sae, s))])  # noqa: E731
    first = change(torch.tensor([1, 2]))
    torch.testing.assert_close(first, hooked(torch.tensor([1, 2])) - base, atol=1e-5, rtol=1e-5)
    first -= 100.0  # a caller changing the result in place does not change the next answer
    torch.testing.assert_close(change([1, 2]), hooked(torch.tensor([1, 2])) - base, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(change(torch.tensor([4])), hooked(torch.tensor([4])) - base, atol=1e-5, rtol=1e-5)


def test_ablation_gaps_names_an_answer_that_returns_no_tensor():
    from utils import capstone

    model, sae = _tiny_model_and_sae()
    b = capstone.encode_pairs(_CharTokenizer(), _records())

    def remove_latents(resid, sae, latents):
        resid - sae.encode(resid)[..., latents] @ sae.W_dec[latents]  # forgot to return it

    with pytest.raises(TypeError, match=r"remove_latents returned NoneType, not a tensor"):
        capstone.ablation_gaps(model, sae, b, [torch.tensor([1])], remove_latents)


def test_roc_figure_reports_the_area_under_its_own_curve():
    from utils import plots

    g = torch.Generator().manual_seed(4)
    s = torch.randint(0, 4, (120,), generator=g).float()                      # heavy ties: diagonal steps
    y = torch.rand(120, generator=g) < (0.2 + 0.15 * s)
    trace = plots.roc_curves({"latent": (s, y)}).data[0]
    area = torch.trapezoid(torch.tensor(trace.y), torch.tensor(trace.x)).item()
    assert math.isclose(area, brute_auroc(s, y), abs_tol=1e-6)
    assert f"AUROC {brute_auroc(s, y):.3f}" in trace.name
