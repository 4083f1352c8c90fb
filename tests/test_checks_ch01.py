"""utils.checks.ch01 from the student's side: every correct way of writing an answer passes (the checks
compare statistics and formulas, not one particular order of random draws or one einsum), an unfinished
or crashing answer gets a message instead of a traceback, and an answer that reaches the course's
reference is refused. Which mistake gets which message is the catalogue's job (tests/mistakes/ch01.py)."""

from __future__ import annotations

import math

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _helpers import fails as _fails
from _helpers import mine as _mine
from utils import toy_models
from utils.checks import ch01 as checks


# ---- exercise 1: generate_batch -------------------------------------------------------------------
def _gb_reference(n_inst, n_feats, feature_probability, batch, *, generator=None):
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    values = torch.rand(batch, n_inst, n_feats, generator=generator)
    on = torch.rand(batch, n_inst, n_feats, generator=generator) < p[None, :, None]
    return values * on


def _gb_bernoulli(n_inst, n_feats, feature_probability, batch, *, generator=None):
    p = torch.as_tensor(feature_probability, dtype=torch.float32).reshape(-1, 1).expand(n_inst, n_feats)
    on = torch.bernoulli(p.expand(batch, n_inst, n_feats), generator=generator)  # mask drawn first
    return torch.where(on.bool(), torch.rand(batch, n_inst, n_feats, generator=generator), 0.0)


@pytest.mark.parametrize("answer", [_gb_reference, _gb_bernoulli])
def test_generate_batch_passes_correct_answers(answer):
    checks.check_generate_batch(_mine(answer))


def test_generate_batch_stub_and_reference():
    @_mine
    def generate_batch(n_inst, n_feats, feature_probability, batch, *, generator=None):
        raise NotImplementedError()

    _fails(checks.check_generate_batch, generate_batch, match="still raises NotImplementedError")

    @_mine
    def borrowed(n_inst, n_feats, feature_probability, batch, *, generator=None):
        return toy_models.generate_batch(n_inst, n_feats, feature_probability, batch, generator=generator)

    _fails(checks.check_generate_batch, borrowed, match="course library")
    _fails(checks.check_generate_batch, toy_models.generate_batch, match="not from your notebook")


# ---- exercise 2: ToyModel -------------------------------------------------------------------------
class _Base(nn.Module):
    def __init__(self, cfg, *, generator=None):
        super().__init__()
        self.cfg = cfg
        W = torch.empty(cfg.n_inst, cfg.d_hidden, cfg.n_feats)
        nn.init.xavier_normal_(W, generator=generator)
        self.W = nn.Parameter(W)
        self.b_final = nn.Parameter(torch.zeros(cfg.n_inst, cfg.n_feats))


class EinopsToy(_Base):
    def hidden(self, x):
        return einops.einsum(self.W, x, "inst hid feats, batch inst feats -> batch inst hid")

    def forward(self, x):
        out = einops.einsum(self.W, self.hidden(x), "inst hid feats, batch inst hid -> batch inst feats")
        return torch.relu(out + self.b_final)


class MatmulToy(_Base):
    def hidden(self, x):
        return (self.W @ x.unsqueeze(-1)).squeeze(-1)                 # [inst hid feats] @ [batch inst feats 1]

    def forward(self, x):
        back = (self.hidden(x).unsqueeze(-2) @ self.W).squeeze(-2)    # [batch inst 1 hid] @ [inst hid feats]
        return F.relu(back + self.b_final)


@pytest.mark.parametrize("cls", [EinopsToy, MatmulToy])
def test_toy_model_passes_correct_answers(cls):
    checks.check_toy_model(_mine(cls))


def test_toy_model_stub_and_crash():
    class Stub(_Base):
        def hidden(self, x):
            raise NotImplementedError()

        def forward(self, x):
            raise NotImplementedError()

    _fails(checks.check_toy_model, _mine(Stub), match="still raises NotImplementedError")

    class Transposed(_Base):
        def hidden(self, x):
            return torch.einsum("ifh,bif->bih", self.W, x)             # W read as [inst feats hid]

        def forward(self, x):
            return torch.relu(torch.einsum("ihf,bih->bif", self.W, self.hidden(x)) + self.b_final)

    # the einsum's own error, turned into a message that says which call and which input
    _fails(checks.check_toy_model, _mine(Transposed), match=r"`ToyModel\.hidden` raised RuntimeError on x of shape")


# ---- exercise 3: importance_weighted_loss ---------------------------------------------------------
@pytest.mark.parametrize("answer", [
    lambda out, x, imp: ((x - out) ** 2 * imp).sum(dim=2).mean(dim=0),
    lambda out, x, imp: torch.einsum("bif,f->bi", (out - x).pow(2), imp).mean(0),
    lambda out, x, imp: ((x - out).pow(2) @ imp).sum(0) / x.shape[0],
])
def test_importance_weighted_loss_passes_correct_answers(answer):
    checks.check_importance_weighted_loss(_mine(answer))


def test_importance_weighted_loss_reference_and_missing_return():
    _fails(checks.check_importance_weighted_loss, _mine(lambda out, x, imp: None), match="returned None")
    _fails(checks.check_importance_weighted_loss,
           _mine(lambda out, x, imp: toy_models.importance_weighted_loss(out, x, imp)), match="course library")


# ---- exercise 4: dimensions_per_feature -----------------------------------------------------------
def _dims_loop(W):
    """Feature by feature, the way the formula reads."""
    n_inst, _, n_feats = W.shape
    D = torch.zeros(n_inst, n_feats)
    for k in range(n_inst):
        for i in range(n_feats):
            w_i = W[k, :, i].detach()
            if w_i.norm() == 0:
                continue
            D[k, i] = w_i.norm() ** 2 / sum((w_i / w_i.norm() @ W[k, :, j].detach()) ** 2 for j in range(n_feats))
    return D


def _dims_normalize(W):
    W_hat = F.normalize(W, dim=1)                                      # a zero column stays zero
    overlaps = torch.einsum("khi,khj->kij", W_hat, W).pow(2).sum(-1)
    return (W.norm(dim=1).pow(2) / overlaps.clamp_min(1e-12)).detach()


@pytest.mark.parametrize("answer", [_dims_loop, _dims_normalize])
def test_dimensions_per_feature_passes_correct_answers(answer):
    checks.check_dimensions_per_feature(_mine(answer))


def test_dimensions_per_feature_crash_is_a_message():
    @_mine
    def off_by_one(W):
        W = W.detach()
        cols = [W[:, :, i] for i in range(1, W.shape[-1] + 1)]          # features counted from 1
        return torch.stack([c.norm(dim=1) for c in cols], -1)

    _fails(checks.check_dimensions_per_feature, off_by_one,
           match=r"(?s)`dimensions_per_feature` raised IndexError on W of shape \(n_inst 2, d_hidden 3, n_feats 3\).*off-by-one")


# ---- exercise 5: mean_abs_cosine and CAPACITY -----------------------------------------------------
def _mac_reference(n, d, generator=None):
    V = torch.randn(n, d, generator=generator)
    V = V / V.norm(dim=1, keepdim=True)
    cos = V @ V.T
    return cos[~torch.eye(n, dtype=torch.bool)].abs().mean().item()


def _mac_triu(n, d, generator=None):
    V = F.normalize(torch.randn(d, n, generator=generator, dtype=torch.float64).T, dim=1)
    i, j = torch.triu_indices(n, n, offset=1)
    return (V[i] * V[j]).sum(-1).abs().mean().item()                  # the n(n − 1)/2 pairs i < j


@pytest.mark.parametrize("answer", [_mac_reference, _mac_triu])
def test_mean_abs_cosine_passes_correct_answers(answer):
    checks.check_mean_abs_cosine(_mine(answer))


def test_expected_abs_cos_matches_known_values():
    # d = 2: the angle is uniform, E|cos θ| = 2/π; d = 3: cos is uniform on [−1, 1] (Archimedes), E|cos| = 1/2
    assert checks.expected_abs_cos(2) == pytest.approx(2 / math.pi)
    assert checks.expected_abs_cos(3) == pytest.approx(0.5)
    assert checks.expected_abs_cos(768) == pytest.approx(math.sqrt(2 / (math.pi * 768)), rel=2e-3)


def test_capacity():
    good = {"latents": 16 * 768, "orthogonal": 768, "interference_768": _mac_reference(2000, 768, torch.Generator().manual_seed(0))}
    checks.check_capacity(good)
    checks.check_capacity({**good, "latents": 12288.0})
    _fails(checks.check_capacity, {**good, "interference_768": torch.tensor(good["interference_768"])},
           match=r"tensor; store a Python number")
    _fails(checks.check_capacity, {"latents": 12288}, match="lacks the keys")
    _fails(checks.check_capacity, [12288, 768, 0.03], match="keep it a dict")
    # the rule of thumb 1/√768 = 0.036 is not a measurement
    _fails(checks.check_capacity, {**good, "interference_768": 1 / math.sqrt(768)}, match="rule of thumb")
