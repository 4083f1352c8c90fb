"""Stage 3: one SAE of each variant, trained with the course's own trainer on cached LM activations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from utils.data import corpus
from utils.activations import model_activations
from utils.train import TrainResult

from .cache import Cache, fingerprint
from .config import MODEL_NAME, BuildConfig, sae_plan
from .lm import lm_batch


def train_activations(model, cfg: BuildConfig, stream: corpus.TokenStream, cache: Cache) -> torch.Tensor:
    """Activations at the SAE site for `sae_tokens` tokens of BOS-first training windows."""
    def compute():
        tokens = torch.from_numpy(stream.tokens.astype(np.int64))
        n_batches = math.ceil(cfg.sae_tokens / (cfg.lm_batch * cfg.n_ctx))
        bos = model.tokenizer.bos_token_id
        out = [model_activations(model, cfg.hook_name, lm_batch(tokens, 10**7 + i, cfg, bos))
               for i in tqdm(range(n_batches), desc="caching activations", mininterval=2.0)]
        return torch.cat(out)[: cfg.sae_tokens]

    key = {"model": fingerprint(model), "hook": cfg.hook_name, "tokens": cfg.sae_tokens, "seed": cfg.seed,
           "lm_batch": cfg.lm_batch, "n_ctx": cfg.n_ctx, "data": fingerprint(stream.tokens)}
    return cache.memo("acts", key, compute)


def sae_key(variant: str, acts: torch.Tensor, cfg: BuildConfig) -> dict:
    """Everything an SAE's training depends on (the activations by digest)."""
    settings, train = sae_plan(variant, cfg)
    return {"variant": variant, "settings": settings, **train, "resample_every": cfg.sae_resample_every,
            "seed": cfg.seed, "hook_name": cfg.hook_name, "acts": fingerprint(acts)}


def new_sae(variant: str, d_in: int, cfg: BuildConfig):
    """The untrained SAE of `variant` as the build makes it (same config whether trained or loaded from cache)."""
    from utils.saes import build_sae

    settings, train = sae_plan(variant, cfg)
    return build_sae(variant, d_in=d_in, d_sae=train["d_sae"], init_seed=cfg.seed, hook_name=cfg.hook_name,
                     model_name=MODEL_NAME, **settings)


def train_one_sae(variant: str, acts: torch.Tensor, cfg: BuildConfig) -> TrainResult:
    from utils.train import TensorSource, TrainConfig, train_sae

    train = sae_plan(variant, cfg)[1]
    steps = train["steps"]
    sae = new_sae(variant, acts.shape[-1], cfg)
    tc = TrainConfig(steps=steps, lr=train["lr"], warmup_steps=max(1, steps // 20),
                     sparsity_warmup_steps=0 if variant == "topk" else steps // 10,
                     resample_every=None if variant == "topk" else cfg.sae_resample_every,
                     dead_window_tokens=min(1_000_000, train["batch"] * steps // 4),
                     log_every=max(1, steps // 50), seed=cfg.seed)
    return train_sae(sae, TensorSource(acts, train["batch"], seed=cfg.seed), tc)


def trained_sae(variant: str, acts: torch.Tensor, cfg: BuildConfig, cache: Cache) -> TrainResult:
    """`train_one_sae`, cached under its key: a rebuild with the same settings reuses it."""
    def compute():
        result = train_one_sae(variant, acts, cfg)
        return {"sae": result.sae.state_dict(), "history": result.history}

    state = cache.memo(f"sae_{variant}", sae_key(variant, acts, cfg), compute)
    sae = new_sae(variant, acts.shape[-1], cfg)
    sae.load_state_dict(state["sae"])
    return TrainResult(sae.eval(), state["history"])


def save_sae(sae, cfg: BuildConfig, out: Path, metrics: dict, *, dataset: str) -> Path:
    """The SAE in SAELens' format, with what SAELens' own runner records (`utils.interop.save_saelens`)."""
    from utils.interop import save_saelens

    return save_saelens(sae, out, hook_name=cfg.hook_name, model_name=MODEL_NAME, context_size=cfg.n_ctx,
                        prepend_bos=True, dataset_path=dataset, course_metrics=metrics)
