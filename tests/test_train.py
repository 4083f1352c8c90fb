"""The trainer and the activation sources; student code plugged in by argument, never by patching."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from conftest_saes import MODERN, VARIANT_KWARGS, tiny_lm, tokens

from utils import losses, metrics
from utils.resample import resample_dead_latents_
from utils.saes import build_sae
from utils.synthetic import SyntheticSource, ToyFeatureConfig, ToyFeatures
from utils.train import (
    HookActivationSource,
    TensorSource,
    TrainConfig,
    cache_activations,
    geometric_median,
    lr_multiplier,
    model_activations,
    train_sae,
)


def test_lr_multiplier_shape():
    # 10 steps, 2 warm-up steps, decay over the last 50%
    got = [lr_multiplier(s, 10, 2, 0.5) for s in range(10)]
    assert got == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2])
    assert lr_multiplier(3, 10, 0, 1.0) == 1.0


def test_geometric_median():
    # on a line with an outlier, the geometric median is the ordinary median, unlike the mean
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [100.0, 0.0], [3.0, 0.0]])
    torch.testing.assert_close(geometric_median(x, iters=500), torch.tensor([2.0, 0.0]), atol=1e-3, rtol=0)
    # in general it minimises Σ‖x_i − m‖: no nearby point does better
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0)) ** 3
    m = geometric_median(x)
    cost = lambda p: (x - p).norm(dim=-1).sum()  # noqa: E731
    for d in torch.eye(3):
        assert cost(m) <= cost(m + 1e-2 * d) and cost(m) <= cost(m - 1e-2 * d)


def test_tensor_source_epochs():
    acts = torch.arange(20.0)[:, None].expand(20, 3)
    it = iter(TensorSource(acts, batch_size=6, seed=1))
    epoch = torch.cat([next(it) for _ in range(3)])  # 3 full batches; 2 tokens dropped per epoch
    assert epoch.shape == (18, 3) and epoch[:, 0].unique().numel() == 18
    again = torch.cat([next(it) for _ in range(3)])
    assert not torch.equal(epoch, again)  # reshuffled
    ordered = next(iter(TensorSource(acts, batch_size=4, shuffle=False)))
    torch.testing.assert_close(ordered, acts[:4])


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(d_model=16)


def test_hook_source_serves_every_activation_shuffled(lm):
    toks = list(tokens(12, seq=12).split(3))  # 4 batches of 3 × 12 = 36 tokens
    hook = "blocks.0.hook_resid_post"
    expected = torch.cat([model_activations(lm, hook, t) for t in toks])
    src = HookActivationSource(lm, hook, iter(toks), batch_size=16, buffer_tokens=40, seed=0)
    got = torch.cat(list(src))  # a one-shot iterator: a single pass, then the source ends
    assert got.shape[1] == 16 and got.shape[0] == 16 * (got.shape[0] // 16) >= 128
    # every served row is an activation of the model, and none is served twice
    dists = torch.cdist(got, expected, compute_mode="donot_use_mm_for_euclid_dist")
    assert dists.min(-1).values.max() < 1e-5
    assert dists.argmin(-1).unique().numel() == got.shape[0]
    assert not torch.equal(got, expected[: got.shape[0]])  # shuffled
    with torch.no_grad():  # the hook's activation, as TransformerLens' cache reports it
        _, cache = lm.run_with_cache(toks[0], names_filter=hook)
    torch.testing.assert_close(model_activations(lm, hook, toks[0]), cache[hook].reshape(-1, 16))
    torch.testing.assert_close(model_activations(lm, hook, toks[0], drop_bos=True),
                               cache[hook][:, 1:].reshape(-1, 16))


def test_hook_source_disk_cache(lm, tmp_path):
    toks = list(tokens(8, seq=12).split(4))
    hook = "blocks.1.hook_resid_pre"
    path = tmp_path / "acts.pt"
    src = HookActivationSource(lm, hook, toks, batch_size=32, cache_path=path, seed=3)
    first = next(iter(src))
    assert path.exists()
    stored = torch.load(path)
    torch.testing.assert_close(stored, cache_activations(lm, hook, toks))
    # a second source reads the file (the model is never run): give it one that would fail
    src2 = HookActivationSource(None, hook, [], batch_size=32, cache_path=path, seed=3)
    torch.testing.assert_close(next(iter(src2)), first)


@pytest.mark.parametrize("variant", MODERN + ["seed_relu", "seed_gated"])
def test_short_training_run_loss_falls(variant):
    data = ToyFeatures(ToyFeatureConfig(d_in=16, n_feats=32, mean_active=2, seed=1))
    kw = {**VARIANT_KWARGS[variant], **({"k": 2} if "topk" in variant else {})}
    sae = build_sae(variant, d_in=16, d_sae=32, init_seed=0, **kw)
    cfg = TrainConfig(steps=150, lr=3e-3, warmup_steps=10, log_every=10, dead_window_tokens=5_000)
    res = train_sae(sae, SyntheticSource(data, 256), cfg, progress=False)
    h = res.history
    assert {"step", "lr", "recon_loss", "sparsity_loss", "l0", "explained_variance", "dead_fraction"} <= set(h[0])
    first, last = h[0]["loss"], sum(e["loss"] for e in h[-3:]) / 3
    assert last < 0.5 * first, (first, last)
    assert h[-1]["explained_variance"] > h[0]["explained_variance"]
    assert not res.sae.training
    # the returned SAE works on raw activations (the input scale was folded back in)
    x = data.sample(2000, torch.Generator().manual_seed(9))[0]
    assert metrics.explained_variance(x, res.sae.decode(res.sae.encode(x))).item() > 0.5


def test_input_normalisation_is_folded_back():
    # the same data ×1000: a normalising trainer must learn the same SAE, in raw units
    data = ToyFeatures(ToyFeatureConfig(d_in=16, n_feats=32, mean_active=2, seed=1))
    x = data.sample(20_000, torch.Generator().manual_seed(0))[0]
    results = []
    for scale in (1.0, 1000.0):
        sae = build_sae("topk", d_in=16, d_sae=32, k=2, init_seed=0)
        cfg = TrainConfig(steps=60, lr=3e-3, warmup_steps=5, log_every=10, init_b_dec="mean")
        res = train_sae(sae, TensorSource(x * scale, 500, seed=1), cfg, progress=False)
        results.append((res.sae, res.history))
    (a, ha), (b, hb) = results
    assert ha[-1]["loss"] == pytest.approx(hb[-1]["loss"], rel=1e-3)
    torch.testing.assert_close(b.W_dec, a.W_dec, atol=1e-3, rtol=0)
    torch.testing.assert_close(b.b_dec / 1000, a.b_dec, atol=1e-4, rtol=0)
    torch.testing.assert_close(b.decode(b.encode(x * 1000)) / 1000, a.decode(a.encode(x)), atol=1e-3, rtol=0)


def test_batchtopk_inference_l0_close_to_k():
    data = ToyFeatures(ToyFeatureConfig(d_in=32, n_feats=64, mean_active=3, seed=2))
    sae = build_sae("batchtopk", d_in=32, d_sae=64, k=3, init_seed=0)
    res = train_sae(sae, SyntheticSource(data, 512), TrainConfig(steps=300, lr=3e-3, log_every=50), progress=False)
    assert all(e["l0"] == pytest.approx(3.0) for e in res.history)  # exactly k on average in training
    x = data.sample(8192, torch.Generator().manual_seed(1))[0]
    l0 = metrics.l0(res.sae.encode(x)).item()  # eval mode: the learned threshold
    assert abs(l0 - 3) <= 0.3, l0


def test_resampling_revives_dead_latents():
    data = ToyFeatures(ToyFeatureConfig(d_in=16, n_feats=24, mean_active=2, seed=3))
    sae = build_sae("relu", d_in=16, d_sae=64, init_seed=0, l1_coeff=0.2)
    with torch.no_grad():
        sae.b_enc[:40] = -100.0  # 40 latents that can never fire
    cfg = TrainConfig(steps=200, lr=3e-3, log_every=20, dead_window_tokens=5_000, resample_every=60,
                      resample_window=20, resample_inputs=4096)
    res = train_sae(sae, SyntheticSource(data, 256), cfg, progress=False)
    x = data.sample(20_000, torch.Generator().manual_seed(4))[0]
    assert metrics.evaluate(res.sae, x)["dead_fraction"] < 0.2
    control = build_sae("relu", d_in=16, d_sae=64, init_seed=0, l1_coeff=0.2)
    with torch.no_grad():
        control.b_enc[:40] = -100.0
    cfg.resample_every = None
    res = train_sae(control, SyntheticSource(data, 256), cfg, progress=False)
    assert metrics.evaluate(res.sae, x)["dead_fraction"] >= 40 / 64


def test_trainer_follows_lr_and_sparsity_warmup_schedules():
    # the history records what the loop set: LR = lr × lr_multiplier, the L1 coefficient's scale
    # rising linearly over sparsity_warmup_steps; and the sparsity term really is scaled by it
    data = ToyFeatures(ToyFeatureConfig(d_in=8, n_feats=12, mean_active=2, seed=0))
    sae = build_sae("relu", d_in=8, d_sae=16, init_seed=0, l1_coeff=0.5)
    cfg = TrainConfig(steps=20, lr=1e-2, warmup_steps=4, decay_start=0.5, sparsity_warmup_steps=10, log_every=1)
    res = train_sae(sae, SyntheticSource(data, 64), cfg, progress=False)
    h = res.history
    assert [e["step"] for e in h] == list(range(20))
    assert [e["lr"] for e in h] == pytest.approx([1e-2 * lr_multiplier(s, 20, 4, 0.5) for s in range(20)])
    assert [e["sparsity_scale"] for e in h] == pytest.approx([min(1.0, (s + 1) / 10) for s in range(20)])
    assert h[0]["lr"] == pytest.approx(2.5e-3) and h[-1]["lr"] < h[10]["lr"]
    assert res.sae.sparsity_scale == 1.0  # the returned SAE carries the full coefficient
    sae2 = build_sae("relu", d_in=8, d_sae=16, init_seed=0, l1_coeff=0.5).train()
    x = data.sample(32, torch.Generator().manual_seed(0))[0]
    full = sae2.output(x).losses["sparsity"]
    sae2.sparsity_scale = 0.3
    torch.testing.assert_close(sae2.output(x).losses["sparsity"], 0.3 * full)


@pytest.mark.parametrize("how", ["geometric_median", "mean"])
def test_trainer_initialises_b_dec(how):
    # skewed data with outliers: the geometric median and the mean differ, and b_dec (in raw units
    # after training) starts at the one asked for, computed on the first init_samples tokens
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 6, generator=gen) + 3.0
    x[::50] += 200.0  # 2% far outliers pull the mean, not the median
    sae = build_sae("topk", d_in=6, d_sae=12, k=2, init_seed=0)
    cfg = TrainConfig(steps=0, init_samples=1024, init_b_dec=how)
    res = train_sae(sae, TensorSource(x, 512, shuffle=False), cfg, progress=False)
    sample = x[:1024]
    expected = geometric_median(sample) if how == "geometric_median" else sample.mean(0)
    torch.testing.assert_close(res.sae.b_dec, expected, atol=1e-3, rtol=1e-4)
    assert (geometric_median(sample) - sample.mean(0)).norm() > 1.0  # the test can tell them apart
    # a b_dec that is already set (e.g. a resumed SAE) is left alone
    sae = build_sae("topk", d_in=6, d_sae=12, k=2, init_seed=0)
    with torch.no_grad():
        sae.b_dec.fill_(7.0)
    res = train_sae(sae, TensorSource(x, 512, shuffle=False), cfg, progress=False)
    torch.testing.assert_close(res.sae.b_dec, torch.full((6,), 7.0))


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("variant", MODERN)
def test_mixed_precision_training_path(variant, fast, monkeypatch):
    # the CUDA path trains under autocast; exercise the same loop with CPU bf16 autocast
    import utils.train as train_mod

    monkeypatch.setattr(train_mod, "_autocast",
                        lambda cfg, device: (torch.autocast("cpu", dtype=torch.bfloat16), None))
    data = ToyFeatures(ToyFeatureConfig(d_in=16, n_feats=32, mean_active=2, seed=1))
    kw = {**VARIANT_KWARGS[variant], **({"dead_tokens": 256} if "topk" in variant else {})}
    sae = build_sae(variant, d_in=16, d_sae=32, init_seed=0, **kw)
    cfg = TrainConfig(steps=40, lr=3e-3, warmup_steps=5, log_every=5, fast_kernels=fast)
    res = train_sae(sae, SyntheticSource(data, 256), cfg, progress=False)
    history = [e["loss"] for e in res.history]
    assert all(torch.isfinite(torch.tensor(history))) and history[-1] < history[0]
    assert all(p.dtype == torch.float32 for p in res.sae.parameters())  # master weights stay fp32


def test_autocast_only_on_cuda():
    import utils.train as train_mod

    ctx, scaler = train_mod._autocast(TrainConfig(), torch.device("cpu"))
    assert scaler is None and not isinstance(ctx, torch.autocast)
    ctx, scaler = train_mod._autocast(TrainConfig(amp=False), torch.device("cuda"))
    assert scaler is None and not isinstance(ctx, torch.autocast)


# ---- the fast path, end to end -------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["relu", "topk", "batchtopk"])
def test_fast_training_follows_the_readable_run(variant):
    # same data, init and schedule: the fast kernels train the same SAE (to float rounding), with
    # AuxK on for TopK (dead after 2 silent steps) and resampling for ReLU
    data = ToyFeatures(ToyFeatureConfig(d_in=16, n_feats=32, mean_active=2, seed=1))
    kw = {**VARIANT_KWARGS[variant], **({"dead_tokens": 512, "k_aux": 8} if "topk" in variant else {})}
    train = {"resample_every": 20, "resample_window": 5} if variant == "relu" else {}
    runs = []
    for fast in (False, True):
        sae = build_sae(variant, d_in=16, d_sae=48, init_seed=0, **kw)
        cfg = TrainConfig(steps=60, lr=3e-3, warmup_steps=5, log_every=10, fast_kernels=fast, **train)
        runs.append(train_sae(sae, SyntheticSource(data, 256, seed=2), cfg, progress=False))
    (slow, fast) = runs
    keys = ["loss", "recon_loss", "sparsity_loss", "aux_loss", "l0", "explained_variance", "dead_fraction"]
    for a, b in zip(slow.history, fast.history):
        assert {k: a[k] for k in keys} == pytest.approx({k: b[k] for k in keys}, rel=1e-3, abs=1e-4)
    if "topk" in variant:
        assert any(e["aux_loss"] > 0 for e in slow.history)  # AuxK did run, on both paths
    torch.testing.assert_close(fast.sae.W_dec, slow.sae.W_dec, atol=1e-3, rtol=0)


# ---- student code plugs in by argument -----------------------------------------------------------
def _toy(seed=3, d_in=16):
    return SyntheticSource(ToyFeatures(ToyFeatureConfig(d_in=d_in, n_feats=24, mean_active=2, seed=seed)), 256)


def test_resample_fn_is_the_one_called():
    calls = []

    def my_resample(sae, x, dead, *, optimizer=None, enc_scale=0.2, generator=None):
        calls.append((sae, x.shape, int(dead.sum()), optimizer, enc_scale))
        return resample_dead_latents_(sae, x, dead, optimizer=optimizer, enc_scale=enc_scale, generator=generator)

    sae = build_sae("relu", d_in=16, d_sae=64, init_seed=0, l1_coeff=0.2)
    with torch.no_grad():
        sae.b_enc[:40] = -100.0  # 40 latents that can never fire
    cfg = TrainConfig(steps=100, lr=3e-3, log_every=20, resample_every=30, resample_window=10,
                      resample_inputs=1024, resample_enc_scale=0.3)
    res = train_sae(sae, _toy(), cfg, resample_fn=my_resample, progress=False)
    assert [c[0] for c in calls] == [res.sae] * len(calls) and len(calls) >= 1
    assert calls[0][1] == (1024, 16) and calls[0][2] >= 40 and calls[0][4] == 0.3
    assert isinstance(calls[0][3], torch.optim.Adam)  # the trainer's optimiser, for the Adam reset


def test_a_resample_fn_that_does_nothing_leaves_latents_dead():
    # the control: the library's resampler revives them (test_resampling_revives_dead_latents)
    sae = build_sae("relu", d_in=16, d_sae=64, init_seed=0, l1_coeff=0.2)
    with torch.no_grad():
        sae.b_enc[:40] = -100.0
    cfg = TrainConfig(steps=200, lr=3e-3, log_every=20, dead_window_tokens=5_000, resample_every=60,
                      resample_window=20, resample_inputs=4096)
    res = train_sae(sae, _toy(), cfg, resample_fn=lambda sae, x, dead, **kw: 0, progress=False)
    assert res.history[-1]["dead_fraction"] >= 40 / 64


def test_aux_loss_fn_is_the_auxk_loss_used():
    calls = []

    def my_auxk(residual, pre_acts, W_dec, dead, k_aux):
        calls.append((residual.requires_grad, pre_acts.shape, W_dec.shape, int(dead.sum()), k_aux))
        return torch.tensor(7.0) + 0 * pre_acts.sum()  # deliberately wrong: a constant 7

    sae = build_sae("topk", d_in=16, d_sae=48, k=2, k_aux=8, dead_tokens=512, auxk_coeff=0.5, init_seed=0)
    cfg = TrainConfig(steps=30, lr=3e-3, warmup_steps=3, log_every=1)
    res = train_sae(sae, _toy(), cfg, aux_loss_fn=my_auxk, progress=False)
    assert calls and all(c[1] == (256, 48) and c[2] == (48, 16) and c[4] == 8 for c in calls)
    assert not any(c[0] for c in calls)  # the residual comes detached
    with_aux = [e for e in res.history if e["aux_loss"] != 0]
    assert len(with_aux) == len(calls)  # called on exactly the steps that had dead latents
    for e, c in zip(with_aux, calls):  # α · min(n_dead / k_aux, 1) · (the constant 7 it returned)
        assert e["aux_loss"] == pytest.approx(0.5 * min(c[3] / 8, 1.0) * 7.0, rel=1e-6)


def test_encode_fn_and_loss_fn_are_used_in_training_only():
    seen = {"encode": 0, "loss": 0}

    def my_encode(sae, x):
        seen["encode"] += 1
        pre_acts = sae.pre_activation(x)
        return 2.0 * torch.relu(pre_acts), pre_acts  # deliberately not the library's ReLU

    def my_loss(sae, x, x_hat, acts, pre_acts):
        seen["loss"] += 1
        return {"recon": losses.reconstruction_loss(x, x_hat), "mine": 0.0 * acts.sum() + 1.0}

    sae = build_sae("relu", d_in=16, d_sae=32, init_seed=0)
    cfg = TrainConfig(steps=20, lr=3e-3, warmup_steps=2, log_every=1, init_encoder_scale=False)
    res = train_sae(sae, _toy(), cfg, encode_fn=my_encode, loss_fn=my_loss, progress=False)
    assert seen == {"encode": 20, "loss": 20}
    assert all(e["sparsity_loss"] == 0 and e["loss"] == pytest.approx(e["recon_loss"] + 1.0) for e in res.history)
    x = torch.randn(5, 16)
    torch.testing.assert_close(res.sae.encode(x), torch.relu(res.sae.pre_activation(x)))  # the class's own code


@pytest.mark.parametrize("kwargs, error, match", [
    ({"aux_loss_fn": losses.auxk_loss, "cfg": {"fast_kernels": True}}, ValueError, "fast_kernels=True.*aux_loss_fn"),
    ({"encode_fn": lambda sae, x: sae.encode_with_pre(x), "cfg": {"fast_kernels": True}}, ValueError, "encode_fn"),
    ({"aux_loss_fn": losses.auxk_loss, "variant": "relu"}, ValueError, "AuxK.*ReLUSAE"),
    ({"aux_loss_fn": losses.auxk_loss, "loss_fn": lambda *a: {}}, ValueError, "not both"),
    ({"resample_fn": resample_dead_latents_}, ValueError, "resample_every"),
    ({"resample_fn": "resample_dead_latents_", "cfg": {"resample_every": 5}}, TypeError, "function"),
])
def test_plugins_that_would_be_ignored_are_refused(kwargs, error, match, unchecked_types):
    kwargs = dict(kwargs)
    variant = kwargs.pop("variant", "topk")
    cfg = TrainConfig(steps=2, **kwargs.pop("cfg", {}))
    sae = build_sae(variant, d_in=16, d_sae=32, init_seed=0, **({"k": 2} if variant == "topk" else {}))
    with pytest.raises(error, match=match):
        train_sae(sae, _toy(), cfg, progress=False, **kwargs)


# ---- no notebook patches the library ---------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]


def patching(source: str) -> list[str]:
    """Lines of notebook code that patch a module or class of `utils` at run time, or use a mocking tool.

    Plugging student code in is the trainer's job (`train_sae(..., resample_fn=...)`); a patched
    module breaks silently the day its signature changes (chapter 05 did, with `auxk_loss`).
    """
    tree = ast.parse(source)
    library: set[str] = set()  # local names bound to utils modules, classes or functions
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ("unittest", "mock", "pytest"):
                    found.append(f"line {node.lineno}: import {a.name}")
                if a.name.split(".")[0] == "utils":
                    library.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in ("unittest", "mock", "pytest") or node.module == "unittest.mock":
                found.append(f"line {node.lineno}: from {node.module} import ...")
            if root == "utils":
                library.update(a.asname or a.name for a in node.names)

    def rooted_in_library(expr) -> bool:
        while isinstance(expr, (ast.Attribute, ast.Subscript, ast.Call)):
            expr = expr.func if isinstance(expr, ast.Call) else expr.value
        return isinstance(expr, ast.Name) and (expr.id in library or expr.id == "sys")

    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, (ast.Attribute, ast.Subscript)) and rooted_in_library(sub.value):
                    found.append(f"line {node.lineno}: assigns to {ast.unparse(sub)}")
                    break
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name.split(".")[-1] in ("setattr", "delattr", "__setattr__", "__delattr__", "setitem") and node.args \
                    and rooted_in_library(node.args[0]):
                found.append(f"line {node.lineno}: {name}({ast.unparse(node.args[0])}, ...)")
            if name.split(".")[-1] in ("patch", "monkeypatch", "MagicMock", "Mock"):
                found.append(f"line {node.lineno}: {name}(...)")
    return found


@pytest.mark.parametrize("snippet, caught", [
    ("from unittest import mock\nimport utils.train\nwith mock.patch.object(utils.train, 'f', g): pass", True),
    ("from unittest.mock import patch", True),
    ("import utils.losses\nutils.losses.auxk_loss = auxk_loss", True),
    ("import utils.losses as L\nL.auxk_loss = auxk_loss", True),
    ("from utils import train\nsetattr(train, 'resample_dead_latents_', mine)", True),
    ("import utils.train\nutils.train.__dict__['f'] = g", True),
    ("from utils.saes import TopKSAE\nTopKSAE.select = my_select", True),
    ("import sys\nsys.modules['utils.losses'] = fake", True),
    ("from utils import losses\nvars(losses).update(auxk_loss=mine)\nlosses.x += 1", True),
    # ordinary notebook code is not patching: instances, local names, subclasses, plug-ins
    ("from utils.saes import build_sae, TopKSAE\nsae = build_sae('topk', d_in=2, d_sae=4)\n"
     "sae.sparsity_scale = 0.5\nclass YourTopK(TopKSAE):\n    def select(self, z): return z\n"
     "train_sae(sae, acts, cfg, aux_loss_fn=auxk_loss)\nruns = {}\nruns['a'] = 1", False),
    ("from utils.train import train_sae\ntrain_sae = 3", False),
])
def test_the_patching_detector(snippet, caught):
    assert bool(patching(snippet)) == caught, patching(snippet)


def _code_cells(notebook: Path):
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "code":
            yield cell.get("id", "?"), "".join(cell["source"])


@pytest.mark.parametrize("notebook", sorted((REPO / "solutions").glob("*/*.ipynb")), ids=lambda p: p.parent.name)
def test_no_notebook_patches_the_library(notebook):
    found = [f"{notebook.parent.name} cell {cid}: {hit}" for cid, src in _code_cells(notebook)
             for hit in patching("\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!"))))]
    assert not found, "plug student code in by argument (train_sae's resample_fn, aux_loss_fn, encode_fn, loss_fn):\n" \
        + "\n".join(found)


@pytest.mark.slow
def test_chapter05_trains_with_the_students_functions(monkeypatch):
    # Chapter 05's "resampling (yours)" and "AuxK (yours)" runs, executed from the solution notebook
    # (fast profile) with the student's two functions wrapped to record their calls: the trainer
    # must call them, on the very SAEs those runs return.
    monkeypatch.setenv("COURSE_FAST", "1")
    calls: dict[str, list] = {"resample": [], "auxk": []}
    ns: dict = {"__name__": "__main__"}
    for cell_id, source in _code_cells(REPO / "solutions" / "05_dead_latents" / "05_dead_latents.ipynb"):
        if cell_id == "train_mitigated":
            resample, auxk = ns["resample_dead_latents_"], ns["auxk_loss"]

            def recording_resample(sae, x, dead, **kw):
                calls["resample"].append(sae)
                return resample(sae, x, dead, **kw)

            def recording_auxk(residual, pre_acts, W_dec, dead, k_aux):
                calls["auxk"].append(W_dec)
                return auxk(residual, pre_acts, W_dec, dead, k_aux)

            ns["resample_dead_latents_"], ns["auxk_loss"] = recording_resample, recording_auxk
        exec(compile(source, f"05_dead_latents:{cell_id}", "exec"), ns)
        if cell_id == "train_mitigated":
            break
    runs = ns["runs"]
    assert calls["resample"] and all(s is runs["resampling (yours)"].sae for s in calls["resample"])
    assert calls["auxk"] and all(W.data_ptr() == runs["AuxK (yours)"].sae.W_dec.data_ptr() for W in calls["auxk"])
    assert any(e["aux_loss"] > 0 for e in runs["AuxK (yours)"].history)
