"""utils.checks.ch02: each check passes correct answers (also ones written differently from the
reference), rejects a planted mistake with the message that names it, turns an exception inside the
answer into a message, and rejects an answer that merely uses the course's reference. The full list
of mistakes and their messages is the catalogue, tests/mistakes/ch02.py (run by test_mistakes.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _helpers import fails as _fails
from _helpers import mine as _mine
from utils.checks import ch02 as checks
from utils.saes import SeedReLUConfig, SeedSparseAutoencoder
from utils.train import geometric_median as library_geometric_median


# ---- exercise 1 ------------------------------------------------------------------------------------
def _seed_class(*, decoder_bias=False, swap=False, relu=True):
    class SparseAutoencoder(nn.Module):
        def __init__(self, d_model, n_latents):
            super().__init__()
            self.encoder = nn.Linear(d_model, n_latents)
            self.decoder = nn.Linear(n_latents, d_model, bias=decoder_bias)

        def forward(self, x):
            pre = self.encoder(x)
            latents = F.relu(pre) if relu else pre
            rec = self.decoder(latents)
            return (latents, rec) if swap else (rec, latents)

    return _mine(SparseAutoencoder)


def test_sparse_autoencoder():
    checks.check_sparse_autoencoder(_seed_class())
    _fails(checks.check_sparse_autoencoder, _seed_class(decoder_bias=True), match="no bias")
    _fails(checks.check_sparse_autoencoder, _seed_class(swap=True), match=r"returned \(latents, reconstructed\)")
    _fails(checks.check_sparse_autoencoder, _seed_class(relu=False), match="ReLU")


def test_sparse_autoencoder_rejects_the_reference():
    _fails(checks.check_sparse_autoencoder, SeedSparseAutoencoder, match="not from your notebook")

    class Wrapper(SeedSparseAutoencoder):
        def __init__(self, d_model, n_latents):
            super().__init__(SeedReLUConfig(d_in=d_model, d_sae=n_latents))

    _fails(checks.check_sparse_autoencoder, _mine(Wrapper), match="course library")


# ---- exercises 2-5: the standard SAE -----------------------------------------------------------------
def _standard(*, clone=True, subtract=True, dec_bias=True, norm_dim=-1, in_place=True, clamp=True):
    class StandardSAE(nn.Module):
        def __init__(self, d_in, d_sae, *, generator=None):
            super().__init__()
            W = torch.randn(d_sae, d_in, generator=generator)
            W = W / W.norm(dim=-1, keepdim=True)
            self.W_dec = nn.Parameter(W)
            self.W_enc = nn.Parameter(W.T.clone() if clone else W.T)
            self.b_enc = nn.Parameter(torch.zeros(d_sae))
            self.b_dec = nn.Parameter(torch.zeros(d_in))

        def forward(self, x):
            acts = self.encode(x)
            return self.decode(acts), acts

        def encode(self, x):
            return F.relu(((x - self.b_dec) if subtract else x) @ self.W_enc + self.b_enc)

        def decode(self, acts):
            return acts @ self.W_dec + (self.b_dec if dec_bias else 0)

        @torch.no_grad()
        def normalize_decoder_(self):
            n = self.W_dec.norm(dim=norm_dim, keepdim=True)
            n = n.clamp_min(1e-8) if clamp else n
            if in_place:
                self.W_dec.div_(n)
            else:
                self.W_dec = nn.Parameter(self.W_dec / n)

    return _mine(StandardSAE)


def test_standard_sae_passes():
    S = _standard()
    checks.check_init(S)
    checks.check_encode(S)
    checks.check_decode(S)
    checks.check_normalize_decoder(S)


def test_standard_sae_written_differently_passes():
    """Equivalent answers are not mistakes: F.normalize, `.contiguous()` for the copy, `.data` assignment
    and a `return` in normalize_decoder_, clamp() instead of relu()."""

    class StandardSAE(nn.Module):
        def __init__(self, d_in, d_sae, *, generator=None):
            super().__init__()
            self.W_dec = nn.Parameter(F.normalize(torch.randn(d_sae, d_in, generator=generator), dim=1))
            self.W_enc = nn.Parameter(self.W_dec.detach().t().contiguous())
            self.b_enc, self.b_dec = nn.Parameter(torch.zeros(d_sae)), nn.Parameter(torch.zeros(d_in))

        def forward(self, x):
            acts = self.encode(x)
            return self.decode(acts), acts

        def encode(self, x):
            return torch.clamp(torch.einsum("...i,ij->...j", x - self.b_dec, self.W_enc) + self.b_enc, min=0)

        def decode(self, acts):
            return self.b_dec + acts @ self.W_dec

        def normalize_decoder_(self):
            self.W_dec.data = self.W_dec.data / self.W_dec.data.norm(dim=1, keepdim=True).clamp(min=1e-12)
            return self.W_dec

    S = _mine(StandardSAE)
    for check in (checks.check_init, checks.check_encode, checks.check_decode, checks.check_normalize_decoder):
        check(S)


def test_standard_sae_mistakes():
    _fails(checks.check_init, _standard(clone=False), match="shares memory")
    _fails(checks.check_encode, _standard(subtract=False), match="ignores b_dec")
    _fails(checks.check_decode, _standard(dec_bias=False), match="forgot b_dec")
    _fails(checks.check_normalize_decoder, _standard(norm_dim=0), match="columns")
    _fails(checks.check_normalize_decoder, _standard(in_place=False), match="in place")
    _fails(checks.check_normalize_decoder, _standard(clamp=False), match="NaN")


def test_an_exception_in_the_answer_becomes_a_message_naming_the_input():
    S = _standard()
    S.encode = _mine(lambda self, x: F.relu(self.W_enc @ (x - self.b_dec) + self.b_enc))
    _fails(checks.check_encode, S, match=r"(?s)raised RuntimeError on x of shape \(2, 16, 8\).*\(x − b_dec\) @ W_enc")


def test_init_check_leaves_the_global_rng_as_it_was():
    """An answer that ignores its generator draws from torch's global RNG; the check restores it."""
    S = _standard()

    def __init__(self, d_in, d_sae, *, generator=None):
        nn.Module.__init__(self)
        W = F.normalize(torch.randn(d_sae, d_in), dim=-1)
        self.W_dec, self.W_enc = nn.Parameter(W), nn.Parameter(W.T.clone())
        self.b_enc, self.b_dec = nn.Parameter(torch.zeros(d_sae)), nn.Parameter(torch.zeros(d_in))

    S.__init__ = _mine(__init__)
    state = torch.random.get_rng_state()
    _fails(checks.check_init, S, match="global random generator")
    assert torch.equal(torch.random.get_rng_state(), state)


def test_standard_sae_rejects_a_call_into_the_library():
    S = _standard()

    def encode(self, x):
        from utils.saes import ReLUSAE  # noqa: F401  (an answer reaching for the reference)
        return F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    S.encode = _mine(encode)
    _fails(checks.check_encode, S, match="course library")


# ---- exercise 6 ------------------------------------------------------------------------------------
def test_geometric_median():
    @_mine
    def weiszfeld(x, iters=100, eps=1e-8):
        m = x.mean(0)
        for _ in range(iters):
            w = 1 / (x - m).norm(dim=-1).clamp_min(eps)
            m = (w[:, None] * x).sum(0) / w.sum()
        return m

    checks.check_geometric_median(weiszfeld)
    _fails(checks.check_geometric_median, _mine(lambda x, iters=100, eps=1e-8: x.mean(0)), match="that is the mean")
    # on the checks' points the coordinate-wise median differs from the geometric one (a triangle)
    _fails(checks.check_geometric_median, _mine(lambda x, iters=100, eps=1e-8: x.median(0).values),
           match="coordinate-wise median")

    @_mine
    def early_stop(x, iters=100, eps=1e-8):  # stops once it moves less than 1e-7: not a mistake
        m = x.mean(0)
        for _ in range(1000):
            d = torch.cdist(x, m[None]).squeeze(1).clamp(min=eps)
            new = (x / d[:, None]).sum(0) / (1 / d).sum()
            if (new - m).norm() < 1e-7:
                break
            m = new
        return new

    checks.check_geometric_median(early_stop)

    @_mine
    def cheat(x, iters=100, eps=1e-8):
        return library_geometric_median(x)

    _fails(checks.check_geometric_median, cheat, match="course library")


# ---- exercise 7 ------------------------------------------------------------------------------------
def test_count_parameters_and_sizes():
    checks.check_count_parameters(_mine(lambda d_in, d_sae: 2 * d_in * d_sae + d_sae + d_in))
    _fails(checks.check_count_parameters, _mine(lambda d_in, d_sae: 2 * d_in * d_sae), match="biases")
    n = 2 * 768 * 12288 + 12288 + 768
    good = {"d_sae": 12288, "n_params": n, "fp32_megabytes": n * 16 / 1e6, "seed_expansion": 16000 / 768}
    checks.check_gpt2_sizes(good)
    _fails(checks.check_gpt2_sizes, {**good, "fp32_megabytes": n * 4 / 1e6}, match="Adam")
    _fails(checks.check_gpt2_sizes, {**good, "d_sae": None}, match="fill in")
    _fails(checks.check_gpt2_sizes, {**good, "fp32_megabytes": n * 16 / 2**20}, match="MiB")
    _fails(checks.check_gpt2_sizes, {**good, "fp32_megabytes": "302 MB"}, match="should be numbers")
    _fails(checks.check_count_parameters, _mine(lambda d_in, d_sae: (2 * d_in * d_sae + d_sae + d_in) / 1),
           match="Python int")
