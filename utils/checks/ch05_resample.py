"""Visible check for chapter 05's exercise 3: Anthropic's resampling of dead latents.

The student's `resample_dead_latents_` runs on a small ReLU SAE after a few Adam steps (so there is
optimizer state to reset), with b_dec far from 0 (forgetting to centre shows), unequal encoder
norms (dead latents' norms differ from the alive ones', so the mean over all latents shows), every
latent long silent in `tokens_since_fired`, and 5 dead latents out of 24 (d_in = 8, so an index
along the wrong axis is out of range). The directions each common sampling mistake would pick
(∝ loss, ∝ ‖x − x̂‖, top-k, uniform) are drawn here with the same generator, so a mismatch is
named; a second call with enc_scale = 0.5 catches a hard-coded 0.2, and a 1,000-input draw checks
the probabilities themselves.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from utils import resample as ref
from utils.checks import assert_close, assert_own_code, assert_untouched, call, fail, snapshot
from utils.saes import build_sae


def _sae_with_adam(seed: int = 0, d_in: int = 8, d_sae: int = 24):
    torch.manual_seed(seed)
    sae = build_sae("relu", d_in=d_in, d_sae=d_sae, init_seed=seed, l1_coeff=0.1)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(d_in, generator=g) * 2.0)  # far from 0: forgetting it shows
        sae.W_enc.mul_(1 + torch.rand(d_sae, generator=g))      # unequal encoder norms
    x = torch.randn(96, d_in, generator=g) * 3 + 1
    sae.tokens_since_fired.fill_(1e6)  # every latent long silent, as the trainer would have counted
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        sae.loss(x).backward()
        opt.step()
    return sae, opt, x


def _clone(sae, opt):
    sae2 = copy.deepcopy(sae)
    opt2 = torch.optim.Adam(sae2.parameters(), lr=1e-2)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    return sae2, opt2


def _matches_some(rows: torch.Tensor, cands: torch.Tensor) -> bool:
    return bool(((F.normalize(rows, dim=-1) @ F.normalize(cands, dim=-1).T).max(-1).values > 1 - 1e-4).all())


def _run(fn, sae, x, dead, what: str, **kw):
    before = snapshot(x=x, dead=dead)
    n = call(fn, sae, x, dead, what=what, name="resample_dead_latents_", **kw)
    assert_untouched(before, "resample_dead_latents_", x=x, dead=dead)
    return n


def _count(n, want: int, what: str) -> None:
    if n is None:
        fail("resample_dead_latents_ returned None: return how many latents were resampled (an int).")
    if isinstance(n, torch.Tensor) and n.numel() != 1:
        fail(f"resample_dead_latents_ returned a tensor of shape {tuple(n.shape)}: return the *number* of latents "
             "resampled, `int(idx.numel())`, not their indices or their mask.")
    try:
        value = int(n)
    except (TypeError, ValueError):
        fail(f"resample_dead_latents_ returned a {type(n).__name__}; return the number of latents resampled (an int).")
    if value != want:
        fail(f"resample_dead_latents_ returned {value} for {what}; return how many latents were resampled ({want}).")


def _sampling_variants(sae, x, n_dead: int, seed: int) -> list[tuple[torch.Tensor, str]]:
    """The inputs each common sampling mistake picks, with the same generator as the check's call."""
    with torch.no_grad():
        loss = (x - sae.decode(sae.encode(x))).pow(2).sum(-1)
    gen = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
    out = []
    for weights, message in ((loss, "your inputs were drawn ∝ ‖x − x̂‖²: that is ∝ loss (not loss²), or ∝ loss² "
                                    "with the norm ‖x − x̂‖ as the loss. Anthropic's loss is the squared norm, "
                                    "loss = ‖x − x̂‖², drawn ∝ loss²: `torch.multinomial(loss ** 2, ...)`."),
                             (loss.sqrt(), "your inputs were drawn ∝ ‖x − x̂‖ (the norm): Anthropic's loss is the "
                                           "squared norm, loss = ‖x − x̂‖², drawn ∝ loss² (weights ‖x − x̂‖⁴)."),
                             (loss.pow(4), "you squared the loss twice: weights ∝ loss² with loss = ‖x − x̂‖²."),
                             (torch.ones_like(loss), "you drew inputs uniformly; Anthropic draws them ∝ loss², so "
                                                     "the inputs the SAE reconstructs worst are the likeliest.")):
        out.append((torch.multinomial(weights, n_dead, replacement=True, generator=gen()), message))
    out.append((torch.randint(len(x), (n_dead,), generator=gen()), "you drew inputs uniformly (randint); "
                "Anthropic draws them ∝ loss²: `torch.multinomial(loss ** 2, n_dead, replacement=True, ...)`."))
    out.append((loss.topk(min(n_dead, len(x))).indices, "you took the top-k highest-loss inputs (the seed's way); "
                "*sample* them with probability ∝ loss², `torch.multinomial(loss ** 2, ...)`."))
    return out


def check_resample(resample_dead_latents_) -> None:
    assert_own_code(resample_dead_latents_)
    sae, opt, x = _sae_with_adam()
    dead = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    dead[[1, 5, 6, 17, 23]] = True
    alive, idx = ~dead, dead.nonzero().squeeze(-1)
    ours, our_opt = _clone(sae, opt)
    variants = _sampling_variants(sae, x, len(idx), seed=7)
    before = {n: p.detach().clone() for n, p in sae.named_parameters()}
    mean_alive = before["W_enc"].norm(dim=0)[alive].mean()
    mean_all = before["W_enc"].norm(dim=0).mean()
    what = "an SAE with d_in 8, d_sae 24, 5 dead latents, 96 inputs, an Adam optimizer"

    n = _run(resample_dead_latents_, sae, x, dead, what, optimizer=opt, generator=torch.Generator().manual_seed(7))
    ref.resample_dead_latents_(ours, x, dead, optimizer=our_opt, generator=torch.Generator().manual_seed(7))
    _count(n, int(dead.sum()), "5 dead latents")
    W_enc, W_dec, b_enc = sae.W_enc.detach(), sae.W_dec.detach(), sae.b_enc.detach()
    if not (torch.equal(W_enc[:, alive], before["W_enc"][:, alive]) and torch.equal(W_dec[alive], before["W_dec"][alive])
            and torch.equal(b_enc[alive], before["b_enc"][alive])):
        fail("weights of *alive* latents changed: touch only the columns of W_enc, rows of W_dec and "
             "entries of b_enc of the dead latents.")
    if not torch.equal(sae.b_dec.detach(), before["b_dec"]):
        fail("b_dec changed: resampling leaves the decoder bias alone.")
    if torch.equal(W_dec[dead], before["W_dec"][dead]):
        fail("the decoder rows of the dead latents are unchanged: set each to its new direction (the seed "
             "forgot this too).")
    if torch.equal(W_enc[:, dead], before["W_enc"][:, dead]):
        fail("the encoder columns W_enc[:, dead] are unchanged: W_enc is [d_in, d_sae], one column per latent.")
    if b_enc[dead].any():
        fail("set the encoder bias of every resampled latent to zero (the old bias is often what kept it silent).")
    if not torch.allclose(W_dec[dead].norm(dim=-1), torch.ones(int(dead.sum())), atol=1e-4):
        fail("resampled decoder rows must have unit norm: normalise each chosen input direction.")
    centred = x - before["b_dec"]
    if not _matches_some(W_dec[dead], centred):
        if _matches_some(W_dec[dead], x):
            fail("your decoder rows point along raw inputs x; use x − b_dec, the input as the encoder sees it "
                 "(the SAE subtracts b_dec before encoding).")
        fail("each resampled decoder row should be the normalised direction of one input, x − b_dec.")
    for picks, message in variants:
        if torch.allclose(W_dec[dead], F.normalize(centred[picks], dim=-1), atol=1e-5) and \
                not torch.allclose(W_dec[dead], ours.W_dec[dead].detach(), atol=1e-5):
            fail(message)
    if not torch.allclose(F.normalize(W_enc[:, dead].T, dim=-1), W_dec[dead], atol=1e-4):
        fail("the encoder column of a resampled latent should point the same way as its new decoder row.")
    enc_norms = W_enc[:, dead].norm(dim=0)
    for value, message in (
            (0.2 * mean_all, "the encoder norm should be enc_scale × the mean norm of the *alive* latents' encoder "
                             "columns; you averaged over all latents, dead ones included."),
            (0.2 * before["W_enc"].norm(dim=1).mean(), "you took encoder norms along the wrong axis: W_enc is "
             "[d_in, d_sae], a latent's encoder norm is W_enc[:, i].norm(), i.e. W_enc.norm(dim=0)."),
            (mean_alive, "the encoder norm is the mean alive norm itself: scale it by enc_scale (0.2 by default)."),
            (torch.tensor(0.2), "the encoder columns have norm enc_scale = 0.2: scale the unit direction by "
                                "enc_scale × the mean norm of the alive latents' encoder columns."),
            (torch.tensor(1.0), "the encoder columns have unit norm: scale the direction by enc_scale × the mean "
                                "norm of the alive latents' encoder columns.")):
        if torch.allclose(enc_norms, torch.as_tensor(value).float().expand_as(enc_norms), rtol=1e-4):
            fail(message)
    if not torch.allclose(enc_norms, (0.2 * mean_alive).expand_as(enc_norms), rtol=1e-4):
        fail(f"resampled encoder columns have norms {[round(v, 4) for v in enc_norms[:3].tolist()]}…; expected "
             f"enc_scale × mean alive encoder norm = {float(0.2 * mean_alive):.4f}.")
    if sae.tokens_since_fired[dead].any():
        fail("sae.tokens_since_fired still counts the resampled latents as long silent: set it to 0 for them, "
             "or the trainer will call them dead again and resample them at its next check.")
    if not sae.tokens_since_fired[alive].all():
        fail("you reset sae.tokens_since_fired of alive latents too: set it to 0 only for the resampled ones.")
    params = dict(sae.named_parameters())
    for name, axis in sae.LATENT_AXES.items():
        state = opt.state[params[name]]
        for key in ("exp_avg", "exp_avg_sq"):
            moments = state[key]
            if moments.index_select(axis, idx).any():
                fail(f"Adam's {key} for {name} still holds the dead latents' history: zero it for the "
                     "resampled latents (optimizer.state[param]['exp_avg'] and ['exp_avg_sq'] of W_enc, W_dec "
                     "and b_enc).")
            if not moments.index_select(axis, alive.nonzero().squeeze(-1)).any():
                fail(f"you zeroed Adam's {key} of {name} for alive latents too: reset only the resampled ones.")
    if not torch.allclose(W_dec[dead], ours.W_dec[dead].detach(), atol=1e-5):
        fail("valid directions, but not the ones the reference drew with the same generator. Score every "
             "input by its loss ‖x − x̂‖², then draw all the dead latents' inputs in one call: "
             "torch.multinomial(loss ** 2, n_dead, replacement=True, generator=generator), assigned to "
             "the dead latents in increasing index order.")
    assert_close(W_enc, ours.W_enc, "compare your encoder with Anthropic's recipe step by step.")
    assert_close(b_enc, ours.b_enc, "the resampled encoder biases should be zero.")
    _check_other_calls(resample_dead_latents_)
    _check_sampling(resample_dead_latents_)
    print("resample_dead_latents_ follows Anthropic's recipe and matches the reference.")


def _check_other_calls(resample_dead_latents_) -> None:
    """No dead latent; no optimizer; enc_scale other than 0.2."""
    sae, _, x = _sae_with_adam(seed=3)
    kept = copy.deepcopy(sae.state_dict())
    n = _run(resample_dead_latents_, sae, x, torch.zeros(sae.cfg.d_sae, dtype=torch.bool), "no dead latent")
    _count(n, 0, "no dead latent")
    if any(not torch.equal(v, sae.state_dict()[k]) for k, v in kept.items()):
        fail("with no dead latents, change nothing (return 0 straight away).")
    dead = torch.arange(sae.cfg.d_sae) % 3 == 0
    alive_norm = sae.W_enc.detach().norm(dim=0)[~dead].mean()
    n = _run(resample_dead_latents_, sae, x, dead, "optimizer=None, enc_scale=0.5, 8 dead latents",
             enc_scale=0.5, generator=torch.Generator().manual_seed(0))
    _count(n, 8, "8 dead latents")
    norms = sae.W_enc.detach()[:, dead].norm(dim=0)
    if torch.allclose(norms, (0.2 * alive_norm).expand_as(norms), rtol=1e-4):
        fail("with enc_scale=0.5 your encoder columns still have 0.2 × the mean alive norm: use the `enc_scale` "
             "argument instead of a hard-coded 0.2.")
    assert_close(norms, (0.5 * alive_norm).expand_as(norms),
                 "with enc_scale=0.5 the resampled encoder columns should have 0.5 × the mean alive encoder norm.")


def _check_sampling(resample_dead_latents_) -> None:
    """Inputs must be drawn ∝ loss², not ∝ loss, nor the top-k largest losses."""
    d_sae = 404
    sae = build_sae("relu", d_in=2, d_sae=d_sae, init_seed=0)
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.b_dec.zero_()
    # x̂ = 0, so losses are ‖x‖²: 500 inputs with loss 1 and 500 with loss 2 → weights 1 : 4
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0 ** 0.5]]).repeat(500, 1)
    dead = torch.ones(d_sae, dtype=torch.bool)
    dead[:4] = False
    _run(resample_dead_latents_, sae, x, dead, "1,000 inputs with losses 1 and 2, 400 dead latents",
         generator=torch.Generator().manual_seed(0))
    share = float((sae.W_dec.detach()[dead].abs().argmax(-1) == 1).float().mean())
    if share > 0.97:
        fail("every dead latent got the highest-loss input: *sample* inputs with probability ∝ loss², "
             "do not take the top-k (that is the seed's way).")
    if abs(share - 2 / 3) < 0.05:
        fail(f"the higher-loss input was drawn {share:.0%} of the time, as if ∝ loss; Anthropic draws ∝ loss² "
             "(expected 80% here).")
    if abs(share - 0.8) > 0.06:
        fail(f"the input with twice the loss was drawn {share:.0%} of the time; with probability ∝ loss² it "
             "should be 80%.")
