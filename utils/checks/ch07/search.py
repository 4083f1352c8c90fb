"""Chapter 07, exercises 1–3: the seed's ratio search, AUROC, Cohen's d (the package docstring
says how the checks work).

The inputs separate the common mistakes: paired and unbalanced classes, a latent that never fires
and one that fires once, a ratio of exactly 3, many ties.
"""

from __future__ import annotations

import torch

from utils.checks import assert_own_code, fail, matches, tensor_result
from utils.checks.ch07._util import gen, name_variant, run


# ---- exercise 1: the seed's search ---------------------------------------------------------------
def _flag(pos, neg, ratio):
    return torch.nonzero(pos > ratio * neg).flatten().tolist()


def _indices(got, name: str, d: int) -> list[int]:
    """The student's flagged latents as a sorted-or-not list, after checking what kind of value it is."""
    if isinstance(got, (list, tuple)):
        fail(f"`{name}` returned a {type(got).__name__}: return the indices as a LongTensor "
             "(torch.nonzero(mask).flatten()); the next cells index tensors with it (flagged[mask]).")
    got = tensor_result(got, name)
    if got.dtype == torch.bool:
        fail(f"`{name}` returned a boolean mask: return the flagged latents' indices, "
             "torch.nonzero(mask).flatten().")
    if got.is_floating_point():
        fail(f"`{name}` returned {got.dtype} values: return integer indices (a LongTensor).")
    if got.dim() == 0:
        fail(f"`{name}` returned a 0-d tensor for a single flagged latent (.squeeze() or .item() drops the "
             "axis): return a 1-D tensor of indices, torch.nonzero(mask).flatten().")
    if got.dim() == 2 and got.shape[-1] == 1:
        fail(f"`{name}` returned shape {tuple(got.shape)}: torch.nonzero gives one row per hit; add "
             ".flatten() to get a 1-D tensor of indices.")
    if got.dim() != 1:
        fail(f"`{name}` returned shape {tuple(got.shape)}: return a 1-D tensor of latent indices.")
    return got.tolist()


def _ratio_data():
    """Paired scores (12 sycophantic and 12 honest rows, like the chapter's pairs) over 8 latents,
    non-negative with many zeros; and a minority of positives (4 vs 16) with ratios 5, 8 and 14, so
    that dividing by the overall mean (flags > 6×) and comparing sums (flags > 12×) show."""
    g = gen(70)
    s = (torch.randint(0, 4, (24, 8), generator=g).float() / 2) * (torch.rand(24, 8, generator=g) < 0.5)
    y = torch.arange(24) % 2 == 0
    s[:, 0] = 0.0                                              # never fires: 0 > 3·0 is False
    s[:, 1] = 0.0
    s[0, 1] = 1e-3                                             # fires once, on a positive: 1e-3 > 3·0
    s[:, 2] = torch.where(y, 1.5, 0.5)                         # exactly 3× (not flagged: strict >)
    s[:, 3] = torch.where(y, 2.0, 1.0)                         # 2× (flagged at ratio 1.5)
    s[:, 4] = torch.where(y, 0.2, 2.0)                         # an honest latent
    s[:, 5] = torch.where(y, 1.0, 0.25)                        # 4×
    s[0, 6:], s[1, 6:] = 3.5, 0.0                              # pair 0: its sycophantic row > 3× its honest row
    yb = torch.arange(20) < 4
    #                     never, once,  5×,   8×,   14×,  2×,  honest, 3×
    sb = torch.where(yb[:, None], torch.tensor([0.0, 0.3, 2.5, 2.0, 1.4, 2.0, 0.5, 1.5]),
                     torch.tensor([0.0, 0.0, 0.5, 0.25, 0.1, 1.0, 2.0, 0.5]))
    return s, y, sb, yb


def check_seed_ratio_search(fn) -> None:
    assert_own_code(fn)
    s, y, sb, yb = _ratio_data()
    name = "seed_ratio_search"
    hint = (r"must match the size|shapes cannot", "Average each latent (column) over the examples: "
            "scores[labels].mean(0) has one value per latent.")
    got = _indices(run(fn, s, y, what="scores [24, 8] (12 sycophantic, 12 honest rows), ratio 3", name=name,
                       hint=hint, scores=s, labels=y), name, s.shape[1])
    pos, neg = s[y].mean(0), s[~y].mean(0)
    want = _flag(pos, neg, 3.0)
    for value, message in (
        (_flag(neg, pos, 3.0), "you compared honest against sycophantic: flag latents whose mean on the *positive* "
                               "(sycophantic, label True) examples exceeds 3× their mean on the negative ones."),
        (torch.nonzero(pos >= 3 * neg).flatten().tolist(),
         "use a strict `>` as the seed does: with `>=` a latent that never fires passes (0 >= 3·0), and so does "
         "one at exactly 3×."),
        (torch.nonzero((pos > 3 * neg) & (neg > 0)).flatten().tolist(),
         "you left out latents that never fire on a negative example; the seed's test flags them (x > 3·0 for "
         "any x > 0), and the chapter shows why that is a weakness, so keep the comparison as it is."),
        (_flag(s[y].mean(1), s[~y].mean(1), 3.0), "you averaged over the wrong axis (over latents, one value per "
                                                  "example): average each latent over the examples, .mean(0)."),
    ):
        if got == value and value != want:
            fail(message)
    unb = _indices(run(fn, sb, yb, what="scores [20, 8] with 4 sycophantic and 16 honest rows", name=name,
                       hint=hint, scores=sb, labels=yb), name, 8)
    pb, nb = sb[yb].mean(0), sb[~yb].mean(0)
    want_b = _flag(pb, nb, 3.0)
    for value, message in (
        (_flag(pb, sb.mean(0), 3.0), "compare with the mean over the negative examples only, not over all "
                                     "examples: scores[~labels].mean(0)."),
        (_flag(sb[yb].sum(0), sb[~yb].sum(0), 3.0),
         "you compared class sums where the seed compares means (a mean over all rows of a masked tensor is a sum "
         "/ n too): with 4 sycophantic and 16 honest examples they are not comparable. Average each class over "
         "its own examples, scores[labels].mean(0)."),
    ):
        if unb == value and value != want_b:
            fail(message)
    if (sorted(got) == want and got != want) or (sorted(unb) == want_b and unb != want_b):
        fail("the right latents, but not in ascending order: return them as torch.nonzero gives them, sorted by index.")
    if got != want or unb != want_b:
        fail(f"flagged {got if got != want else unb}, expected {want if got != want else want_b}: a latent j is "
             "flagged when mean(scores[labels, j]) > ratio · mean(scores[~labels, j]).")
    low = _indices(run(fn, s, y, 1.5, what="the same scores, ratio 1.5", name=name, scores=s, labels=y), name, 8)
    if low == want and _flag(pos, neg, 1.5) != want:
        fail("the `ratio` argument is ignored: use it instead of a hard-coded 3.")
    if low != _flag(pos, neg, 1.5):
        fail(f"with ratio = 1.5 you flagged {low}, expected {_flag(pos, neg, 1.5)}.")
    one = _indices(run(fn, sb, yb, 20.0, what="4 sycophantic and 16 honest rows, ratio 20 (one latent passes)",
                       name=name, scores=sb, labels=yb), name, 8)
    if one != _flag(pb, nb, 20.0):
        fail(f"with ratio = 20 you flagged {one}, expected {_flag(pb, nb, 20.0)}.")
    print(f"seed_ratio_search matches the seed's loop ({len(want)} of {s.shape[1]} latents flagged here).")


# ---- exercise 2: AUROC ---------------------------------------------------------------------------
def _pairs(s, y):
    """(positive > negative, positive == negative), for every pair and column: [n₊, n₋, d]."""
    pos, neg = s[y].double(), s[~y].double()
    return pos[:, None] > neg[None], pos[:, None] == neg[None]


def _rank_counts(s):
    """(#values < x, #values == x) for every value x of each column, by comparing all pairs: [n, d]."""
    x = s.double()
    return (x[None] < x[:, None]).sum(1).double(), (x[None] == x[:, None]).sum(1).double()


def _flat_ranks(s):
    """Average ranks of every value among all the entries of the matrix (the mistake of not ranking per column)."""
    x = s.double().flatten()
    below, tied = (x[None] < x[:, None]).sum(1).double(), (x[None] == x[:, None]).sum(1).double()
    return (below + (tied + 1) / 2).view(s.shape)


def _auroc_data():
    """22 positives, 38 negatives, 7 columns of pooled-latent-like scores (mostly exact zeros, values on a
    grid, so ties are the rule) and a column that never fires."""
    g = gen(71)
    y = torch.zeros(60, dtype=torch.bool)
    y[torch.randperm(60, generator=g)[:22]] = True
    fires = torch.rand(60, 7, generator=g) < 0.25 + 0.35 * y.float()[:, None] * torch.linspace(0, 1, 7)
    s = (torch.randint(1, 4, (60, 7), generator=g).float() / 2) * fires
    s[:, 3] = 0.0
    return s, y


def check_auroc(fn) -> None:
    assert_own_code(fn)
    s, y = _auroc_data()
    name = "auroc"
    hint = (r"mask|Dimension out of range|index", "Rank each column over the examples: searchsorted and sort work "
            "along the last axis, so transpose the (n, d) scores to (d, n) first (scores.T.contiguous()).")
    got = tensor_result(run(fn, s, y, what="scores [60, 7] (22 positive rows, many ties), labels [60]", name=name,
                            hint=hint, scores=s, labels=y), name)
    if got.shape != (7,):
        fail(f"`auroc` returned shape {tuple(got.shape)} for 7 columns: return one AUROC per column, shape (7,).")
    got = got.detach().double()
    wins, ties = _pairs(s, y)
    want = (wins.double() + 0.5 * ties.double()).mean((0, 1))
    n1, n0 = int(y.sum()), int((~y).sum())
    below, tied = _rank_counts(s)

    def from_ranks(r):
        return (r[y].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)

    name_variant(got, want, [
        (1 - want, "your AUROCs are reversed (1 − AUROC): rank the *positive* examples' scores, and a detector "
                   "that gives the positives the higher scores should get 1."),
        (wins.double().mean((0, 1)), "ties are counted as losses: a tie between a positive and a negative counts "
                                     "½. Pooled latent activations are mostly exact zeros, so ties matter (average ranks)."),
        ((wins | ties).double().mean((0, 1)), "ties are counted as wins: a tie between a positive and a negative "
                                              "counts ½ (tied values share the average of their ranks)."),
        (from_ranks(below + tied), "ties are counted as wins: each tied value got the highest rank of its group; "
                                   "tied values share the average of the ranks they span, (#values < x + #values ≤ x + 1) / 2."),
        (from_ranks(below + 1), "ties are counted as losses: each tied value got the lowest rank of its group; "
                                "tied values share the average of the ranks they span, (#values < x + #values ≤ x + 1) / 2."),
        (want - 1 / (2 * n0), "your ranks are 0-based (the +1 is missing from (#values < x + #values ≤ x + 1) / 2): "
                              "the smallest value has rank 1."),
        (want - 1 / n0, "your ranks are 0-based: the smallest value has rank 1, so the average rank is "
                        "(#values < x + #values ≤ x + 1) / 2."),
        (want * n1 * n0, "this is the rank-sum statistic U; AUROC = U / (n₊ · n₋) lies in [0, 1]."),
        (want + (n1 + 1) / (2 * n0), "subtract n₊(n₊ + 1)/2 from the positives' rank sum before dividing: "
                                     "AUROC = (R₊ − n₊(n₊+1)/2) / (n₊ n₋)."),
        (want * n0 / n1, "divide by n₊ · n₋ (the number of positive–negative pairs), not n₊²."),
        (want * n1 / n0, "divide by n₊ · n₋ (the number of positive–negative pairs), not n₋²."),
        (from_ranks(_flat_ranks(s)), "you ranked all the scores together (the whole matrix at once): rank each "
                                     "column (latent) over the examples separately."),
    ], atol=1e-5)
    if got.min() < -1e-6 or got.max() > 1 + 1e-6:
        fail(f"an AUROC of {got.max().item() if got.max() > 1 else got.min().item():.3g}: AUROC is a probability, in "
             "[0, 1]: rank each column separately, subtract n₊(n₊+1)/2 and divide by n₊ · n₋.")
    if not matches(got[3], 0.5, atol=1e-6):
        fail(f"a column of identical values (a latent that never fires) has AUROC 0.5, you returned "
             f"{got[3].item():.3g}: tied values must share the average of the ranks they span.")
    if not matches(got, want, atol=1e-5):
        worst = (got - want).abs().max().item()
        fail(f"values differ from P(positive > negative) + ½ P(tie) by up to {worst:.3g}: AUROC = (sum of the "
             "positives' average ranks − n₊(n₊+1)/2) / (n₊ n₋), per column.")
    one = tensor_result(run(fn, s[:, 5:6], y, what="a single column, scores [60, 1] (as in auroc(dom_scores[:, None], y))",
                            name=name, scores=s), name)
    if one.shape != (1,):
        fail(f"with a single column, scores of shape (60, 1), `auroc` returned shape {tuple(one.shape)}: keep the "
             "latent axis, shape (1,) (no .squeeze(): the notebook reads auroc(...)[0]).")
    print("auroc matches P(positive > negative) + ½ P(tie), ties included.")


# ---- exercise 3: Cohen's d -----------------------------------------------------------------------
def check_cohens_d(fn) -> None:
    assert_own_code(fn)
    g = gen(72)
    y = torch.arange(65) < 25                                   # 25 positives, 40 negatives
    s = torch.randn(65, 6, generator=g).abs() * torch.where(y[:, None], 2.0, 0.7) + y.float()[:, None] * 0.8
    s[:, 2] = 0.0                                               # never fires
    s[:, 4] = torch.where(y, 0.0, s[:, 4])                      # never on positives: negative d
    name = "cohens_d"
    got = tensor_result(run(fn, s, y, what="scores [65, 6] (25 positive rows, a column that never fires)",
                            name=name, scores=s, labels=y), name, shape=(6,))
    got = got.detach().double()
    if not torch.isfinite(got[2]):
        fail("a column that is constant in both groups (a latent that never fires) gave NaN or inf: return 0 "
             "there (torch.where(sd > 0, diff / sd.clamp_min(tiny), 0)).")
    if got[2] != 0:
        fail(f"a latent that never fires has d = 0 (no difference), you returned {got[2].item():.3g}.")
    x = s.double()
    pos, neg = x[y], x[~y]
    n1, n0 = len(pos), len(neg)
    diff, v1, v0 = pos.mean(0) - neg.mean(0), pos.var(0), neg.var(0)
    b1, b0 = pos.var(0, unbiased=False), neg.var(0, unbiased=False)
    pooled = ((n1 - 1) * v1 + (n0 - 1) * v0) / (n1 + n0 - 2)
    live = torch.arange(6) != 2

    def d(sd):
        return (diff / sd)[live]

    name_variant(got[live], d(pooled.sqrt()), [
        (-d(pooled.sqrt()), "the sign is flipped: d = (mean of positives − mean of negatives) / pooled sd."),
        (d(pooled.sqrt()).abs(), "d is signed: positive where the positives score higher, negative where they "
                                 "score lower (a latent that fires only on honest replies); no .abs()."),
        (d(x.std(0)), "you divided by the standard deviation of all examples together: use the pooled sd, "
                      "√(((n₊−1)s₊² + (n₋−1)s₋²) / (n₊ + n₋ − 2))."),
        (d(x.std(0, unbiased=False)), "you divided by the standard deviation of all examples together: use the "
                                      "pooled sd, √(((n₊−1)s₊² + (n₋−1)s₋²) / (n₊ + n₋ − 2))."),
        (d((v1.sqrt() + v0.sqrt()) / 2), "you divided by the average of the two standard deviations: pool the "
                                         "variances, √(((n₊−1)s₊² + (n₋−1)s₋²) / (n₊ + n₋ − 2))."),
        (d(((v1 + v0) / 2).sqrt()), "you averaged the two variances unweighted: weight each group by its degrees "
                                    "of freedom, ((n₊−1)s₊² + (n₋−1)s₋²) / (n₊ + n₋ − 2) (25 and 40 examples here)."),
        (d((((n1 - 1) * b1 + (n0 - 1) * b0) / (n1 + n0 - 2)).sqrt()),
         "use unbiased variances (divided by n − 1: .var(0), unbiased=True) inside the pooled formula."),
        (d((((n1 - 1) * v1 + (n0 - 1) * v0) / (n1 + n0)).sqrt()),
         "the pooled variance divides by n₊ + n₋ − 2 (the degrees of freedom), not n₊ + n₋."),
        (d(pooled), "you divided by the pooled variance: take its square root, the pooled standard deviation."),
    ], atol=1e-4, rtol=1e-4)
    if not matches(got[live], d(pooled.sqrt()), atol=1e-4, rtol=1e-4):
        worst = (got[live] - d(pooled.sqrt())).abs().max().item()
        fail(f"values differ by up to {worst:.3g}: d = (mean₊ − mean₋) / √(((n₊−1)s₊² + (n₋−1)s₋²) / "
             "(n₊ + n₋ − 2)), with unbiased variances s².")
    print("cohens_d matches the pooled-sd definition.")
