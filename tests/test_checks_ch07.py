"""utils.checks.ch07: each visible check accepts a right answer, names a planted mistake, and
gives zero to an answer that calls the course's reference implementation."""

from __future__ import annotations

import math

import pytest
import torch

from utils.checks import CheckFailed
from utils.checks import ch07 as checks


def student(src: str, name: str):
    """Define `name` from source as a notebook would (module `__main__`)."""
    ns = {"__name__": "__main__", "torch": torch, "math": math}
    exec(src, ns)
    return ns[name]


SEED_OK = """
def seed_ratio_search(scores, labels, ratio=3.0):
    labels = labels.bool()
    return torch.nonzero(scores[labels].mean(0) > ratio * scores[~labels].mean(0)).flatten()
"""
AUROC_OK = """
def auroc(scores, labels):
    labels = labels.bool()
    n1, n0 = int(labels.sum()), int((~labels).sum())
    x = scores.double().T.contiguous()
    s = x.sort(-1).values
    r = (torch.searchsorted(s, x) + torch.searchsorted(s, x, right=True) + 1).double() / 2
    return ((r[:, labels].sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)).float()
"""
D_OK = """
def cohens_d(scores, labels):
    labels = labels.bool()
    x = scores.double(); p, n = x[labels], x[~labels]
    n1, n0 = len(p), len(n)
    sd = (((n1 - 1) * p.var(0) + (n0 - 1) * n.var(0)) / (n1 + n0 - 2)).sqrt()
    diff = p.mean(0) - n.mean(0)
    return torch.where(sd > 0, diff / sd.clamp_min(1e-300), torch.zeros_like(diff)).float()
"""
BONF_OK = "def bonferroni(p, alpha=0.05):\n    return p <= alpha / p.numel()\n"
BH_OK = """
def benjamini_hochberg(p, alpha=0.05):
    m = p.numel(); order = p.argsort()
    ok = p[order] <= alpha * torch.arange(1, m + 1) / m
    out = torch.zeros(m, dtype=torch.bool)
    if ok.any():
        out[order[: int(torch.nonzero(ok).max()) + 1]] = True
    return out
"""
LOGPROB_OK = """
def continuation_logprob(logits, tokens, reply):
    lp = logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return (lp * reply[:, 1:]).sum(-1)
"""
REMOVE_OK = """
def remove_latents(resid, sae, latents):
    return resid - sae.encode(resid)[..., latents] @ sae.W_dec[latents]
"""
DOM_OK = """
def diff_of_means_probe(x, labels):
    labels = labels.bool()
    a, b = x[labels].mean(0), x[~labels].mean(0)
    w = (a - b) / (a - b).norm()
    return w, -((a + b) / 2) @ w
"""


def test_right_answers_pass(capsys):
    checks.check_seed_ratio_search(student(SEED_OK, "seed_ratio_search"))
    checks.check_auroc(student(AUROC_OK, "auroc"))
    checks.check_cohens_d(student(D_OK, "cohens_d"))
    checks.check_corrections(student(BONF_OK, "bonferroni"), student(BH_OK, "benjamini_hochberg"))
    checks.check_continuation_logprob(student(LOGPROB_OK, "continuation_logprob"))
    checks.check_remove_latents(student(REMOVE_OK, "remove_latents"))
    checks.check_diff_of_means_probe(student(DOM_OK, "diff_of_means_probe"))
    assert capsys.readouterr().out.count("\n") == 7


@pytest.mark.parametrize("check, src, name, message", [
    (checks.check_seed_ratio_search, SEED_OK.replace(">", ">="), "seed_ratio_search", "strict `>`"),
    (checks.check_seed_ratio_search, SEED_OK.replace("scores[labels].mean(0) >", "scores[~labels].mean(0) >")
     .replace("* scores[~labels]", "* scores[labels]"), "seed_ratio_search", "honest against sycophantic"),
    (checks.check_seed_ratio_search, SEED_OK.replace("torch.nonzero(", "(").replace(").flatten()", ")"),
     "seed_ratio_search", "boolean mask"),
    (checks.check_seed_ratio_search, SEED_OK.replace("ratio *", "3 *"), "seed_ratio_search", "`ratio` argument"),
    (checks.check_auroc, "def auroc(scores, labels):\n    p, n = scores[labels], scores[~labels]\n"
                         "    return (p[:, None] > n[None]).float().mean((0, 1))\n", "auroc", "ties"),
    (checks.check_auroc, AUROC_OK.replace("r[:, labels]", "r[:, ~labels]").replace("n1 * (n1 + 1)", "n0 * (n0 + 1)"),
     "auroc", "reversed"),
    (checks.check_cohens_d, D_OK.replace("diff = p.mean(0) - n.mean(0)", "diff = n.mean(0) - p.mean(0)"),
     "cohens_d", "sign is flipped"),
    (checks.check_cohens_d, D_OK.replace("torch.where(sd > 0, diff / sd.clamp_min(1e-300), torch.zeros_like(diff))",
                                         "diff / sd"), "cohens_d", "NaN"),
    (checks.check_continuation_logprob, LOGPROB_OK.replace("[:, :-1].gather(-1, tokens[:, 1:, None])",
                                                           ".gather(-1, tokens[:, :, None])").replace("reply[:, 1:]", "reply"),
     "continuation_logprob", "off by one"),
    (checks.check_continuation_logprob, LOGPROB_OK.replace("logits.log_softmax(-1)", "logits"),
     "continuation_logprob", "raw logits"),
    (checks.check_remove_latents, REMOVE_OK.replace("resid - sae.encode(resid)[..., latents] @ sae.W_dec[latents]",
                                                    "resid - (sae.encode(resid)[..., latents] @ sae.W_dec[latents] + sae.b_dec)"),
     "remove_latents", "b_dec"),
    (checks.check_remove_latents, REMOVE_OK.replace("sae.encode(resid)[..., latents] @ sae.W_dec[latents]",
                                                    "sae.encode(resid) @ sae.W_dec"), "remove_latents", "whole reconstruction"),
    (checks.check_diff_of_means_probe, DOM_OK.replace("w = (a - b)", "w = (b - a)"), "diff_of_means_probe", "wrong way"),
    (checks.check_diff_of_means_probe, DOM_OK.replace("-((a + b) / 2) @ w", "torch.tensor(0.0)"),
     "diff_of_means_probe", "b is 0"),
])
def test_planted_mistakes_are_named(check, src, name, message):
    with pytest.raises(CheckFailed, match=message):
        check(student(src, name))


def test_bh_mistakes_are_named():
    bonf = student(BONF_OK, "bonferroni")
    step_down = BH_OK.replace("int(torch.nonzero(ok).max()) + 1", "int((~ok).long().argmax()) if (~ok).any() else m")
    with pytest.raises(CheckFailed, match="step-\\*up\\*"):
        checks.check_corrections(bonf, student(step_down, "benjamini_hochberg"))
    with pytest.raises(CheckFailed, match="no correction"):
        checks.check_corrections(student("def bonferroni(p, alpha=0.05):\n    return p <= alpha\n", "bonferroni"),
                                 student(BH_OK, "benjamini_hochberg"))


def test_calling_the_reference_scores_zero():
    cheat = student("def auroc(scores, labels):\n    from utils import detection\n"
                    "    return detection.auroc(scores, labels)\n", "auroc")
    with pytest.raises(CheckFailed, match="course library"):
        checks.check_auroc(cheat)
    from utils import detection
    with pytest.raises(CheckFailed, match="not from your notebook"):
        checks.check_auroc(detection.auroc)


_PASSES = "ok = p[order] <= alpha * torch.arange(1, m + 1) / m"
_K = "int(torch.nonzero(ok).max()) + 1"


@pytest.mark.parametrize("old, new, message", [
    (_PASSES, _PASSES.replace("<=", "<"), "≤, not <"),
    (_PASSES, _PASSES.replace("torch.arange(1, m + 1)", "torch.arange(m)"), "k runs from 1"),
    (_K, _K.replace(" + 1", ""), "off by one"),
    (_K, "int(ok.sum())", "step-\\*up\\*"),
])
def test_bh_threshold_mistakes_are_told_apart(old, new, message):
    """A strict test, k from 0, an off-by-one k and counting the passes each get their own message (the
    check's p-values keep them apart)."""
    assert old in BH_OK
    with pytest.raises(CheckFailed, match=message):
        checks.check_corrections(student(BONF_OK, "bonferroni"), student(BH_OK.replace(old, new), "benjamini_hochberg"))


def test_every_check_the_chapter_calls_is_exported():
    """The solution notebook reaches its checks as `checks.check_*`: each must exist in utils.checks.ch07."""
    import re

    from conftest import REPO
    text = (REPO / "solutions" / "07_capstone_sycophancy" / "07_capstone_sycophancy.ipynb").read_text()
    called = set(re.findall(r"checks\.(check_\w+)\(", text))
    assert called, "the chapter calls no check"
    assert not {c for c in called if not callable(getattr(checks, c, None))}, "checks the notebook calls are missing"
