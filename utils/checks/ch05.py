"""Visible checks for chapter 05 (dead latents). Each names the mistake it most likely found.

Every check runs the student's code through `call` (an exception becomes a message), checks what
comes back, then compares it with the right value *and* with the value each common mistake would
give, computed here from the definitions, so a message names the mistake rather than printing a
bare difference. The inputs are chosen so that those values differ: a ragged last batch (3 + 3 +
3 + 1 tokens) with n_tokens, d_in, d_sae and batch_size all different, a latent that fires with
negative values, frequencies of 1e-9 and 1e-30 that are rare but not dead, dead latents whose
pre-activations are mostly (not all) negative, fewer alive latents than k_aux. The claims of
exercise 2 are checked against what the seed's own code does when the check runs it (`ch05_claims`);
exercise 3 (resampling) is in `ch05_resample`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from utils import losses as L
from utils.checks import (assert_close, assert_own_code, assert_untouched, call, fail, name_mistake, snapshot,
                          tensor_result)
from utils.checks.ch05_claims import CLAIM_IDS, check_claims  # noqa: F401 (exercise 2, in a file of its own)
from utils.checks.ch05_resample import check_resample  # noqa: F401 (exercise 3, in a file of its own)

# ---- exercise 1: firing frequency, dead latents, P_SILENT ----------------------------------------
class _LinearCode(nn.Module):
    """A stand-in "SAE" whose code is x @ M (codes can be negative, like some variants' are); it
    records the size of every batch it is asked to encode."""

    def __init__(self, M: torch.Tensor):
        super().__init__()
        self.register_buffer("M", M)
        self.cfg = SimpleNamespace(d_in=M.shape[0], d_sae=M.shape[1])
        self.batches: list[int] = []

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(int(x.shape[0]) if x.dim() > 1 else 1)
        return x @ self.M


def _window() -> tuple[torch.Tensor, torch.Tensor]:
    """10 tokens, d_in = 5, d_sae = 4 (code = the first 4 inputs). Latent 0 fires (positive) on
    rows 0-2, latent 1 fires *negative* on rows 3-9, latent 2 never fires, latent 3 fires on row 9
    only, alone in the last batch of 1 when batch_size = 3."""
    x = torch.zeros(10, 5)
    x[:3, 0] = 1.0
    x[3:, 1] = -1.0
    x[9, 3] = 2.0
    x[:, 4] = 0.5  # an input dimension no latent reads
    return x, torch.eye(5)[:, :4]


def check_firing_frequency(firing_frequency, find_dead) -> None:
    assert_own_code(firing_frequency)
    assert_own_code(find_dead)
    x, M = _window()
    n, bs = x.shape[0], 3
    sae = _LinearCode(M)
    what = "a window of 10 tokens (d_in = 5, d_sae = 4) with batch_size = 3"
    before = snapshot(x=x)
    got = tensor_result(call(firing_frequency, sae, x, batch_size=bs, what=what), "firing_frequency")
    assert_untouched(before, "firing_frequency", x=x)
    if tuple(got.shape) in ((n,), (bs,), (1,)):
        fail(f"firing_frequency returned shape {tuple(got.shape)}: one number per *token*. Count over the "
             "tokens axis (dim 0, `.sum(0)`), which leaves one number per latent, shape (d_sae,) = (4,).")
    if tuple(got.shape) != (4,):
        fail(f"return one number per latent, shape (d_sae,) = (4,); got {tuple(got.shape)}.")
    got = got.detach().float().cpu()
    codes = x @ M
    fired = (codes != 0).float()
    counts = fired.sum(0)
    batches = list(fired.split(bs))
    name_mistake(got, [
        (counts, "you returned counts (or divided by the size of the last batch, 1 here): return the *fraction* "
                 "of the window's tokens on which each latent fired, counts / x.shape[0]."),
        ((codes > 0).float().mean(0), "latent 1 fires with negative values and you counted it as silent: a latent "
                                      "fires when its activation is != 0, not > 0 (some variants' codes can be "
                                      "negative)."),
        (codes.mean(0), "you averaged activation *values*; count how often each latent is != 0 instead."),
        (codes.abs().mean(0), "you averaged activation *values*; count how often each latent is != 0 instead."),
        (torch.stack([b.mean(0) for b in batches]).mean(0),
         "you averaged per-batch frequencies, which over-weights the short last batch (3 + 3 + 3 + 1 tokens): "
         "add up counts over all batches, then divide by the number of tokens."),
        (counts / bs, "you divided by batch_size: divide the summed counts by the number of tokens in the window, "
                      "x.shape[0]."),
        (counts / len(batches), "you divided by the number of batches: divide the summed counts by the number of "
                                "tokens in the window, x.shape[0]."),
        (counts / x.shape[1], "you divided by x.shape[1] (d_in, the input dimension): the number of tokens is "
                              "x.shape[0]."),
        (counts / (n - 1), "off by one: you divided by n_tokens − 1; divide by x.shape[0]."),
        (batches[-1].mean(0), "only the last batch counts: your loop overwrites the result at every batch instead "
                              "of adding each batch's counts to a running total."),
        (batches[-1].sum(0) / n, "only the last batch counts: your loop overwrites the counts at every batch "
                                 "instead of adding each batch's counts to a running total."),
        (batches[0].mean(0), "only the first batch counts: is the `return` inside the loop?"),
        (batches[0].sum(0) / n, "only the first batch counts: is the `return` inside the loop?"),
    ], atol=1e-6)
    assert_close(got, counts / n, "frequency = (number of tokens with acts != 0) / (number of tokens in the window).")
    if not sae.batches or max(sae.batches) > bs:
        fail(f"your firing_frequency passed {max(sae.batches, default=0)} tokens at once to sae.encode with "
             f"batch_size = {bs}: encode the window in batches of batch_size tokens (`x.split(batch_size)`); a "
             "real window does not fit in memory at once.")
    _check_find_dead(find_dead)
    print("firing_frequency and find_dead look right.")


def _check_find_dead(find_dead) -> None:
    freq = torch.tensor([0.0, 1e-9, 0.5, 0.0, 1e-30])
    what = f"freq = {freq.tolist()}"
    before = snapshot(freq=freq)
    dead = call(find_dead, freq, what=what)
    assert_untouched(before, "find_dead", freq=freq)
    want = [True, False, False, True, False]
    if isinstance(dead, torch.Tensor) and dead.dim() == 1 and dead.shape[0] != 5 and dead.dtype != torch.bool:
        fail(f"find_dead({what}) returned {dead.tolist()}: indices of the dead latents. Return a boolean *mask*, "
             "one True/False per latent (`freq == 0`), shape (d_sae,).")
    dead = tensor_result(dead, "find_dead", shape=(5,), what=what)
    if dead.dtype != torch.bool:
        fail(f"find_dead returned a {dead.dtype} tensor; return a boolean tensor (a mask over latents): "
             "`freq == 0` is one already, no `.float()`/`.int()`.")
    got = dead.tolist()
    if got == [not w for w in want]:
        fail(f"find_dead({what}) gave {got}: those are the *alive* latents. Dead = fired on none of the window's "
             "tokens, frequency == 0.")
    if got != want:
        fail(f"find_dead({what}) gave {got}: a latent is dead when it fired on *none* of the window's tokens "
             "(frequency exactly 0); a latent firing once in a billion tokens is rare, not dead, so no threshold.")


def check_p_silent(p_silent) -> None:
    """P_SILENT: the probability that a latent firing with p = 1e-5 stays silent for 10,000 tokens."""
    if p_silent is None:
        fail("set P_SILENT to the probability (a float) that a latent with p = 1e-5 is silent on 10,000 tokens.")
    try:
        v = float(p_silent)
    except (TypeError, ValueError):
        fail(f"P_SILENT should be a number (a probability), got a {type(p_silent).__name__}.")
    p, N = 1e-5, 10_000
    exact = (1 - p) ** N
    if abs(v - exact) < 1e-5:
        print(f"P_SILENT = {v:.6f}: a 10,000-token window calls such a latent dead {v:.0%} of the time.")
        return
    for value, message in [
        (100 * exact, "that is a percentage; P_SILENT is a probability between 0 and 1."),
        (1 - exact, "that is the probability that the latent fires at least once; P_SILENT is the probability "
                    "that it stays silent on every one of the 10,000 tokens, (1 − p)^N."),
        (p * N, "p·N is the expected number of times it fires, not a probability of silence: (1 − p)^N."),
        (1 - p * N, "1 − pN is only a first-order approximation, too crude here; use the exact (1 − p)^N."),
        ((1 - p) * N, "(1 − p)·N is a product; silence on N independent tokens is the power (1 − p) ** N."),
        (p ** N, "p^N is the probability that it fires on *every* token; it is silent on one token with "
                 "probability 1 − p, so on N tokens (1 − p)^N."),
        ((1 - p) / N, "(1 − p)/N is not a probability of silence: it is silent on N independent tokens with "
                      "probability (1 − p) ** N."),
    ]:
        if math.isclose(v, value, rel_tol=1e-4, abs_tol=1e-12):
            fail(f"P_SILENT = {v:.6g}: {message}")
    fail(f"P_SILENT = {v:.6g}: the latent is silent on one token with probability 1 − p (p = 1e-5), so on "
         "N = 10,000 independent tokens with probability (1 − p) ** N.")


# ---- exercise 4: AuxK ---------------------------------------------------------------------------
def _decode_top(z: torch.Tensor, k: int, W_dec: torch.Tensor, relu_values: bool = False) -> torch.Tensor:
    top = z.topk(k, dim=-1)
    values = top.values.relu() if relu_values else top.values
    return torch.zeros_like(z).scatter(-1, top.indices, values) @ W_dec


def _auxk_case():
    """6 tokens, d_in 5, d_sae 12, k_aux 3; only latents 2 and 7 alive (fewer than k_aux) and large;
    the dead latents' pre-activations mostly negative, with a few positive entries."""
    g = torch.Generator().manual_seed(5)
    B, d_in, d_sae, k_aux = 6, 5, 12, 3
    W_dec = F.normalize(torch.randn(d_sae, d_in, generator=g), dim=-1)
    dead = torch.ones(d_sae, dtype=torch.bool)
    dead[[2, 7]] = False
    pre = -torch.rand(B, d_sae, generator=g) - 0.1
    pre[[0, 3], [4, 9]] = torch.tensor([0.8, 1.3])  # two positive dead pre-activations
    pre[:, ~dead] = 3.0 + torch.rand(B, 2, generator=g)
    residual = torch.randn(B, d_in, generator=g)
    return residual, pre, W_dec, dead, k_aux


def check_auxk_loss(auxk_loss) -> None:
    assert_own_code(auxk_loss)
    residual, pre, W_dec, dead, k_aux = _auxk_case()
    what = "residual [6, 5], pre_acts [6, 12], 10 of 12 latents dead, k_aux = 3"
    before = snapshot(residual=residual, pre_acts=pre, W_dec=W_dec, dead=dead)
    got = tensor_result(call(auxk_loss, residual, pre, W_dec, dead, k_aux, what=what), "auxk_loss")
    assert_untouched(before, "auxk_loss", residual=residual, pre_acts=pre, W_dec=W_dec, dead=dead)
    if got.shape == (residual.shape[0],):
        fail("auxk_loss returned one loss per token (shape (6,)): average over tokens, `.mean()` at the end.")
    if got.shape != ():
        fail(f"return a scalar (the loss averaged over tokens); got shape {tuple(got.shape)}.")
    want = L.auxk_loss(residual, pre, W_dec, dead, k_aux)
    masked = pre.masked_fill(~dead, -torch.inf)

    def sq(e_hat, reduce=lambda s: s.sum(-1).mean()):
        return reduce((residual - e_hat).pow(2))

    e_hat = _decode_top(masked, k_aux, W_dec)
    if not torch.isfinite(got):
        fail("your loss is NaN or inf: did top-k pick the −inf you put on alive latents? Use at most the "
             "number of dead latents, k = min(k_aux, n_dead).")
    name_mistake(got, [
        (sq(_decode_top(pre.masked_fill(~dead, 0.0), k_aux, W_dec)),
         "you hid the alive latents with 0 instead of −inf: a 0 still beats a dead latent's negative "
         "pre-activation in top-k, so alive latents get picked. Use `masked_fill(~dead, -torch.inf)`."),
        (sq(_decode_top(pre.relu().masked_fill(~dead, -torch.inf), k_aux, W_dec)),
         "you applied a ReLU: the dead latents' pre-activations are mostly negative, so ReLU zeroes them. AuxK "
         "uses the raw pre-activations, so a latent that never fires still gets a gradient."),
        (sq(_decode_top(masked, k_aux, W_dec, relu_values=True)),
         "you applied a ReLU to the kept values: the dead latents' pre-activations are mostly negative, so ReLU "
         "zeroes them. AuxK uses the raw pre-activations, so a latent that never fires still gets a gradient."),
        (sq(torch.zeros_like(residual)),
         "your auxiliary reconstruction ê is zero (a ReLU on the dead latents' negative pre-activations?): AuxK "
         "decodes the raw top-k_aux dead pre-activations, `scatter(...) @ W_dec`."),
        (sq(_decode_top(pre, k_aux, W_dec)),
         "you took the top-k over *all* latents; AuxK picks the top k_aux among the dead latents only."),
        (sq(e_hat, lambda s: s.mean()), "you averaged the squared error over d_in; sum it over d_in and average "
                                        "over tokens."),
        (sq(e_hat, lambda s: s.sum()), "you summed over tokens too; sum over d_in and *average* over tokens."),
        ((residual - e_hat).norm(dim=-1).mean(), "you averaged the norm ‖e − ê‖; the loss is its square, "
                                                 "Σ_d (e − ê)², averaged over tokens."),
        (sq(e_hat) * k_aux, "you multiplied by k_aux: return ‖e − ê‖² averaged over tokens, with no scaling."),
    ], atol=1e-5, rtol=1e-5)
    assert_close(got, want, "ê = (top-k_aux of the dead latents' pre-activations) @ W_dec, with no b_dec; "
                 "loss = Σ_d (residual − ê)², averaged over tokens.")

    few = torch.zeros(12, dtype=torch.bool)
    few[[4, 9]] = True  # fewer dead latents than k_aux
    got_few = tensor_result(call(auxk_loss, residual, pre, W_dec, few, k_aux, what="2 dead latents, k_aux = 3"),
                            "auxk_loss")
    if not torch.isfinite(got_few).all():
        fail("with 2 dead latents and k_aux = 3 your loss is NaN or inf: top-k picked an alive latent's −inf. "
             "Use k = min(k_aux, number of dead latents).")
    assert_close(got_few, L.auxk_loss(residual, pre, W_dec, few, k_aux),
                 "with fewer dead latents than k_aux, use all of them (k = min(k_aux, n_dead)).")
    none = tensor_result(call(auxk_loss, residual, pre, W_dec, torch.zeros(12, dtype=torch.bool), k_aux,
                              what="no dead latent"), "auxk_loss")
    if not torch.isfinite(none).all() or float(none) != 0.0:
        fail(f"with no dead latents your loss is {float(none):.4g}; it should be 0 (there is nothing to revive): "
             "return `pre_acts.new_zeros(())` early.")

    r = residual.clone().requires_grad_(True)
    W = W_dec.clone().requires_grad_(True)
    p = pre.clone().requires_grad_(True)
    out = tensor_result(call(auxk_loss, r, p, W, dead, k_aux, what=what + ", all requiring grad"), "auxk_loss")
    if not out.requires_grad:
        fail("your loss is cut off from autograd (.item(), float(), .detach() or torch.tensor(...) on it): it is "
             "added to the training loss, so it must stay a tensor built from torch operations.")
    out.backward()
    if r.grad is not None and r.grad.abs().sum() > 0:
        fail("gradient flows into the residual: detach it. AuxK should move only the dead latents, not the "
             "main reconstruction.")
    if W.grad is None or W.grad[dead].abs().sum() == 0:
        fail("no gradient reaches the dead latents' decoder rows: compute ê from W_dec with autograd on.")
    if W.grad[~dead].abs().sum() > 0:
        fail("alive latents' decoder rows receive gradient from AuxK: mask them out before the top-k.")
    if p.grad is None or p.grad[:, dead].abs().sum() == 0:
        fail("no gradient reaches the dead latents' pre-activations (did you .detach() pre_acts?): that gradient "
             "is what moves a dead latent's encoder, the point of AuxK.")
    print("auxk_loss matches the reference.")
