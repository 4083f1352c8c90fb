"""utils.checks.ch07.transfer: the held-out-wording exercise's visible check accepts a right answer,
names every catalogued mistake (tests/mistakes/ch07_transfer.py) without running the chapter,
and gives zero to an answer that calls the course's reference."""

from __future__ import annotations

import re

import pytest
import torch

from mistakes.ch07_transfer import MISTAKES
from utils.checks import CheckFailed
from utils.checks.ch07.transfer import check_transfer

AUROC = """
def auroc(scores, labels):
    labels = labels.bool()
    pos, neg = scores[labels].double(), scores[~labels].double()
    wins = (pos[:, None, :] > neg[None, :, :]).double() + 0.5 * (pos[:, None, :] == neg[None, :, :]).double()
    return wins.mean((0, 1)).float()
"""
RIGHT = """
def transfer(latents, scores, labels, change_fn, controls):
    aurocs = auroc(scores[:, latents], labels)
    effect = float(change_fn(latents).mean())
    random = torch.tensor([float(change_fn(c).mean()) for c in controls])
    n_as_far = int((random <= effect).sum()) if effect < 0 else int((random >= effect).sum())
    return {"aurocs": aurocs, "effect": effect, "random": random, "n_as_far": n_as_far}
"""


def notebook(answer: str) -> dict:
    """A namespace as the notebook's: module `__main__`, the student's own `auroc` (brute force)."""
    ns = {"__name__": "__main__", "torch": torch}
    exec(AUROC, ns)
    exec(answer, ns)
    return ns


def test_right_answer_passes(capsys):
    ns = notebook(RIGHT)
    check_transfer(ns["transfer"], ns["auroc"])
    assert "transfer matches the reference" in capsys.readouterr().out


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_catalogued_mistake_is_named(mistake):
    ns = notebook(mistake.source)
    with pytest.raises(CheckFailed) as err:
        check_transfer(ns["transfer"], ns["auroc"])
    assert re.search(mistake.names, str(err.value), re.I | re.S), str(err.value)


def test_the_catalogue_has_enough_subtle_mistakes():
    assert len(MISTAKES) >= 5 and sum(m.subtle for m in MISTAKES) >= 2
    assert {m.test for m in MISTAKES} == {"test_transfer"}


def test_calling_the_reference_scores_zero():
    ns = notebook("from utils.capstone import transfer as _ref\n"
                  "def transfer(latents, scores, labels, change_fn, controls):\n"
                  "    return _ref(latents, scores, labels, change_fn, controls)\n")
    with pytest.raises(CheckFailed, match="scores zero"):
        check_transfer(ns["transfer"], ns["auroc"])
