"""The offline world: its builder (`tools.world`, a miniature build end to end) and the shipped assets.

The shipped assets are checked from a student's side: they load with `utils.models` alone, are
SAELens-native (SAELens' own activation store and evaluation run on them), do what the manifest
records, and meet the course's bars.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
import sys

import pytest
import torch

from conftest import REPO
from utils import models

# --- the builder ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    """A miniature world built by the real build code; its cache kept outside it."""
    from tools.world import build, mini_config

    root = tmp_path_factory.mktemp("mini")
    out, cache = root / "world", root / "cache"
    return out, cache, build(out, mini_config(), cache_dir=cache)


def test_no_world_building_code_under_utils():
    """The package students import neither contains nor imports the builder."""
    offenders = []
    for path in (REPO / "utils").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "tools"]
    assert not offenders, offenders
    assert not list((REPO / "utils").glob("build*.py"))


def test_cache_reuses_only_an_identical_key(tmp_path):
    from tools.world.cache import Cache, fingerprint

    cache, calls = Cache(tmp_path), []
    make = (lambda v: lambda: calls.append(v) or {"value": v})  # noqa: E731
    key = {"acts": fingerprint(torch.arange(6.0)), "steps": 3}
    assert cache.memo("x", key, make(1)) == {"value": 1}
    assert cache.memo("x", dict(key), make(2)) == {"value": 1} and calls == [1]     # reused
    other = {"acts": fingerprint(torch.arange(6.0) + 1), "steps": 3}
    assert cache.get("x", other) is None and cache.memo("x", other, make(3)) == {"value": 3}
    assert calls == [1, 3] and not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_mini_build_end_to_end_loads_without_the_cache(mini_world):
    out, cache, man = mini_world
    assert not (out / cache.name).exists() and list(cache.glob("lm_*.pt"))
    model = models.load_model(profile="cpu", root=out)
    assert model.cfg.n_layers == man["lm"]["config"]["n_layers"] and model.tokenizer.decode(
        model.to_tokens("def f(x):", prepend_bos=False)[0]) == "def f(x):"
    assert man["lm"]["val_loss"] < man["lm"]["bigram_val_loss"] + 3  # trained, if barely: finite and sane
    from utils import metrics
    from utils.activations import model_activations
    from utils.data import load_labelled_tokens

    tokens = load_labelled_tokens("heldout", seq_len=64, n_seq=8, tokenizer=model.tokenizer,
                                  scale=man["build_config"]["scale"]).tokens
    x = model_activations(model, man["hook_name"], torch.from_numpy(tokens), drop_bos=True)
    for variant in models.VARIANTS:
        sae = models.load_sae(variant, profile="cpu", root=out)  # SAELens' own loader
        cfg = json.loads((out / "saes" / variant / "cfg.json").read_text())
        recorded, in_manifest = cfg["metadata"]["course_metrics"], man["saes"][variant]["metrics"]
        assert recorded["delta_ce_ci"] == list(in_manifest["delta_ce_ci"])
        assert {k: v for k, v in recorded.items() if k != "delta_ce_ci"} == pytest.approx(
            {k: v for k, v in in_manifest.items() if k != "delta_ce_ci"})
        assert sae.cfg.d_sae == man["saes"][variant]["d_sae"] and cfg["metadata"]["hook_name"] == man["hook_name"]
        # what SAELens' runner records about the training data, so that ActivationsStore.from_sae works
        assert cfg["metadata"]["context_size"] == man["build_config"]["n_ctx"]
        assert cfg["metadata"]["prepend_bos"] is True and cfg["metadata"]["dataset_path"]
        m = metrics.evaluate(sae, x)
        assert 0 < m["l0"] <= sae.cfg.d_sae and m["explained_variance"] > -1
    assert man["total_bytes"] == sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) - \
        (out / "manifest.json").stat().st_size


@pytest.mark.slow
def test_mini_build_is_reproducible(mini_world, tmp_path):
    """Built again with its cache, the world is the same byte for byte (every product is reused);
    built from scratch, it is the same up to floating-point noise (multithreaded CPU kernels do not
    promise bit-identical sums)."""
    from safetensors.torch import load_file

    from tools.world import build, mini_config

    out, cache, man = mini_world
    rels = ["model/model.safetensors", "model/config.json", "tokenizer/tokenizer.json"]
    rels += [f"saes/{v}/{f}" for v in models.VARIANTS for f in ("sae_weights.safetensors", "cfg.json")]
    again = build(tmp_path / "again", mini_config(), cache_dir=cache)
    for rel in rels:
        assert (tmp_path / "again" / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert json.dumps(again["capstone"], sort_keys=True) == json.dumps(man["capstone"], sort_keys=True)  # NaN too

    fresh = build(tmp_path / "fresh", mini_config(), cache_dir=tmp_path / "fresh-cache")  # nothing reused
    assert (tmp_path / "fresh" / "tokenizer" / "tokenizer.json").read_bytes() == \
        (out / "tokenizer" / "tokenizer.json").read_bytes()
    assert [h["loss"] for h in fresh["lm"]["loss_history"]] == pytest.approx(
        [h["loss"] for h in man["lm"]["loss_history"]], abs=1e-4)
    for rel in [r for r in rels if r.endswith(".safetensors")]:
        a, b = load_file(str(out / rel)), load_file(str(tmp_path / "fresh" / rel))
        for k in a:
            torch.testing.assert_close(b[k], a[k], atol=2e-3, rtol=1e-3, msg=f"{rel}: {k}")
    for v in models.VARIANTS:
        assert fresh["saes"][v]["metrics"]["explained_variance"] == pytest.approx(
            man["saes"][v]["metrics"]["explained_variance"], abs=1e-3)


@pytest.mark.slow
def test_interrupted_lm_training_resumes_where_it_stopped(mini_world, tmp_path, monkeypatch):
    """Stop the LM after its first checkpoint; the next build resumes there and ends where an
    uninterrupted build ends (same weights and loss history, up to floating-point noise)."""
    from safetensors.torch import load_file

    from tools.world import build, lm, mini_config

    out, _, man = mini_world
    cfg = mini_config()
    real_batch, seen = lm.lm_batch, []

    def stop_after_checkpoint(tokens, step, c, bos):
        if step == cfg.checkpoint_every + 1:
            raise KeyboardInterrupt
        seen.append(step)
        return real_batch(tokens, step, c, bos)

    monkeypatch.setattr(lm, "lm_batch", stop_after_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "w", cfg, stage="lm", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(lm, "lm_batch", lambda *a: seen.append(a[1]) or real_batch(*a))
    again = build(tmp_path / "w", cfg, stage="lm", cache_dir=tmp_path / "cache")
    assert seen == list(range(cfg.checkpoint_every + 1)) + list(range(cfg.checkpoint_every, cfg.lm_steps))
    assert [h["step"] for h in again["lm"]["loss_history"]] == [h["step"] for h in man["lm"]["loss_history"]]
    assert [h["loss"] for h in again["lm"]["loss_history"]] == pytest.approx(
        [h["loss"] for h in man["lm"]["loss_history"]], abs=1e-4)
    a, b = (load_file(str(w / "model" / "model.safetensors")) for w in (out, tmp_path / "w"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-3, rtol=1e-3, msg=k)


@pytest.mark.slow
def test_mini_build_can_retrain_only_the_saes(mini_world, tmp_path):
    from tools.world import build, mini_config

    out, cache, man = mini_world
    world = tmp_path / "world"
    shutil.copytree(out, world)
    cfg = mini_config()
    settings = {**cfg.sae_settings, "topk": {"k": 4}}
    again = build(world, dataclasses.replace(cfg, sae_settings=settings), stage="saes", cache_dir=cache)
    assert again["lm"] == json.loads(json.dumps(man["lm"], default=float))  # the LM kept, not retrained
    assert (world / "model" / "model.safetensors").read_bytes() == (out / "model" / "model.safetensors").read_bytes()
    assert again["saes"]["topk"]["metrics"]["l0"] == pytest.approx(4, abs=0.01)
    assert man["saes"]["topk"]["metrics"]["l0"] != pytest.approx(4, abs=0.01)
    scalars = (lambda m: {k: v for k, v in m.items() if k != "delta_ce_ci"})  # noqa: E731
    assert scalars(again["saes"]["relu"]["metrics"]) == pytest.approx(scalars(man["saes"]["relu"]["metrics"]))
    with pytest.raises(SystemExit, match="other settings"):
        build(world, dataclasses.replace(cfg, d_model=48), stage="saes", cache_dir=cache)
    with pytest.raises(SystemExit, match="run the full build first"):
        build(tmp_path / "empty", cfg, stage="saes", cache_dir=cache)


@pytest.mark.slow
def test_mini_manifest_records_the_capstone_on_both_held_out_splits(mini_world):
    from utils.data.corpus import claim_split, load_dialogue_pairs

    _, _, man = mini_world
    cfg, cap = man["build_config"], man["capstone"]
    held = load_dialogue_pairs("heldout", scale=cfg["scale"])
    _, test = claim_split(held, 0.5, seed=cfg["seed"])
    assert 0 < len(cap["top_latents"]) <= cfg["capstone_top"]
    splits = {"heldout_claims": cap["heldout_claims"], **{f"wording/{k}": v for k, v in cap["heldout_wording"].items()}}
    assert set(cap["heldout_wording"]) == {"all", "training_claims", "heldout_claims"}
    w = cap["heldout_wording"]
    assert w["all"]["n_pairs"] == w["training_claims"]["n_pairs"] + w["heldout_claims"]["n_pairs"] > 0
    assert w["heldout_claims"]["n_claims"] <= len({r["claim_id"] for r in test})
    for name, f in splits.items():
        assert len(f["top_aurocs"]) == len(cap["top_latents"]) and f["top_latent_auroc"] == f["top_aurocs"][0], name
        assert all(0 <= a <= 1 for a in f["top_aurocs"] + [f["probe_auroc"]]), name
        abl = f["ablation"]
        assert len(abl["random"]) == cfg["capstone_controls"], name
        sign = -1 if abl["effect_top"] < 0 else 1
        assert abl["n_random_as_far"] == sum(sign * r >= sign * abl["effect_top"] for r in abl["random"]), name
        assert sum(v["n"] for v in f["behaviour"]["by_cues"].values()) == f["n_pairs"], name


# --- the shipped world ------------------------------------------------------------------------------
# The bars the shipped SAEs must meet (DESIGN.md "Bars"; issue 8), each at the SAEs' own layer.
BAR_EVERY = {"l0_max": 40, "ev_min": 0.85, "recovery_min": 0.95, "dead_max": 0.05}
BAR_BEST = {"l0_max": 32, "ev_min": 0.95, "recovery_min": 0.98}
PROBE_CONCEPTS = ("code", "science", "past_tense_verb", "sycophantic_reply")  # linear probe AUROC >= 0.95


@pytest.fixture(scope="module")
def shipped():
    """The shipped model, its held-out evaluation tokens and activations, and the manifest."""
    from tools.world.evaluate import residuals
    from utils.data import load_labelled_tokens

    man = models.manifest()
    model = models.load_model(profile="cpu")
    held = load_labelled_tokens("heldout", seq_len=model.cfg.n_ctx, n_seq=man["build_config"]["eval_seqs"])
    x = residuals(model, held.tokens, man["hook_name"])[:, 1:].reshape(-1, model.cfg.d_model)  # BOS excluded
    same_python = man["versions"]["python"] == sys.version.split()[0]  # same stdlib text, same tokens
    return man, model, held, x, same_python


@pytest.mark.slow
def test_shipped_assets_fit_and_need_nothing_else(shipped, tmp_path):
    man = shipped[0]
    total = sum(p.stat().st_size for p in models.ASSETS.rglob("*") if p.is_file())
    assert total <= 25 * 2**20, total / 2**20
    root = tmp_path / "assets"
    shutil.copytree(models.ASSETS, root)
    model = models.load_model(profile="cpu", root=root)
    assert model.cfg.d_model == man["lm"]["config"]["d_model"]
    for variant in models.VARIANTS:
        assert models.load_sae(variant, profile="cpu", root=root).cfg.metadata.hook_name == man["hook_name"]


_RECOMPUTED: dict[str, dict] = {}


def _recompute(shipped, variant: str) -> dict:
    """The shipped SAE's metrics, measured again here through SAELens' loader (as the chapters load it)."""
    if variant not in _RECOMPUTED:
        from utils import metrics

        man, model, held, x, _ = shipped
        sae = models.load_sae(variant, profile="cpu")
        m = metrics.evaluate(sae, x)
        n_seq = man["build_config"]["eval_seqs"] // 2
        ds = metrics.downstream_loss(model, sae, torch.from_numpy(held.tokens[:n_seq]), man["hook_name"], n_boot=10)
        _RECOMPUTED[variant] = {"l0": m["l0"], "explained_variance": m["explained_variance"],
                                "dead_fraction": m["dead_fraction"], "frac_recovered_mean": ds.frac_recovered_mean,
                                "delta_ce": ds.delta_ce, "mean_ablation_cost": ds.mean_ablated_ce - ds.clean_ce}
    return _RECOMPUTED[variant]


@pytest.mark.slow
@pytest.mark.parametrize("variant", models.VARIANTS)
def test_shipped_sae_does_what_was_recorded(shipped, variant):
    got = _recompute(shipped, variant)
    recorded = json.loads((models.sae_dir(variant) / "cfg.json").read_text())["metadata"]["course_metrics"]
    tol = 1e-3 if shipped[4] else 0.03  # same Python: same stdlib text, same held-out tokens
    for k in ("l0", "explained_variance", "dead_fraction", "frac_recovered_mean", "delta_ce"):
        assert got[k] == pytest.approx(recorded[k], abs=tol * max(1.0, abs(recorded[k]))), (k, got[k], recorded[k])
    assert 0 < got["delta_ce"] < got["mean_ablation_cost"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", models.VARIANTS)
def test_shipped_sae_meets_the_bars_recomputed(shipped, variant):
    got = _recompute(shipped, variant)
    assert got["l0"] <= BAR_EVERY["l0_max"], got
    assert got["explained_variance"] >= BAR_EVERY["ev_min"], got
    assert got["frac_recovered_mean"] >= BAR_EVERY["recovery_min"], got
    assert got["dead_fraction"] <= BAR_EVERY["dead_max"], got


@pytest.mark.xfail(strict=True, reason="World 2 (the paraphrase-family corpus) misses issue 8's bar: the TopK SAE's "
                   "EV is 0.944 < 0.95 at L0 32 (the best of the four, 5000 steps on 1.2M tokens); issue 8 ended "
                   "blocked on it")
def test_best_shipped_sae_meets_the_best_bar_as_recorded():
    man = models.manifest()
    best = [v for v in models.VARIANTS
            if man["saes"][v]["metrics"]["l0"] <= BAR_BEST["l0_max"]
            and man["saes"][v]["metrics"]["explained_variance"] >= BAR_BEST["ev_min"]
            and man["saes"][v]["metrics"]["frac_recovered_mean"] >= BAR_BEST["recovery_min"]]
    assert best, {v: man["saes"][v]["metrics"] for v in models.VARIANTS}


@pytest.mark.slow
def test_heldout_wording_token_ngrams_never_occur_in_the_lms_training_stream():
    """At the token level: tokenised with the shipped tokenizer, no 6 consecutive tokens of a
    held-out-wording sentence (claims cut out) occur in the token stream the LM and SAEs trained on."""
    import numpy as np

    from test_data import _heldout_sentences
    from utils.data import corpus

    tok = models.load_tokenizer(profile="cpu")
    stream = corpus.encode_docs(corpus.load_docs("train"), tok).tokens.astype(np.int64)
    n = 6
    seen = set(map(tuple, np.lib.stride_tricks.sliding_window_view(stream, n).tolist()))
    sentences = _heldout_sentences(corpus.load_dialogue_pairs("heldout_wording"))
    encoded = [tok(" " + s)["input_ids"] for s in sentences]
    checked = [ids for ids in encoded if len(ids) >= n]
    assert len(checked) >= len(encoded) / 2, "most sentences must be long enough to be checked at this n"
    grams = {tuple(ids[i:i + n]) for ids in checked for i in range(len(ids) - n + 1)}
    assert not grams & seen, [tok.decode(list(g)) for g in sorted(grams & seen)][:20]
    # the same check finds the corpus's own wording everywhere
    own = _heldout_sentences(corpus.load_dialogue_pairs("heldout", scale=0.05))
    assert {tuple(ids[i:i + n]) for s in own for ids in [tok(" " + s)["input_ids"]]
            for i in range(len(ids) - n + 1)} & seen


# SAELens' own evaluation (sae_lens.evals.run_evals: EV about the mean, 1 − MSE / Var, and L0 over
# non-special tokens) on activations from SAELens' own store, built from each shipped cfg.json,
# must agree with the manifest's figures (the course's metrics.evaluate on the same held-out rows).
SAELENS_TOL = {"explained_variance": 0.01, "l0": 0.02}   # absolute; relative for L0


@pytest.mark.slow
@pytest.mark.parametrize("variant", models.VARIANTS)
def test_shipped_sae_runs_in_saelens_activation_store_and_evals(shipped, variant):
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler
    from sae_lens.training.activations_store import ActivationsStore

    from utils.data import load_hf_dataset

    man, model, held, _, same_python = shipped
    sae = models.load_sae(variant, profile="cpu")
    n_seq, batch = man["build_config"]["eval_seqs"], 32
    dataset = load_hf_dataset("heldout", tokenized=True, seq_len=model.cfg.n_ctx, n_docs=n_seq)  # no network
    store = ActivationsStore.from_sae(model, sae, dataset, streaming=False, store_batch_size_prompts=batch,
                                      n_batches_in_buffer=2, train_batch_size_tokens=1024, device="cpu")
    cfg = EvalConfig(batch_size_prompts=batch, n_eval_sparsity_variance_batches=n_seq // batch,
                     compute_sparsity_metrics=True, compute_variance_metrics=True,
                     n_eval_reconstruction_batches=0)
    metrics, _ = run_evals(sae, store, model, ActivationScaler(), cfg)
    recorded = man["saes"][variant]["metrics"]
    ev, l0 = metrics["reconstruction_quality"]["explained_variance"], metrics["sparsity"]["l0"]
    tol = 1 if same_python else 3
    assert ev == pytest.approx(recorded["explained_variance"], abs=tol * SAELENS_TOL["explained_variance"])
    assert l0 == pytest.approx(recorded["l0"], rel=tol * SAELENS_TOL["l0"])


def test_shipped_lm_beats_the_bigram_and_its_probes_find_the_concepts():
    lm = models.manifest()["lm"]
    assert lm["val_loss"] < lm["bigram_val_loss"] - 0.5
    assert all(lm["probe_auroc"][c] >= 0.95 for c in PROBE_CONCEPTS), lm["probe_auroc"]


# Chapter 06's bar (exercise 10): a concept is recovered when its latent, chosen on validation
# text, has precision >= 0.8 on held-out text and fires there on at least 20 tokens. The shipped
# TopK SAE must recover at least six of the eleven concepts. (Issue 8's "one latent per concept at
# recall >= 0.5" is retired: the manifest's probe_precision_at_recall_0.5 shows that even the best
# linear direction misses it for several concepts at this layer.)
def test_choosing_concept_latents_at_once_is_concept_precision_recall_per_concept():
    """The builder scores every concept in one pass; the readable path scores one concept at a time
    with utils.data.concept_precision_recall. Same choice, latent and threshold."""
    from tools.world.evaluate import CONCEPTS, choose_concept_latents
    from utils.data import concept_precision_recall

    g = torch.Generator().manual_seed(0)
    labels = torch.rand(3000, len(CONCEPTS), generator=g) < 0.1
    acts = torch.relu(torch.randn(3000, 64, generator=g) - 1.0)
    acts[:, :len(CONCEPTS)] += 3 * labels.float() * (torch.rand(3000, len(CONCEPTS), generator=g) > 0.3)
    want, peak = {}, acts.amax(0).clamp_min(1e-6)
    for q in (0.0, 0.3, 0.6):
        enough = (acts / peak > q).sum(0) >= 30
        for i, c in enumerate(CONCEPTS):
            p, r = concept_precision_recall(acts / peak, labels[:, i], q)
            r = torch.where((p >= 0.9) & enough, r, torch.zeros_like(r))
            j = int(r.argmax())
            if float(r[j]) > want.get(c, (0.0, None))[0]:
                want[c] = (float(r[j]), (j, q * float(peak[j])))
    assert len(want) >= len(CONCEPTS) // 2
    assert choose_concept_latents(acts, labels) == {c: choice for c, (_, choice) in want.items()}


MIN_RECOVERED = 6


@pytest.mark.slow
def test_topk_recovers_six_concepts_as_chapter_06_grades(shipped):
    from tools.world.evaluate import choose_concept_latents, residuals
    from utils.checks.ch06 import concept_scores
    from utils.data import load_labelled_tokens

    man, model, held, _, same_python = shipped
    sae = models.load_sae("topk", profile="cpu")
    val = load_labelled_tokens("validation", seq_len=model.cfg.n_ctx, n_seq=man["build_config"]["eval_seqs"])
    with torch.no_grad():
        acts = sae.encode(residuals(model, val.tokens, man["hook_name"])[:, 1:].reshape(-1, model.cfg.d_model))
    choice = choose_concept_latents(acts, torch.from_numpy(val.labels[:, 1:].reshape(-1, len(val.concepts))))
    scores = concept_scores(choice, sae, model, torch.from_numpy(held.tokens), held)   # the grader's own scorer
    recovered = sorted(c for c, s in scores.items() if s["precision"] >= 0.8 and s["fires"] >= 20)
    assert len(recovered) >= MIN_RECOVERED, scores
    if same_python:  # same tokens as at build time: the manifest records the same table
        rows = {r["concept"]: r for r in man["saes"]["topk"]["concepts"]}
        assert recovered == sorted(c for c, r in rows.items() if r["recovered"])
        assert all(rows[c]["precision"] == pytest.approx(s["precision"], abs=1e-4) for c, s in scores.items())


@pytest.mark.slow
def test_manifest_capstone_top_latent_auroc_is_what_the_chapter_measures(shipped):
    """The held-out-wording AUROC recorded for the top latent, measured again with chapter 07's
    own functions on the held-out-wording pairs."""
    from utils import capstone, detection
    from utils.data.corpus import load_dialogue_pairs

    man, model = shipped[0], shipped[1]
    cap = man["capstone"]
    sae = models.load_sae(cap["sae"], profile="cpu")
    n = (lambda text: len(model.tokenizer(text)["input_ids"]))  # noqa: E731
    records = [r for r in load_dialogue_pairs("heldout_wording") if 1 + n(r["prompt"]) + max(
        n(r["sycophantic_continuation"]), n(r["honest_continuation"])) <= model.cfg.n_ctx]  # as the build does
    batch = capstone.encode_pairs(model.tokenizer, records)
    pooled = capstone.pool_sae_codes(model, sae, batch)
    got = detection.auroc(pooled.latents[:, cap["top_latents"][:1]], batch.labels)
    assert float(got[0]) == pytest.approx(cap["heldout_wording"]["all"]["top_latent_auroc"], abs=0.02)
    for split in (cap["heldout_claims"], *cap["heldout_wording"].values()):
        assert len(split["ablation"]["random"]) >= 30


def test_chapter_07_prints_the_capstone_figures_the_manifest_records():
    """The table in chapter 07's "What the offline world measured" is the shipped manifest's (a rebuild
    that changes the figures must change the text: `python -m tools.world --table` prints it)."""
    import nbformat

    from tools.world.capstone import table

    ch = "07_capstone_sycophancy"
    text = "\n".join(c.source for c in nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4).cells
                     if c.cell_type == "markdown")
    want = table(models.manifest()["capstone"])
    assert want in text, f"chapter 07's table differs from the manifest's; it should read:\n{want}"
