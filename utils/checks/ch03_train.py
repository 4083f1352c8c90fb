"""Visible check of chapter 03's exercise 4, `train_toy_sae` (re-exported by `utils.checks.ch03`).

A training loop has many ways to be subtly wrong while its loss still falls, so the check runs the
student's loop on a few small problems built to expose each one:

- a ragged run (1,000 rows in batches of 128: 7 full batches and one of 104) for the history's
  length, keys, types and step counter, the decoder norms, and whether training works at all;
- runs with lr = 0, where Adam must leave the SAE exactly as created: the weights show whether the
  SAE was created with the seed and whether `lr` reaches the optimiser, the gradient left on the
  encoder shows whether gradients accumulate (no `zero_grad`), every history entry can be computed
  from the untouched SAE, and the per-batch losses show whether the batches change each epoch;
- a full-batch run (one step per epoch, so the shuffle does not matter), replayed here from the
  definition (Adam on the seed's loss, decoder renormalised after each step) and from each common
  mistake, to name the one whose weights the student's loop reproduces.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from utils.checks import assert_own_code, assert_untouched, call, fail, matches, snapshot
from utils.saes import SeedReLUConfig, SeedSparseAutoencoder
from utils.synthetic import ToyFeatureConfig, ToyFeatures

KEYS = ("step", "recon_loss", "sparsity_loss", "l0")
D_IN, N_LAT = 12, 16


def _toy(n: int, seed: int) -> torch.Tensor:
    data = ToyFeatures(ToyFeatureConfig(d_in=D_IN, n_feats=16, mean_active=2.0, prob_decay=1.0, seed=seed))
    return data.sample(n, torch.Generator().manual_seed(seed + 1))[0]


def _train(fn, x: torch.Tensor, l1: float, *, epochs: int, batch_size: int, lr: float, seed: int):
    """(sae, history) from the student's `fn`, with what it returns checked."""
    what = (f"activations [{len(x)}, {D_IN}], n_latents {N_LAT}, l1_coeff {l1}, epochs {epochs}, "
            f"batch_size {batch_size}, lr {lr}, seed {seed}")
    before = snapshot(activations=x)
    out = call(fn, x, N_LAT, l1, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, what=what)
    assert_untouched(before, "train_toy_sae", activations=x)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], list) and isinstance(out[1], nn.Module):
        fail("the pair is swapped: return (sae, history), the SAE first.")
    if not isinstance(out, tuple) or len(out) != 2:
        fail(f"return the pair (sae, history); got {type(out).__name__}.")
    sae, history = out
    if not isinstance(sae, nn.Module):
        fail(f"the first element should be the trained SAE (an nn.Module); got {type(sae).__name__}.")
    if not all(isinstance(getattr(sae, k, None), nn.Linear) for k in ("encoder", "decoder")):
        fail("train the notebook's SparseAutoencoder(d_model, n_latents, seed=seed) (it has .encoder and .decoder).")
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        fail("history should be a list with one dict per optimiser step.")
    return sae, history


def _weights(sae: nn.Module) -> torch.Tensor:
    return torch.cat([sae.encoder.weight.detach().flatten(), sae.encoder.bias.detach(),
                      sae.decoder.weight.detach().flatten()]).cpu()


def _sae(seed: int, normalize: bool = True) -> SeedSparseAutoencoder:
    """The SAE the notebook's `SparseAutoencoder(D_IN, N_LAT, seed=seed)` creates."""
    sae = SeedSparseAutoencoder(SeedReLUConfig(d_in=D_IN, d_sae=N_LAT, init_seed=seed))
    if normalize:
        sae.normalize_decoder_()
    return sae


def _replay(x, l1, *, epochs, lr, seed, zero_grad=True, fresh_optimizer=False, use_l1=True,
            first_normalize=True, optimizer=torch.optim.Adam) -> torch.Tensor:
    """The weights after full-batch training (one step per epoch), from the definition or a variant."""
    sae = _sae(seed, first_normalize)
    opt = optimizer(sae.parameters(), lr=lr)
    for _ in range(epochs):
        if fresh_optimizer:
            opt = optimizer(sae.parameters(), lr=lr)
        rec, lat, _ = sae(x)
        loss = (x - rec).pow(2).mean() + (l1 * lat.abs().mean() if use_l1 else 0.0)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
        sae.normalize_decoder_()
    return _weights(sae)


def _check_structure(history: list[dict], *, rows: int, batch_size: int, epochs: int) -> None:
    per_epoch = math.ceil(rows / batch_size)
    full, last = divmod(rows, batch_size)
    if not history:
        fail("history is empty: append one dict per optimiser step.")
    for key in KEYS:
        if key not in history[0]:
            fail(f"each history entry needs the key {key!r}; yours has {sorted(history[0])}.")
    for h in history:
        for key in KEYS:
            if isinstance(h[key], torch.Tensor):
                fail(f"history[...][{key!r}] is a tensor: store plain floats (.item()), not tensors that keep "
                     "the graph (and its memory) alive.")
            if not isinstance(h[key], (int, float)) or isinstance(h[key], bool):
                fail(f"history[...][{key!r}] should be a plain number; got {type(h[key]).__name__}.")
    n = len(history)
    if n != epochs * per_epoch:
        if n == epochs * full:
            fail(f"history has {n} entries, {full} per epoch: the last, smaller batch of each epoch ({rows:,} = "
                 f"{full} × {batch_size} + {last} rows) is missing. Keep it: one optimiser step per batch.")
        if n == epochs:
            fail("history has one entry per epoch: train (and log) on mini-batches of batch_size rows, one "
                 "entry per optimiser step.")
        if n == per_epoch:
            fail(f"history holds only {n} entries, one epoch's worth: create the list once, before the loop over "
                 "epochs, and append to it at every step of every epoch.")
        fail(f"history has {n} entries; with {rows:,} rows, batch_size {batch_size} and {epochs} epochs there are "
             f"{epochs * per_epoch} optimiser steps ({per_epoch} per epoch, the last batch has {last} rows).")
    steps = [h["step"] for h in history]
    if steps != list(range(n)):
        if steps == [i % per_epoch for i in range(n)]:
            fail("the step counter restarts every epoch: 'step' counts optimiser steps across all epochs "
                 "(0, 1, 2, …), not the batch index within an epoch.")
        if steps == list(range(1, n + 1)):
            fail("'step' starts at 1: count the optimiser steps from 0 (0, 1, 2, …).")
        if steps == [i // per_epoch for i in range(n)]:
            fail("'step' holds the epoch: count the optimiser steps (0, 1, 2, …) across all epochs.")
        fail(f"'step' should count the optimiser steps 0, 1, …, {n - 1}; yours begins {steps[:10]}.")


def _check_at_lr_zero(fn) -> None:
    """lr = 0: the SAE must come back as created, and every logged number is that SAE's."""
    x, l1, epochs = _toy(256, 5), 0.3, 3
    start = _sae(1)
    sae, history = _train(fn, x, l1, epochs=epochs, batch_size=256, lr=0.0, seed=1)
    moved = (_weights(sae) - _weights(start)).abs().max().item()
    if moved > 0.05:
        fail("the SAE you train is not SparseAutoencoder(d_model, n_latents, seed=seed): with lr = 0 it should "
             "come back exactly as created (and normalised). Pass seed=seed when you create it.")
    if moved > 1e-5:
        fail("with lr = 0 the weights changed: pass the learning rate to the optimiser, "
             "torch.optim.Adam(sae.parameters(), lr=lr).")
    _check_structure(history, rows=256, batch_size=256, epochs=epochs)
    # What every step sees: the unchanged SAE on the whole batch.
    rec, lat, _ = start(x)
    recon, sparsity = (x - rec).pow(2).mean(), lat.abs().mean()
    (grad,) = torch.autograd.grad(recon + l1 * sparsity, start.encoder.weight, retain_graph=True)
    (grad_recon,) = torch.autograd.grad(recon, start.encoder.weight)
    left = sae.encoder.weight.grad
    if left is not None and left.abs().sum() > 0:  # None or zeros: zero_grad() ran after the last step
        if matches(left, epochs * grad, atol=1e-6, rtol=1e-3):
            fail(f"the gradient left on the SAE is {epochs}× one step's: gradients accumulate across steps. Call "
                 "optimizer.zero_grad() before every backward() (the seed's sketch forgets it).")
        if matches(left, grad_recon, atol=1e-6, rtol=1e-3) or matches(left, epochs * grad_recon, atol=1e-6, rtol=1e-3):
            fail("the gradient has no sparsity part: backpropagate sae_loss(x, reconstructed, latents, l1_coeff), "
                 "with its l1_coeff · sparsity term (not detached, not left out).")
        if not matches(left, grad, atol=1e-6, rtol=1e-3):
            fail("the gradient left on the SAE's encoder after training is not that of sae_loss at its weights: "
                 "backpropagate your sae_loss(x, reconstructed, latents, l1_coeff) on each batch.")
    with torch.no_grad():
        rec_raw = _sae(1, normalize=False)(x)[0]
    want = {"recon_loss": recon.item(), "sparsity_loss": sparsity.item(), "l0": (lat != 0).float().sum(-1).mean().item()}
    wrong = {
        "recon_loss": [(recon + l1 * sparsity, "'recon_loss' holds the total loss: log the reconstruction term alone, "
                                               "the MSE mean((x − reconstructed)²)."),
                       ((x - rec_raw).pow(2).mean(), "the first step used a decoder that was not normalised yet: call "
                        "sae.normalize_decoder_() once right after creating the SAE, before training (and after every step).")],
        "sparsity_loss": [(l1 * sparsity, "'sparsity_loss' includes l1_coeff: log mean |latent| alone."),
                          (lat.abs().sum(-1).mean(), "'sparsity_loss' is summed over latents: log the mean |latent| "
                                                     "over every element, latents.abs().mean().")],
        "l0": [(want["l0"] / N_LAT, "'l0' is the fraction of active latents: log the count, the mean number of "
                                    "non-zero latents per row."),
               ((lat != 0).float().sum(0).mean(), "'l0' counts over the wrong axis: count the non-zero latents of each "
                                                  "row (sum over the last axis), then average over rows.")],
    }
    for i, h in enumerate(history):
        for key, value in want.items():
            if matches(h[key], value, atol=1e-5, rtol=1e-4):
                continue
            for bad, message in wrong[key]:
                if matches(h[key], bad, atol=1e-5, rtol=1e-4):
                    fail(message)
            fail(f"history[{i}][{key!r}] is {h[key]:.5g}; with lr = 0 every step sees the SAE as created, whose "
                 f"{key} on the batch is {value:.5g} (recon_loss: MSE; sparsity_loss: mean |latent|; l0: mean "
                 "count of non-zero latents per row).")
    # Mini-batches at lr = 0: each recon_loss is the MSE of one batch, so the batches show.
    _, history = _train(fn, x, l1, epochs=epochs, batch_size=64, lr=0.0, seed=2)
    _check_structure(history, rows=256, batch_size=64, epochs=epochs)
    per_epoch = [tuple(round(h["recon_loss"], 6) for h in history[e * 4:(e + 1) * 4]) for e in range(epochs)]
    if len(set(per_epoch)) == 1:
        fail("every epoch sees the same batches in the same order: shuffle the rows anew at the start of each "
             "epoch (torch.randperm(n, generator=g) inside the loop over epochs).")


def _check_against_replay(fn) -> None:
    """One step per epoch, so the shuffle does not matter: the weights must be Adam's on the seed's loss."""
    x, l1, kw = _toy(256, 5), 0.3, dict(epochs=6, lr=1e-2, seed=1)
    sae, _ = _train(fn, x, l1, batch_size=256, **kw)
    got = _weights(sae)
    if matches(got, _replay(x, l1, **kw), atol=1e-4):
        return
    variants = [
        (dict(zero_grad=False), "gradients accumulate across steps: call optimizer.zero_grad() before every "
                                "backward() (the seed's sketch forgets it)."),
        (dict(fresh_optimizer=True), "the optimiser is created inside the loop, so Adam's running averages restart: "
                                     "create it once, before the loop over epochs."),
        (dict(use_l1=False), "the sparsity term does not reach the gradient: backpropagate sae_loss(x, reconstructed, "
                             "latents, l1_coeff), with l1_coeff · sparsity in it."),
        (dict(lr=1e-3), "the learning rate `lr` does not reach the optimiser (Adam's default 1e-3 is used): "
                        "torch.optim.Adam(sae.parameters(), lr=lr)."),
        (dict(first_normalize=False), "the first step used a decoder that was not normalised yet: call "
                                      "sae.normalize_decoder_() once right after creating the SAE, before training."),
        (dict(optimizer=torch.optim.SGD), "that is plain SGD: the exercise trains with Adam, "
                                          "torch.optim.Adam(sae.parameters(), lr=lr)."),
    ]
    for change, message in variants:
        if matches(got, _replay(x, l1, **{**kw, **change}), atol=1e-4):
            fail(message)
    fail("trained on one full batch per epoch from the same start, your SAE ends with different weights than Adam "
         "on the seed's loss: each step should run sae(x), sae_loss, optimizer.zero_grad(), loss.backward(), "
         "optimizer.step(), then sae.normalize_decoder_().")


def check_train_toy_sae(fn) -> None:
    assert_own_code(fn)
    x = _toy(1000, 0)  # 1,000 = 7 × 128 + 104: the last batch of each epoch is smaller
    sae, history = _train(fn, x, 0.05, epochs=12, batch_size=128, lr=1e-2, seed=0)
    _check_structure(history, rows=1000, batch_size=128, epochs=12)
    norms = sae.decoder.weight.detach().norm(dim=0)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        fail(f"decoder columns have norms {norms.min():.3f}–{norms.max():.3f}: call "
             "sae.normalize_decoder_() after every optimiser step (chapter 02's loophole).")
    _check_at_lr_zero(fn)
    a, _ = _train(fn, x, 0.05, epochs=2, batch_size=128, lr=1e-2, seed=0)
    b, _ = _train(fn, x, 0.05, epochs=2, batch_size=128, lr=1e-2, seed=0)
    if not torch.equal(_weights(a), _weights(b)):
        fail("two calls with the same seed trained different SAEs from the same start: shuffle with a generator "
             "seeded by seed, g = torch.Generator().manual_seed(seed), and torch.randperm(n, generator=g).")
    _check_against_replay(fn)
    first = sum(h["recon_loss"] for h in history[:5]) / 5
    last = sum(h["recon_loss"] for h in history[-5:]) / 5
    if not last < 0.5 * first:
        fail(f"reconstruction loss went from {first:.4f} to {last:.4f}: it should fall. Do you call "
             "optimizer.zero_grad(), loss.backward() and optimizer.step() on every batch?")
    with torch.no_grad():
        rec, lat = sae(x)
    ev = 1 - ((x - rec).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()  # explained variance
    if ev < 0.6:
        fail(f"after training, the SAE explains only {ev:.2f} of the variance of its training data: "
             "is it trained on `activations`, and do you return the trained SAE?")
    sparse, _ = _train(fn, x, 2.0, epochs=12, batch_size=128, lr=1e-2, seed=0)
    with torch.no_grad():
        l0_small, l0_big = ((a != 0).float().sum(-1).mean().item() for a in (lat, sparse(x)[1]))
    if not l0_big < 0.7 * l0_small:
        fail(f"a 40× larger l1_coeff left L0 at {l0_big:.1f} (vs {l0_small:.1f}): does the loss you "
             "optimise include l1_coeff · sparsity?")
    print(f"train_toy_sae trains: reconstruction loss {first:.4f} → {last:.4f}, explained variance "
          f"{ev:.2f}; L0 {l0_small:.1f} at l1_coeff 0.05, {l0_big:.1f} at 2.0.")
