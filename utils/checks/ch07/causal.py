"""Chapter 07, exercises 5–7: a reply's log-probability, removing latents from the residual stream,
and the difference-of-means probe (the package docstring says how the checks work).

The inputs separate the common mistakes: replies of different lengths that start after position 0
and stop before padding; a stand-in SAE whose encoder subtracts b_dec, with a non-zero b_dec and
b_enc, decoder rows of unequal norms unrelated to the encoder, run on the hook's 3-D residual stream
(batch, pos, d_model) with more positions than latents chosen; probe data that are not centred,
with unbalanced classes and a difference of means of norm ≠ 1.
"""

from __future__ import annotations

import math
import re

import torch

from utils.checks import CheckFailed, assert_close, assert_own_code, call, fail, matches, tensor_result
from utils.checks.ch07._util import gen, name_variant, run


# ---- exercise 5: the log-probability of a reply --------------------------------------------------
def check_continuation_logprob(fn) -> None:
    assert_own_code(fn)
    g = gen(75)
    logits = torch.randn(3, 8, 9, generator=g) * 2
    tokens = torch.randint(0, 9, (3, 8), generator=g)
    reply = torch.zeros(3, 8, dtype=torch.bool)
    reply[0, 3:7], reply[1, 5:6], reply[2, 2:5] = True, True, True   # lengths 4, 1, 3; padding after
    name = "continuation_logprob"
    got = tensor_result(run(fn, logits, tokens, reply, name=name, what="logits [3, 8, 9], tokens and reply [3, 8]",
                             hint=(r"Expected target size|only batches of spatial targets",
                                   "F.cross_entropy wants the classes on axis 1: logits[:, :-1].transpose(1, 2)."),
                             logits=logits, tokens=tokens, reply=reply), name)
    if got.shape != (3,):
        fail(f"`{name}` returned shape {tuple(got.shape)}: return one log-probability per row, shape (3,)"
             + (" (boolean indexing, x[mask], flattens the rows: multiply by the mask and sum over positions)."
                if got.numel() == 1 else "."))
    got = got.detach().double()
    lp = logits.double().log_softmax(-1)
    nxt = lp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]         # log p(token t | < t), t = 1..7
    r = reply[:, 1:].double()
    want = (nxt * r).sum(-1)
    name_variant(got, want, [
        (-want, "that is the negative log-probability (cross-entropy is −log p): return log p, which is ≤ 0."),
        ((lp.gather(-1, tokens[..., None])[..., 0] * reply).sum(-1),
         "off by one: the logits at position t − 1 predict the token at position t. Compare logits[:, :-1] with "
         "tokens[:, 1:] (and the mask reply[:, 1:])."),
        ((logits.double()[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0] * r).sum(-1),
         "these are raw logits: take log_softmax over the vocabulary first."),
        ((logits.double().log_softmax(1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0] * r).sum(-1),
         "log_softmax over the positions: normalise over the vocabulary axis, log_softmax(-1)."),
        ((lp[:, 1:].gather(-1, tokens[:, :-1, None])[..., 0] * reply[:, :-1].double()).sum(-1),
         "shifted the wrong way: the logits at position t − 1 predict the token at t, so pair logits[:, :-1] with "
         "tokens[:, 1:] (and reply[:, 1:])."),
        ((lp[:, 1:].gather(-1, tokens[:, :-1, None])[..., 0] * r).sum(-1),
         "shifted the wrong way: the logits at position t − 1 predict the token at t, so pair logits[:, :-1] with "
         "tokens[:, 1:] (and reply[:, 1:])."),
        (want / r.sum(-1), "you averaged over the reply's tokens: the log-probability of the reply is their *sum*."),
        (want / r.shape[-1], "you averaged over the positions: the log-probability of the reply is the *sum* of its "
                             "tokens' log-probabilities."),
        ((nxt * reply[:, :-1].double()).sum(-1), "the mask is shifted the wrong way: position t's log-probability "
                                                 "comes from logits[:, t − 1]; pair it with reply[:, 1:]."),
        (nxt.sum(-1), "you summed over every position: keep only the reply's tokens (multiply by reply[:, 1:])."),
        (want.exp(), "that is the reply's probability, not its log: sum the log-probabilities."),
    ], atol=1e-4, rtol=1e-5)
    if (got > 1e-6).any():
        fail("a log-probability is never positive, and some of yours are: sum log_softmax(logits, -1) values "
             "(no exp, no minus sign).")
    if not matches(got, want, atol=1e-4, rtol=1e-5):
        fail(f"values differ by up to {(got - want).abs().max().item():.3g}: sum, over the reply's tokens t only, of "
             "log_softmax(logits[t − 1])[token_t].")
    print("continuation_logprob matches the sum of the reply's next-token log-probabilities.")


# ---- exercise 6: removing latents ----------------------------------------------------------------
class _TinySAE(torch.nn.Module):
    """A stand-in SAE like the course's: encode subtracts b_dec; non-zero b_enc and b_dec; decoder rows
    of unequal norms, unrelated to the encoder."""

    def __init__(self, d_in: int = 12, d_sae: int = 16, seed: int = 76):
        super().__init__()
        g = gen(seed)
        self.W_enc = torch.randn(d_in, d_sae, generator=g) / math.sqrt(d_in)
        self.b_enc = torch.randn(d_sae, generator=g) * 0.3
        self.W_dec = torch.randn(d_sae, d_in, generator=g) * torch.linspace(0.5, 2.0, d_sae)[:, None]
        self.b_dec = torch.randn(d_in, generator=g)

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, acts):
        return acts @ self.W_dec + self.b_dec


def _removed(sae, x, latents):
    return x - sae.encode(x)[..., latents] @ sae.W_dec[latents]


def check_remove_latents(fn) -> None:
    assert_own_code(fn)
    sae = _TinySAE()
    x = torch.randn(2, 9, 12, generator=gen(77)) * 2 + 0.5      # [batch pos d_model], as the hook passes it
    latents = torch.tensor([1, 4, 7])
    name, params = "remove_latents", {k: v.clone() for k, v in vars(sae).items() if isinstance(v, torch.Tensor)}
    try:
        got = run(fn, x, sae, latents, name=name, what="a residual stream [2, 9, 12] (batch, pos, d_model), "
                   "latents (1, 4, 7) of 16", resid=x, latents=latents)
    except CheckFailed as err:
        flat = x[0].clone()
        try:
            ok = matches(call(fn, flat, sae, latents), _removed(sae, flat, latents), atol=1e-4)
        except Exception:  # noqa: BLE001 - only asking whether the 2-D case works
            ok = False
        if ok:
            fail(f"{err}\nIt works on a 2-D batch but not on the hook's (batch, pos, d_model) residual stream: "
                 "pick the latents on the last axis, sae.encode(resid)[..., latents].")
        if re.search(r"out of bounds|shapes cannot|must match the size|size mismatch", str(err)):
            fail(f"{err}\nsae.W_dec has shape (d_sae, d_in) = (16, 12): latent i's direction is row i, so the "
                 "chosen latents' directions are the rows of W_dec, W_dec[latents], shape (k, d_in).")
        raise
    if any(not torch.equal(v, params[k]) for k, v in vars(sae).items() if k in params):
        fail(f"`{name}` changed the SAE's weights in place: leave the SAE as it is.")
    got = tensor_result(got, name, shape=tuple(x.shape), what="a residual stream [2, 9, 12]").detach().double()
    acts = sae.encode(x)
    sel = acts[..., latents]
    contrib = sel @ sae.W_dec[latents]
    seq = x
    for i in latents.tolist():
        seq = seq - sae.encode(seq)[..., i, None] * sae.W_dec[i]
    unit = sae.W_dec[latents] / sae.W_dec[latents].norm(dim=-1, keepdim=True)
    hand = torch.relu(x @ sae.W_enc + sae.b_enc)[..., latents] @ sae.W_dec[latents]
    want = x - contrib
    name_variant(got, want, [
        (x - sae.decode(acts), "you removed the whole reconstruction: subtract only the chosen latents' "
                               "contributions, acts[..., latents] @ W_dec[latents]."),
        (x - acts @ sae.W_dec, "you removed the whole reconstruction (every latent's contribution): subtract only the chosen latents', "
                               "acts[..., latents] @ W_dec[latents]."),
        (x - contrib - len(latents) * sae.b_dec, "b_dec is not a latent's contribution: sae.decode adds b_dec each "
                                                  "time you call it; subtract acts[..., latents] @ W_dec[latents] only."),
        (x - contrib - sae.b_dec, "b_dec is not a latent's contribution: subtract acts[..., latents] @ W_dec[latents] "
                                  "only (sae.decode adds b_dec)."),
        (sae.decode(acts.index_fill(-1, latents, 0.0)),
         "this replaces the residual by the SAE's reconstruction and drops the error term x − x̂: keep it, so only "
         "the chosen latents change (subtract their contributions from x)."),
        (x + contrib, "you added the latents' contributions: removing them means subtracting, resid − acts @ W_dec."),
        (x - sel @ sae.W_enc[:, latents].T, "those are the encoder's directions (W_enc): a latent writes to the "
                                            "residual stream through its decoder row, W_dec[latents]."),
        (x - sel @ unit, "you normalised the decoder rows: a latent's contribution is acts_i · W_dec[i] with the "
                         "rows as they are (unit directions are for steering)."),
        (x - hand, "use sae.encode(resid) for the activations: the SAE's own encoder subtracts b_dec first (and a "
                   "TopK SAE keeps only the k largest), which a hand-written ReLU(x @ W_enc + b_enc) misses."),
        (seq, "you re-encoded after removing each latent, so later latents were read from an already changed "
              "residual: encode once, then subtract all the chosen contributions."),
    ], atol=1e-4)
    assert_close(got.double(), want.double(), "resid − Σ_{i in latents} acts_i · W_dec[i], with acts = "
                 "sae.encode(resid).", atol=1e-4, rtol=0.0)
    print("remove_latents subtracts exactly the chosen latents' contributions (SAE error term kept).")


# ---- exercise 7: the difference-of-means probe ---------------------------------------------------
def _probe(fn, x, y, what: str):
    out = run(fn, x, y, name="diff_of_means_probe", what=what, x=x, labels=y,
               hint=(r"must match the size", "Average each feature over the examples of a class: "
                                             "x[labels].mean(0), one value per feature."))
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        fail(f"return a pair (w, b) (the probe's score is x @ w + b); got {type(out).__name__}.")
    w, b = out
    d = x.shape[1]
    if isinstance(b, torch.Tensor) and b.shape == (d,) and (not isinstance(w, torch.Tensor) or w.numel() == 1):
        fail("the pair is swapped: return (w, b), the direction first.")
    w = tensor_result(w, "diff_of_means_probe's w").detach().double()
    if w.shape != (d,) and w.numel() == d:
        fail(f"w should be 1-D, shape ({d},), got {tuple(w.shape)}: no keepdim, or .flatten() it.")
    if w.shape != (d,):
        fail(f"w should have one weight per feature, shape ({d},), got {tuple(w.shape)}: average over the examples, "
             "x[labels].mean(0).")
    if isinstance(b, torch.Tensor) and b.numel() != 1:
        fail(f"b should be one number (a 0-d tensor), got shape {tuple(b.shape)}: b = −((μ₊ + μ₋)/2) @ w.")
    if not isinstance(b, (torch.Tensor, float, int)) or isinstance(b, bool):
        fail(f"b should be one number (a 0-d tensor), got {type(b).__name__}: b = −((μ₊ + μ₋)/2) @ w.")
    return w, float(b)


def check_diff_of_means_probe(fn) -> None:
    assert_own_code(fn)
    g = gen(77)
    shift = torch.tensor([2.0, 0.0, -1.0, 0.5, 0.0])
    for n_pos, n in ((40, 80), (25, 80)):              # paired (as in the chapter), then unbalanced
        y = torch.arange(n) < n_pos
        x = torch.randn(n, 5, generator=g) + 3 + y.float()[:, None] * shift
        w, b = _probe(fn, x, y, f"x [{n}, 5] (not centred), {n_pos} positive rows")
        mu1, mu0 = x[y].double().mean(0), x[~y].double().mean(0)
        delta = mu1 - mu0
        u = delta / delta.norm()
        name_variant(w, u, [
            (-u, "w points the wrong way: mean of the positives minus mean of the negatives."),
            (delta, f"normalise w to unit length (‖w‖ = {float(w.norm()):.3f}): w = (μ₊ − μ₋) / ‖μ₊ − μ₋‖."),
            (delta / delta.abs().sum(), "divide by the Euclidean (L2) norm, ‖μ₊ − μ₋‖ = (μ₊ − μ₋).norm(), not the "
                                        "sum of the absolute entries."),
        ], atol=1e-4)
        if not matches(w, u, atol=1e-4):
            fail(f"w is off by up to {(w - u).abs().max().item():.3g}: w = (μ₊ − μ₋) / ‖μ₊ − μ₋‖ with μ = the "
                 "class means, x[labels].mean(0) and x[~labels].mean(0).")
        mid = -((mu1 + mu0) / 2) @ u
        name_variant(torch.tensor(b), mid, [
            (0.0, "b is 0: the data are not centred, so place the threshold between the classes, "
                  "b = −((μ₊ + μ₋)/2) · w."),
            (-mid, "the sign of b is flipped: b = −((μ₊ + μ₋)/2) · w, so that the midpoint scores 0."),
            (2 * mid, "the /2 is missing: the midpoint of the class means is (μ₊ + μ₋)/2, so b = −((μ₊ + μ₋)/2) · w."),
            (-((mu1 + mu0) / 2) @ delta, "you computed b with w before normalising it: compute b with the unit w "
                                         "(normalise w first)."),
            (-x.double().mean(0) @ u, "you centred on the mean of all examples; the threshold sits at the midpoint "
                                      "of the two class means, −((μ₊ + μ₋)/2) · w (they differ when the classes "
                                      "are unbalanced, 25 vs 55 here)."),
            (-mu0 @ u, "the threshold is not halfway between the class means (yours sits at the negatives' mean): "
                       "b = −((μ₊ + μ₋)/2) · w."),
            (-mu1 @ u, "the threshold is not halfway between the class means (yours sits at the positives' mean): "
                       "b = −((μ₊ + μ₋)/2) · w."),
        ], atol=1e-4)
        if not matches(b, mid, atol=1e-4):
            fail(f"b = {b:.4f}, expected {mid.item():.4f}: the threshold is halfway between the class means, "
                 "b = −((μ₊ + μ₋)/2) · w, so μ₊ scores as far above 0 as μ₋ below.")
    print("diff_of_means_probe matches the definition (paired and unbalanced classes).")
