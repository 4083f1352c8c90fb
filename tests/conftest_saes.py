"""Shared helpers for the SAE-library tests (imported explicitly; the lead owns conftest.py)."""

from __future__ import annotations

import torch

from utils.saes import SAE, build_sae

# Every variant with small, test-sized settings.
VARIANT_KWARGS: dict[str, dict] = {
    "relu": {"l1_coeff": 0.1},
    "gated": {"l1_coeff": 0.1},
    "jumprelu": {"l0_coeff": 0.01, "bandwidth": 0.05, "init_threshold": 0.05},
    "topk": {"k": 4},
    "batchtopk": {"k": 4},
    "seed_relu": {"l1_coeff": 0.1},
    "seed_gated": {"l1_coeff": 0.1},
}
MODERN = ["relu", "gated", "jumprelu", "topk", "batchtopk"]
ALL = list(VARIANT_KWARGS)


def make_sae(variant: str, d_in: int = 12, d_sae: int = 40, seed: int = 0, **overrides) -> SAE:
    """A small SAE with non-trivial biases (zeros would hide sign and centring bugs)."""
    sae = build_sae(variant, d_in=d_in, d_sae=d_sae, init_seed=seed, **{**VARIANT_KWARGS[variant], **overrides})
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if p.ndim == 1 and name != "threshold":
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return sae


def tiny_lm(d_model: int = 16, n_layers: int = 2, d_vocab: int = 50, n_ctx: int = 12, seed: int = 0,
            sae_transformer: bool = False):
    """A random-weight TransformerLens model (no downloads)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=d_model, d_head=8, n_heads=2, d_mlp=32,
                                  d_vocab=d_vocab, n_ctx=n_ctx, act_fn="gelu", normalization_type="LN",
                                  seed=seed)
    if sae_transformer:
        from sae_lens import HookedSAETransformer

        return HookedSAETransformer(cfg).eval()
    return HookedTransformer(cfg).eval()


def tokens(n_seq: int = 8, seq: int = 12, d_vocab: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randint(d_vocab, (n_seq, seq), generator=torch.Generator().manual_seed(seed))
