"""Visible checks for chapter 02 (SAE architecture). Each names the mistake it most likely found.

The reference implementations are the course's `utils.saes` classes: the seed's
`SeedSparseAutoencoder` and the standard `ReLUSAE`. Weights are copied from the reference into
the student's object, so the comparison does not depend on random initialisation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from utils.checks import assert_close, assert_own_code, fail
from utils.saes import ReLUSAE, ReLUConfig, SeedReLUConfig, SeedSparseAutoencoder
from utils.train import geometric_median as ref_geometric_median


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- exercise 1: the seed's SparseAutoencoder ----------------------------------------------------
def check_sparse_autoencoder(SparseAutoencoder) -> None:
    assert_own_code(SparseAutoencoder)
    d_model, n_latents = 6, 10
    sae = SparseAutoencoder(d_model, n_latents)
    enc, dec = getattr(sae, "encoder", None), getattr(sae, "decoder", None)
    if not isinstance(enc, nn.Linear) or not isinstance(dec, nn.Linear):
        fail("store the two layers as `self.encoder` and `self.decoder`, both `nn.Linear` (as in the seed).")
    if tuple(enc.weight.shape) != (n_latents, d_model):
        fail(f"encoder weight has shape {tuple(enc.weight.shape)}; nn.Linear(d_model, n_latents) gives "
             f"({n_latents}, {d_model}). Did you swap the arguments?")
    if tuple(dec.weight.shape) != (d_model, n_latents):
        fail(f"decoder weight has shape {tuple(dec.weight.shape)}; nn.Linear(n_latents, d_model) gives "
             f"({d_model}, {n_latents}).")
    if enc.bias is None:
        fail("the encoder needs its bias (the seed's nn.Linear(d_model, n_latents) keeps the default bias=True).")
    if dec.bias is not None:
        fail("the seed's decoder has no bias: nn.Linear(n_latents, d_model, bias=False).")
    ref = SeedSparseAutoencoder(SeedReLUConfig(d_in=d_model, d_sae=n_latents, init_seed=0))
    with torch.no_grad():
        ref.encoder.bias.copy_(torch.randn(n_latents, generator=_gen(1)) * 0.5)
    sae.load_state_dict({k: v for k, v in ref.state_dict().items() if k.startswith(("encoder", "decoder"))})
    x = torch.randn(32, d_model, generator=_gen(2))
    out = sae(x)
    if not isinstance(out, tuple) or len(out) != 2:
        fail("forward must return a pair (reconstructed, latents), as the seed's does.")
    reconstructed, latents = out
    want = ref(x)  # the course's adapter of the seed returns SAEOutput; the seed's pair is (x_hat, acts)
    want_rec, want_lat = want.x_hat, want.acts
    if tuple(reconstructed.shape) == tuple(want_lat.shape) and tuple(latents.shape) == tuple(want_rec.shape):
        fail("forward returned (latents, reconstructed): the seed returns (reconstructed, latents).")
    if (latents < 0).any():
        fail("some latents are negative: apply ReLU to the encoder's output (F.relu).")
    assert_close(latents, want_lat, "latents = ReLU(encoder(x)).")
    assert_close(reconstructed, want_rec, "reconstructed = decoder(latents): decode the latents, not x.")
    print("SparseAutoencoder matches the seed's.")


# ---- exercises 2-5: the standard SAE, method by method --------------------------------------------
def _reference(d_in: int, d_sae: int, seed: int) -> ReLUSAE:
    ref = ReLUSAE(ReLUConfig(d_in=d_in, d_sae=d_sae, init_seed=seed))
    g = _gen(seed + 100)
    with torch.no_grad():  # non-zero biases and an untied encoder, so each term is visible
        ref.b_enc.copy_(torch.randn(d_sae, generator=g) * 0.3)
        ref.b_dec.copy_(torch.randn(d_in, generator=g))
        ref.W_enc.add_(torch.randn(d_in, d_sae, generator=g) * 0.2)
    return ref


def _load(sae, ref: ReLUSAE) -> None:
    names = ("W_enc", "b_enc", "W_dec", "b_dec")
    for name in names:
        p = getattr(sae, name, None)
        if not isinstance(p, nn.Parameter):
            fail(f"`self.{name}` should be an nn.Parameter (so the optimiser trains it).")
        if tuple(p.shape) != tuple(getattr(ref, name).shape):
            fail(f"`{name}` has shape {tuple(p.shape)}, expected {tuple(getattr(ref, name).shape)} "
                 "(W_enc [d_in d_sae], b_enc [d_sae], W_dec [d_sae d_in], b_dec [d_in]).")
    with torch.no_grad():
        for name in names:
            getattr(sae, name).copy_(getattr(ref, name))


def check_init(StandardSAE) -> None:
    assert_own_code(StandardSAE.__init__, "StandardSAE.__init__")
    d_in, d_sae = 8, 24
    sae = StandardSAE(d_in, d_sae, generator=_gen(0))
    ref = ReLUSAE(ReLUConfig(d_in=d_in, d_sae=d_sae, init_seed=0))
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        p = getattr(sae, name, None)
        if not isinstance(p, nn.Parameter):
            fail(f"`self.{name}` should be an nn.Parameter.")
        if tuple(p.shape) != tuple(getattr(ref, name).shape):
            fail(f"`{name}` has shape {tuple(p.shape)}, expected {tuple(getattr(ref, name).shape)}: "
                 "W_enc is [d_in, d_sae], W_dec is [d_sae, d_in] (one row per latent).")
    norms = sae.W_dec.detach().norm(dim=-1)
    if not torch.allclose(norms, torch.ones(d_sae), atol=1e-5):
        cols = sae.W_dec.detach().norm(dim=0)
        hint = " (you normalised columns: each *row* W_dec[i] is a latent's direction)" if torch.allclose(
            cols, torch.ones(d_in), atol=1e-5) else ""
        fail(f"decoder rows should have unit norm; their norms range {norms.min():.3f}–{norms.max():.3f}{hint}.")
    if not torch.allclose(sae.W_enc.detach(), sae.W_dec.detach().T):
        fail("the encoder should start as the decoder's transpose: W_enc = W_dec.T (Gao et al. 2024, §2.4).")
    if sae.W_enc.data_ptr() == sae.W_dec.data_ptr() or sae.W_enc.untyped_storage().data_ptr() == \
            sae.W_dec.untyped_storage().data_ptr():
        fail("W_enc shares memory with W_dec: clone the transpose (W_dec.T.clone()), or training one "
             "would silently change the other.")
    if sae.b_enc.detach().abs().sum() != 0 or sae.b_dec.detach().abs().sum() != 0:
        fail("both biases start at zero (b_dec is set from the data afterwards, in exercise 5).")
    cos = sae.W_dec.detach() @ sae.W_dec.detach().T
    if (cos - torch.eye(d_sae)).abs().max() > 0.999:
        fail("some decoder rows are identical: draw every row at random (torch.randn).")
    if sae.W_dec.detach().min() >= 0:
        fail("all decoder entries are non-negative: use torch.randn (directions in every orthant), not torch.rand.")
    again = StandardSAE(d_in, d_sae, generator=_gen(0))
    if not torch.equal(again.W_dec.detach(), sae.W_dec.detach()):
        fail("two SAEs built with the same generator differ: pass generator=generator to torch.randn.")
    print("StandardSAE.__init__ looks right.")


def check_encode(StandardSAE) -> None:
    assert_own_code(StandardSAE.encode, "StandardSAE.encode")
    d_in, d_sae = 8, 24
    ref = _reference(d_in, d_sae, 3)
    sae = StandardSAE(d_in, d_sae, generator=_gen(0))
    _load(sae, ref)
    x = torch.randn(2, 16, d_in, generator=_gen(4)) + 1.0
    got = sae.encode(x)
    want = ref.encode(x)
    if tuple(got.shape) != tuple(want.shape):
        fail(f"encode returned shape {tuple(got.shape)}; expected {tuple(want.shape)} (any leading dims, "
             "then d_sae). Use `@`, which broadcasts over leading dims.")
    if (got < 0).any():
        fail("some activations are negative: apply ReLU after adding b_enc.")
    no_sub = torch.relu(x @ ref.W_enc + ref.b_enc)
    if torch.allclose(got, no_sub, atol=1e-5):
        fail("encode ignores b_dec: subtract it from x before the encoder, (x − b_dec) @ W_enc + b_enc.")
    add = torch.relu((x + ref.b_dec) @ ref.W_enc + ref.b_enc)
    if torch.allclose(got, add, atol=1e-5):
        fail("you added b_dec: it is subtracted before encoding (the decoder adds it back).")
    assert_close(got, want, "acts = ReLU((x − b_dec) @ W_enc + b_enc).")
    print("StandardSAE.encode matches the reference.")


def check_decode(StandardSAE) -> None:
    assert_own_code(StandardSAE.decode, "StandardSAE.decode")
    d_in, d_sae = 8, 24
    ref = _reference(d_in, d_sae, 5)
    sae = StandardSAE(d_in, d_sae, generator=_gen(0))
    _load(sae, ref)
    acts = torch.relu(torch.randn(3, 5, d_sae, generator=_gen(6)))
    got = sae.decode(acts)
    want = ref.decode(acts)
    if tuple(got.shape) != tuple(want.shape):
        fail(f"decode returned shape {tuple(got.shape)}; expected {tuple(want.shape)}: acts @ W_dec maps "
             "d_sae to d_in.")
    if torch.allclose(got, acts @ ref.W_dec, atol=1e-5):
        fail("decode forgot b_dec: x̂ = acts @ W_dec + b_dec.")
    assert_close(got, want, "x̂ = acts @ W_dec + b_dec.")
    x = torch.randn(4, d_in, generator=_gen(7))
    rec, lat = sae(x)
    assert_close(rec, ref.decode(ref.encode(x)), "forward should return (decode(encode(x)), encode(x)).")
    print("StandardSAE.decode matches the reference.")


def check_normalize_decoder(StandardSAE) -> None:
    method = StandardSAE.normalize_decoder_
    assert_own_code(getattr(method, "__wrapped__", method), "StandardSAE.normalize_decoder_")  # under @no_grad
    d_in, d_sae = 6, 20
    sae = StandardSAE(d_in, d_sae, generator=_gen(0))
    W = torch.randn(d_sae, d_in, generator=_gen(8)) * torch.linspace(0.1, 5, d_sae)[:, None]
    W[3] = 0.0  # a latent whose decoder row collapsed
    with torch.no_grad():
        sae.W_dec.copy_(W)
    param, ptr = sae.W_dec, sae.W_dec.data_ptr()
    result = sae.normalize_decoder_()
    if sae.W_dec is not param or sae.W_dec.data_ptr() != ptr:
        fail("normalize_decoder_ replaced W_dec: change it in place (self.W_dec.div_(...) under "
             "torch.no_grad()), so the optimiser keeps training the same Parameter.")
    if result is not None and not isinstance(result, type(sae)):
        fail("normalize_decoder_ works in place; it should return None.")
    got = sae.W_dec.detach()
    if not torch.isfinite(got).all():
        fail("a zero decoder row became NaN: clamp the norms away from zero (.clamp_min(1e-8)) before dividing.")
    norms = got.norm(dim=-1)
    keep = torch.arange(d_sae) != 3
    if torch.allclose(got.norm(dim=0), torch.ones(d_in), atol=1e-4):
        fail("you normalised the columns of W_dec: each row W_dec[i] is one latent's direction; use dim=-1.")
    if not torch.allclose(norms[keep], torch.ones(d_sae - 1), atol=1e-5):
        fail(f"decoder rows should have unit norm after the call; norms range {norms[keep].min():.3f}–"
             f"{norms[keep].max():.3f}.")
    expected = W / W.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    assert_close(got, expected, "each row keeps its direction; only its length changes.")
    if sae.W_dec.requires_grad is False:
        fail("W_dec no longer requires grad: modify its data in place under torch.no_grad().")
    print("normalize_decoder_ keeps every decoder row on the unit sphere, in place.")


def check_geometric_median(fn) -> None:
    assert_own_code(fn)
    # Points on a line: the median of 0, 1, 10 is 1 (the mean is 11/3).
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    got = torch.as_tensor(fn(x)).float()
    if tuple(got.shape) != (2,):
        fail(f"return one point of shape (d,) = (2,); got {tuple(got.shape)}.")
    if torch.allclose(got, x.mean(0), atol=1e-3):
        fail("that is the mean: the geometric median minimises Σ‖x_i − m‖ (distances, not squared "
             "distances). Iterate Weiszfeld's update m ← Σ w_i x_i / Σ w_i with w_i = 1/‖x_i − m‖.")
    if (got - torch.tensor([1.0, 0.0])).norm() > 0.02:
        fail(f"the geometric median of 0, 1 and 10 on a line is 1; you returned {got.tolist()}. "
             "Start from the mean and run enough Weiszfeld iterations (≥ 50).")
    g = _gen(9)
    cloud = torch.cat([torch.randn(200, 5, generator=g), torch.full((1, 5), 1000.0)])
    got = torch.as_tensor(fn(cloud)).float()
    assert_close(got, ref_geometric_median(cloud), "on a cloud with one far outlier the median should "
                 "stay with the cloud; compare your iteration with Weiszfeld's.", atol=2e-2, rtol=1e-2)
    same = torch.randn(10, 3, generator=g)
    same[:] = same[0]
    if not torch.isfinite(torch.as_tensor(fn(same))).all():
        fail("when m lands exactly on a data point, 1/‖x_i − m‖ is infinite: clamp the distances "
             "(.clamp_min(eps)).")
    print("geometric_median agrees with Weiszfeld's iteration.")


# ---- exercise 6: sizes ---------------------------------------------------------------------------
def check_count_parameters(fn) -> None:
    assert_own_code(fn)
    for d_in, d_sae in ((3, 5), (16, 128)):
        ref = ReLUSAE(ReLUConfig(d_in=d_in, d_sae=d_sae))
        want = sum(p.numel() for p in ref.parameters())
        got = fn(d_in, d_sae)
        if not isinstance(got, int):
            fail(f"return a Python int, got {type(got).__name__}.")
        if got == 2 * d_in * d_sae:
            fail("you counted the two weight matrices only: add the biases b_enc [d_sae] and b_dec [d_in].")
        if got == 2 * d_in * d_sae + d_sae:
            fail("b_dec [d_in] is missing from your count.")
        if got != want:
            fail(f"count_parameters({d_in}, {d_sae}) = {got}; count W_enc, b_enc, W_dec and b_dec.")
    print("count_parameters agrees with the reference SAE's parameters.")


def check_gpt2_sizes(sizes: dict) -> None:
    missing = [k for k, v in sizes.items() if v is None]
    if missing:
        fail(f"fill in {missing}.")
    if sizes["d_sae"] == 768:
        fail("d_sae is the number of latents: expansion ratio × d_in.")
    if sizes["fp32_megabytes"] and abs(sizes["fp32_megabytes"] - sizes["n_params"] * 4 / 1e6) < 1:
        fail("that is the weights alone: training also keeps a gradient and Adam's two moment "
             "estimates per parameter, each fp32 (4 bytes).")
    if sizes["seed_expansion"] and sizes["seed_expansion"] < 1:
        fail("the expansion ratio is d_sae / d_in (latents per residual dimension), more than 1.")
    if not math.isfinite(float(sizes["seed_expansion"])):
        fail("seed_expansion should be a number.")
    print("GPT2_SAE is filled in (the hidden tests check the values).")
