"""Visible check for chapter 07's held-out-wording exercise (`transfer`).

The student's `transfer(latents, scores, labels, change_fn, controls)` judges latents chosen on
the training claims on another split: their AUROCs there (in the order given), the mean change
in the behaviour metric when they are ablated (`change_fn(latents)` gives it per pair), the same
for every random latent set in `controls`, and how many of those move the metric at least as
far in the same direction. The check runs it on small made-up inputs with a made-up
`change_fn` (no model), compares with `utils.capstone.transfer`, and names the usual mistakes.
"""

from __future__ import annotations

import torch

from utils import capstone as ref_cap
from utils.checks import assert_close, assert_own_code, call, fail
from utils.detection import auroc as ref_auroc

KEYS = ("aurocs", "effect", "random", "n_as_far")


class _Change:
    """A made-up ablation: each latent has a fixed effect `weight`; a set's per-pair change is the
    sum of its latents' weights times a per-pair factor with mean exactly 1. Records its calls."""

    def __init__(self, weight: torch.Tensor, n_pairs: int = 8):
        self.weight = weight
        self.factor = torch.linspace(0.25, 1.75, n_pairs, dtype=torch.float64).float()   # mean 1
        self.calls: list[list[int]] = []

    def __call__(self, latents) -> torch.Tensor:
        idx = torch.as_tensor(latents).long()
        self.calls.append(idx.flatten().tolist())
        return self.weight[idx].sum() * self.factor


def _scores(seed: int = 0, n: int = 40, d: int = 10):
    """Pooled-latent-like scores: sparse, tied at 0 and on a grid; column j separates by j/10."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) < n // 2
    fires = torch.rand(n, d, generator=g) < 0.35 + 0.06 * torch.arange(d) * y.float()[:, None]
    return (torch.randint(1, 5, (n, d), generator=g).float() / 4) * fires, y


def _controls(weight: torch.Tensor, k: int, n_sets: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(len(weight), generator=g)[:k] for _ in range(n_sets)])


def _run(fn, latents, scores, labels, weight, controls):
    change = _Change(weight)
    out = call(fn, latents.clone(), scores.clone(), labels.clone(), change, controls.clone(), name="transfer")
    if not isinstance(out, dict) or not set(KEYS) <= set(out):
        fail(f"return a dict with the keys {KEYS} (got {type(out).__name__}"
             f"{' with keys ' + str(sorted(out)) if isinstance(out, dict) else ''}).")
    return out, change


def check_transfer(fn, auroc_fn=None) -> None:
    """`auroc_fn`: the student's own `auroc` (exercise 2), which `transfer` should use."""
    assert_own_code(fn)
    scores, labels = _scores()
    d = scores.shape[1]
    latents = torch.tensor([3, 8, 1])             # not this split's best columns, and not in AUROC order
    weight = torch.zeros(d)
    weight[latents] = torch.tensor([-0.5, -0.25, -0.25])   # the chosen set moves the metric by −1
    # other latents' effects; dyadic values, so equal sums are equal floats. Among the random sets:
    # one moves the metric by exactly −1 (ties count as "as far"), one further, some by as much or
    # more the other way (those do not count), the rest by less.
    weight[[0, 2, 4, 5, 6, 7, 9]] = torch.tensor([0.375, -0.625, 0.25, -0.125, 0.625, -0.75, 0.125])
    controls = torch.tensor([[0, 4, 9], [2, 5, 9], [2, 7, 0], [4, 6, 0], [5, 9, 4], [2, 7, 5],
                             [6, 9, 0], [0, 2, 9], [4, 6, 9], [5, 7, 6]])
    ref = ref_cap.transfer(latents, scores, labels, _Change(weight), controls)

    out, change = _run(fn, latents, scores, labels, weight, controls)
    aurocs = torch.as_tensor(out["aurocs"]).detach().float().flatten()
    every = ref_auroc(scores, labels)
    if aurocs.shape != (len(latents),):
        fail(f"return one AUROC per given latent: shape ({len(latents)},), got {tuple(aurocs.shape)}.")
    if torch.allclose(aurocs, every.sort(descending=True).values[: len(latents)], atol=1e-5):
        fail("you chose the best latents again on this split (its own top AUROCs): the test is of the "
             "latents chosen on the training claims, whatever they score here — re-choosing on the "
             "split you report is the leak a held-out test exists to prevent.")
    if torch.allclose(aurocs, every[: len(latents)], atol=1e-5):
        fail("these are the AUROCs of columns 0, 1, 2, not of `latents`: index the columns with "
             "scores[:, latents].")
    if torch.allclose(aurocs, ref["aurocs"].sort(descending=True).values, atol=1e-5):
        fail("keep the AUROCs in the order of `latents` (do not sort them): aurocs[i] belongs to latents[i].")
    if torch.allclose(aurocs, 1 - ref["aurocs"], atol=1e-5):
        fail("your AUROCs are reversed (1 − AUROC): label True is the sycophantic reply.")
    assert_close(aurocs, ref["aurocs"], "aurocs[i] is the AUROC of column latents[i] of `scores` for `labels` "
                 "(your own `auroc` from exercise 2).", atol=1e-5)
    if auroc_fn is not None:
        assert_close(aurocs, torch.as_tensor(auroc_fn(scores[:, latents], labels)).float(),
                     "use your own `auroc` from exercise 2 on scores[:, latents].", atol=1e-5)

    if [c for c in change.calls if sorted(c) == sorted(latents.tolist())] == []:
        fail("change_fn was never called with `latents`: the effect is change_fn(latents).mean().")
    effect = out["effect"]
    if torch.as_tensor(effect).numel() != 1:
        fail("`effect` should be one number: the mean over pairs of change_fn(latents).")
    effect = float(torch.as_tensor(effect))
    if abs(effect - ref["effect"] * len(change.factor)) < 1e-4:
        fail("`effect` is the sum over pairs: take the mean, change_fn(latents).mean().")
    assert_close(torch.tensor(effect), torch.tensor(ref["effect"]), "effect = change_fn(latents).mean().", atol=1e-4)

    random = torch.as_tensor(out["random"]).detach().float().flatten()
    if random.numel() != len(controls):
        fail(f"`random` should hold one mean change per random set (row of `controls`): {len(controls)} values, "
             f"got {random.numel()} — call change_fn(controls[i]) for each row i, not on all of them at once.")
    assert_close(random, ref["random"], "random[i] = change_fn(controls[i]).mean(), one per row of `controls`.",
                 atol=1e-4)

    n = out["n_as_far"]
    n_f = float(torch.as_tensor(n))
    want = ref["n_as_far"]
    below = int((ref["random"] <= effect).sum())
    if abs(n_f - want / len(controls)) < 1e-6 and want:
        fail(f"`n_as_far` is a count of random sets ({want} here), not a fraction.")
    if n_f == int((ref["random"] < ref["effect"]).sum()) and n_f != want:
        fail("a random set that moves the metric exactly as far as the latents counts as 'as far': use <=, not <.")
    if n_f == int((ref["random"].abs() >= abs(ref["effect"])).sum()) and n_f != want:
        fail("you compared sizes (abs): a random set that moves the metric the other way does not move it "
             "'as far' — count sets in the same direction, at least as large.")
    if n_f != want:
        fail(f"n_as_far = {n_f:g}, expected {want}: with a negative effect, count the random sets whose "
             f"change is <= the effect (here {below}).")

    # a positive effect: now "as far" means at least as large upwards
    weight_up = -weight
    ref_up = ref_cap.transfer(latents, scores, labels, _Change(weight_up), controls)
    out_up, _ = _run(fn, latents, scores, labels, weight_up, controls)
    n_up = float(torch.as_tensor(out_up["n_as_far"]))
    if n_up != ref_up["n_as_far"]:
        if n_up == int((ref_up["random"] <= ref_up["effect"]).sum()):
            fail("when the latents move the metric *up* (a positive effect), 'as far' means random sets "
                 "whose change is >= the effect: you counted those below it, as for a negative effect.")
        fail(f"with a positive effect ({ref_up['effect']:+.2f}) n_as_far should be {ref_up['n_as_far']} "
             f"(random sets with change >= the effect), got {n_up:g}.")
    print(f"transfer matches the reference: AUROCs {[round(a, 3) for a in ref['aurocs'].tolist()]}, effect "
          f"{ref['effect']:+.2f}, {want} of {len(controls)} random sets as far.")
