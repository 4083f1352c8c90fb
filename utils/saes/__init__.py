"""The course's SAE variants, one class each over a small base (STYLE.md).

    from utils.saes import build_sae
    sae = build_sae("topk", d_in=128, d_sae=1024, k=32)
    out = sae(x)                     # SAEOutput(x_hat, acts, losses); loss = sum(out.losses.values())

`SAE_CLASSES` is the one place that maps a variant's name to its class. The variant files are
the readable forms; `utils.saes.fast` holds the opt-in training kernels (`TrainConfig(fast_kernels=True)`).
"""

from utils.saes.base import SAE, Firing, SAEConfig, SAEOutput, count_fired, fired_any
from utils.saes.baselines import random_dictionary_baseline
from utils.saes.gated import GatedConfig, GatedSAE, SeedGatedConfig, SeedGatedSAE
from utils.saes.jumprelu import JumpReLUConfig, JumpReLUSAE, JumpReLUSTE, jump_relu, jumprelu
from utils.saes.relu import ReLUConfig, ReLUSAE, SeedReLUConfig, SeedSAE, SeedSparseAutoencoder
from utils.saes.topk import BatchTopKConfig, BatchTopKSAE, TopKConfig, TopKSAE

SAE_CLASSES: dict[str, type[SAE]] = {
    "relu": ReLUSAE,
    "gated": GatedSAE,
    "jumprelu": JumpReLUSAE,
    "topk": TopKSAE,
    "batchtopk": BatchTopKSAE,
    "seed_relu": SeedSparseAutoencoder,
    "seed_gated": SeedGatedSAE,
}


def variant_name(sae: SAE) -> str:
    """The key of `SAE_CLASSES` for an SAE instance."""
    for name, cls in SAE_CLASSES.items():
        if type(sae) is cls:
            return name
    raise KeyError(f"{type(sae).__name__} is not one of the course's SAE classes")


def build_sae(variant: str, **cfg) -> SAE:
    """An SAE of the named variant, e.g. `build_sae("jumprelu", d_in=128, d_sae=1024, l0_coeff=1e-2)`."""
    try:
        cls = SAE_CLASSES[variant]
    except KeyError:
        raise ValueError(f"unknown SAE variant {variant!r}; choose from {sorted(SAE_CLASSES)}") from None
    return cls(cls.config_class(**cfg))


__all__ = [
    "SAE", "SAEConfig", "SAEOutput", "SAE_CLASSES", "build_sae", "variant_name", "Firing", "count_fired", "fired_any",
    "random_dictionary_baseline",
    "ReLUConfig", "ReLUSAE", "SeedReLUConfig", "SeedSAE", "SeedSparseAutoencoder",
    "GatedConfig", "GatedSAE", "SeedGatedConfig", "SeedGatedSAE",
    "JumpReLUConfig", "JumpReLUSAE", "JumpReLUSTE", "jump_relu", "jumprelu",
    "TopKConfig", "TopKSAE", "BatchTopKConfig", "BatchTopKSAE",
]
