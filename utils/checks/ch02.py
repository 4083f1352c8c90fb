"""Visible checks for chapter 02 (SAE architecture). Each names the mistake it most likely found.

Expected values are computed here from the definitions, next to the common mistaken variants
(most specific first), so a wrong answer is matched to the mistake it resembles. The inputs are
chosen to tell those mistakes apart: d_in ≠ d_sae, biases of both signs, an encoder that is not
the decoder's transpose, decoder rows of different lengths (one of them zero), 3-D batches, and
points whose geometric median is neither their mean nor their coordinate-wise median.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from utils.checks import CheckFailed, assert_close, assert_own_code, assert_untouched, call, fail, snapshot
from utils.checks import tensor_result

__all__ = ["call", "check_sparse_autoencoder", "check_init", "check_encode", "check_decode",
           "check_normalize_decoder", "check_geometric_median", "check_count_parameters", "check_gpt2_sizes"]
_SHAPES = r"shapes cannot be multiplied|must match the size|Expected size|doesn't match the broadcast"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _run(fn, *args, what: str, name: str, hints: tuple[tuple[str, str], ...] = (), **kwargs):
    """`call`, plus this chapter's hint when the error's text matches one of `hints` (regex, hint)."""
    try:
        return call(fn, *args, what=what, name=name, **kwargs)
    except CheckFailed as err:
        extra = [hint for pattern, hint in hints if re.search(pattern, str(err), re.I)]
        if extra:
            raise CheckFailed(f"{err}\n{extra[0]}") from None
        raise


def _match(got: torch.Tensor, variants, atol: float = 1e-4) -> None:
    """Fail with the message of the first (value, message) variant that `got` equals."""
    for value, message in variants:
        if value.shape == got.shape and torch.allclose(got, value, atol=atol, rtol=1e-4):
            fail(message)


# ---- exercise 1: the seed's SparseAutoencoder ----------------------------------------------------
def check_sparse_autoencoder(SparseAutoencoder) -> None:
    assert_own_code(SparseAutoencoder)
    d_model, n_latents = 6, 10
    sae = _run(SparseAutoencoder, d_model, n_latents, what="d_model = 6, n_latents = 10", name="SparseAutoencoder")
    enc, dec = getattr(sae, "encoder", None), getattr(sae, "decoder", None)
    if not isinstance(enc, nn.Linear) or not isinstance(dec, nn.Linear):
        fail("store the two layers as `self.encoder` and `self.decoder`, both `nn.Linear` (as in the seed).")
    for layer, name, (n_in, n_out) in ((enc, "encoder", (d_model, n_latents)), (dec, "decoder", (n_latents, d_model))):
        if tuple(layer.weight.shape) == (n_in, n_out):
            fail(f"the {name}'s in and out sizes are swapped: nn.Linear(in_features, out_features), so the "
                 f"{name} is nn.Linear({'d_model, n_latents' if name == 'encoder' else 'n_latents, d_model'}).")
        if tuple(layer.weight.shape) != (n_out, n_in):
            fail(f"the {name}'s weight has shape {tuple(layer.weight.shape)}; expected ({n_out}, {n_in}).")
    if enc.bias is None:
        fail("the encoder has no bias: keep nn.Linear's default bias=True for the encoder (b_e in the equation).")
    if dec.bias is not None:
        fail("the seed's decoder has no bias: nn.Linear(n_latents, d_model, bias=False).")
    g = _gen(1)
    W_e, b_e = torch.randn(n_latents, d_model, generator=g), torch.randn(n_latents, generator=g) * 0.5
    W_d = torch.randn(d_model, n_latents, generator=g)
    with torch.no_grad():
        enc.weight.copy_(W_e)
        enc.bias.copy_(b_e)
        dec.weight.copy_(W_d)
    x = torch.randn(32, d_model, generator=g)
    before = snapshot(x=x)
    out = _run(sae, x, what="x of shape (32, 6)", name="SparseAutoencoder.forward", hints=(
        (r"must be Tensor, not ReLU", "nn.ReLU is a module: build it once (`nn.ReLU()`) and call it, or use F.relu(...)."),
        (_SHAPES, "The encoder takes x (d_model = 6); the decoder takes the latents (n_latents = 10).")))
    assert_untouched(before, "forward", x=x)
    if isinstance(out, torch.Tensor) or not isinstance(out, (tuple, list)) or len(out) != 2:
        fail("forward must return a pair (reconstructed, latents), as the seed's does.")
    pre = x @ W_e.T + b_e
    want_lat, want_rec = pre.relu(), pre.relu() @ W_d.T
    rec, lat = (tensor_result(v, f"forward()[{i}]") for i, v in enumerate(out))
    if rec.shape == want_lat.shape and lat.shape == want_rec.shape:
        fail("forward returned (latents, reconstructed): the seed returns (reconstructed, latents).")
    tensor_result(rec, "forward()[0] (reconstructed)", shape=want_rec.shape)
    tensor_result(lat, "forward()[1] (latents)", shape=want_lat.shape)
    if torch.allclose(lat, pre, atol=1e-5):
        fail("you return the pre-activations as `latents`: return the ReLU'd values, the ones you decode."
             if torch.allclose(rec, want_rec, atol=1e-5) else
             "there is no ReLU: latents = F.relu(self.encoder(x)), and the decoder takes those.")
    if torch.allclose(lat, want_lat, atol=1e-5):
        _match(rec, [(pre @ W_d.T, "you decoded the pre-activations: the decoder takes the latents after the ReLU."),
                     (want_rec.relu(), "you applied ReLU to the reconstruction: only the latents go through ReLU; "
                                       "the reconstruction is linear in them and may be negative.")])
    if (lat < 0).any():
        fail("some latents are negative: apply ReLU to the encoder's output (F.relu).")
    assert_close(lat, want_lat, "latents = ReLU(encoder(x)).")
    assert_close(rec, want_rec, "reconstructed = decoder(latents).")
    print("SparseAutoencoder matches the seed's.")


# ---- exercises 2-5: the standard SAE, method by method --------------------------------------------
def _build(StandardSAE, d_in: int, d_sae: int, seed: int = 0):
    what = f"d_in = {d_in}, d_sae = {d_sae}"
    return _run(StandardSAE, d_in, d_sae, generator=_gen(seed), what=what, name="StandardSAE", hints=(
        (_SHAPES, "If you divided by the row norms: keep their axis (.norm(dim=-1, keepdim=True)) so they "
                  "broadcast over each row."),))


def _parameters(sae, d_in: int, d_sae: int) -> dict[str, nn.Parameter]:
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for name, shape in shapes.items():
        p = getattr(sae, name, None)
        if not isinstance(p, nn.Parameter):
            fail(f"`self.{name}` is {'missing' if p is None else f'a {type(p).__name__}, not an nn.Parameter'}: "
                 f"wrap it, `self.{name} = nn.Parameter(...)`, so the optimiser trains it.")
        if tuple(p.shape) != shape:
            if name in ("W_enc", "W_dec") and tuple(p.shape) == shape[::-1]:
                fail(f"`{name}` has shape {tuple(p.shape)}: W_dec is [d_sae, d_in] (one row per latent, unlike "
                     "nn.Linear's [out, in]) and W_enc is [d_in, d_sae].")
            fail(f"`{name}` has shape {tuple(p.shape)}, expected {shape} (W_enc [d_in d_sae], b_enc [d_sae], "
                 "W_dec [d_sae d_in], b_dec [d_in]).")
    return {name: getattr(sae, name) for name in shapes}


def _standard(StandardSAE, d_in: int, d_sae: int, seed: int):
    """The student's SAE with weights set here: rows of W_dec of different lengths, an encoder that
    is not W_dec's transpose and non-zero biases, so that every term shows."""
    sae = _build(StandardSAE, d_in, d_sae)
    params = _parameters(sae, d_in, d_sae)
    g = _gen(seed)
    W_dec = torch.randn(d_sae, d_in, generator=g) * torch.linspace(0.5, 2.0, d_sae)[:, None]
    values = {"W_dec": W_dec, "W_enc": W_dec.T + 0.3 * torch.randn(d_in, d_sae, generator=g),
              "b_enc": torch.randn(d_sae, generator=g) * 0.5, "b_dec": torch.randn(d_in, generator=g)}
    with torch.no_grad():
        for name, v in values.items():
            params[name].copy_(v)
    return sae, values


def _gradients_reach(sae, out: torch.Tensor, names: tuple[str, ...], method: str) -> None:
    if not out.requires_grad:
        fail(f"{method}'s output does not require grad: it is cut off from autograd (torch.no_grad(), .detach() "
             "or .data inside it), so training could not update the SAE.")
    sae.zero_grad(set_to_none=True)
    out.pow(2).sum().backward()
    for name in names:
        grad = getattr(sae, name).grad
        if grad is None or not grad.abs().sum() > 0:
            fail(f"no gradient reaches `{name}` through {method}: it is cut off from autograd there (.detach() or "
                 f".data), so training would never change it.")
    sae.zero_grad(set_to_none=True)


def check_init(StandardSAE) -> None:
    assert_own_code(StandardSAE.__init__, "StandardSAE.__init__")
    d_in, d_sae = 8, 24
    with torch.random.fork_rng(devices=[]):
        rng = torch.random.get_rng_state()
        sae = _build(StandardSAE, d_in, d_sae)
        global_rng_used = not torch.equal(rng, torch.random.get_rng_state())
    p = _parameters(sae, d_in, d_sae)
    W_dec, W_enc = p["W_dec"].detach(), p["W_enc"].detach()
    if not torch.isfinite(W_dec).all() or not torch.isfinite(W_enc).all():
        fail("the weights contain NaN or inf.")
    if W_dec.min() >= 0:
        fail("all decoder entries are non-negative: draw them with torch.randn (directions in every orthant), "
             "not torch.rand (uniform on [0, 1)).")
    norms = W_dec.norm(dim=-1)
    if not torch.allclose(norms, torch.ones(d_sae), atol=1e-5):
        if abs(W_dec.norm().item() - 1) < 1e-4:
            fail("you divided W_dec by the norm of the whole matrix: each row needs its own norm, "
                 "W / W.norm(dim=-1, keepdim=True).")
        if torch.allclose(W_dec.norm(dim=0), torch.ones(d_in), atol=1e-5):
            fail("you normalised the columns of W_dec (dim=0): each *row* W_dec[i] is a latent's direction; "
                 "use .norm(dim=-1, keepdim=True).")
        fail(f"decoder rows should have unit norm; their norms range {norms.min():.3f}–{norms.max():.3f}: divide "
             "each row by its norm, W / W.norm(dim=-1, keepdim=True).")
    if W_enc.untyped_storage().data_ptr() == W_dec.untyped_storage().data_ptr():
        fail("W_enc shares memory with W_dec: clone the transpose (W_dec.T.clone()), or training one "
             "would silently change the other.")
    if not torch.allclose(W_enc, W_dec.T, atol=1e-6):
        cos = F.cosine_similarity(W_enc.T, W_dec, dim=-1)
        if torch.allclose(cos, torch.ones(d_sae), atol=1e-5):
            fail("W_enc points along W_dec.T but its columns are not unit length: you took the transpose before "
                 "normalising. Normalise W_dec first, then W_enc = W_dec.T.clone().")
        fail("the encoder should start as the decoder's transpose, W_enc = W_dec.T.clone() (Gao et al. 2024, §2.4), "
             "not drawn separately: each latent then reads the direction it writes.")
    for name in ("b_enc", "b_dec"):
        if p[name].detach().abs().sum() != 0:
            fail(f"`{name}` should start at zero (torch.zeros); b_dec is set from the data later (exercise 6).")
    if global_rng_used:
        fail("__init__ draws from torch's global random generator: pass generator=generator to torch.randn, so "
             "that an SAE built with the same generator is the same.")
    again, other = _build(StandardSAE, d_in, d_sae), _build(StandardSAE, d_in, d_sae, seed=1)
    if not torch.equal(again.W_dec.detach(), W_dec) or torch.equal(other.W_dec.detach(), W_dec):
        fail("two SAEs built with the same generator should be equal and with different ones different: draw "
             "W_dec with torch.randn(d_sae, d_in, generator=generator), and nothing else random.")
    print("StandardSAE.__init__ looks right.")


def check_encode(StandardSAE) -> None:
    assert_own_code(StandardSAE.encode, "StandardSAE.encode")
    d_in, d_sae = 8, 24
    sae, v = _standard(StandardSAE, d_in, d_sae, seed=3)
    W_enc, b_enc, W_dec, b_dec = v["W_enc"], v["b_enc"], v["W_dec"], v["b_dec"]
    x = torch.randn(2, 16, d_in, generator=_gen(4)) + 1.0
    before = snapshot(x=x)
    got = _run(sae.encode, x, what="x of shape (2, 16, 8) (2 sequences of 16 tokens)", name="StandardSAE.encode",
               hints=((_SHAPES, "The shapes: x is (..., d_in), b_dec [d_in], W_enc [d_in, d_sae] and b_enc [d_sae]: "
                                "(x − b_dec) @ W_enc, in that order, with no transpose."),))
    assert_untouched(before, "encode", x=x)
    got = tensor_result(got, "encode")
    if tuple(got.shape) == (2 * 16, d_sae):
        fail("encode flattened the leading dimensions: it should return (2, 16, 24) for x of shape (2, 16, 8). "
             "`@` broadcasts over leading dimensions, so no reshape is needed.")
    tensor_result(got, "encode", shape=(2, 16, d_sae), what="x of shape (2, 16, 8)")
    pre = (x - b_dec) @ W_enc + b_enc
    with torch.no_grad():
        _match(got.detach(), [
            ((x @ W_enc + b_enc).relu(), "encode ignores b_dec: subtract it from x before the encoder, "
                                         "(x − b_dec) @ W_enc + b_enc."),
            (((x + b_dec) @ W_enc + b_enc).relu(), "you added b_dec: it is subtracted before encoding "
                                                    "(the decoder adds it back)."),
            (((x - b_dec) @ W_dec.T + b_enc).relu(), "you encoded with W_dec.T: the encoder has its own weights "
                                                     "W_enc (equal to W_dec.T only at initialisation)."),
            (pre, "there is no ReLU: acts = ReLU((x − b_dec) @ W_enc + b_enc)."),
            (((x - b_dec) @ W_enc).relu() + b_enc, "you applied ReLU before adding b_enc: the bias goes inside, "
                                                   "ReLU((x − b_dec) @ W_enc + b_enc)."),
            ((x - b_dec).relu() @ W_enc + b_enc, "you applied ReLU to x − b_dec (the input): it belongs on the "
                                                 "pre-activation, ReLU((x − b_dec) @ W_enc + b_enc)."),
            (((x - b_dec) @ W_enc - b_enc).relu(), "you subtracted b_enc: it is added, + b_enc."),
            (((x - b_dec) @ W_enc).relu(), "encode forgot b_enc: ReLU((x − b_dec) @ W_enc + b_enc)."),
        ])
    if (got < 0).any():
        fail("some activations are negative: apply ReLU last, after adding b_enc.")
    assert_close(got, pre.relu(), "acts = ReLU((x − b_dec) @ W_enc + b_enc).")
    _gradients_reach(sae, got, ("W_enc", "b_enc", "b_dec"), "encode")
    print("StandardSAE.encode matches the definition.")


def check_decode(StandardSAE) -> None:
    assert_own_code(StandardSAE.decode, "StandardSAE.decode")
    d_in, d_sae = 8, 24
    sae, v = _standard(StandardSAE, d_in, d_sae, seed=5)
    W_enc, W_dec, b_dec = v["W_enc"], v["W_dec"], v["b_dec"]
    acts = torch.relu(torch.randn(3, 5, d_sae, generator=_gen(6)))
    before = snapshot(acts=acts)
    got = _run(sae.decode, acts, what="acts of shape (3, 5, 24)", name="StandardSAE.decode",
               hints=((_SHAPES, "The shapes: acts is (..., d_sae), W_dec [d_sae, d_in] and b_dec [d_in]: acts @ W_dec, "
                                "in that order, with no transpose."),))
    assert_untouched(before, "decode", acts=acts)
    got = tensor_result(got, "decode", shape=(3, 5, d_in), what="acts of shape (3, 5, 24)")
    want = acts @ W_dec + b_dec
    unit = W_dec / W_dec.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        _match(got.detach(), [
            (acts @ W_dec, "decode forgot b_dec: x̂ = acts @ W_dec + b_dec."),
            (acts @ W_dec - b_dec, "you subtracted b_dec: encode subtracts it, decode adds it back."),
            (acts @ W_enc.T + b_dec, "you decoded with W_enc.T: the decoder has its own weights W_dec "
                                     "(equal to W_enc.T only at initialisation)."),
            (want.relu(), "you applied ReLU to the reconstruction: the decoder is linear, and x̂ may be negative."),
            (acts @ unit + b_dec, "decode normalised W_dec's rows: use W_dec as it is (normalize_decoder_ keeps "
                                  "its rows at unit norm during training)."),
        ])
    assert_close(got, want, "x̂ = acts @ W_dec + b_dec.")
    _gradients_reach(sae, got, ("W_dec", "b_dec"), "decode")
    x = torch.randn(4, d_in, generator=_gen(7))
    out = _run(sae, x, what="x of shape (4, 8)", name="StandardSAE.forward")
    acts_x = ((x - b_dec) @ W_enc + v["b_enc"]).relu()
    assert_close(out[0], acts_x @ W_dec + b_dec, "forward(x) = (decode(encode(x)), encode(x)): decode is right on "
                 "its own, so look at encode (exercise 3).")
    print("StandardSAE.decode matches the definition.")


def check_normalize_decoder(StandardSAE) -> None:
    method = StandardSAE.normalize_decoder_
    assert_own_code(getattr(method, "__wrapped__", method), "StandardSAE.normalize_decoder_")  # under @no_grad
    d_in, d_sae = 6, 20
    sae, _ = _standard(StandardSAE, d_in, d_sae, seed=8)
    W = torch.randn(d_sae, d_in, generator=_gen(8)) * torch.linspace(0.1, 5, d_sae)[:, None]
    W[3] = 0.0  # a latent whose decoder row collapsed
    with torch.no_grad():
        sae.W_dec.copy_(W)
    param = sae.W_dec
    others = {k: getattr(sae, k) for k in ("W_enc", "b_enc", "b_dec")}
    before = snapshot(**others)
    what = "W_dec with rows of lengths 0.1 to 5 (one row all zeros)"
    result = _run(sae.normalize_decoder_, what=what, name="StandardSAE.normalize_decoder_", hints=(
        (_SHAPES, "The row norms have shape (d_sae,): keep their axis, .norm(dim=-1, keepdim=True), to divide "
                  "each row by its own norm."),))
    if sae.W_dec is not param:
        fail("normalize_decoder_ replaced W_dec with a new tensor: the optimiser keeps training the old one. Change "
             "it in place (self.W_dec.div_(...) under torch.no_grad()).")
    try:
        assert_untouched(before, "normalize_decoder_", **others)
    except CheckFailed:
        fail("normalize_decoder_ changed W_enc, b_enc or b_dec: only the decoder's rows are normalised.")
    got = sae.W_dec.detach().clone()
    if torch.equal(got, W):
        fail("W_dec is unchanged after the call: write the result into self.W_dec in place (self.W_dec.div_(...)); "
             + ("returning the normalised matrix does not change the SAE." if result is not None else
                "assigning it to a local name does not change the SAE."))
    if not torch.isfinite(got).all():
        fail("a zero decoder row became NaN: clamp the norms away from zero (.clamp_min(1e-8)) before dividing.")
    norm = W.norm(dim=-1, keepdim=True)
    _match(got, [
        (W / W.norm(dim=0, keepdim=True).clamp_min(1e-8), "you normalised the columns of W_dec: each row W_dec[i] "
                                                          "is one latent's direction; use dim=-1."),
        (W / W.norm(), "you divided by the norm of the whole matrix: each row needs its own norm, "
                       ".norm(dim=-1, keepdim=True)."),
        (W / norm.pow(2).clamp_min(1e-8), "you divided by the squared norm (Σ w²): divide by the norm itself, "
                                          "its square root."),
        (W / norm.clamp_min(1.0), "rows shorter than 1 were left as they were (a clamp at 1?): every row gets "
                                  "unit norm; clamp only near zero, .clamp_min(1e-8)."),
    ], atol=1e-5)
    keep = torch.arange(d_sae) != 3
    assert_close(got, W / norm.clamp_min(1e-8), "each row is divided by its own norm, and a zero row stays zero.")
    if not got[keep].norm(dim=-1).sub(1).abs().max() < 1e-5 or sae.W_dec.requires_grad is False:
        fail("W_dec should still be a trainable Parameter with unit-norm rows after the call.")
    _run(sae.normalize_decoder_, what="a W_dec whose rows already have unit norm", name="normalize_decoder_")
    assert_close(sae.W_dec, got, "a second call should change nothing: unit rows stay as they are.")
    print("normalize_decoder_ keeps every decoder row on the unit sphere, in place.")


def _weiszfeld(x: torch.Tensor, iters: int = 100, *, weight=lambda d: 1 / d, normalise: bool = True) -> torch.Tensor:
    """Weiszfeld's iteration from the mean, m ← Σ w_i x_i / Σ w_i; `weight`/`normalise` give mistaken variants."""
    m = x.mean(0)
    for _ in range(iters):
        w = weight((x - m).norm(dim=-1).clamp_min(1e-8))
        m = (w[:, None] * x).sum(0) / (w.sum() if normalise else 1)
    return m


def check_geometric_median(fn) -> None:
    assert_own_code(fn)
    g = _gen(9)
    inputs = {  # what they are: the points (n, d)
        "the points 0, 1 and 10 on a line (as 2-D points)": torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]]),
        "the triangle (0, 0), (1, 0), (0, 1)": torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
        "200 Gaussian points in 5-D and one far outlier": torch.cat([torch.randn(200, 5, generator=g),
                                                                     torch.full((1, 5), 1000.0)]),
    }
    got = {}
    for what, x in inputs.items():
        before = snapshot(x=x)
        out = _run(fn, x, what=what, name="geometric_median", hints=((_SHAPES, (
            "The shapes in Weiszfeld's update: x is (n, d) and m is (d,); distances and weights have one entry per "
            "point, (x − m).norm(dim=-1) of shape (n,); m_new = (w[:, None] * x).sum(0) / w.sum() is (d,) again.")),))
        assert_untouched(before, "geometric_median", x=x)
        out = tensor_result(out, "geometric_median")
        n, d = x.shape
        if tuple(out.shape) == (n,):
            fail(f"geometric_median returned {n} values for {what}, one per point: sum over the points (dim 0), "
                 f"to return one point of shape ({d},).")
        if tuple(out.shape) == (1, d):
            fail(f"geometric_median returned shape (1, {d}): return one point of shape ({d},) (no keepdim).")
        got[what] = tensor_result(out, "geometric_median", shape=(d,), what=what).detach().float()
    variants = [
        (lambda x: x.mean(0), "that is the mean: the geometric median minimises Σ‖x_i − m‖ (distances, not squared "
                              "distances). Iterate Weiszfeld's update m ← Σ w_i x_i / Σ w_i."),
        (lambda x: _weiszfeld(x, weight=lambda d: d), "you weighted each point by its distance: far points must "
                                                      "count less, w_i = 1/‖x_i − m‖."),
        (lambda x: _weiszfeld(x, weight=lambda d: 1 / d**2), "you weighted by 1/‖x_i − m‖² (squared distance): "
                                                             "Weiszfeld's weights are 1/‖x_i − m‖."),
        (lambda x: x.median(0).values, "that is the coordinate-wise median (torch.median per axis): the geometric "
                                       "median minimises the sum of Euclidean distances, by Weiszfeld's iteration."),
        (lambda x: _weiszfeld(x, 1), "that is one Weiszfeld step from the mean: repeat the update for `iters` "
                                     "iterations, each starting from the previous m (m = m_new in the loop)."),
        (lambda x: _weiszfeld(x, normalise=False), "you did not divide by Σ w_i: the update is a weighted *mean*, "
                                                   "m ← Σ w_i x_i / Σ w_i."),
    ]
    for variant, message in variants:
        if all(torch.isfinite(got[k]).all() and torch.allclose(got[k], variant(x), atol=1e-3) for k, x in inputs.items()):
            fail(message)
    same = torch.full((10, 3), 2.5)
    out = tensor_result(_run(fn, same, what="10 copies of one point", name="geometric_median"), "geometric_median")
    if not all(torch.isfinite(o).all() for o in (*got.values(), out)):
        fail("your median contains NaN or inf: when m lands exactly on a data point, 1/‖x_i − m‖ is infinite; "
             "clamp the distances (.clamp_min(eps)) before dividing.")
    assert_close(out, same[0], "the median of identical points is that point.", atol=1e-4)
    for what, x in inputs.items():
        assert_close(got[what], _weiszfeld(x), f"on {what}: compare your iteration with Weiszfeld's, from the mean, "
                     "with w_i = 1/‖x_i − m‖ and enough iterations (≥ 50).", atol=2e-3, rtol=1e-3)
    print("geometric_median agrees with Weiszfeld's iteration.")


# ---- exercise 7: sizes ---------------------------------------------------------------------------
def _count_mistakes(d_in: int, d_sae: int) -> list[tuple[int, str]]:
    w = d_in * d_sae
    return [(2 * w, "you counted the two weight matrices only: add the biases b_enc [d_sae] and b_dec [d_in]."),
            (2 * w + d_sae, "b_dec [d_in] is missing from the count."),
            (2 * w + d_in, "b_enc [d_sae] is missing from the count."),
            (2 * w + 2 * d_sae, "b_dec has d_in entries (it lives in the input space), not d_sae."),
            (2 * w + 2 * d_in, "b_enc has d_sae entries (one per latent), not d_in."),
            (w + d_sae + d_in, "W_enc and W_dec are two separate matrices (untied): count d_in × d_sae twice.")]


def check_count_parameters(fn) -> None:
    assert_own_code(fn)
    for d_in, d_sae in ((3, 5), (16, 128)):
        got = _run(fn, d_in, d_sae, what=f"d_in = {d_in}, d_sae = {d_sae}", name="count_parameters")
        want = 2 * d_in * d_sae + d_sae + d_in
        if isinstance(got, bool) or not isinstance(got, int):
            fail(f"count_parameters({d_in}, {d_sae}) returned a {type(got).__name__} ({got!r}): return a Python int "
                 "(products and sums of ints are ints; `/` makes a float).")
        for value, message in _count_mistakes(d_in, d_sae):
            if got == value != want:
                fail(message)
        if got != want:
            fail(f"count_parameters({d_in}, {d_sae}) = {got}, expected {want}: W_enc [d_in d_sae] + b_enc [d_sae] + "
                 "W_dec [d_sae d_in] + b_dec [d_in].")
    print("count_parameters counts W_enc, b_enc, W_dec and b_dec.")


def check_gpt2_sizes(sizes: dict) -> None:
    if not isinstance(sizes, dict):
        fail(f"GPT2_SAE should be the dict given in the cell, got a {type(sizes).__name__}.")
    keys = ("d_sae", "n_params", "fp32_megabytes", "seed_expansion")
    missing = [k for k in keys if sizes.get(k) is None]
    if missing:
        fail(f"fill in {missing}.")
    wrong = [k for k in keys if isinstance(sizes[k], bool) or not isinstance(sizes[k], (int, float))]
    if wrong:
        fail(f"{wrong} should be numbers (int or float), got {[type(sizes[k]).__name__ for k in wrong]}.")
    d_in, d_sae, n = 768, 16 * 768, sizes["n_params"]
    named = {16000: "16000 is the seed's diagram; a 16× SAE has 16 × 768 latents.",
             d_in: "d_sae is the number of latents: expansion ratio × d_in = 16 × 768.",
             32 * d_in: "that is 32× (SAELens' gpt2-small-res-jb); GPT2_SAE is 16×: 16 × 768."}
    if sizes["d_sae"] != d_sae:
        fail(named.get(sizes["d_sae"], f"d_sae = {sizes['d_sae']}: a 16× SAE on d_in = 768 has 16 × 768 latents."))
    want_n = 2 * d_in * d_sae + d_sae + d_in
    for value, message in _count_mistakes(d_in, d_sae):
        if n == value:
            fail(f"n_params: {message}")
    if n != want_n:
        fail(f"n_params = {n}: count W_enc, b_enc, W_dec and b_dec of a {d_in} × {d_sae} SAE (count_parameters).")
    mb, want_mb = float(sizes["fp32_megabytes"]), want_n * 16 / 1e6
    for per_param, scale, message in (
            (4, 1e6, "that is the weights alone: training also keeps a gradient and Adam's two moment estimates per "
                     "parameter, each fp32: 4 numbers × 4 bytes."),
            (8, 1e6, "that is 8 bytes per parameter (weights and gradients?): Adam keeps two moment estimates too, so "
                     "4 fp32 numbers, 16 bytes per parameter."),
            (12, 1e6, "that is 3 fp32 numbers per parameter: count 4 (weights, gradients, Adam's two moments)."),
            (16, 2**20, "that is in MiB (2²⁰ bytes): here 1 MB = 10⁶ bytes."),
            (16, 1, "that is in bytes: divide by 10⁶ for megabytes."),
            (16, 1e9, "that is in GB: 1 MB = 10⁶ bytes.")):
        if math.isclose(mb, want_n * per_param / scale, rel_tol=1e-3):
            fail(f"fp32_megabytes: {message}")
    if not math.isclose(mb, want_mb, rel_tol=1e-3):
        fail(f"fp32_megabytes = {mb:.4g}: weights, gradients and Adam's two moments, 4 bytes each, in MB (10⁶ bytes).")
    ratio, want_ratio = float(sizes["seed_expansion"]), 16000 / 768
    if math.isclose(ratio, 768 / 16000, rel_tol=1e-3):
        fail("seed_expansion is inverted: the expansion ratio is d_sae / d_in (latents per residual dimension).")
    if ratio == 16000 // 768:
        fail("seed_expansion = 20 is rounded down (integer division `//`?): use 16000 / 768.")
    if ratio == 16:
        fail("16 is GPT2_SAE's expansion; seed_expansion is the seed's diagram: 16000 latents on 768 dimensions.")
    if abs(ratio - want_ratio) >= 0.01:
        fail(f"seed_expansion = {ratio}: the seed's diagram maps 768D to 16000D; give 16000 / 768 unrounded.")
    print("count_parameters and GPT2_SAE are right.")
