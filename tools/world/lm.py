"""Stage 2: the tiny language model — a fast training twin of TransformerLens' model, its trainer.

The LM is trained as `TinyLM` (fused attention, about twice as fast as through the hooks) and
shipped as a `HookedSAETransformer` with the same weights; the course loads it with
`utils.models.load_model`. Training resumes from the build cache's last checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from utils.data import corpus
from utils.train import lr_multiplier

from .cache import Cache, fingerprint
from .config import BuildConfig, lm_config


def lm_batch(tokens: torch.Tensor, step: int, cfg: BuildConfig, bos: int) -> torch.Tensor:
    """Random windows of the training stream, BOS first; a function of (seed, step) only."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    starts = torch.randint(0, len(tokens) - cfg.n_ctx, (cfg.lm_batch,), generator=g)
    rows = tokens[starts[:, None] + torch.arange(cfg.n_ctx - 1)]
    return torch.cat([torch.full((cfg.lm_batch, 1), bos), rows], dim=1)  # [batch, n_ctx]


class TinyLM(torch.nn.Module):
    """The tiny LM for training: TransformerLens' parameters and maths, fused attention.

    Same parameter names and shapes as `HookedTransformer` (standard GPT-2-style blocks, LN,
    exact GELU, learned positions), so its state dict loads into `HookedSAETransformer` as is;
    `F.scaled_dot_product_attention` makes training about twice as fast as through the hooks.
    """

    def __init__(self, c: dict):
        super().__init__()
        P = torch.nn.Parameter
        d, h, dh, m, V = c["d_model"], c["n_heads"], c["d_head"], c["d_mlp"], c["d_vocab"]
        self.c = c
        g = torch.Generator().manual_seed(c["seed"])
        std = 0.8 / math.sqrt(d)  # TransformerLens' default initializer_range

        def w(*shape):
            return P(torch.randn(*shape, generator=g) * std)

        def zeros(*shape):
            return P(torch.zeros(*shape))

        p = {"embed.W_E": w(V, d), "pos_embed.W_pos": w(c["n_ctx"], d)}
        for i in range(c["n_layers"]):
            b = f"blocks.{i}."
            p |= {b + "ln1.w": P(torch.ones(d)), b + "ln1.b": zeros(d), b + "ln2.w": P(torch.ones(d)),
                  b + "ln2.b": zeros(d), b + "attn.W_Q": w(h, d, dh), b + "attn.W_K": w(h, d, dh),
                  b + "attn.W_V": w(h, d, dh), b + "attn.W_O": w(h, dh, d), b + "attn.b_Q": zeros(h, dh),
                  b + "attn.b_K": zeros(h, dh), b + "attn.b_V": zeros(h, dh), b + "attn.b_O": zeros(d),
                  b + "mlp.W_in": w(d, m), b + "mlp.b_in": zeros(m), b + "mlp.W_out": w(m, d),
                  b + "mlp.b_out": zeros(d)}
        p |= {"ln_final.w": P(torch.ones(d)), "ln_final.b": zeros(d), "unembed.W_U": w(d, V),
              "unembed.b_U": zeros(V)}
        self.names = list(p)
        self.params = torch.nn.ParameterDict({k.replace(".", "__"): v for k, v in p.items()})

    def tl_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under TransformerLens' names."""
        return {k: self.params[k.replace(".", "__")].detach().clone() for k in self.names}

    def _ln(self, x, name):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], self.params[name + "__w"], self.params[name + "__b"], 1e-5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        F = torch.nn.functional
        P = self.params
        B, T = tokens.shape
        x = P["embed__W_E"][tokens] + P["pos_embed__W_pos"][:T]  # [B T d]
        for i in range(self.c["n_layers"]):
            b = f"blocks__{i}__"
            y = self._ln(x, b + "ln1")
            q, k, v = (torch.einsum("btd,hde->bhte", y, P[b + f"attn__W_{n}"]) + P[b + f"attn__b_{n}"][:, None]
                       for n in "QKV")  # [B h T dh]
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + torch.einsum("bhte,hed->btd", z, P[b + "attn__W_O"]) + P[b + "attn__b_O"]
            y = self._ln(x, b + "ln2")
            x = x + F.gelu(y @ P[b + "mlp__W_in"] + P[b + "mlp__b_in"]) @ P[b + "mlp__W_out"] + P[b + "mlp__b_out"]
        return self._ln(x, "ln_final") @ P["unembed__W_U"] + P["unembed__b_U"]  # [B T V]

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = self(tokens)[:, :-1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def to_hooked(state: dict[str, torch.Tensor], cfg: BuildConfig, tokenizer):
    """A `HookedSAETransformer` carrying the trained weights."""
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    model = HookedSAETransformer(HookedTransformerConfig(**lm_config(cfg), device="cpu"), tokenizer=tokenizer)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith((".mask", ".IGNORE")) for k in missing), (missing, unexpected)
    return model.eval()


def lr_at(step: int, cfg: BuildConfig) -> float:
    """The SAE trainer's schedule (`utils.train.lr_multiplier`): warm-up, flat, linear decay to 0."""
    return cfg.lm_lr * lr_multiplier(step, cfg.lm_steps, cfg.lm_warmup, cfg.lm_decay_start)


def train_lm(cfg: BuildConfig, tokenizer, stream: corpus.TokenStream, cache: Cache):
    """Train the tiny LM with AdamW, resuming from the cache's checkpoint; (HookedSAETransformer, history)."""
    model = TinyLM(lm_config(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lm_lr, betas=(0.9, 0.95), weight_decay=0.1)
    key = {"config": lm_config(cfg), "lm_steps": cfg.lm_steps, "lm_batch": cfg.lm_batch, "lm_lr": cfg.lm_lr,
           "lm_warmup": cfg.lm_warmup, "lm_decay_start": cfg.lm_decay_start,
           "data": fingerprint(stream.tokens)}  # same tokenizer and corpus
    step, history = 0, []
    if (state := cache.get("lm", key)) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, history = state["step"], state["history"]
    tokens = torch.from_numpy(stream.tokens.astype(np.int64))
    bar = tqdm(total=cfg.lm_steps, initial=step, desc="tiny LM", unit="step", mininterval=2.0)
    model.train()
    while step < cfg.lm_steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model.loss(lm_batch(tokens, step, cfg, tokenizer.bos_token_id))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        history.append({"step": step, "loss": loss.item(), "lr": lr_at(step - 1, cfg)})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if step % cfg.checkpoint_every == 0 or step == cfg.lm_steps:
            cache.put("lm", key, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                                  "history": history})
    bar.close()
    return to_hooked(model.tl_state_dict(), cfg, tokenizer), history


def save_lm(model, cfg: BuildConfig, out: Path) -> None:
    from safetensors.torch import save_file

    (out / "model").mkdir(parents=True, exist_ok=True)
    (out / "model" / "config.json").write_text(json.dumps(lm_config(cfg), indent=1))
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not k.endswith((".IGNORE", ".mask"))}  # attention masks are rebuilt from the config
    save_file(state, str(out / "model" / "model.safetensors"))
    (out / "model" / "model.safetensors").chmod(0o644)  # safetensors writes 0600; graders run as another user


def shipped_lm(cfg: BuildConfig, out: Path):
    """(model, its manifest entry) of the LM already built into `out`, for `--stage saes`.

    Refuses when that LM was built with other settings than `cfg`: the SAEs must match it.
    """
    from utils.models import load_model

    if not (out / "manifest.json").exists() or not (out / "model" / "model.safetensors").exists():
        raise SystemExit(f"--stage saes needs an LM already built into {out}: run the full build first")
    lm = json.loads((out / "manifest.json").read_text()).get("lm", {})
    if lm.get("config") != json.loads(json.dumps(lm_config(cfg))):
        raise SystemExit(f"the LM in {out} was built with other settings than this build's: "
                         "run the full build (without --stage saes)")
    return load_model("cpu", root=out), lm
