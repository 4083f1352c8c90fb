"""utils.activations: capture agrees with TransformerLens' own cache and SAELens' spliced SAE, stops
at the hook's layer, batches without changing a value, and moves inputs to the module's device
(a model or SAE on `meta` stands in for a GPU: inputs left on the CPU would raise a mismatch)."""

from __future__ import annotations

import pytest
import torch
from conftest_saes import tiny_lm, tokens

from _helpers import tiny_hooked
from utils import activations as A

HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(d_model=16)


@pytest.fixture(scope="module")
def tiny():
    """A random 2-layer HookedSAETransformer with the shipped tokenizer, and a random TopK SAE (SAELens) at HOOK."""
    return tiny_hooked(n_ctx=32, k=4, n_seq=6, seq=16, saelens=True)


def test_stop_layer_by_hand():
    assert A.stop_layer("blocks.0.hook_resid_pre") == 1
    assert A.stop_layer("blocks.11.attn.hook_z") == 12
    assert A.stop_layer("hook_embed") is None and A.stop_layer("ln_final.hook_normalized") is None


def test_hook_name_from_either_library():
    from utils.interop import to_saelens
    from utils.saes import build_sae

    course = build_sae("topk", d_in=8, d_sae=16, k=2, init_seed=0, hook_name="blocks.3.hook_resid_post")
    assert A.sae_hook_name(course) == A.sae_hook_name(to_saelens(course)) == "blocks.3.hook_resid_post"
    with pytest.raises(ValueError, match="hook"):
        A.sae_hook_name(build_sae("topk", d_in=8, d_sae=16, k=2, init_seed=0))


def test_model_activations_match_transformer_lens_cache(lm):
    toks = tokens(3, seq=12)
    with torch.no_grad():
        _, cache = lm.run_with_cache(toks, names_filter=HOOK)
    want = cache[HOOK]                                                        # [3 12 16]
    torch.testing.assert_close(A.model_activations(lm, HOOK, toks), want.reshape(-1, 16))
    torch.testing.assert_close(A.model_activations(lm, HOOK, toks, flatten=False), want)
    torch.testing.assert_close(A.model_activations(lm, HOOK, toks, drop_bos=True), want[:, 1:].reshape(-1, 16))
    torch.testing.assert_close(A.model_activations(lm, HOOK, toks, drop_bos=True, flatten=False), want[:, 1:])


def test_model_runs_only_up_to_the_hooks_layer(lm):
    calls = []
    later = ("blocks.1.hook_resid_post", lambda act, hook: calls.append(hook.name))
    with lm.hooks(fwd_hooks=[later]):
        A.model_activations(lm, "blocks.0.hook_resid_post", tokens(2, seq=12))
        assert calls == []                                                    # block 1 never ran
        A.model_activations(lm, "blocks.1.hook_resid_post", tokens(2, seq=12))
    assert calls == ["blocks.1.hook_resid_post"]


def test_cache_batches_are_the_one_batch_values(lm, tmp_path):
    toks = tokens(10, seq=12)
    whole = A.model_activations(lm, HOOK, toks, drop_bos=True)
    torch.testing.assert_close(A.cache_activations(lm, HOOK, toks, batch_size=3, drop_bos=True), whole)
    from_iterable = A.cache_activations(lm, HOOK, (t for t in toks.split(4)), drop_bos=True)
    torch.testing.assert_close(from_iterable, whole)
    per_seq = A.cache_activations(lm, HOOK, toks, batch_size=4, flatten=False)
    assert per_seq.shape == (10, 12, 16)
    torch.testing.assert_close(per_seq[:, 1:].reshape(-1, 16), whole)
    half = A.cache_activations(lm, HOOK, toks, tmp_path / "sub" / "acts.pt", dtype=torch.float16)
    assert half.dtype == torch.float16 and half.device.type == "cpu"
    assert torch.equal(torch.load(tmp_path / "sub" / "acts.pt"), half)    # saved as returned


def test_bad_tokens_say_what_to_pass(lm, unchecked_types):
    with pytest.raises(ValueError, match=r"\[batch seq\].*tokens\[None\]"):
        A.model_activations(lm, HOOK, tokens(1, seq=12)[0])
    batches = (t for t in tokens(4, seq=12).split(2))
    A.cache_activations(lm, HOOK, batches)
    with pytest.raises(ValueError, match="only once"):
        A.cache_activations(lm, HOOK, batches)                               # the generator is spent


def test_encode_and_sae_latents_match_saelens_splice(tiny):
    model, sae, toks = tiny
    resid = A.cache_activations(model, HOOK, toks, batch_size=4, flatten=False)
    acts = A.encode(sae, resid, chunk=7)                                      # chunks cut across sequences
    _, cache = model.run_with_cache_with_saes(toks, saes=[sae])
    torch.testing.assert_close(acts, cache[f"{HOOK}.hook_sae_acts_post"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(A.encode(sae, resid, 3), acts[..., 3])          # an int drops the last axis
    torch.testing.assert_close(A.encode(sae, resid, [5, 1]), acts[..., [5, 1]])
    torch.testing.assert_close(A.sae_latents(model, sae, toks, batch_size=4), acts, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(A.sae_latents(model, sae, toks, [2], batch_size=5), acts[..., [2]],
                               atol=1e-6, rtol=1e-5)


# ---- devices ---------------------------------------------------------------------------------------
def _on_meta(module):
    return module.to("meta")


def test_model_on_another_device_gets_the_tokens_moved():
    model = _on_meta(tiny_lm(d_model=16))
    toks = tokens(3, seq=12)                                                  # on the CPU
    assert A.module_device(model).type == "meta"
    out = A.model_activations(model, HOOK, toks, device=None)                 # stays where it was computed
    assert out.device.type == "meta" and out.shape == (36, 16)
    out = A.cache_activations(model, HOOK, toks, batch_size=2, drop_bos=True, flatten=False, device=None)
    assert out.device.type == "meta" and out.shape == (3, 11, 16)


@pytest.mark.parametrize("library", ["course", "saelens"])
def test_sae_on_another_device_gets_the_activations_moved(library):
    from utils.interop import to_saelens
    from utils.saes import build_sae

    sae = build_sae("topk", d_in=16, d_sae=32, k=4, init_seed=0, hook_name=HOOK)
    sae = _on_meta(to_saelens(sae) if library == "saelens" else sae)
    x = torch.randn(3, 5, 16)                                                 # on the CPU
    out = A.encode(sae, x, device=None)
    assert out.device.type == "meta" and out.shape == (3, 5, 32)
    model = _on_meta(tiny_lm(d_model=16))
    out = A.sae_latents(model, sae, tokens(3, seq=12), [0, 4], batch_size=2, device=None)
    assert out.device.type == "meta" and out.shape == (3, 12, 2)


def test_results_land_on_the_cpu_by_default(tiny):
    model, sae, toks = tiny
    for out in (A.model_activations(model, HOOK, toks), A.cache_activations(model, HOOK, toks),
                A.encode(sae, torch.randn(4, 32)), A.sae_latents(model, sae, toks)):
        assert out.device.type == "cpu" and out.dtype == torch.float32


# ---- a chapter's site ------------------------------------------------------------------------------
def test_load_site_offline_is_the_corpus_at_the_shipped_site():
    from utils import models

    try:
        site = A.load_site("fast", n_seq=4, seq_len=32)
    except FileNotFoundError:
        pytest.skip("shipped assets not built")
    assert site.hook_name == models.manifest()["hook_name"] == models.hook_name("cpu")
    assert site.tokens.shape == (4, 32) and (site.tokens[:, 0] == site.model.tokenizer.bos_token_id).all()
    torch.testing.assert_close(site.acts, A.model_activations(site.model, site.hook_name, site.tokens, drop_bos=True))


@pytest.mark.network_stub
def test_gpu_token_rows_pack_documents_without_padding(monkeypatch):
    """On gpu, short documents are packed end to end: no row is padded, every row starts with BOS."""
    import datasets

    from utils import data, models

    docs = ["a", "the cat sat on the mat", "x = 1", "import os\nimport sys\n" * 3, "ok"] * 20
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=1.5: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: {"text": docs})
    try:
        tok = models.load_tokenizer("cpu")
    except FileNotFoundError:
        pytest.skip("shipped tokenizer not built")
    rows = data.load_token_rows("train", 16, 6, "gpu", tokenizer=tok)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    stream = []
    for d in docs[: int(0.8 * len(docs))]:                                   # the Pile's "train" part
        stream += tok(d, add_special_tokens=False)["input_ids"] + [eos]
    assert rows.shape == (6, 16) and (rows[:, 0] == bos).all()
    assert rows[:, 1:].flatten().tolist() == stream[: 6 * 15]                 # every position is text or a separator
    with pytest.raises(ValueError, match="tokenizer"):
        data.load_token_rows("train", 16, 6, "gpu")
