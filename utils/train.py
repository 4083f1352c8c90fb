"""Training SAEs: activation sources and one short loop that works on any device.

    source = TensorSource(acts, batch_size=4096)              # or HookActivationSource(model, hook, tokens)
    result = train_sae(build_sae("topk", d_in=128, d_sae=1024, k=32), source, TrainConfig(steps=2000))
    result.sae, result.history                                  # trained SAE (raw units), list of dicts

The loop: forward → sum of losses → backward → `sae.before_optimizer_step_()` (gradient
projection) → Adam step → `sae.after_optimizer_step_(firing)` (renormalisation, firing counters,
thresholds) → resampling if due → log. Variant behaviour lives in those methods.

A chapter trains with a student's code by passing it in, never by patching a module:

    train_sae(sae, source, cfg, resample_fn=resample_dead_latents_)   # chapter 05: your resampler
    train_sae(sae, source, cfg, aux_loss_fn=auxk_loss)                # chapter 05: your AuxK loss
    train_sae(sae, source, cfg, encode_fn=gated_encode, loss_fn=...)  # chapter 04: your variants

`TrainConfig(fast_kernels=True)` swaps the readable forward for `utils.saes.fast`'s kernels (same
numbers, several times faster for TopK); it refuses student functions, which it would bypass.

Inputs are rescaled so that E‖x‖² = 1 during training (dictionary_learning's convention;
Anthropic and SAELens use E‖x‖ = √d_in), which makes coefficients, learning rates and the
JumpReLU bandwidth transferable across sites; the scale is folded into the SAE at the end, so
the returned SAE takes raw activations.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from utils import metrics
from utils.activations import cache_activations, model_activations
from utils.losses import AuxLossFn
from utils.resample import resample_dead_latents_
from utils.saes import fast
from utils.saes.base import SAE, EncodeFn, LossFn

ResampleFn = Callable[..., int]  # (sae, x, dead, *, optimizer, enc_scale, generator) -> how many resampled


# ---- activation sources ------------------------------------------------------------------------
class TensorSource:
    """Batches from an in-memory (or memory-mapped) [tokens d_in] tensor, reshuffled every epoch, forever."""

    def __init__(self, acts: Float[Tensor, "tokens d_in"], batch_size: int = 4096, shuffle: bool = True,
                 seed: int = 0):
        self.acts = acts.reshape(-1, acts.shape[-1])
        self.batch_size = min(batch_size, self.acts.shape[0])
        self.shuffle, self.seed = shuffle, seed
        self.d_in = self.acts.shape[-1]

    def __iter__(self) -> Iterator[Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        n, B = self.acts.shape[0], self.batch_size
        while True:
            order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
            for i in range(0, n - B + 1, B):  # drop the ragged tail: every batch has B tokens
                yield self.acts[order[i : i + B]] if self.shuffle else self.acts[i : i + B]


class HookActivationSource:
    """Activations streamed from a TransformerLens model's hook through a shuffled buffer.

    Tokens from one sequence are highly correlated, so batches are drawn from a buffer of
    `buffer_tokens` activations that is shuffled, half served, and refilled (SAELens'
    mixing buffer). With `cache_path`, activations are computed once, saved, and then
    served from the (memory-mapped) file on every later run. Capture is `utils.activations`'
    (the buffer lives on the CPU; the trainer moves each batch).
    """

    def __init__(self, model, hook_name: str, token_batches: Iterable[Int[Tensor, "batch seq"]], *,
                 batch_size: int = 4096, buffer_tokens: int = 65_536, shuffle: bool = True, seed: int = 0,
                 drop_bos: bool = False, cache_path: str | Path | None = None):
        self.model, self.hook_name, self.token_batches = model, hook_name, token_batches
        self.batch_size, self.buffer_tokens = batch_size, max(buffer_tokens, 2 * batch_size)
        self.shuffle, self.seed, self.drop_bos = shuffle, seed, drop_bos
        self.cache_path = None if cache_path is None else Path(cache_path)

    def __iter__(self) -> Iterator[Tensor]:
        if self.cache_path is not None:
            if not self.cache_path.exists():
                cache_activations(self.model, self.hook_name, self.token_batches, self.cache_path,
                                  drop_bos=self.drop_bos)
            acts = torch.load(self.cache_path, mmap=True)
            yield from TensorSource(acts, self.batch_size, self.shuffle, self.seed)
            return
        reiterable = not isinstance(self.token_batches, Iterator)
        gen = torch.Generator().manual_seed(self.seed)
        while True:
            yield from self._one_pass(gen)
            if not reiterable:
                return

    def _one_pass(self, gen: torch.Generator) -> Iterator[Tensor]:
        buf = torch.empty(0, 0)
        B = self.batch_size
        for tokens in self.token_batches:
            act = model_activations(self.model, self.hook_name, tokens, drop_bos=self.drop_bos)
            buf = act if buf.numel() == 0 else torch.cat([buf, act])
            if buf.shape[0] >= self.buffer_tokens:
                if self.shuffle:
                    buf = buf[torch.randperm(buf.shape[0], generator=gen)]
                n_serve = (buf.shape[0] // 2) // B * B
                for i in range(0, n_serve, B):
                    yield buf[i : i + B]
                buf = buf[n_serve:]
        if buf.numel():
            if self.shuffle:
                buf = buf[torch.randperm(buf.shape[0], generator=gen)]
            for i in range(0, buf.shape[0] - B + 1, B):
                yield buf[i : i + B]


# ---- the loop ------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class TrainConfig:
    steps: int = 2_000  # optimiser steps
    lr: float = 1e-3  # Adam learning rate (peak)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam betas (the Gated and JumpReLU papers use β1 = 0)
    warmup_steps: int = 100  # linear LR warm-up from 0
    decay_start: float = 0.8  # fraction of training after which the LR decays linearly to 0
    sparsity_warmup_steps: int = 0  # linear warm-up of the L1/L0 coefficient (helps against dead latents)
    normalize_inputs: bool = True  # train on x·c with E‖(x·c)‖² = 1; c is folded into the SAE at the end
    init_b_dec: str | None = "geometric_median"  # "geometric_median", "mean" or None; only if b_dec is 0
    init_encoder_scale: bool = True  # rescale a fresh SAE's encoder so its first reconstruction is LS-optimal
    init_samples: int = 16_384  # tokens used to estimate the input scale and b_dec's initial value
    max_grad_norm: float | None = None  # gradient clipping (None: off)
    dead_window_tokens: int = 1_000_000  # history's dead fraction: latents silent for this many tokens
    resample_every: int | None = None  # Anthropic resampling every this many steps (None: off)
    resample_window: int | None = None  # dead = silent for this many steps (None: resample_every // 2)
    resample_inputs: int = 65_536  # inputs scored to pick new directions (819,200 in Bricken et al.)
    resample_enc_scale: float = 0.2  # new encoder rows = 0.2 × mean alive encoder norm
    resample_until: float = 0.7  # no resampling after this fraction of training (latents need time)
    batch_size: int = 4096  # only used when `source` is a plain tensor
    log_every: int = 50  # steps between history entries
    amp: bool = True  # bf16/fp16 autocast, on CUDA only
    fast_kernels: bool = False  # the fused/sparse kernels of utils.saes.fast: same numbers, faster; no plug-ins
    seed: int = 0  # seed for resampling's draws


class TrainResult(NamedTuple):
    sae: SAE
    """The trained SAE, in eval mode, taking raw (unnormalised) activations."""
    history: list[dict]
    """One plain dict every `log_every` steps: step, tokens, lr, losses, l0, explained variance, dead fraction."""


def lr_multiplier(step: int, steps: int, warmup_steps: int, decay_start: float) -> float:
    """Linear warm-up to 1, constant, then linear decay to 0 over the last (1 − decay_start) of training."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    start = int(decay_start * steps)
    decay = 1.0 if step < start else max(0.0, (steps - step) / max(1, steps - start))
    return warm * decay


@torch.no_grad()
def geometric_median(x: Float[Tensor, "n d"], iters: int = 100, eps: float = 1e-8) -> Float[Tensor, "d"]:
    """argmin_m Σ_i ‖x_i − m‖ by Weiszfeld's iteration (b_dec's initial value, Bricken et al. 2023)."""
    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=-1).clamp_min(eps)
        m_new = (w[:, None] * x).sum(0) / w.sum()
        if (m_new - m).norm() <= eps * m.norm().clamp_min(1.0):
            return m_new
        m = m_new
    return m


def _optimizer(sae: SAE, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    try:  # the fused kernel (CPU and CUDA) is one pass over all parameters
        return torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.betas)


def _autocast(cfg: TrainConfig, device: torch.device):
    if not (cfg.amp and device.type == "cuda"):
        return contextlib.nullcontext(), None
    bf16 = torch.cuda.is_bf16_supported()
    scaler = None if bf16 else torch.amp.GradScaler("cuda")
    return torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16), scaler


def train_sae(sae: SAE, source, cfg: TrainConfig | None = None, *, resample_fn: ResampleFn | None = None,
              aux_loss_fn: AuxLossFn | None = None, encode_fn: EncodeFn | None = None,
              loss_fn: LossFn | None = None, device: torch.device | str | None = None,
              progress: bool = True) -> TrainResult:
    """Train `sae` on batches from `source` (a source above, any iterable of [batch d_in] tensors, or a tensor).

    The pieces a chapter lets students write plug in here, each with the signature of the
    library function it replaces:
      resample_fn(sae, x, dead, *, optimizer, enc_scale, generator) -> int   (`resample_dead_latents_`,
          called every `cfg.resample_every` steps)
      aux_loss_fn(residual, pre_acts, W_dec, dead, k_aux) -> loss             (`losses.auxk_loss`: TopK's AuxK)
      encode_fn(sae, x) -> (acts, pre_acts)                                    (the variant's `encode_with_pre`)
      loss_fn(sae, x, x_hat, acts, pre_acts) -> {name: loss}                   (the variant's `loss_terms`)
    They are used for training only: the returned SAE encodes with its own class's code.
    """
    cfg = cfg or TrainConfig()
    loss_fn = _check_plugins(sae, cfg, resample_fn, aux_loss_fn, encode_fn, loss_fn)
    resample_fn = resample_fn or resample_dead_latents_
    device = torch.device(device) if device is not None else sae.device
    if isinstance(source, Tensor):
        source = TensorSource(source, cfg.batch_size)
    batches = iter(source)
    sae.to(device).train()

    # Input scale and b_dec from the first few batches, which are then trained on as usual.
    head: list[Tensor] = []
    while sum(b.shape[0] for b in head) < cfg.init_samples:
        b = next(batches, None)
        if b is None:
            break
        head.append(b)
    sample = torch.cat(head).to(device).float()
    scale = float(sample.pow(2).sum(-1).mean().rsqrt()) if cfg.normalize_inputs else 1.0
    sae.fold_input_scale_(1.0 / scale)  # into training units (a no-op for a fresh SAE's zero biases)
    fresh = not sae.b_dec.any()  # an SAE that has been trained has a nonzero b_dec
    if cfg.init_b_dec and fresh:
        init = geometric_median(sample * scale) if cfg.init_b_dec == "geometric_median" else (sample * scale).mean(0)
        sae.init_b_dec_(init)
    if cfg.init_encoder_scale and fresh:
        sae.init_encoder_scale_(sample * scale)
    batches = itertools.chain(head, batches)

    opt = _optimizer(sae, cfg, device)
    autocast, scaler = _autocast(cfg, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    window = (cfg.resample_window or (cfg.resample_every or 2) // 2)
    last_resample, tokens, history, t0 = -(10**9), 0, [], time.perf_counter()
    bar = tqdm(range(cfg.steps), disable=not progress, desc=f"{type(sae).__name__}", mininterval=1.0)
    for step in bar:
        x = next(batches, None)
        if x is None:
            break
        x = x.to(device, non_blocking=True).float()
        if scale != 1.0:
            x = x * scale
        lr_mult = lr_multiplier(step, cfg.steps, cfg.warmup_steps, cfg.decay_start)
        if step - last_resample < cfg.warmup_steps:  # re-warm after resampling (dictionary_learning)
            lr_mult *= (step - last_resample + 1) / cfg.warmup_steps
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_mult
        sae.sparsity_scale = min(1.0, (step + 1) / cfg.sparsity_warmup_steps) if cfg.sparsity_warmup_steps else 1.0

        with autocast:
            if cfg.fast_kernels:
                x_hat, losses, firing = fast.train_output(sae, x)
            else:
                out = sae.output(x, encode_fn=encode_fn, loss_fn=loss_fn)
                x_hat, losses, firing = out.x_hat, out.losses, sae.firing(out.acts)
            loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        sae.before_optimizer_step_()
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.max_grad_norm)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        sae.after_optimizer_step_(firing)
        tokens += x.shape[0]

        if (cfg.resample_every and step > 0 and step % cfg.resample_every == 0
                and step < cfg.resample_until * cfg.steps):
            dead = sae.dead_mask(window * x.shape[0])
            if dead.any():
                pool = [x]
                while sum(p.shape[0] for p in pool) < cfg.resample_inputs:
                    b = next(batches, None)
                    if b is None:
                        break
                    pool.append(b.to(device).float() * scale)
                resample_fn(sae, torch.cat(pool), dead, optimizer=opt, enc_scale=cfg.resample_enc_scale,
                            generator=gen)
                last_resample = step

        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            history.append(_log(step, tokens, opt, sae, x, x_hat, losses, firing, loss, cfg, t0))
            bar.set_postfix(loss=f"{history[-1]['loss']:.4g}", l0=f"{history[-1]['l0']:.1f}",
                            ev=f"{history[-1]['explained_variance']:.3f}", refresh=False)

    sae.fold_input_scale_(scale)  # back to raw units
    sae.sparsity_scale = 1.0
    return TrainResult(sae.eval(), history)


def _check_plugins(sae: SAE, cfg: TrainConfig, resample_fn, aux_loss_fn, encode_fn, loss_fn) -> LossFn | None:
    """Refuse plug-ins that would be silently ignored; returns the loss function to train with."""
    given = {name: fn for name, fn in (("resample_fn", resample_fn), ("aux_loss_fn", aux_loss_fn),
                                       ("encode_fn", encode_fn), ("loss_fn", loss_fn)) if fn is not None}
    for name, fn in given.items():
        if not callable(fn):
            raise TypeError(f"{name} must be a function, got {type(fn).__name__}")
    if resample_fn is not None and not cfg.resample_every:
        raise ValueError("resample_fn is only called when resampling is on: set TrainConfig(resample_every=...)")
    kernels = {k: v for k, v in given.items() if k != "resample_fn"}
    if cfg.fast_kernels and kernels:
        raise ValueError(f"TrainConfig(fast_kernels=True) runs the library's own kernels, which would bypass "
                         f"{', '.join(kernels)}: train with fast_kernels=False to use your functions")
    if aux_loss_fn is None:
        return loss_fn
    if loss_fn is not None:
        raise ValueError("pass aux_loss_fn or loss_fn, not both: a loss_fn computes every term itself")
    if not hasattr(sae, "aux_terms"):
        raise ValueError(f"aux_loss_fn replaces the AuxK loss of TopK and BatchTopK SAEs; "
                         f"{type(sae).__name__} has none (its losses: loss_fn)")
    return partial(type(sae).loss_terms, aux_loss_fn=aux_loss_fn)


@torch.no_grad()
def _log(step, tokens, opt, sae, x, x_hat, losses, firing, loss, cfg, t0) -> dict:
    losses = {name: float(v) for name, v in losses.items()}
    return {
        "step": step,
        "tokens": tokens,
        "lr": opt.param_groups[0]["lr"],
        "sparsity_scale": sae.sparsity_scale,
        "loss": float(loss),
        "recon_loss": losses.get("recon", 0.0),
        "sparsity_loss": losses.get("sparsity", 0.0),
        "aux_loss": losses.get("aux", 0.0),
        "l0": float(firing.l0),
        "explained_variance": float(metrics.explained_variance(x, x_hat.float())),
        "dead_fraction": float(sae.dead_mask(cfg.dead_window_tokens).float().mean()),
        "time": time.perf_counter() - t0,
    }
