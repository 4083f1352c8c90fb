"""Visible checks for chapter 07 (capstone: hunting sycophancy with SAE latents).

Each compares the student's function with the course's reference (`utils.detection`,
`utils.capstone`, `utils.steering`) on the same inputs and, when they differ, tests the
mistakes students most often make so that the message can name one.
"""

from __future__ import annotations

import math

import torch

from utils import capstone as ref_cap
from utils import detection as ref
from utils import steering as ref_steer
from utils.checks import assert_close, assert_own_code, fail


def _data(seed: int, n: int = 60, d: int = 12, p_fire: float = 0.3):
    """Sparse non-negative scores with many exact ties (zeros, and values on a grid), like pooled latents."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, generator=g) < 0.5
    y[0], y[1] = True, False
    fires = torch.rand(n, d, generator=g) < p_fire + 0.3 * y.float()[:, None] * (torch.arange(d) % 2)
    s = (torch.randint(1, 4, (n, d), generator=g).float() / 2) * fires
    return s, y


# ---- 1. the seed's search ------------------------------------------------------------------------
def check_seed_ratio_search(fn) -> None:
    assert_own_code(fn)
    s, y = _data(0)
    s[:, 0] = 0.0                        # never fires
    s[:, 1] = 0.0
    s[2, 1] = 1.0 if y[2] else 0.0       # fires once (only if that example is positive)
    want = ref.seed_ratio_search(s, y)
    got = fn(s, y)
    got_t = torch.as_tensor(got)
    if got_t.dtype == torch.bool:
        fail("return the flagged latents' indices (e.g. torch.nonzero(mask).flatten()), not a boolean mask.")
    got_l = sorted(got_t.flatten().tolist())
    if got_l == sorted(ref.seed_ratio_search(s, ~y).tolist()) and got_l != want.tolist():
        fail("you compared honest against sycophantic: flag latents whose mean on the *positive* "
             "(sycophantic, label True) examples exceeds 3x their mean on the negative ones.")
    pos, neg = s[y].mean(0), s[~y].mean(0)
    if got_l == torch.nonzero(pos >= 3 * neg).flatten().tolist() and got_l != want.tolist():
        fail("use a strict `>` as the seed does: with `>=`, a latent that never fires passes (0 >= 3·0).")
    if got_l == torch.nonzero(pos > 3 * s.mean(0)).flatten().tolist() and got_l != want.tolist():
        fail("compare with the mean over the negative examples only, not over all examples.")
    if got_l != want.tolist():
        fail(f"flagged {got_l[:8]}{'…' if len(got_l) > 8 else ''}, expected {want.tolist()[:8]}: a latent "
             "is flagged when mean(scores[labels, j]) > ratio · mean(scores[~labels, j]).")
    if sorted(torch.as_tensor(fn(s, y, ratio=1.0)).flatten().tolist()) != ref.seed_ratio_search(s, y, 1.0).tolist():
        fail("the `ratio` argument is ignored: use it instead of a hard-coded 3.")
    print(f"seed_ratio_search matches the seed's loop ({len(want)} of {s.shape[1]} latents flagged here).")


# ---- 2. AUROC, effect size -----------------------------------------------------------------------
def _auroc_no_ties(s, y):
    pos, neg = s[y], s[~y]
    return (pos[:, None, :] > neg[None, :, :]).float().mean((0, 1))


def check_auroc(fn) -> None:
    assert_own_code(fn)
    y = torch.tensor([True, True, False, False])
    simple = torch.tensor([[2.0, 0.0], [3.0, 1.0], [0.0, 2.0], [1.0, 3.0]])
    got = torch.as_tensor(fn(simple, y)).float()
    if got.shape != (2,):
        fail(f"return one AUROC per column: shape (2,) for a (4, 2) input, got {tuple(got.shape)}.")
    if torch.allclose(got, torch.tensor([0.0, 1.0])):
        fail("your AUROCs are reversed (1 − AUROC): rank the *positive* examples' scores, and a "
             "detector that gives positives the higher scores should get 1.")
    assert_close(got, torch.tensor([1.0, 0.0]), "a column that scores every positive above every "
                 "negative has AUROC 1; one that does the opposite has 0.")
    s, y = _data(1)
    got = torch.as_tensor(fn(s, y)).float()
    want = ref.auroc(s, y)
    if torch.allclose(got, _auroc_no_ties(s, y), atol=1e-5) and not torch.allclose(got, want, atol=1e-5):
        fail("ties are counted as losses: a tie between a positive and a negative counts ½. Pooled "
             "latent activations are mostly exact zeros, so ties matter (use average ranks).")
    if got.min() < -1e-6 or got.max() > 1 + 1e-6:
        fail("AUROC lies in [0, 1]: divide the rank sum statistic U by n_pos · n_neg.")
    never = torch.as_tensor(fn(torch.zeros(6, 3), torch.tensor([True, False] * 3))).float()
    if not torch.allclose(never, torch.full((3,), 0.5)):
        fail(f"a latent that never fires cannot tell the classes apart: its AUROC is 0.5, got {never.tolist()}.")
    assert_close(got, want, "AUROC = (sum of the positives' average ranks − n₊(n₊+1)/2) / (n₊ n₋), per column.")
    print("auroc matches the rank-based reference, ties included.")


def check_cohens_d(fn) -> None:
    assert_own_code(fn)
    s, y = _data(2)
    s[:, 3] = 0.0
    got = torch.as_tensor(fn(s, y)).float()
    want = ref.cohens_d(s, y)
    if got.shape != want.shape:
        fail(f"return one value per column: shape {tuple(want.shape)}, got {tuple(got.shape)}.")
    if not torch.isfinite(got).all():
        fail("a column that is constant in both groups (a latent that never fires) gave NaN or inf: "
             "return 0 there.")
    if torch.allclose(got, -want, atol=1e-4):
        fail("the sign is flipped: d = (mean of positives − mean of negatives) / pooled sd.")
    pos, neg = s[y], s[~y]
    plain = (pos.mean(0) - neg.mean(0)) / s.std(0).clamp_min(1e-12)
    if torch.allclose(got, plain.masked_fill(s.std(0) == 0, 0), atol=1e-4):
        fail("you divided by the standard deviation of all examples together: use the pooled sd, "
             "√(((n₊−1)s₊² + (n₋−1)s₋²) / (n₊ + n₋ − 2)).")
    assert_close(got, want, "d = (mean₊ − mean₋) / √(((n₊−1)s₊² + (n₋−1)s₋²) / (n₊ + n₋ − 2)), with "
                 "unbiased variances s².", atol=1e-4)
    print("cohens_d matches the reference.")


# ---- 3. multiple comparisons ---------------------------------------------------------------------
def check_corrections(bonferroni, benjamini_hochberg) -> None:
    assert_own_code(bonferroni)
    assert_own_code(benjamini_hochberg)
    g = torch.Generator().manual_seed(3)
    p = torch.cat([torch.rand(40, generator=g) * 1e-3, torch.rand(160, generator=g)])[torch.randperm(200, generator=g)]
    for name, fn, want in (("bonferroni", bonferroni, ref.bonferroni(p, 0.05)),
                           ("benjamini_hochberg", benjamini_hochberg, ref.benjamini_hochberg(p, 0.05))):
        got = torch.as_tensor(fn(p, 0.05))
        if got.dtype != torch.bool or got.shape != p.shape:
            fail(f"{name} should return a boolean mask with one entry per p-value, in the input's "
                 f"order (shape {tuple(p.shape)}); got dtype {got.dtype}, shape {tuple(got.shape)}.")
        if name == "bonferroni" and torch.equal(got, p <= 0.05):
            fail("bonferroni: this is no correction at all; divide α by the number of tests m.")
        if name == "benjamini_hochberg" and torch.equal(got.sort().values, want.sort().values) and not torch.equal(got, want):
            fail("benjamini_hochberg: the right number of rejections but in sorted order: map them "
                 "back to the positions of the original p-values.")
        if name == "benjamini_hochberg" and not torch.as_tensor(fn(torch.tensor([0.03, 0.02, 0.035, 0.04]), 0.05)).all():
            fail("benjamini_hochberg: BH is a step-*up* procedure: find the *largest* k with p_(k) ≤ kα/m "
                 "and reject all k smallest, even if a smaller p_(j) is above its own threshold (so "
                 "[0.03, 0.02, 0.035, 0.04] at α = 0.05 rejects all four: 0.04 ≤ 4 · 0.05/4).")
        if not torch.equal(got, want):
            fail(f"{name}: {int(got.sum())} rejections, expected {int(want.sum())}.")
    print(f"bonferroni and benjamini_hochberg match the reference ({int(ref.bonferroni(p).sum())} and "
          f"{int(ref.benjamini_hochberg(p).sum())} of 200 rejected here).")


# ---- 4. behaviour --------------------------------------------------------------------------------
def check_continuation_logprob(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 6, 7, generator=g) * 2
    tokens = torch.randint(0, 7, (3, 6), generator=g)
    reply = torch.zeros(3, 6, dtype=torch.bool)
    reply[0, 3:], reply[1, 4:5], reply[2, 2:5] = True, True, True
    got = torch.as_tensor(fn(logits, tokens, reply)).float()
    want = ref_cap.continuation_logprob(logits, tokens, reply)
    if got.shape != (3,):
        fail(f"return one log-probability per row: shape (3,), got {tuple(got.shape)}.")
    logp = logits.log_softmax(-1)
    same_pos = (logp.gather(-1, tokens[..., None])[..., 0] * reply).sum(-1)
    if torch.allclose(got, same_pos, atol=1e-4):
        fail("off by one: the logits at position t − 1 predict the token at position t. Compare "
             "logits[:, :-1] with tokens[:, 1:] (and the mask reply[:, 1:]).")
    raw = torch.zeros(3)
    for i in range(3):
        for t in range(1, 6):
            if reply[i, t]:
                raw[i] += logits[i, t - 1, tokens[i, t]]
    if torch.allclose(got, raw, atol=1e-4):
        fail("these are raw logits: take log_softmax over the vocabulary first.")
    if (got > 1e-6).any():
        fail("a log-probability is never positive: did you take log_softmax over the vocabulary axis (-1)?")
    assert_close(got, want, "sum, over the reply's tokens t only, of log_softmax(logits[t − 1])[token_t].",
                 atol=1e-4)
    print("continuation_logprob matches the reference.")


class _TinySAE(torch.nn.Module):
    """A stand-in SAE with a non-zero b_dec (so forgetting what to keep shows)."""

    def __init__(self, d_in: int = 6, d_sae: int = 10, seed: int = 5):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.randn(d_in, d_sae, generator=g)
        self.b_enc = torch.zeros(d_sae)
        self.W_dec = torch.randn(d_sae, d_in, generator=g)
        self.b_dec = torch.randn(d_in, generator=g)

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, acts):
        return acts @ self.W_dec + self.b_dec


def check_remove_latents(fn) -> None:
    assert_own_code(fn)
    sae = _TinySAE()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 5, 6, generator=g)
    latents = torch.tensor([1, 4, 7])
    got = torch.as_tensor(fn(x, sae, latents))
    want = ref_steer.ablation_hook(sae, latents.tolist())(x)
    if got.shape != x.shape:
        fail(f"return the residual stream with the same shape as the input {tuple(x.shape)}, got {tuple(got.shape)}.")
    acts = sae.encode(x)
    if torch.allclose(got, x - sae.decode(acts), atol=1e-4) or torch.allclose(got, x - acts @ sae.W_dec, atol=1e-4):
        fail("you removed the whole reconstruction: subtract only the chosen latents' contributions "
             "acts[..., latents] @ W_dec[latents].")
    if torch.allclose(got, x - (acts[..., latents] @ sae.W_dec[latents] + sae.b_dec), atol=1e-4):
        fail("b_dec is not a latent's contribution: subtract acts[..., latents] @ W_dec[latents] only.")
    if torch.allclose(got, sae.decode(acts.index_fill(-1, latents, 0.0)), atol=1e-4):
        fail("this replaces the residual by the SAE's reconstruction and drops the error term "
             "x − x̂: keep it, so only the chosen latents change (subtract their contributions from x).")
    assert_close(got, want, "x minus Σ_{i in latents} acts_i · W_dec[i], with acts = sae.encode(x).", atol=1e-4)
    print("remove_latents matches utils.steering's ablation (SAE error term kept).")


# ---- 5. probes -----------------------------------------------------------------------------------
def check_diff_of_means_probe(fn) -> None:
    assert_own_code(fn)
    g = torch.Generator().manual_seed(7)
    y = torch.rand(80, generator=g) < 0.4
    x = torch.randn(80, 5, generator=g) + 3 + y.float()[:, None] * torch.tensor([2.0, 0, -1, 0, 0])
    out = fn(x, y)
    if not (isinstance(out, tuple) and len(out) == 2):
        fail("return a pair (w, b): the probe's score is x @ w + b.")
    w, b = (torch.as_tensor(t).float() for t in out)
    want = ref.diff_of_means_probe(x, y)
    if w.shape != (5,):
        fail(f"w should have one weight per feature, shape (5,), got {tuple(w.shape)}.")
    if not math.isclose(float(w.norm()), 1.0, rel_tol=1e-3):
        fail(f"normalise w to unit length (‖w‖ = {float(w.norm()):.3f}).")
    if torch.allclose(w, -want.w, atol=1e-4):
        fail("w points the wrong way: mean of the positives minus mean of the negatives.")
    assert_close(w, want.w, "w = (μ₊ − μ₋) / ‖μ₊ − μ₋‖.", atol=1e-4)
    mu1, mu0 = x[y].mean(0), x[~y].mean(0)
    if abs(float(b)) < 1e-6:
        fail("b is 0: the data are not centred, so place the threshold between the classes, "
             "b = −((μ₊ + μ₋)/2) · w.")
    if not math.isclose(float(mu1 @ w + b), -float(mu0 @ w + b), rel_tol=1e-3, abs_tol=1e-4):
        fail("the threshold is not halfway between the class means: b = −((μ₊ + μ₋)/2) · w, so "
             "that μ₊ scores as far above 0 as μ₋ scores below it.")
    assert_close(b, want.b, "b = −((μ₊ + μ₋)/2) · w.", atol=1e-4)
    print("diff_of_means_probe matches the reference.")


from utils.checks.ch07_transfer import check_transfer  # noqa: F401
