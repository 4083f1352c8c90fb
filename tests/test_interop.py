"""SAELens equivalence: same weights give the same outputs, losses and gradients; the on-disk format round-trips."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest_saes import make_sae, tiny_lm, tokens

warnings.filterwarnings("ignore", category=UserWarning)
sae_lens = pytest.importorskip("sae_lens")
from sae_lens import SAE as LensSAE  # noqa: E402
from sae_lens.saes import (  # noqa: E402
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    GatedTrainingSAE,
    GatedTrainingSAEConfig,
    JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig,
    StandardSAE,
    StandardSAEConfig,
    StandardTrainingSAE,
    StandardTrainingSAEConfig,
    TopKSAE,
    TopKSAEConfig,
    TopKTrainingSAE,
    TopKTrainingSAEConfig,
)
from sae_lens.saes.sae import TrainStepInput  # noqa: E402

from utils import metrics  # noqa: E402
from utils.interop import from_saelens, load_saelens, save_saelens, to_saelens  # noqa: E402

EXPORTABLE = ["relu", "seed_relu", "gated", "jumprelu", "topk", "batchtopk"]


def _prepared(variant, d_in=12, d_sae=40):
    sae = make_sae(variant, d_in=d_in, d_sae=d_sae).eval()
    with torch.no_grad():
        if variant == "jumprelu":
            sae.threshold.uniform_(0.0, 0.2)
        if variant == "batchtopk":
            sae.threshold.fill_(0.1)
        if variant == "gated":
            sae.r_mag.normal_(0, 0.3)
    return sae


@pytest.mark.parametrize("variant", EXPORTABLE)
def test_to_saelens_same_outputs(variant):
    sae = _prepared(variant)
    lens = to_saelens(sae, hook_name="blocks.0.hook_resid_post")
    x = torch.randn(7, 3, 12)
    with torch.no_grad():
        torch.testing.assert_close(lens.encode(x), sae.encode(x))
        torch.testing.assert_close(lens(x), sae.decode(sae.encode(x)))
    assert (sae.encode(x) != 0).any() and (sae.encode(x) == 0).any()  # a non-degenerate comparison


@pytest.mark.parametrize("variant", EXPORTABLE)
def test_disk_round_trip(variant, tmp_path):
    sae = _prepared(variant)
    save_saelens(sae, tmp_path / variant, hook_name="blocks.0.hook_resid_post", model_name="tiny")
    assert (tmp_path / variant / "cfg.json").exists() and (tmp_path / variant / "sae_weights.safetensors").exists()
    lens = LensSAE.load_from_disk(str(tmp_path / variant))
    assert lens.cfg.metadata.hook_name == "blocks.0.hook_resid_post"
    back = load_saelens(tmp_path / variant)
    assert type(back) is type(sae) and back.cfg == sae.cfg
    x = torch.randn(20, 12)
    with torch.no_grad():
        torch.testing.assert_close(lens(x), sae.decode(sae.encode(x)))
        torch.testing.assert_close(back.encode(x), sae.encode(x))
        torch.testing.assert_close(back.decode(back.encode(x)), sae.decode(sae.encode(x)))


def test_seed_gated_has_no_saelens_form():
    with pytest.raises(ValueError, match="sigmoid gate"):
        to_saelens(make_sae("seed_gated"))


def test_foreign_saelens_saes_load():
    # an SAELens SAE that does not subtract b_dec, with non-unit decoder rows
    lens = StandardSAE(StandardSAEConfig(d_in=6, d_sae=10, apply_b_dec_to_input=False))
    with torch.no_grad():
        for p in lens.parameters():
            p.normal_(0, 0.5)
    sae = from_saelens(lens)
    x = torch.randn(9, 6)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), lens.encode(x))
        torch.testing.assert_close(sae.decode(sae.encode(x)), lens(x))
    assert sae.cfg.unit_norm_decoder is False
    # a TopK SAE trained with rescale_acts_by_decoder_norm: folded into unit rows on import
    lens = TopKSAE(TopKSAEConfig(d_in=6, d_sae=10, k=3, rescale_acts_by_decoder_norm=True))
    with torch.no_grad():
        for p in lens.parameters():
            p.normal_(0, 0.5)
    sae = from_saelens(lens)
    with torch.no_grad():
        torch.testing.assert_close(sae.decode(sae.encode(x)), lens(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(10))


# ---- training losses and gradients against SAELens' training classes ----------------------------
def _copy_into_lens(lens, sae, names):
    with torch.no_grad():
        for n in names:
            getattr(lens, n).copy_(getattr(sae, n))


def _step_input(x, coeffs, dead=None):
    return TrainStepInput(sae_in=x, coefficients=coeffs, dead_neuron_mask=dead, n_training_steps=0,
                          is_logging_step=False)


def _compare(sae, lens, x, lens_losses_to_ours, coeffs, dead=None, names=(), undetached=None):
    out = sae.train().output(x)
    lens_out = lens.training_forward_pass(_step_input(x, coeffs, dead))
    for lens_name, ours in lens_losses_to_ours.items():
        torch.testing.assert_close(out.losses[ours], lens_out.losses[lens_name], msg=lens_name)
    torch.testing.assert_close(out.x_hat, lens_out.sae_out)
    sum(out.losses.values()).backward()
    extra = {}
    if undetached is not None:  # the part of a loss that SAELens lets reach the decoder
        W_dec, b_dec = torch.autograd.grad(undetached(lens, x), [lens.W_dec, lens.b_dec])
        extra = {"W_dec": W_dec, "b_dec": b_dec}
    lens_out.loss.backward()
    for n in names:
        expected = getattr(lens, n).grad - extra.get(n, 0.0)
        torch.testing.assert_close(getattr(sae, n).grad, expected, atol=1e-5, rtol=1e-4, msg=n)


def test_standard_training_equivalence():
    sae = make_sae("relu", l1_coeff=0.3)
    lens = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=12, d_sae=40, l1_coefficient=0.3))
    names = ["W_enc", "b_enc", "W_dec", "b_dec"]
    _copy_into_lens(lens, sae, names)
    _compare(sae, lens, torch.randn(32, 12), {"mse_loss": "recon", "l1_loss": "sparsity"}, {"l1": 0.3}, names=names)


def test_gated_training_equivalence():
    # Same losses; same gradients except that SAELens does not detach W_dec and b_dec in the
    # auxiliary loss (Rajamanoharan et al. §3.2 and dictionary_learning's gdm.py do): the
    # decoder gradients differ by exactly that term.
    sae = _prepared("gated")
    lens = GatedTrainingSAE(GatedTrainingSAEConfig(d_in=12, d_sae=40, l1_coefficient=0.1))
    names = ["W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"]
    _copy_into_lens(lens, sae, names)
    _compare(sae, lens, torch.randn(32, 12),
             {"mse_loss": "recon", "l1_loss": "sparsity", "auxiliary_reconstruction_loss": "aux"}, {"l1": 0.1},
             names=names, undetached=_gate_aux_through_decoder)


def _gate_aux_through_decoder(lens, x):
    """SAELens' gated auxiliary loss as a function of the decoder only (the gate path held fixed)."""
    with torch.no_grad():
        gate = torch.relu((x - lens.b_dec) @ lens.W_enc + lens.b_gate)
    return (gate @ lens.W_dec + lens.b_dec - x).pow(2).sum(-1).mean()


def test_jumprelu_training_equivalence():
    sae = _prepared("jumprelu")
    sae.cfg.bandwidth = 0.1
    lens = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=12, d_sae=40, l0_coefficient=0.01,
                                                         jumprelu_bandwidth=0.1))
    names = ["W_enc", "b_enc", "W_dec", "b_dec", "threshold"]
    _copy_into_lens(lens, sae, names)
    x = torch.randn(64, 12)
    _compare(sae, lens, x, {"mse_loss": "recon", "l0_loss": "sparsity"}, {"l0": 0.01}, names=names)
    assert sae.threshold.grad.abs().sum() > 0  # the STE did reach θ


@pytest.mark.parametrize("batch", [False, True])
def test_topk_training_equivalence_with_auxk(batch):
    variant = "batchtopk" if batch else "topk"
    sae = _prepared(variant)
    sae.cfg.dead_tokens = 10
    sae.tokens_since_fired[:15] = 100.0  # 15 dead latents, more than k_aux = d_in // 2 = 6
    cfg_cls, cls = (BatchTopKTrainingSAEConfig, BatchTopKTrainingSAE) if batch else (TopKTrainingSAEConfig,
                                                                                      TopKTrainingSAE)
    lens = cls(cfg_cls(d_in=12, d_sae=40, k=4, aux_loss_coefficient=1 / 32, rescale_acts_by_decoder_norm=False))
    names = ["W_enc", "b_enc", "W_dec", "b_dec"]
    _copy_into_lens(lens, sae, names)
    dead = torch.zeros(40, dtype=torch.bool)
    dead[:15] = True
    _compare(sae, lens, torch.randn(32, 12), {"mse_loss": "recon", "auxiliary_reconstruction_loss": "aux"}, {},
             dead=dead, names=names)


# ---- inside a HookedSAETransformer ---------------------------------------------------------------
@pytest.mark.parametrize("variant", ["relu", "topk", "jumprelu"])
def test_hooked_sae_transformer(variant, tmp_path):
    model = tiny_lm(d_model=16, sae_transformer=True)
    hook = "blocks.0.hook_resid_post"
    sae = _prepared(variant, d_in=16, d_sae=32)
    save_saelens(sae, tmp_path / "sae", hook_name=hook)
    lens = LensSAE.load_from_disk(str(tmp_path / "sae"))
    toks = tokens(3, seq=10, d_vocab=50)
    with torch.no_grad():
        clean = model(toks)
        with model.saes(saes=[lens]):
            with_sae = model(toks)
        ours = model.run_with_hooks(toks, fwd_hooks=[(hook, metrics.splice_hook(sae))])
    torch.testing.assert_close(with_sae, ours)
    assert (with_sae - clean).abs().max() > 1e-3  # the SAE really was spliced in
    torch.testing.assert_close(model(toks), clean)  # and removed afterwards


# ---- what SAELens' runner records ------------------------------------------------------------------
def test_saved_sae_carries_the_runner_metadata_and_feeds_saelens_activation_store(tmp_path):
    """cfg.json holds what SAELens' runner writes about the training data; `ActivationsStore.from_sae`
    needs `context_size` and `prepend_bos` from it, and SAELens' `run_evals` then measures the SAE
    on the store's activations as the course does on the same ones."""
    import datasets
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler
    from sae_lens.training.activations_store import ActivationsStore

    from utils.interop import RUNNER_METADATA

    model = tiny_lm(d_model=16, n_ctx=12, sae_transformer=True)
    hook = "blocks.0.hook_resid_post"
    sae = _prepared("topk", d_in=16, d_sae=32)
    save_saelens(sae, tmp_path / "sae", hook_name=hook, context_size=12, dataset_path="course-corpus")
    meta = LensSAE.load_from_disk(str(tmp_path / "sae")).cfg.metadata
    assert set(RUNNER_METADATA) <= set(meta.keys())
    assert (meta.context_size, meta.prepend_bos, meta.dataset_path) == (12, True, "course-corpus")

    lens = LensSAE.load_from_disk(str(tmp_path / "sae"))
    rows = tokens(16, seq=12, d_vocab=50, seed=3)
    store = ActivationsStore.from_sae(model, lens, datasets.Dataset.from_dict({"tokens": rows.tolist()}),
                                      streaming=False, store_batch_size_prompts=8, n_batches_in_buffer=2,
                                      train_batch_size_tokens=32, device="cpu")
    cfg = EvalConfig(batch_size_prompts=8, n_eval_sparsity_variance_batches=2, compute_sparsity_metrics=True,
                     compute_variance_metrics=True, n_eval_reconstruction_batches=0)
    got, _ = run_evals(lens, store, model, ActivationScaler(), cfg, exclude_special_tokens=False)
    with torch.no_grad():
        _, cache = model.run_with_cache(rows, names_filter=hook)
        x = cache[hook].reshape(-1, 16)
    assert got["sparsity"]["l0"] == pytest.approx(float((sae.encode(x) != 0).sum(-1).float().mean()), rel=1e-5)
    assert got["reconstruction_quality"]["explained_variance"] == pytest.approx(
        metrics.evaluate(sae, x)["explained_variance"], abs=1e-4)


def test_saved_sae_without_context_size_cannot_feed_an_activation_store(tmp_path):
    from sae_lens.training.activations_store import ActivationsStore

    save_saelens(_prepared("relu", d_in=16, d_sae=32), tmp_path / "sae", hook_name="blocks.0.hook_resid_post")
    lens = LensSAE.load_from_disk(str(tmp_path / "sae"))
    with pytest.raises(ValueError, match="context_size is required"):
        ActivationsStore.from_sae(tiny_lm(d_model=16, sae_transformer=True), lens, "unused", streaming=False)
