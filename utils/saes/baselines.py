"""SAEs that learn nothing, to compare trained ones against."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from utils.saes.topk import TopKConfig, TopKSAE


def random_dictionary_baseline(d_in: int, d_sae: int, k: int, *, x: Float[Tensor, "n d_in"] | None = None,
                               seed: int = 0) -> TopKSAE:
    """A TopK SAE with random unit-norm directions, encoder = decoderᵀ, b_dec = mean of `x`.

    Nothing is learned: compare a trained SAE with this at the same L0 (k) and width before
    crediting it with structure (random baselines score surprisingly well: Korznikov et al. 2026).
    """
    sae = TopKSAE(TopKConfig(d_in=d_in, d_sae=d_sae, k=k, init_seed=seed))
    if x is not None:
        sae.init_b_dec_(x.reshape(-1, x.shape[-1]).float().mean(0))
    return sae.eval()
