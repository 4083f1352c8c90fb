"""Visible checks for chapter 05 (dead latents). Each names the mistake it most likely found.

The references they compare with are `utils.resample` (firing counts, Anthropic's resampling)
and `utils.losses.auxk_loss`; every check runs on small copied SAEs with fixed seeds.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from utils import losses as L
from utils import resample as ref
from utils.checks import assert_close, assert_own_code, fail
from utils.saes import build_sae

# The claims of exercise 2, by id (the text of each is in the chapter).
CLAIM_IDS = tuple("ABCDEFGHIJ")


class _LinearCode(nn.Module):
    """A stand-in "SAE" whose code is x @ M: codes can be negative, like some variants' are."""

    def __init__(self, M: torch.Tensor):
        super().__init__()
        self.register_buffer("M", M)
        self.cfg = SimpleNamespace(d_in=M.shape[0], d_sae=M.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.M


def check_firing_frequency(firing_frequency, find_dead) -> None:
    assert_own_code(firing_frequency)
    assert_own_code(find_dead)
    # Latent 0 fires (positive) on rows 0-2, latent 1 fires *negative* on rows 3-9, latent 2
    # never fires, latent 3 fires on row 9 only (the last row of a ragged last batch).
    x = torch.zeros(10, 4)
    x[:3, 0] = 1.0
    x[3:, 1] = -1.0
    x[9, 3] = 2.0
    sae = _LinearCode(torch.eye(4))
    want = torch.tensor([0.3, 0.7, 0.0, 0.1])
    got = firing_frequency(sae, x, batch_size=4)
    got_t = torch.as_tensor(got).detach().float()
    if got_t.shape != (4,):
        fail(f"return one number per latent, shape (d_sae,) = (4,); got {tuple(got_t.shape)}.")
    if torch.allclose(got_t, want * 10):
        fail("you returned counts; return the *fraction* of the window's tokens on which each latent fired.")
    if torch.allclose(got_t, torch.tensor([0.3, 0.0, 0.0, 0.1])):
        fail("latent 1 fires with negative values and you counted it as silent: a latent fires when its "
             "activation is != 0, not > 0 (some variants' codes can be negative).")
    if torch.allclose(got_t, x.mean(0)) or torch.allclose(got_t, x.abs().mean(0)):
        fail("you averaged activation *values*; count how often each latent is != 0 instead.")
    per_batch_mean = torch.stack([(xb != 0).float().mean(0) for xb in x.split(4)]).mean(0)
    if torch.allclose(got_t, per_batch_mean):
        fail("you averaged per-batch frequencies, which over-weights the short last batch (4 + 4 + 2 "
             "tokens): add up counts over all batches, then divide by the number of tokens.")
    assert_close(got_t, want, "frequency = (number of tokens with acts != 0) / (number of tokens in the window).")

    freq = torch.tensor([0.0, 1e-9, 0.5, 0.0])
    dead = find_dead(freq)
    if not isinstance(dead, torch.Tensor) or dead.dtype != torch.bool:
        fail("find_dead should return a boolean tensor (a mask over latents).")
    if dead.tolist() != [True, False, False, True]:
        fail(f"find_dead({freq.tolist()}) gave {dead.tolist()}: a latent is dead when it fired on *none* "
             "of the window's tokens (frequency exactly 0); a latent firing once in a billion tokens is "
             "rare, not dead.")
    print("firing_frequency and find_dead look right.")


def check_claims(claims) -> None:
    if claims is None:
        fail("set TRUE_CLAIMS to the set of letters (A to J) of the claims you think are true.")
    if isinstance(claims, str):
        fail("TRUE_CLAIMS should be a set of letters like {'A', 'C'}, not one string.")
    try:
        chosen = {str(c).strip().upper() for c in claims}
    except TypeError:
        fail("TRUE_CLAIMS should be a set (or list) of claim letters.")
    unknown = chosen - set(CLAIM_IDS)
    if unknown:
        fail(f"unknown claim ids {sorted(unknown)}: use letters from {', '.join(CLAIM_IDS)}.")
    if not chosen or chosen == set(CLAIM_IDS):
        fail("mark the claims you believe are true: some are true and some are false.")
    print(f"{len(chosen)} claims marked true; they are graded when your notebook is graded.")


# ---- resampling ------------------------------------------------------------------------------------
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


def check_resample(resample_dead_latents_) -> None:
    assert_own_code(resample_dead_latents_)
    sae, opt, x = _sae_with_adam()
    dead = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    dead[[1, 5, 6, 17, 23]] = True
    alive = ~dead
    ours, our_opt = _clone(sae, opt)
    before = {n: p.detach().clone() for n, p in sae.named_parameters()}
    mean_alive = before["W_enc"].norm(dim=0)[alive].mean()
    mean_all = before["W_enc"].norm(dim=0).mean()

    n = resample_dead_latents_(sae, x, dead, optimizer=opt, generator=torch.Generator().manual_seed(7))
    ref.resample_dead_latents_(ours, x, dead, optimizer=our_opt, generator=torch.Generator().manual_seed(7))
    if n != int(dead.sum()):
        fail(f"return how many latents were resampled ({int(dead.sum())} here); got {n!r}.")
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
        fail("set the encoder bias of every resampled latent to zero.")
    if not torch.allclose(W_dec[dead].norm(dim=-1), torch.ones(int(dead.sum())), atol=1e-4):
        fail("resampled decoder rows must have unit norm: normalise each chosen input direction.")
    centred, raw = x - before["b_dec"], x
    if not _matches_some(W_dec[dead], centred):
        if _matches_some(W_dec[dead], raw):
            fail("your decoder rows point along raw inputs x; use x − b_dec, the input as the encoder sees it "
                 "(the SAE subtracts b_dec before encoding).")
        fail("each resampled decoder row should be the normalised direction of one input, x − b_dec.")
    enc_dirs = F.normalize(W_enc[:, dead].T, dim=-1)
    if not torch.allclose(enc_dirs, W_dec[dead], atol=1e-4):
        fail("the encoder column of a resampled latent should point the same way as its new decoder row.")
    enc_norms = W_enc[:, dead].norm(dim=0)
    if torch.allclose(enc_norms, (0.2 * mean_all).expand_as(enc_norms), rtol=1e-4) and not torch.allclose(mean_all, mean_alive):
        fail("the encoder norm should be 0.2 × the mean norm of the *alive* latents' encoder columns; you "
             "averaged over all latents, dead ones included.")
    if not torch.allclose(enc_norms, (0.2 * mean_alive).expand_as(enc_norms), rtol=1e-4):
        fail(f"resampled encoder columns have norms {enc_norms[:3].tolist()}…; expected enc_scale × mean alive "
             f"encoder norm = {float(0.2 * mean_alive):.4f}. An encoder norm is W_enc[:, i].norm() (W_enc is "
             "[d_in, d_sae]: norm over dim 0).")
    if sae.tokens_since_fired[dead].any():
        fail("sae.tokens_since_fired still counts the resampled latents as long silent: set it to 0 for them, "
             "or the trainer will call them dead again and resample them at its next check.")
    for name, axis in sae.LATENT_AXES.items():
        p = dict(sae.named_parameters())[name]
        state = opt.state[p]
        for key in ("exp_avg", "exp_avg_sq"):
            moments = state[key]
            if moments.index_select(axis, dead.nonzero().squeeze(-1)).any():
                fail(f"Adam's {key} for {name} still holds the dead latents' history: zero it for the "
                     "resampled latents (optimizer.state[param]['exp_avg'] and ['exp_avg_sq']).")
            if not moments.index_select(axis, alive.nonzero().squeeze(-1)).any():
                fail(f"you zeroed Adam's {key} of {name} for alive latents too: reset only the resampled ones.")
    if not torch.allclose(W_dec[dead], ours.W_dec[dead].detach(), atol=1e-5):
        fail("valid directions, but not the ones the reference drew with the same generator. Score every "
             "input by its loss ‖x − x̂‖², then draw all the dead latents' inputs in one call: "
             "torch.multinomial(loss ** 2, n_dead, replacement=True, generator=generator), assigned to "
             "the dead latents in increasing index order.")
    assert_close(W_enc, ours.W_enc, "compare your encoder with Anthropic's recipe step by step.")
    assert_close(b_enc, ours.b_enc, "the resampled encoder biases should be zero.")

    # optimizer=None must work, and nothing dead means nothing to do.
    sae2, _, x2 = _sae_with_adam(seed=3)
    if resample_dead_latents_(sae2, x2, torch.zeros(sae2.cfg.d_sae, dtype=torch.bool)) != 0:
        fail("with no dead latents, return 0 and change nothing.")
    resample_dead_latents_(sae2, x2, torch.arange(sae2.cfg.d_sae) % 3 == 0, generator=torch.Generator().manual_seed(0))
    _check_sampling(resample_dead_latents_)
    print("resample_dead_latents_ follows Anthropic's recipe and matches the reference.")


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
    resample_dead_latents_(sae, x, dead, generator=torch.Generator().manual_seed(0))
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


# ---- AuxK --------------------------------------------------------------------------------------------
def check_auxk_loss(auxk_loss) -> None:
    assert_own_code(auxk_loss)
    g = torch.Generator().manual_seed(5)
    B, d_in, d_sae, k_aux = 6, 5, 12, 3
    W_dec = F.normalize(torch.randn(d_sae, d_in, generator=g), dim=-1)
    pre = torch.randn(B, d_sae, generator=g)
    dead = torch.zeros(d_sae, dtype=torch.bool)
    dead[[0, 3, 4, 8, 11]] = True
    pre[:, dead] = -pre[:, dead].abs() - 0.1  # dead latents: negative pre-activations everywhere
    pre[:, ~dead] += 3.0  # alive latents: larger than any dead one
    residual = torch.randn(B, d_in, generator=g)
    want = L.auxk_loss(residual, pre, W_dec, dead, k_aux)
    got = auxk_loss(residual, pre, W_dec, dead, k_aux)
    got_t = torch.as_tensor(got)
    if got_t.shape != ():
        fail(f"return a scalar (the loss averaged over tokens); got shape {tuple(got_t.shape)}.")
    if abs(float(got_t) - float(residual.pow(2).sum(-1).mean())) < 1e-5:
        fail("your auxiliary reconstruction is zero: the dead latents here have negative pre-activations, so "
             "ReLU kills them. AuxK uses their raw pre-activations, so a latent that never fires still gets "
             "a gradient.")
    top_all = pre.topk(k_aux, dim=-1)  # the mistake: top-k over every latent, alive ones included
    e_alive = torch.zeros_like(pre).scatter(-1, top_all.indices, top_all.values) @ W_dec
    if abs(float(got_t) - float((residual - e_alive).pow(2).sum(-1).mean())) < 1e-5:
        fail("you took the top-k over *all* latents; AuxK picks the top k_aux among the dead latents only.")
    if abs(float(got_t) - float(want) / d_in) < 1e-5:
        fail("you averaged the squared error over d_in; sum it over d_in and average over tokens.")
    assert_close(got_t, want, "ê = (top-k_aux of the dead latents' pre-activations) @ W_dec, with no b_dec; "
                 "loss = Σ_d (residual − ê)², averaged over tokens.")

    few = torch.zeros(d_sae, dtype=torch.bool)
    few[[2, 9]] = True  # fewer dead latents than k_aux
    assert_close(auxk_loss(residual, pre, W_dec, few, k_aux), L.auxk_loss(residual, pre, W_dec, few, k_aux),
                 "with fewer dead latents than k_aux, use all of them (k = min(k_aux, n_dead)).")
    none = auxk_loss(residual, pre, W_dec, torch.zeros(d_sae, dtype=torch.bool), k_aux)
    if float(torch.as_tensor(none)) != 0.0:
        fail("with no dead latents the loss is 0 (there is nothing to revive).")

    r = residual.clone().requires_grad_(True)
    W = W_dec.clone().requires_grad_(True)
    auxk_loss(r, pre, W, dead, k_aux).backward()
    if r.grad is not None and r.grad.abs().sum() > 0:
        fail("gradient flows into the residual: detach it. AuxK should move only the dead latents, not the "
             "main reconstruction.")
    if W.grad is None or W.grad[dead].abs().sum() == 0:
        fail("no gradient reaches the dead latents' decoder rows: compute ê from W_dec with autograd on.")
    if W.grad[~dead].abs().sum() > 0:
        fail("alive latents' decoder rows receive gradient from AuxK: mask them out before the top-k.")
    print("auxk_loss matches the reference.")
