"""The SAE variants: invariants, hand-computed values, fast paths against readable ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest_saes import ALL, MODERN, make_sae

from utils.losses import sae_loss
from utils.saes import (
    SAE_CLASSES,
    BatchTopKSAE,
    GatedSAE,
    JumpReLUSAE,
    JumpReLUSTE,
    SAEOutput,
    SeedSparseAutoencoder,
    build_sae,
    jump_relu,
    jumprelu,
    variant_name,
)


def test_registry_and_builder():
    assert set(SAE_CLASSES) == {"relu", "gated", "jumprelu", "topk", "batchtopk", "seed_relu", "seed_gated"}
    for name, cls in SAE_CLASSES.items():
        kw = {"k": 2} if "topk" in name else {}
        sae = build_sae(name, d_in=4, d_sae=8, **kw)
        assert type(sae) is cls and variant_name(sae) == name
        assert sae.W_enc.shape == (4, 8) and sae.W_dec.shape == (8, 4)
        assert sae.b_enc.shape == (8,) and sae.b_dec.shape == (4,)
    with pytest.raises(ValueError, match="unknown SAE variant"):
        build_sae("relu6", d_in=4, d_sae=8)
    with pytest.raises(TypeError):
        build_sae("topk", d_in=4, d_sae=8, l1_coeff=0.1)  # not a TopK field


def test_init_seed_reproducible_and_tied():
    a, b = build_sae("topk", d_in=6, d_sae=10, k=2, init_seed=3), build_sae("topk", d_in=6, d_sae=10, k=2, init_seed=3)
    assert torch.equal(a.W_dec, b.W_dec)
    assert not torch.equal(a.W_dec, build_sae("topk", d_in=6, d_sae=10, k=2, init_seed=4).W_dec)
    torch.testing.assert_close(a.W_enc, a.W_dec.T)  # Gao et al.: encoder starts as the decoder's transpose
    s1, s2 = (build_sae("seed_relu", d_in=6, d_sae=10, init_seed=7) for _ in range(2))
    assert torch.equal(s1.encoder.weight, s2.encoder.weight)


@pytest.mark.parametrize("variant", ALL)
def test_shapes_nonnegative_and_loss_is_sum(variant):
    sae = make_sae(variant)
    x = torch.randn(3, 5, 12)  # extra leading dims
    sae.eval()
    out = sae.output(x)
    assert isinstance(out, SAEOutput)
    assert out.x_hat.shape == x.shape and out.acts.shape == (3, 5, 40)
    assert (out.acts >= 0).all()
    torch.testing.assert_close(sae.loss(x), sum(out.losses.values()))
    torch.testing.assert_close(sae.decode(sae.encode(x)), out.x_hat)


@pytest.mark.parametrize("variant", MODERN)
def test_unit_norm_decoder_kept_through_a_step(variant):
    sae = make_sae(variant).train()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(40))
    opt = torch.optim.Adam(sae.parameters(), lr=0.05)
    out = sae.output(torch.randn(64, 12))
    sum(out.losses.values()).backward()
    sae.before_optimizer_step_()
    radial = (sae.W_dec.grad * sae.W_dec).sum(-1)
    assert radial.abs().max() < 1e-5  # the projected gradient is tangent to the sphere
    opt.step()
    sae.after_optimizer_step_(out)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(40))


def test_seed_sae_is_the_seed():
    sae = make_sae("seed_relu")
    assert isinstance(sae.encoder, torch.nn.Linear) and sae.encoder.bias is not None
    assert isinstance(sae.decoder, torch.nn.Linear) and sae.decoder.bias is None
    x = torch.randn(7, 12)
    reconstructed, latents = sae(x)  # the seed's forward returns a tuple
    lat = F.relu(x @ sae.encoder.weight.T + sae.encoder.bias)
    torch.testing.assert_close(latents, lat)
    torch.testing.assert_close(reconstructed, lat @ sae.decoder.weight.T)
    out = sae.output(x)
    torch.testing.assert_close(sum(out.losses.values()), sae_loss(x, reconstructed, latents, 0.1))
    assert not torch.any(sae.b_dec)  # no decoder bias


def test_seed_gated_forward():
    sae = make_sae("seed_gated")
    x = torch.randn(5, 12)
    rec, lat = sae(x)
    expected = torch.sigmoid(x @ sae.W_gate.T) * F.relu(x @ sae.W_mag.T)
    torch.testing.assert_close(lat, expected)
    torch.testing.assert_close(rec, expected @ sae.decoder.weight.T)
    # the soft gate never closes: every latent with a positive magnitude stays on
    assert ((lat > 0) == (x @ sae.W_mag.T > 0)).all()


def test_jump_relu_seed_vs_paper_by_hand():
    z = torch.tensor([0.2, 0.5, 0.7, 1.5])
    # the seed's: ReLU(z − θ)·1[z > θ] = shifted ReLU, 0.2 and 1.0 above θ = 0.5
    torch.testing.assert_close(jump_relu(z, 0.5), torch.tensor([0.0, 0.0, 0.2, 1.0]))
    # the paper's: z·H(z − θ), jumps from 0 to θ
    torch.testing.assert_close(jumprelu(z, torch.tensor(0.5)), torch.tensor([0.0, 0.0, 0.7, 1.5]))


def test_jumprelu_threshold_pseudo_gradient_by_hand():
    # One latent, θ = 0.5, ε = 0.1: the kernel is 1 only for |z − θ| < 0.05, i.e. z ∈ {0.47, 0.52}.
    z = torch.tensor([[0.30], [0.47], [0.52], [0.56], [0.80]], requires_grad=True)
    theta = torch.tensor([0.5], requires_grad=True)
    JumpReLUSTE.apply(z, theta, 0.1).sum().backward()
    # ∂/∂θ := −(θ/ε)·K = −5 for each of the two tokens in the window
    torch.testing.assert_close(theta.grad, torch.tensor([-10.0]))
    # ∂/∂z is the hard mask 1[z > θ]
    torch.testing.assert_close(z.grad, torch.tensor([[0.0], [0.0], [1.0], [1.0], [1.0]]))
    from utils.losses import StepSTE

    theta.grad = None
    StepSTE.apply(z.detach(), theta, 0.1).sum().backward()  # ∂H/∂θ := −(1/ε)·K = −10 each
    torch.testing.assert_close(theta.grad, torch.tensor([-20.0]))


def test_jumprelu_train_and_eval_agree_and_threshold_fp32():
    sae = make_sae("jumprelu", init_threshold=0.05)
    x = torch.randn(20, 12)
    torch.testing.assert_close(sae.train().encode(x), sae.eval().encode(x))
    assert sae.to(torch.bfloat16).threshold.dtype == torch.float32
    assert sae.W_enc.dtype == torch.bfloat16


def test_jumprelu_threshold_moves_under_l0_penalty():
    sae = make_sae("jumprelu", l0_coeff=1.0, bandwidth=0.5, init_threshold=0.1).train()
    before = sae.threshold.detach().clone()
    out = sae.output(torch.randn(256, 12))
    out.losses["sparsity"].backward()
    assert (sae.threshold.grad <= 0).all() and (sae.threshold.grad < 0).any()  # L0 pushes θ up
    assert sae.W_enc.grad is None or not sae.W_enc.grad.any()  # DeepMind's STE: L0 reaches θ only
    torch.optim.SGD([sae.threshold], lr=0.01).step()
    assert (sae.threshold >= before).all()


def test_gated_aux_loss_by_hand():
    sae = build_sae("gated", d_in=2, d_sae=2, l1_coeff=0.5)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.b_gate.copy_(torch.tensor([0.0, -1.0]))
        sae.r_mag.copy_(torch.tensor([0.0, 0.0]))
        sae.b_mag.copy_(torch.tensor([0.0, 0.0]))
        sae.W_dec.copy_(torch.tensor([[0.6, 0.8], [1.0, 0.0]]))
        sae.b_dec.copy_(torch.tensor([0.1, 0.0]))
    x = torch.tensor([[1.1, 2.0]])
    # x − b_dec = [1, 2]; π_gate = [1, 2 − 1] = [1, 1]; ReLU(π_gate) = [1, 1]
    # via gate: [1, 1] W_dec + b_dec = [0.6 + 1.0 + 0.1, 0.8 + 0] = [1.7, 0.8]
    # aux = (1.1 − 1.7)² + (2.0 − 0.8)² = 0.36 + 1.44 = 1.80
    # sparsity = λ Σ ReLU(π_gate)·‖W_dec[i]‖ = 0.5 · (1 + 1) = 1.0
    # magnitudes: π_mag = [1, 2] (W_enc · e⁰, b_mag = 0); f = 1[π_gate > 0]·ReLU(π_mag) = [1, 2]
    # x̂ = [1, 2] W_dec + b_dec = [0.6 + 2 + 0.1, 0.8] = [2.7, 0.8]; recon = 1.6² + 1.2² = 4.0
    out = sae.train().output(x)
    torch.testing.assert_close(out.acts, torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(out.losses["aux"], torch.tensor(1.80))
    torch.testing.assert_close(out.losses["sparsity"], torch.tensor(1.0))
    torch.testing.assert_close(out.losses["recon"], torch.tensor(4.0))
    # the aux loss trains the gate path, never the decoder weights (detached there); b_dec
    # only gets the gradient of the encoder's input x − b_dec, −W_enc ∂π_gate
    out.losses["aux"].backward()
    assert sae.W_dec.grad is None
    torch.testing.assert_close(sae.b_dec.grad, -(sae.W_enc @ sae.b_gate.grad))
    assert sae.W_enc.grad.any() and sae.b_gate.grad.any()
    assert sae.b_mag.grad is None  # the aux path does not involve the magnitudes
    # and the reconstruction cannot train the gate: the Heaviside step passes no gradient
    sae.zero_grad()
    sae.output(x).losses["recon"].backward()
    assert sae.b_gate.grad is None or not sae.b_gate.grad.any()
    assert sae.b_mag.grad.any()


def test_gated_gate_decides_and_mag_rescales():
    sae = make_sae("gated")
    with torch.no_grad():
        sae.r_mag.fill_(0.7)
    x = torch.randn(30, 12)
    acts, pi_gate = sae.encode_with_pre(x)
    assert ((acts > 0) <= (pi_gate > 0)).all()
    pi_mag = (x - sae.b_dec) @ (sae.W_enc * torch.exp(torch.tensor(0.7))) + sae.b_mag
    torch.testing.assert_close(acts, (pi_gate > 0) * F.relu(pi_mag))


@pytest.mark.parametrize("variant", ["topk", "batchtopk"])
def test_topk_exactly_k(variant):
    sae = make_sae(variant, k=5)
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive, so ReLU removes none
    x = torch.randn(16, 12)
    acts = sae.train().encode(x)
    counts = (acts != 0).sum(-1)
    if variant == "topk":
        assert (counts == 5).all()
        # and they are the 5 largest pre-activations of each token
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        assert torch.equal(acts.topk(5).indices.sort().values, pre.topk(5).indices.sort().values)
    else:
        assert counts.sum() == 5 * 16 and counts.float().std() > 0  # per batch, not per token


def test_batchtopk_inference_is_a_threshold():
    sae = make_sae("batchtopk", k=3).eval()
    with torch.no_grad():
        sae.threshold.fill_(0.2)
    x = torch.randn(8, 12)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    torch.testing.assert_close(sae.encode(x), pre * (pre > 0.2))
    torch.testing.assert_close(sae.encode(x[:1]), sae.encode(x)[:1])  # no batch dependence


def test_batchtopk_threshold_tracks_smallest_kept_activation():
    sae = make_sae("batchtopk", k=3, threshold_lr=0.5).train()
    out = sae.output(torch.randn(32, 12))
    smallest = out.acts.to_dense()[out.acts.to_dense() > 0].min().double()
    sae.after_optimizer_step_(out)
    torch.testing.assert_close(sae.threshold, 0.5 * smallest)  # EMA from 0 with rate 0.5


def _grads(sae, x, dead_tokens=None):
    sae.zero_grad()
    out = sae.output(x)
    loss = sum(out.losses.values())
    loss.backward()
    return out, {n: p.grad.clone() for n, p in sae.named_parameters()}


@pytest.mark.parametrize("variant", ["topk", "batchtopk"])
@pytest.mark.parametrize("with_dead", [False, True, "normalised", "relu"])
def test_sparse_topk_matches_dense(variant, with_dead):
    kw = {"k": 4, "k_aux": 6, "dead_tokens": 100, "auxk_normalize": with_dead == "normalised",
          "auxk_relu": with_dead == "relu"}
    fast = make_sae(variant, d_in=10, d_sae=48, **kw).train()
    slow = make_sae(variant, d_in=10, d_sae=48, sparse_decode=False, **kw).train()
    if with_dead:
        for s in (fast, slow):
            s.tokens_since_fired[:20] = 1000.0  # 20 dead latents: AuxK switches on
    x = torch.randn(24, 10)
    out_f, g_f = _grads(fast, x)
    out_s, g_s = _grads(slow, x)
    assert out_f.acts.is_sparse and not out_s.acts.is_sparse
    torch.testing.assert_close(out_f.acts.to_dense(), out_s.acts)
    torch.testing.assert_close(out_f.x_hat, out_s.x_hat)
    assert set(out_f.losses) == set(out_s.losses) == ({"recon", "aux"} if with_dead else {"recon"})
    for name in out_s.losses:
        torch.testing.assert_close(out_f.losses[name], out_s.losses[name])
    for name in g_s:
        torch.testing.assert_close(g_f[name], g_s[name], atol=1e-5, rtol=1e-4)


def test_normalised_auxk_is_the_fraction_of_residual_variance_left():
    # OpenAI's reference: α · ‖e − ê‖² / ‖e − ē‖² (normalized_mse), here with the few-dead scaling
    sae = make_sae("topk", d_in=10, d_sae=48, k=4, k_aux=6, dead_tokens=100, auxk_normalize=True,
                   sparse_decode=False).train()
    sae.tokens_since_fired[:3] = 1000.0  # 3 dead latents < k_aux: scale 3/6
    x = torch.randn(24, 10)
    out = sae.output(x)
    e = (x - out.x_hat).detach()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    e_hat = pre[:, :3] @ sae.W_dec[:3]  # every dead latent is used (3 < k_aux)
    want = sae.cfg.auxk_coeff * 3 / 6 * (e - e_hat).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
    torch.testing.assert_close(out.losses["aux"], want)
    # scale-free: the same SAE on a residual ten times smaller gives the same aux loss
    small = make_sae("topk", d_in=10, d_sae=48, k=4, k_aux=6, dead_tokens=100, auxk_normalize=True,
                     sparse_decode=False).train()
    assert small.auxk_scale(3, e / 10) == pytest.approx(100 * sae.auxk_scale(3, e))


def test_fused_relu_matches_readable_path_with_gradients():
    sae = make_sae("relu", unit_norm_decoder=False).double()
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(40, 1, dtype=torch.float64) + 0.5)  # norms ≠ 1: the L1 weighting matters
    x = torch.randn(16, 12, dtype=torch.float64, requires_grad=True)

    def run(train: bool):
        sae.train(train)
        out = sae.output(x)
        # extra uses of x_hat and acts exercise every incoming gradient of the fused backward
        loss = sum(out.losses.values()) + 0.01 * out.x_hat.pow(3).sum() + 0.1 * out.acts.sin().sum()
        return loss, torch.autograd.grad(loss, [x, *sae.parameters()])

    (l_fused, g_fused), (l_plain, g_plain) = run(True), run(False)
    torch.testing.assert_close(l_fused, l_plain)
    for a, b in zip(g_fused, g_plain):
        torch.testing.assert_close(a, b)


def test_fold_input_scale_is_exact_for_every_variant():
    for variant in ALL:
        sae = make_sae(variant).eval()
        if variant == "jumprelu":
            with torch.no_grad():
                sae.threshold.uniform_(0.0, 0.3)
        if variant == "batchtopk":
            sae.threshold.fill_(0.1)
        x, c = torch.randn(9, 12), 3.0
        x_hat_scaled = sae.decode(sae.encode(x * c))
        acts_scaled = sae.encode(x * c)
        sae.fold_input_scale_(c)
        torch.testing.assert_close(sae.decode(sae.encode(x)), x_hat_scaled / c, msg=variant)
        torch.testing.assert_close(sae.encode(x), acts_scaled / c, msg=variant)


@pytest.mark.parametrize("variant", MODERN)
def test_encoder_scale_init_is_exact_and_least_squares(variant):
    sae = make_sae(variant).train()
    if variant == "jumprelu":
        with torch.no_grad():
            sae.threshold.uniform_(0.0, 0.3)
    x = torch.randn(64, 12) + 0.5
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
        acts0, x_hat0 = sae.encode(x), sae.decode(sae.encode(x))
    err = lambda x_hat: float((x - x_hat).detach().pow(2).sum())  # noqa: E731
    # the least-squares scale found by a grid, independently of the closed form
    grid = torch.linspace(0.01, 3.0, 300)
    best = grid[torch.tensor([err(sae.b_dec + g * (x_hat0 - sae.b_dec)) for g in grid]).argmin()]
    s = sae.init_encoder_scale_(x)
    assert abs(s - float(best)) < 0.011, (s, float(best))
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), s * acts0, msg=variant)  # same latents, scaled by s
        assert err(sae.decode(sae.encode(x))) <= err(x_hat0) + 1e-4


def test_seed_saes_keep_the_seeds_initialisation():
    for variant in ("seed_relu", "seed_gated"):
        sae = make_sae(variant)
        before = {k: v.clone() for k, v in sae.state_dict().items()}
        assert sae.init_encoder_scale_(torch.randn(8, 12)) == 1.0
        assert all(torch.equal(before[k], v) for k, v in sae.state_dict().items())


@pytest.mark.parametrize("variant", ["relu", "gated", "jumprelu", "seed_relu", "seed_gated"])
def test_reinit_latents(variant):
    sae = make_sae(variant)
    idx = torch.tensor([1, 5])
    dec, enc = F.normalize(torch.randn(2, 12), dim=-1), torch.randn(2, 12)
    sae.reinit_latents_(idx, dec, enc)
    torch.testing.assert_close(sae.W_dec[idx], dec)
    torch.testing.assert_close(sae.W_enc[:, idx].T, enc)
    assert not sae.b_enc[idx].any() or variant == "seed_gated"
    if isinstance(sae, GatedSAE):
        assert not sae.b_mag[idx].any() and not sae.r_mag[idx].any()
    if isinstance(sae, JumpReLUSAE):
        assert torch.all(sae.threshold[idx] == sae.cfg.init_threshold)
    if isinstance(sae, SeedSparseAutoencoder):
        torch.testing.assert_close(sae.decoder.weight[:, idx], dec.T)


def test_dead_mask_counts_tokens():
    sae = make_sae("relu")
    acts = torch.zeros(10, 40)
    acts[3, 7] = 0.5
    acts[2, 9] = -0.1  # "!= 0": a negative code counts as firing
    sae.update_firing_(acts)
    sae.update_firing_(acts)
    assert sae.tokens_since_fired[7] == 0 and sae.tokens_since_fired[9] == 0 and sae.tokens_since_fired[0] == 20
    assert sae.dead_mask(20).sum() == 38 and sae.dead_mask(21).sum() == 0
    assert isinstance(sae, type(build_sae("relu", d_in=2, d_sae=2)))
    _ = BatchTopKSAE  # exported
