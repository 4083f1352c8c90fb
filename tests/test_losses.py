"""The loss functions, on small tensors with values worked out by hand."""

from __future__ import annotations

import torch

from utils.losses import auxk_loss, l0_penalty, l1_penalty, reconstruction_loss, rectangle, sae_loss


def test_sae_loss_is_the_seeds():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    rec = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    lat = torch.tensor([[0.0, 3.0, -1.0], [2.0, 0.0, 0.0]])
    # squared errors 0, 1, 1, 0 → mean 0.5; |latents| mean = 6/6 = 1.0
    assert torch.isclose(sae_loss(x, rec, lat, 0.25), torch.tensor(0.5 + 0.25 * 1.0))


def test_reconstruction_loss_sums_dims_means_tokens():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    x_hat = torch.tensor([[1.0, 0.0], [3.0, -1.0]])
    # per token: 4 and 9 → mean 6.5
    assert torch.isclose(reconstruction_loss(x, x_hat), torch.tensor(6.5))
    assert torch.isclose(reconstruction_loss(x[None], x_hat[None]), torch.tensor(6.5))  # any leading dims


def test_l1_penalty_weights_by_decoder_norm():
    acts = torch.tensor([[1.0, 0.0, 2.0], [0.0, -3.0, 0.0]])
    W_dec = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])  # norms 5, 2, 1
    # token 1: 1·5 + 2·1 = 7; token 2: 3·2 = 6 → mean 6.5
    assert torch.isclose(l1_penalty(acts, W_dec), torch.tensor(6.5))


def test_rectangle_kernel():
    assert torch.equal(rectangle(torch.tensor([-0.6, -0.5, -0.2, 0.0, 0.49, 0.5])),
                       torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 0.0]))


def test_l0_penalty_value_and_threshold_gradient():
    pre = torch.tensor([[0.30, 1.00], [0.52, 0.00], [0.80, 0.93]])
    theta = torch.tensor([0.5, 0.9], requires_grad=True)
    # active: token 1: latent 2 (1.0 > 0.9); token 2: latent 1 (0.52); token 3: both → 4 / 3 tokens
    loss = l0_penalty(pre, theta, 0.1)
    assert torch.isclose(loss, torch.tensor(4 / 3))
    loss.backward()
    # in-window (|z − θ| < 0.05): latent 1: 0.52; latent 2: 0.93 → each −(1/ε)/3 tokens
    torch.testing.assert_close(theta.grad, torch.tensor([-10 / 3, -10 / 3]))
    pre.requires_grad_(True)
    l0_penalty(pre, theta.detach(), 0.1).backward()
    assert pre.grad is None or not pre.grad.any()  # no STE to the pre-activations (DeepMind's version)


def _auxk_naive(residual, pre, W_dec, dead, k_aux):
    total = 0.0
    for b in range(pre.shape[0]):
        cand = sorted(((float(pre[b, i]), i) for i in range(pre.shape[1]) if dead[i]), reverse=True)[:k_aux]
        e_hat = sum((v * W_dec[i] for v, i in cand), torch.zeros(W_dec.shape[1]))
        total += float((residual[b] - e_hat).pow(2).sum())
    return total / pre.shape[0]


def test_auxk_loss_against_a_loop_and_without_b_dec():
    gen = torch.Generator().manual_seed(0)
    pre = torch.randn(6, 10, generator=gen)
    W_dec = torch.randn(10, 4, generator=gen)
    residual = torch.randn(6, 4, generator=gen)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[1, 4, 5, 8]] = True
    got = auxk_loss(residual, pre, W_dec, dead, k_aux=2)
    assert abs(float(got) - _auxk_naive(residual, pre, W_dec, dead, 2)) < 1e-5
    # more k_aux than dead latents: uses all dead ones
    assert abs(float(auxk_loss(residual, pre, W_dec, dead, 9)) - _auxk_naive(residual, pre, W_dec, dead, 4)) < 1e-5
    # raw pre-activations, negatives included: a dead latent below zero still gets a gradient
    pre_neg = -pre.abs().requires_grad_(False)
    pre_neg.requires_grad_(True)
    auxk_loss(residual, pre_neg, W_dec, dead, 2).backward()
    assert pre_neg.grad[:, dead].any() and not pre_neg.grad[:, ~dead].any()


def test_auxk_with_relu_drops_negative_values_and_their_gradient():
    gen = torch.Generator().manual_seed(1)
    pre = torch.randn(6, 10, generator=gen).requires_grad_()
    W_dec = torch.randn(10, 4, generator=gen)
    residual = torch.randn(6, 4, generator=gen)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[1, 4, 5, 8]] = True
    got = auxk_loss(residual, pre, W_dec, dead, k_aux=2, relu=True)
    # the naive loop on ReLU'd pre-activations: the top-2 dead by raw value, negatives then count 0
    assert abs(float(got) - _auxk_naive(residual, pre.detach().relu(), W_dec, dead, 2)) < 1e-5
    got.backward()
    top2 = pre.detach().masked_fill(~dead, -torch.inf).topk(2, dim=-1).indices
    chosen = torch.zeros_like(pre, dtype=torch.bool).scatter_(-1, top2, True)
    assert (pre.grad[chosen & (pre.detach() > 0)] != 0).all()
    assert not pre.grad[~(chosen & (pre.detach() > 0))].any()


def test_auxk_zero_when_nothing_dead_and_residual_detached():
    pre = torch.randn(3, 5)
    res = torch.randn(3, 2, requires_grad=True)
    assert auxk_loss(res, pre, torch.randn(5, 2), torch.zeros(5, dtype=torch.bool), 2) == 0
    dead = torch.ones(5, dtype=torch.bool)
    W = torch.randn(5, 2, requires_grad=True)
    auxk_loss(res, pre, W, dead, 2).backward()
    assert res.grad is None and W.grad is not None
