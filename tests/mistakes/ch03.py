"""Chapter 03 (the loss trade-off): common mistakes per exercise."""

from mistakes import Mistake

CHAPTER = "03_loss_tradeoff"

MISTAKES = [
    Mistake("test_sae_loss", "sum_not_mean", '''
def sae_loss(x, reconstructed, latents, l1_coeff):
    return (x - reconstructed).pow(2).sum() + l1_coeff * latents.abs().sum()
''', names=r"summed where the seed averages"),
    Mistake("test_sae_loss", "no_abs", '''
def sae_loss(x, reconstructed, latents, l1_coeff):
    return (x - reconstructed).pow(2).mean() + l1_coeff * latents.mean()
''', names=r"\.abs\(\)", subtle=True),
    Mistake("test_sae_loss", "returns_float", '''
def sae_loss(x, reconstructed, latents, l1_coeff):
    return float((x - reconstructed).pow(2).mean() + l1_coeff * latents.abs().mean())
''', names=r"differentiable|Python float"),
]
