"""Steering and ablating SAE latents, and measuring what that does to a labelled concept.

    hooks = [(sae_hook_name(sae), steering_hook(decoder_direction(sae, j), coeff=8.0))]   # utils.activations
    base, steered = concept_probability(model, tokens, ids), concept_probability(model, tokens, ids, hooks)
    text = generate(model, "The cat", fwd_hooks=hooks)

Two interventions at the SAE's hook, both written as plain TransformerLens hooks so that they work
with any SAE that has `encode`, `decode` and `W_dec` (SAELens' or the course's):

- **steering** adds `coeff · d_j` to the activation, d_j the latent's decoder direction
  (Turner et al. 2023 activation addition; Templeton et al. 2024 "feature steering");
- **ablation** removes the latent's contribution from the activation through the SAE with its
  error term: x' = x̂(a with a_j = 0) + (x − x̂(a)) = x − (x̂(a) − x̂(a_{j=0})). Only latent j
  changes; the SAE's reconstruction error is kept, so the rest of the model sees its usual
  input (SAELens does the same with `use_error_term=True` and a hook on `hook_sae_acts_post`).

A concept's probability is the next-token probability mass on the tokens that carry the concept
label almost every time they occur in the labelled corpus (`concept_token_ids`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from utils.activations import module_device

Hook = tuple[str, Callable]


def decoder_direction(sae, latent: int, *, normalize: bool = True) -> Float[Tensor, "d_in"]:
    """The latent's decoder row W_dec[latent] (unit length if `normalize`)."""
    d = sae.W_dec[latent].detach().float()
    return d / d.norm().clamp_min(1e-8) if normalize else d


def steering_hook(direction: Float[Tensor, "d_in"], coeff: float, *, from_pos: int = 0) -> Callable:
    """A hook adding `coeff · direction` at every position from `from_pos` on (all by default)."""

    def hook(act: Tensor, hook=None) -> Tensor:
        act = act.clone()
        act[:, from_pos:] += coeff * direction.to(act.device, act.dtype)
        return act

    return hook


def ablation_hook(sae, latents: int | Sequence[int]) -> Callable:
    """A hook that zeroes `latents` inside the SAE and keeps the SAE's error term (see module doc).

    The activation is encoded on the SAE's device, in its dtype, and returned on its own device and dtype."""
    idx = [latents] if isinstance(latents, int) else list(latents)

    def hook(act: Tensor, hook=None) -> Tensor:
        x = act.to(sae.W_dec.device, sae.W_dec.dtype)
        acts = sae.encode(x)
        ablated = acts.clone()
        ablated[..., idx] = 0.0
        return (x - (sae.decode(acts) - sae.decode(ablated))).to(act.device, act.dtype)

    return hook


def clamp_hook(sae, latent: int, value: float) -> Callable:
    """A hook that sets one latent to `value` inside the SAE (error term kept): Templeton et al.'s clamping.

    The activation is encoded on the SAE's device, in its dtype, and returned on its own device and dtype."""

    def hook(act: Tensor, hook=None) -> Tensor:
        x = act.to(sae.W_dec.device, sae.W_dec.dtype)
        acts = sae.encode(x)
        clamped = acts.clone()
        clamped[..., latent] = value
        return (x + sae.decode(clamped) - sae.decode(acts)).to(act.device, act.dtype)

    return hook


@contextmanager
def hooked(model, fwd_hooks: Iterable[Hook] = ()):
    """Attach hooks for the duration of a `with` block (TransformerLens' `model.hooks`)."""
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        yield model


# ---- concepts ------------------------------------------------------------------------------------
def concept_token_ids(labelled, concept: str, *, min_count: int = 5, min_purity: float = 0.9,
                      exclude: Iterable[int] = ()) -> Int[Tensor, "n"]:
    """Vocabulary ids that carry `concept` in at least `min_purity` of their ≥ `min_count` occurrences.

    `labelled` is a `utils.data.corpus.LabelledTokens` (tokens [n_seq seq], labels [n_seq seq concepts]).
    """
    tokens = np.asarray(labelled.tokens).reshape(-1)
    hit = np.asarray(labelled.label(concept)).reshape(-1)
    n_vocab = int(tokens.max()) + 1
    count = np.bincount(tokens, minlength=n_vocab)
    with_label = np.bincount(tokens, weights=hit.astype(np.float64), minlength=n_vocab)
    purity = with_label / np.maximum(count, 1)
    keep = (count >= min_count) & (purity >= min_purity)
    keep[list(exclude)] = False
    return torch.from_numpy(np.flatnonzero(keep)).long()


@torch.no_grad()
def concept_probability(model, tokens: Int[Tensor, "batch seq"], token_ids: Int[Tensor, "n"],
                        fwd_hooks: Iterable[Hook] = (), *, batch_size: int = 32) -> Float[Tensor, "batch seq"]:
    """P(next token ∈ token_ids) at every position, with `fwd_hooks` attached; on the CPU."""
    fwd_hooks = list(fwd_hooks)
    out = []
    for t in tokens.split(batch_size):
        logits = model.run_with_hooks(t.to(module_device(model)), fwd_hooks=fwd_hooks)
        probs = logits.float().softmax(-1)
        out.append(probs[..., token_ids.to(probs.device)].sum(-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def intervention_effect(model, tokens: Int[Tensor, "batch seq"], token_ids: Int[Tensor, "n"],
                        fwd_hooks: Iterable[Hook], *, mask: Tensor | None = None, batch_size: int = 32) -> dict:
    """Mean concept probability without and with the hooks, over the positions in `mask` (all if None)."""
    base = concept_probability(model, tokens, token_ids, batch_size=batch_size)
    after = concept_probability(model, tokens, token_ids, fwd_hooks, batch_size=batch_size)
    m = torch.ones_like(base, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
    b, a = float(base[m].mean()), float(after[m].mean())
    return {"base": b, "after": a, "delta": a - b, "ratio": a / b if b > 0 else float("inf")}


@torch.no_grad()
def generate(model, prompt: str, *, max_new_tokens: int = 30, fwd_hooks: Iterable[Hook] = (),
             temperature: float = 0.7, seed: int = 0) -> str:
    """Sample a continuation of `prompt` with `fwd_hooks` attached (same seed ⇒ comparable samples)."""
    torch.manual_seed(seed)
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        out = model.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                             stop_at_eos=False, verbose=False, return_type="str")
    return out
