"""Latent search: which SAE latents respond to a piece of text, or peak highest on a corpus.

    latents, scores = search_latents(acts_on_prompts, baseline=acts_on_ordinary_text, k=10)
    found = find_interpretable_latents(sae, model, tokens, n_latents=10, n_examples=5)

Both are Neuronpedia's two ways in: search by behaviour (what fires on *this* text, more than
on ordinary text) and browse by strength (the seed's exercise: the latents with the largest
activations, each with where it peaks). Scoring a latent against a labelled concept is
`utils.data.concept_precision_recall`; judging a detector soundly is `utils.detection`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from utils.activations import sae_latents


def search_latents(acts: Float[Tensor, "... d_sae"], baseline: Float[Tensor, "... d_sae"] | None = None,
                   k: int = 10) -> tuple[list[int], list[float]]:
    """Search by behaviour: the k latents with the largest mean activation on `acts`' tokens,
    minus their mean on `baseline` tokens if given (so latents that fire everywhere drop out)."""
    score = acts.reshape(-1, acts.shape[-1]).float().mean(0)
    if baseline is not None:
        score = score - baseline.reshape(-1, baseline.shape[-1]).float().mean(0).to(score.device)
    v, i = score.topk(k)
    return i.tolist(), v.tolist()


class InterpretableLatents(NamedTuple):
    """What `find_interpretable_latents` returns: the latents shown, and where each peaks."""

    latents: list[int]
    """The latents, strongest first (by their maximum activation)."""
    values: Float[Tensor, "n_latents n_examples"]
    """Each latent's largest activations, descending."""
    positions: Int[Tensor, "n_latents n_examples 2"]
    """(sequence, position) of each of those activations."""


@torch.no_grad()
def find_interpretable_latents(sae, model, prompts: Int[Tensor, "n_seq seq"], *, n_latents: int = 10,
                               n_examples: int = 5, acts: Tensor | None = None) -> InterpretableLatents:
    """The seed's exercise: per latent its max-activating tokens (BOS skipped); the `n_latents` latents
    with the largest maximum activation, each with its top `n_examples` (sequence, position)s.

    `acts` ([n_seq seq d_sae], the SAE's latents on `prompts`) skips the model run. The result is
    on the CPU.
    """
    if acts is None:
        acts = sae_latents(model, sae, prompts)
    a = acts[:, 1:].reshape(-1, acts.shape[-1]).float().cpu()        # [tokens d_sae], BOS dropped
    top = a.topk(n_examples, dim=0)                                    # [n_examples d_sae]
    latents = top.values[0].topk(n_latents).indices                    # by max activation
    seq_len = acts.shape[1] - 1
    idx = top.indices[:, latents].T                                    # [n_latents n_examples]
    pos = torch.stack([idx // seq_len, idx % seq_len + 1], dim=-1)
    return InterpretableLatents(latents.tolist(), top.values[:, latents].T.contiguous(), pos)
