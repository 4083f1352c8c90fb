"""Activation capture: what a model writes at one hook, and what an SAE reads from it.

    acts = cache_activations(model, "blocks.2.hook_resid_pre", tokens, drop_bos=True)  # [tokens d_in], CPU
    resid = cache_activations(model, hook, tokens, flatten=False)                      # [n_seq seq d_in]
    latents = encode(sae, resid)                                                        # [n_seq seq d_sae]
    latents = sae_latents(model, sae, tokens)       # the same, from tokens (the model stops at the SAE's hook)
    site = load_site(rt.profile, n_seq=256)       # a chapter's model, hook, tokens and activations, in one call

Every function here that takes a model or an SAE moves the tensors it is given to that module's
device before using them, so activations kept on the CPU can be fed to a model or SAE on a GPU.
Results land on `device`: the CPU by default, because activation caches are large (chapter 05
keeps gigabytes of them in RAM on Colab) and a consumer moves the batches it needs;
`device=None` leaves them where they were computed.

The model runs only up to the hook's layer (`stop_layer`), which for a hook in block 2 of a
12-layer model skips most of the forward pass.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

Device = torch.device | str | None


def stop_layer(hook_name: str) -> int | None:
    """The `stop_at_layer` that runs a TransformerLens model just far enough to reach `hook_name`:
    block i's hooks need blocks 0..i, so i + 1; None (the whole model) for hooks outside the blocks."""
    m = re.match(r"blocks\.(\d+)\.", hook_name)
    return int(m.group(1)) + 1 if m else None


def sae_hook_name(sae) -> str:
    """The TransformerLens hook an SAE reads: SAELens keeps it in `cfg.metadata`, the course in `cfg`."""
    meta = getattr(sae.cfg, "metadata", None)
    name = getattr(meta, "hook_name", None) or getattr(sae.cfg, "hook_name", None)
    if not name:
        raise ValueError("this SAE does not record the hook it was trained on; pass hook_name explicitly")
    return name


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a model or SAE computes: the device of its first parameter or buffer (the CPU if it has none)."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def _to(x: Tensor, device: Device) -> Tensor:
    return x if device is None else x.to(device)


@torch.no_grad()
def model_activations(model, hook_name: str, tokens: Int[Tensor, "batch seq"], *, drop_bos: bool = False,
                      flatten: bool = True, device: Device = "cpu") -> Float[Tensor, "..."]:
    """The float32 activations at `hook_name` for one batch of tokens.

    `tokens` are moved to the model's device. The result is [batch·seq d] (`flatten`) or
    [batch seq d], on `device` (the CPU by default; None: the model's device). `drop_bos` leaves
    out position 0, the BOS token: an attention sink whose activation has an outsized norm.
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch seq], got shape {tuple(tokens.shape)}; for one sequence "
                         "pass tokens[None] (or model.to_tokens(text), which is already 2-D).")
    store: list[Tensor] = []

    def hook(act, hook):
        store.append(act.detach())

    model.run_with_hooks(tokens.to(module_device(model)), fwd_hooks=[(hook_name, hook)],
                         stop_at_layer=stop_layer(hook_name), return_type=None)
    act = store[0]
    if drop_bos:
        act = act[:, 1:]
    if flatten:
        act = act.reshape(-1, act.shape[-1])
    return _to(act.float(), device)


@torch.no_grad()
def cache_activations(model, hook_name: str, tokens: Int[Tensor, "n_seq seq"] | Iterable[Int[Tensor, "batch seq"]],
                      path: str | Path | None = None, *, batch_size: int = 32, drop_bos: bool = False,
                      flatten: bool = True, device: Device = "cpu",
                      dtype: torch.dtype = torch.float32) -> Float[Tensor, "..."]:
    """The activations at `hook_name` for many sequences, stacked, and saved to `path` if given.

    `tokens` is a [n_seq seq] tensor, run `batch_size` rows at a time, or an iterable of
    [batch seq] tensors (e.g. a generator that never holds all tokens at once). Each batch's
    activations go to `device` (the CPU by default; None: the model's device) as they are
    computed, so only one batch is ever on the model's device. Result: [tokens d] (`flatten`,
    BOS left out if `drop_bos`) or [n_seq seq d], in `dtype`.
    """
    batches = tokens.split(batch_size) if isinstance(tokens, Tensor) else tokens
    parts = [model_activations(model, hook_name, t, drop_bos=drop_bos, flatten=flatten, device=device).to(dtype)
             for t in batches]
    if not parts:
        raise ValueError("no tokens to run: pass a [n_seq seq] tensor with at least one row, or a non-empty "
                         "iterable of [batch seq] tensors (a generator can be iterated only once).")
    acts = torch.cat(parts)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(acts.cpu(), path)
    return acts


@torch.no_grad()
def encode(sae, x: Float[Tensor, "... d_in"], latents: int | list[int] | None = None, *, chunk: int = 8192,
           device: Device = "cpu") -> Float[Tensor, "..."]:
    """The SAE's latents on `x` ([..., d_sae], only `latents` if given), computed `chunk` tokens at a time.

    Works with any SAE that has `encode` and `W_dec` (SAELens' or the course's). Each chunk is
    moved to the SAE's device and dtype; the float32 result is on `device` (the CPU by default;
    None: the SAE's device). An int `latents` drops the last axis.
    """
    flat = x.reshape(-1, x.shape[-1])
    dev, dt = sae.W_dec.device, sae.W_dec.dtype
    parts = []
    for xc in flat.split(chunk):
        a = sae.encode(xc.to(dev, dt)).float()
        parts.append(_to(a if latents is None else a[:, latents], device))
    a = torch.cat(parts)
    tail = () if isinstance(latents, int) else (a.shape[-1],)
    return a.reshape(*x.shape[:-1], *tail)


@torch.no_grad()
def sae_latents(model, sae, tokens: Int[Tensor, "n_seq seq"], latents: int | list[int] | None = None, *,
                batch_size: int = 32, device: Device = "cpu") -> Float[Tensor, "..."]:
    """The SAE's latents on `tokens`: [n_seq seq d_sae] (only `latents` if given), on `device`.

    The model runs up to the SAE's hook `batch_size` rows at a time and each batch is encoded
    at once, so the model's activations for all rows are never held together.
    """
    hook = sae_hook_name(sae)
    return torch.cat([encode(sae, model_activations(model, hook, t, flatten=False, device=None), latents,
                             device=device) for t in tokens.split(batch_size)])


# ---- a chapter's site, in one call ------------------------------------------------------------------
class Site(NamedTuple):
    """A model, the hook its SAEs read, some text, and the activations there."""

    model: object
    """The profile's `HookedSAETransformer` (`utils.models.load_model`)."""
    hook_name: str
    """The SAE site (`utils.models.hook_name`)."""
    tokens: Int[Tensor, "n_seq seq"]
    """BOS-first rows of tokens, no padding (`utils.data.load_token_rows`), on the CPU."""
    acts: Float[Tensor, "tokens d_in"]
    """The activations at `hook_name`, one row per token, BOS dropped, on the CPU."""


def load_site(profile: str | None = None, *, n_seq: int, seq_len: int = 128, split: str | None = None,
              batch_size: int = 32) -> Site:
    """The profile's model and SAE site, `n_seq` rows of `seq_len` tokens, and their activations (BOS dropped).

    `split` defaults to the Pile's training part on `gpu` and the course corpus's validation
    split offline (the corpus's training split is what the shipped model and SAEs were trained on).
    """
    from utils import data, models
    from utils.runtime import get_profile

    profile = get_profile(profile)
    model = models.load_model(profile)
    hook = models.hook_name(profile)
    split = split or ("train" if profile == "gpu" else "validation")
    tokens = data.load_token_rows(split, seq_len, n_seq, profile, tokenizer=model.tokenizer)
    return Site(model, hook, tokens, cache_activations(model, hook, tokens, batch_size=batch_size, drop_bos=True))
