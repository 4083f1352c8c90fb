"""The SAE variants: invariants, hand-computed values, and the base contract every variant keeps.

The fast kernels (utils/saes/fast.py) are tested against these readable forms in test_fast.py's
place here: see the "fast path" section at the end.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest_saes import ALL, MODERN, make_sae

from utils.losses import sae_loss
from utils.metrics import l0 as metrics_l0
from utils.saes import (
    SAE_CLASSES,
    GatedSAE,
    JumpReLUSAE,
    JumpReLUSTE,
    SAEOutput,
    SeedSparseAutoencoder,
    TopKSAE,
    build_sae,
    count_fired,
    fast,
    fired_any,
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
    sae.after_optimizer_step_(sae.firing(out.acts))
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(40))


@pytest.mark.parametrize("variant", ALL)
def test_forward_keeps_the_base_contract(variant):
    # every variant, the seed's adapters included: forward(x) is an SAEOutput whose x_hat and acts
    # are decode(encode(x)) and encode(x), and whose losses sum to sae.loss(x)
    sae = make_sae(variant).train()
    x = torch.randn(6, 12)
    out = sae(x)
    assert type(out) is SAEOutput
    torch.testing.assert_close(out.acts, sae.encode(x))
    torch.testing.assert_close(out.x_hat, sae.decode(out.acts))
    torch.testing.assert_close(sum(out.losses.values()), sae.loss(x))


def test_seed_sae_is_the_seed():
    sae = make_sae("seed_relu")
    assert isinstance(sae.encoder, torch.nn.Linear) and sae.encoder.bias is not None
    assert isinstance(sae.decoder, torch.nn.Linear) and sae.decoder.bias is None
    x = torch.randn(7, 12)
    out = sae(x)
    reconstructed, latents = out.x_hat, out.acts  # the seed's pair
    lat = F.relu(x @ sae.encoder.weight.T + sae.encoder.bias)
    torch.testing.assert_close(latents, lat)
    torch.testing.assert_close(reconstructed, lat @ sae.decoder.weight.T)
    torch.testing.assert_close(sum(out.losses.values()), sae_loss(x, reconstructed, latents, 0.1))
    assert not torch.any(sae.b_dec)  # no decoder bias
    # the course's names are views of the seed's layers: writing one writes the other
    with torch.no_grad():
        sae.normalize_decoder_()
    torch.testing.assert_close(sae.decoder.weight.norm(dim=0), torch.ones(40))


def test_seed_gated_forward():
    sae = make_sae("seed_gated")
    x = torch.randn(5, 12)
    out = sae(x)
    rec, lat = out.x_hat, out.acts
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
    smallest = out.acts[out.acts > 0].min().double()
    sae.after_optimizer_step_(sae.firing(out.acts))
    torch.testing.assert_close(sae.threshold, 0.5 * smallest)  # EMA from 0 with rate 0.5
    sae.after_optimizer_step_(sae.firing(torch.zeros(32, 40)))  # nothing kept: θ stays
    torch.testing.assert_close(sae.threshold, 0.5 * smallest)


def test_normalised_auxk_is_the_fraction_of_residual_variance_left():
    # OpenAI's reference: α · ‖e − ê‖² / ‖e − ē‖² (normalized_mse), here with the few-dead scaling
    sae = make_sae("topk", d_in=10, d_sae=48, k=4, k_aux=6, dead_tokens=100, auxk_normalize=True).train()
    sae.tokens_since_fired[:3] = 1000.0  # 3 dead latents < k_aux: scale 3/6
    x = torch.randn(24, 10)
    out = sae.output(x)
    e = (x - out.x_hat).detach()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    e_hat = pre[:, :3] @ sae.W_dec[:3]  # every dead latent is used (3 < k_aux)
    want = sae.cfg.auxk_coeff * 3 / 6 * (e - e_hat).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
    torch.testing.assert_close(out.losses["aux"], want)
    # scale-free: the same SAE on a residual ten times smaller gives the same aux loss
    small = make_sae("topk", d_in=10, d_sae=48, k=4, k_aux=6, dead_tokens=100, auxk_normalize=True).train()
    assert small.auxk_scale(3, e / 10) == pytest.approx(100 * sae.auxk_scale(3, e))


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
    if variant == "seed_gated":  # no encoder bias; the gate's weights follow the new direction too
        torch.testing.assert_close(sae.W_gate[idx], enc)
    else:
        assert not sae.b_enc[idx].any()
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
    firing = sae.firing(acts)
    assert firing.n_tokens == 10 and firing.l0 == pytest.approx(0.2)
    assert firing.fired.nonzero().squeeze(-1).tolist() == [7, 9]
    sae.update_firing_(firing)
    sae.update_firing_(firing)
    assert sae.tokens_since_fired[7] == 0 and sae.tokens_since_fired[9] == 0 and sae.tokens_since_fired[0] == 20
    assert sae.dead_mask(20).sum() == 38 and sae.dead_mask(21).sum() == 0


def test_count_fired_is_acts_nonzero():
    acts = torch.tensor([[[0.0, 2.0, -1.0]], [[0.0, 1e-30, 0.0]]])  # leading dims; tiny and negative count
    torch.testing.assert_close(count_fired(acts), torch.tensor([0.0, 2.0, 1.0]))
    assert fired_any(acts).tolist() == [False, True, True]
    assert make_sae("relu", d_sae=3).firing(acts).l0 == 1.5


def test_shapes_are_checked_under_pytest():
    # tests/conftest.py installs jaxtyping + beartype on `utils`: an x̂ of width 1 would broadcast
    # silently against x, but the shared `d_in` of the two annotations refuses it here
    import jaxtyping

    from utils.losses import reconstruction_loss

    x = torch.randn(4, 6)
    with pytest.raises(jaxtyping.TypeCheckError):
        reconstruction_loss(x, x[:, :1])
    with pytest.raises(jaxtyping.TypeCheckError):  # and plain types too: a dead mask is a tensor of bools
        make_sae("relu").update_firing_((torch.zeros(40), 10, None))


# ---- the fast path (utils/saes/fast.py) against the readable one --------------------------------
def _step(run, sae, x):
    """(x_hat, losses, firing, gradients) of one training forward and backward."""
    sae.zero_grad()
    x_hat, losses, firing = run(sae, x)
    sum(losses.values()).backward()
    return x_hat, losses, firing, {n: p.grad.clone() for n, p in sae.named_parameters()}


def _readable(sae, x):
    out = sae.output(x)
    return out.x_hat, out.losses, sae.firing(out.acts)


def _assert_same_step(fast_sae, slow_sae, x, atol=1e-5, rtol=1e-4):
    xf, lf, ff, gf = _step(fast.train_output, fast_sae, x)
    xs, ls, fs, gs = _step(_readable, slow_sae, x)
    torch.testing.assert_close(xf, xs)
    assert set(lf) == set(ls)
    for name in ls:
        torch.testing.assert_close(lf[name], ls[name])
    assert torch.equal(ff.fired, fs.fired) and ff.n_tokens == fs.n_tokens
    torch.testing.assert_close(ff.l0, fs.l0)
    assert (ff.min_active is None) == (fs.min_active is None)
    if fs.min_active is not None:
        torch.testing.assert_close(ff.min_active, fs.min_active)
    assert set(gf) == set(gs)
    for name in gs:
        torch.testing.assert_close(gf[name], gs[name], atol=atol, rtol=rtol, msg=name)
    return lf


@pytest.mark.parametrize("variant", ["topk", "batchtopk"])
@pytest.mark.parametrize("case", ["no dead", "AuxK", "AuxK normalised", "AuxK relu", "negative selected"])
def test_fast_topk_equals_readable_values_and_gradients(variant, case):
    kw = {"k": 4, "k_aux": 6, "dead_tokens": 100, "auxk_normalize": case == "AuxK normalised",
          "auxk_relu": case == "AuxK relu"}
    fast_sae = make_sae(variant, d_in=10, d_sae=48, **kw).train()
    slow_sae = make_sae(variant, d_in=10, d_sae=48, **kw).train()
    for s in (fast_sae, slow_sae):
        if case.startswith("AuxK"):
            s.tokens_since_fired[:20] = 1000.0  # 20 dead latents: AuxK switches on
        if case == "negative selected":
            with torch.no_grad():  # only 2 latents can be positive: the top 4 include negatives, which the ReLU zeroes
                s.b_enc.fill_(-20.0)
                s.b_enc[:2] = 20.0
    x = torch.randn(24, 10)
    losses = _assert_same_step(fast_sae, slow_sae, x)
    assert ("aux" in losses) == case.startswith("AuxK")


def test_fast_relu_equals_readable_values_and_gradients():
    kw = {"unit_norm_decoder": False}
    fast_sae, slow_sae = make_sae("relu", **kw).double().train(), make_sae("relu", **kw).double().train()
    for s in (fast_sae, slow_sae):
        with torch.no_grad():
            s.W_dec.mul_(torch.linspace(0.5, 1.5, 40, dtype=torch.float64)[:, None])  # norms ≠ 1: the L1 weighting matters
        s.sparsity_scale = 0.7
    _assert_same_step(fast_sae, slow_sae, torch.randn(16, 12, dtype=torch.float64), atol=1e-10, rtol=1e-8)


def test_fused_relu_backward_takes_every_incoming_gradient():
    # the fused Function's outputs used beyond the losses (x̂ and acts in other terms, x needing a
    # gradient): its hand-written backward must match autograd on the readable formulas
    sae = make_sae("relu", unit_norm_decoder=False).double()
    x = torch.randn(16, 12, dtype=torch.float64, requires_grad=True)
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]

    def extra(x_hat, acts, recon, l1, fired=None):
        return 0.3 * recon + 2.0 * l1 + 0.01 * x_hat.pow(3).sum() + 0.1 * acts.sin().sum()

    fused = extra(*fast.FusedReLUSAE.apply(x, *params))
    acts = F.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    x_hat = acts @ sae.W_dec + sae.b_dec
    plain = extra(x_hat, acts, (x_hat - x).pow(2).sum() / 16, (acts @ sae.W_dec.norm(dim=-1)).sum() / 16)
    torch.testing.assert_close(fused, plain)
    for a, b in zip(torch.autograd.grad(fused, [x, *params]), torch.autograd.grad(plain, [x, *params])):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("variant", ALL)
def test_fast_output_is_plain_for_every_variant(variant):
    # the fast path hands out dense tensors only, and the same numbers for variants it has no kernel for
    sae = make_sae(variant).train()
    x = torch.randn(8, 12)
    x_hat, losses, firing = fast.train_output(sae, x)
    tensors = [x_hat, *losses.values(), *(t for t in firing if isinstance(t, torch.Tensor))]
    assert all(t.layout == torch.strided for t in tensors)
    out = sae.output(x)
    torch.testing.assert_close(x_hat, out.x_hat)
    assert torch.equal(firing.fired, sae.firing(out.acts).fired)
    torch.testing.assert_close(firing.l0, metrics_l0(out.acts))


def test_fast_path_leaves_subclasses_to_their_own_code():
    # a chapter's subclass may compute something else than the class it extends: no kernel for it
    class KeepsTwo(TopKSAE):
        def select(self, pre_acts):
            top = pre_acts.topk(2, dim=-1)
            return torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values.relu())

    sae = KeepsTwo(build_sae("topk", d_in=12, d_sae=40, k=4, init_seed=0).cfg).train()
    with torch.no_grad():
        sae.b_enc.fill_(5.0)
    _, _, firing = fast.train_output(sae, torch.randn(8, 12))
    assert firing.l0 == 2.0


def test_sparse_internals_stay_in_the_fast_module():
    # nothing outside utils/saes/fast.py handles torch's sparse formats (a COO tensor there once
    # reached metrics and the firing counters)
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "utils"
    pattern = re.compile(r"_values\(\)|_indices\(\)|\.is_sparse\b|sparse_coo|to_sparse\(")
    offenders = [f"{p.relative_to(root.parent)}:{i}" for p in root.rglob("*.py") if p.name != "fast.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, offenders
