"""Chapter 07, exercise 4: Bonferroni and Benjamini–Hochberg (the package docstring says how the
checks work).

The inputs separate the common mistakes: p-values exactly on their thresholds (binary fractions,
so any way of computing kα/m gives the same float), a p-value that fails its threshold between two
that pass, and a set where none passes.
"""

from __future__ import annotations

import torch

from utils.checks import assert_own_code, fail, tensor_result
from utils.checks.ch07._util import gen, run


# ---- exercise 4: multiple comparisons ------------------------------------------------------------
def _bh_variants(p: torch.Tensor, alpha: float):
    """(right BH mask, [(mask, message)] of common mistakes), from the definition."""
    m = p.numel()
    order = p.double().argsort(stable=True)
    k = torch.arange(1, m + 1, dtype=torch.float64)
    sp = p.double()[order]

    def mask(idx):
        out = torch.zeros(m, dtype=torch.bool)
        out[idx] = True
        return out

    def up(passes):
        return int(torch.nonzero(passes).max()) + 1 if passes.any() else 0

    passes = sp <= alpha * k / m
    top = up(passes)
    lead = int(passes.long().cumprod(0).sum())
    unsorted = p.double() <= alpha * k / m
    step = ("benjamini_hochberg: BH is a step-*up* procedure: find the *largest* k with p_(k) ≤ kα/m and reject "
            "the k smallest p-values, even those above their own threshold (so [0.03, 0.02, 0.035, 0.04] at "
            "α = 0.05 rejects all four: 0.04 ≤ 4 · 0.05/4).")
    return mask(order[:top]), [
        (mask(order[:lead]), step),
        (mask(order[passes]), step),
        (mask(order[:int(passes.sum())]), step),
        (mask(order[:top - 1]), "benjamini_hochberg: off by one: if the last passing p-value is at (0-based) "
                                "position i of the sorted order, k = i + 1 p-values are rejected (order[:i + 1])."),
        (mask(slice(0, top)), "benjamini_hochberg: the right number of rejections but in sorted order: map them "
                              "back to the positions of the original p-values (reject[order[:k]] = True)."),
        (mask(order[:up(sp <= alpha * (k - 1) / m)]), "benjamini_hochberg: k runs from 1 to m: the smallest p-value "
                                                      "is compared with α/m, not 0 (torch.arange(1, m + 1))."),
        (mask(order[:up(sp < alpha * k / m)]), "benjamini_hochberg: the test is p_(k) ≤ kα/m (≤, not <): a p-value "
                                               "exactly on its threshold passes."),
        (mask(slice(0, up(unsorted))), "benjamini_hochberg: sort the p-values first: p_(k) is the k-th smallest."),
        (unsorted, "benjamini_hochberg: sort the p-values first: p_(k) is the k-th smallest."),
        (p.double() <= alpha / m, "benjamini_hochberg: this is Bonferroni's test (p ≤ α/m); BH compares the k-th "
                                  "smallest p-value with kα/m."),
    ]


def _dyadic_p() -> torch.Tensor:
    """16 p-values for α = 0.5, so BH's thresholds are kα/m = 2k/64 and Bonferroni's α/m = 2/64; all are binary
    fractions, so every way of computing a threshold gives the same float. Sorted, in 64ths:
    1, 2 (= α/m), 4, 6, 8 (each on its threshold one k earlier), 11 (< 12 but > 10), 14 (= 14), 16.5 (> 16: fails),
    18.5 (> 18: fails), 20 (= 20: the largest k that passes), then eight fails. So the right k (10), the first run
    of passes (7), the count of passes (8), k − 1 (9), the strict test (6) and k from 0 (5) all differ."""
    return torch.tensor([11, 1, 42, 30, 2, 14, 36, 18.5, 6, 20, 60, 8, 54, 16.5, 48, 4]) / 64


def _mask(got, name: str, m: int) -> torch.Tensor:
    got = tensor_result(got, name)
    if got.dtype != torch.bool or got.shape != (m,):
        fail(f"`{name}` should return a boolean mask with one entry per p-value, in the input's order (shape "
             f"({m},)); got dtype {got.dtype}, shape {tuple(got.shape)}.")
    return got


def check_corrections(bonferroni, benjamini_hochberg) -> None:
    assert_own_code(bonferroni)
    assert_own_code(benjamini_hochberg)
    g = gen(3)
    rand = torch.cat([torch.rand(40, generator=g) * 1e-3, torch.rand(160, generator=g)])[torch.randperm(200, generator=g)]
    dyadic = _dyadic_p()
    for p, alpha, what in ((dyadic, 0.5, "16 p-values, some exactly on their thresholds, α = 0.5"),
                           (rand, 0.05, "200 p-values (40 below 0.001), α = 0.05")):
        m = p.numel()
        got = _mask(run(bonferroni, p, alpha, what=what, name="bonferroni", p_values=p), "bonferroni", m)
        want = p <= alpha / m
        for value, message in ((p <= alpha, "bonferroni: this is no correction at all; divide α by the number of "
                                             "tests m."),
                               (p < alpha / m, "bonferroni: reject where p ≤ α/m (≤, not <): a p-value exactly at "
                                               "α/m is rejected."),
                               (p <= 0.05 / m, "bonferroni: the `alpha` argument is ignored: use it instead of a "
                                               "hard-coded 0.05.")):
            if torch.equal(got, value) and not torch.equal(value, want):
                fail(message)
        if not torch.equal(got, want):
            fail(f"bonferroni: {int(got.sum())} rejections, expected {int(want.sum())} on {what}: reject where "
                 "p ≤ α/m, m = the number of p-values.")
        got = _mask(run(benjamini_hochberg, p, alpha, what=what, name="benjamini_hochberg", p_values=p),
                    "benjamini_hochberg", m)
        want, variants = _bh_variants(p, alpha)
        variants.append((_bh_variants(p, 0.05)[0], "benjamini_hochberg: the `alpha` argument is ignored: use it "
                                                   "instead of a hard-coded 0.05."))
        for value, message in variants:
            if torch.equal(got, value) and not torch.equal(value, want):
                fail(message)
        if not torch.equal(got, want):
            fail(f"benjamini_hochberg: {int(got.sum())} rejections, expected {int(want.sum())} on {what}: sort the "
                 "p-values, find the largest k with p_(k) ≤ kα/m, reject those k (in the input's positions).")
    none = torch.tensor([0.5, 0.9, 0.07])
    got = _mask(run(benjamini_hochberg, none, 0.05, what="p-values (0.5, 0.9, 0.07), none under its threshold",
                    name="benjamini_hochberg", hint=(r".", "When no p-value is under its threshold BH rejects "
                                                     "nothing: return an all-False mask (guard with passes.any())."),
                    p_values=none), "benjamini_hochberg", 3)
    if got.any():
        fail("benjamini_hochberg: with no p_(k) ≤ kα/m (0.07 > 3 · 0.05/3) BH rejects nothing.")
    print(f"bonferroni and benjamini_hochberg match their definitions ({int((rand <= 0.05 / 200).sum())} and "
          f"{int(_bh_variants(rand, 0.05)[0].sum())} of 200 rejected at α = 0.05 here).")
