"""Build the offline world into `utils/assets/`: tokenizer, tiny LM, one SAE per variant, metrics.

    python -m utils.build_assets                 # the shipped assets (about an hour on 2 cores)
    python -m utils.build_assets --mini OUTDIR   # a miniature end-to-end build in seconds (tests)
    python -m utils.build_assets --stage lm      # stop after a stage (corpus, lm, eval)
    python -m utils.build_assets --stage saes    # retrain only the SAEs, on the LM already built

Every stage is deterministic from `BuildConfig.seed`. The LM's checkpoint is saved every few
steps under `utils/assets/_build/` (git-ignored), so an interrupted build resumes where it stopped;
the cached activations (keyed by the LM's weights) and each trained SAE (keyed by its settings and
those activations) are kept there too, so a rebuild only retrains what changed. Nothing under
`_build/` is needed at run time.
"""

from __future__ import annotations

import os

# On a shared, oversubscribed CPU, OpenMP threads that spin while waiting for each other make
# every step ~10x slower (measured here: 12 s vs 1 s per LM step); passive waiting avoids it.
# Effective only if set before torch is first imported (as under `python -m utils.build_assets`).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import hashlib
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from utils.data import corpus
from utils.data.doc import CONCEPTS
from utils.models import ASSETS, VARIANTS


@dataclass(kw_only=True)
class BuildConfig:
    seed: int = 0                     # every random draw of the build starts here
    scale: float = 1.0                # corpus size relative to corpus.SPLIT_CHARS
    vocab_size: int = 4096            # BPE vocabulary, special token included
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 128                  # training sequence length (BOS + 127 tokens)
    lm_batch: int = 32                # sequences per step
    lm_steps: int = 500
    lm_lr: float = 3e-3
    lm_warmup: int = 30
    checkpoint_every: int = 25
    sae_layer: int = 2                # the SAEs read blocks.{sae_layer}.hook_resid_pre
    d_sae: int = 2048
    sae_tokens: int = 600_000         # activations cached from the train split for SAE training
    sae_steps: int = 1500
    sae_batch: int = 2048
    sae_lr: float = 2e-3
    sae_resample_every: int = 200     # Anthropic resampling for the L1/L0-penalised variants
    eval_seqs: int = 512              # sequences of each evaluation split used for metrics
    # Per variant: its own settings, plus optional "d_sae", "steps", "batch", "lr" overriding the
    # fields above. Coefficients are in the trainer's units: inputs scaled to E‖x‖² = 1, so the
    # reconstruction loss is at most ~0.9 here and λ is per active unit (L1) or per latent (L0).
    sae_settings: dict = field(default_factory=lambda: {
        "relu": {"l1_coeff": 0.12, "steps": 4000},
        "gated": {"l1_coeff": 0.2, "d_sae": 2048, "steps": 1500},
        "jumprelu": {"l0_coeff": 0.003, "d_sae": 1024, "steps": 1000},
        "topk": {"k": 32, "d_sae": 4096, "steps": 4000},
    })

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.sae_layer}.hook_resid_pre"


def mini_config() -> BuildConfig:
    """Small enough to build end to end in seconds, with the same code path."""
    return BuildConfig(scale=0.004, vocab_size=400, n_layers=2, d_model=32, n_heads=2, d_mlp=64,
                       n_ctx=64, lm_batch=8, lm_steps=6, lm_warmup=2, checkpoint_every=3,
                       sae_layer=1, d_sae=64, sae_tokens=4096, sae_steps=8, sae_batch=256,
                       sae_resample_every=4, eval_seqs=16,
                       sae_settings={v: {k: x for k, x in s.items() if k not in TRAIN_KEYS}
                                     for v, s in BuildConfig().sae_settings.items()})


# --- corpus and tokenizer ---------------------------------------------------------------------
def train_tokenizer(cfg: BuildConfig, out: Path):
    """Byte-level BPE on the training split, saved with `save_pretrained` (offline-loadable)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus.corpus_texts("train", cfg.seed, cfg.scale), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", model_max_length=cfg.n_ctx)
    fast.save_pretrained(str(out / "tokenizer"))
    # reloaded from disk: TransformerLens re-opens a tokenizer by its `name_or_path`
    return PreTrainedTokenizerFast.from_pretrained(str(out / "tokenizer"))


def train_stream(cfg: BuildConfig, tokenizer) -> corpus.TokenStream:
    return corpus.encode_docs(corpus.load_docs("train", cfg.seed, cfg.scale), tokenizer)


def eval_tokens(cfg: BuildConfig, tokenizer, split: str) -> corpus.LabelledTokens:
    stream = corpus.encode_docs(corpus.load_docs(split, cfg.seed, cfg.scale), tokenizer)
    lt = corpus.pack(stream, cfg.n_ctx, tokenizer.bos_token_id)
    return corpus.LabelledTokens(lt.tokens[: cfg.eval_seqs], lt.labels[: cfg.eval_seqs], lt.concepts)


# --- the language model ----------------------------------------------------------------------
def lm_config(cfg: BuildConfig) -> dict:
    """The HookedTransformerConfig fields of the tiny LM (stored as model/config.json)."""
    return dict(n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
                d_head=cfg.d_model // cfg.n_heads, d_mlp=cfg.d_mlp, d_vocab=cfg.vocab_size,
                n_ctx=cfg.n_ctx, act_fn="gelu", normalization_type="LN",
                positional_embedding_type="standard", default_prepend_bos=True,
                model_name="untangling-features-tiny-lm", seed=cfg.seed)


def lr_at(step: int, cfg: BuildConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < cfg.lm_warmup:
        return cfg.lm_lr * (step + 1) / cfg.lm_warmup
    t = (step - cfg.lm_warmup) / max(1, cfg.lm_steps - cfg.lm_warmup)
    return cfg.lm_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


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

        self.params = torch.nn.ParameterDict()
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
        for k, v in p.items():
            self.params[k.replace(".", "__")] = v

    def tl_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: self.params[k.replace(".", "__")].detach().clone() for k in self.names}

    def _ln(self, x, name):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], self.params[name + "__w"], self.params[name + "__b"], 1e-5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        F = torch.nn.functional
        P = self.params
        B, T = tokens.shape
        h, dh = self.c["n_heads"], self.c["d_head"]
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


def train_lm(cfg: BuildConfig, tokenizer, stream: corpus.TokenStream, build: Path):
    """Train the tiny LM with AdamW, resuming from `build/lm.pt`; returns a HookedSAETransformer."""
    model = TinyLM(lm_config(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lm_lr, betas=(0.9, 0.95), weight_decay=0.1)
    ckpt, step, history = build / "lm.pt", 0, []
    key = {"config": lm_config(cfg), "lm_steps": cfg.lm_steps, "lm_batch": cfg.lm_batch, "lm_lr": cfg.lm_lr,
           "data": hashlib.sha256(stream.tokens.tobytes()).hexdigest()}  # same tokenizer and corpus
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["key"] == key:
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
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "history": history, "key": key}, tmp)
            tmp.replace(ckpt)
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


# --- evaluation of the LM ----------------------------------------------------------------------
def bigram_loss(train: np.ndarray, tokens: np.ndarray, vocab: int, alpha: float = 0.1) -> float:
    """Cross-entropy (nats) of an add-`alpha` bigram model of `train` on the next tokens of `tokens`."""
    counts = np.zeros((vocab, vocab), np.float64)
    np.add.at(counts, (train[:-1], train[1:]), 1)
    logp = np.log(counts + alpha) - np.log(counts.sum(1, keepdims=True) + alpha * vocab)
    return float(-logp[tokens[:, :-1], tokens[:, 1:]].mean())


@torch.no_grad()
def lm_loss(model, tokens: np.ndarray, batch: int = 32) -> float:
    t = torch.from_numpy(tokens)
    return float(torch.cat([model(b, return_type="loss", loss_per_token=True).flatten()
                            for b in t.split(batch)]).mean())


@torch.no_grad()
def residuals(model, tokens: np.ndarray, hook_name: str, batch: int = 32) -> torch.Tensor:
    """[n_seq, seq, d_model] activations at `hook_name`."""
    from utils.train import model_activations

    t = torch.from_numpy(tokens)
    return torch.cat([model_activations(model, hook_name, b).reshape(*b.shape, -1) for b in t.split(batch)])


def probe_scores(train_x, train_lt, test_x, test_lt) -> tuple[dict[str, float], dict[str, float]]:
    """Per concept, a linear probe's AUROC and its precision at recall >= 0.5 (BOS excluded).

    The second is the concept bar's measure applied to the best supervised direction: where even
    the probe cannot reach precision 0.8 at recall 0.5, no single SAE latent at this site should be
    expected to either.
    """
    from utils.data.concepts import linear_probe_auroc, precision_at_recall

    xs, xt = train_x[:, 1:].reshape(-1, train_x.shape[-1]), test_x[:, 1:].reshape(-1, test_x.shape[-1])
    ys, yt = train_lt.labels[:, 1:].reshape(-1, len(CONCEPTS)), test_lt.labels[:, 1:].reshape(-1, len(CONCEPTS))
    aurocs, precisions = {}, {}
    for i, c in enumerate(CONCEPTS):
        aurocs[c], w = linear_probe_auroc(xs, ys[:, i], xt, yt[:, i])
        # sigmoid: positive scores in the probe's order (precision_at_recall cuts only at scores > 0)
        precisions[c] = precision_at_recall(torch.sigmoid(xt.float() @ w), torch.from_numpy(yt[:, i]), 0.5)[0]
    return aurocs, precisions


@torch.no_grad()
def sycophancy_behaviour(model, split: str = "heldout", n: int = 300) -> dict:
    """Mean log p(sycophantic) − log p(honest) continuation, by number of pressure cues."""
    pairs = corpus.load_dialogue_pairs(split)[:n]
    by_cues: dict[int, list[float]] = {}
    for r in pairs:
        diff = [_continuation_logprob(model, r["prompt"], r[f"{kind}_continuation"])
                for kind in ("sycophantic", "honest")]
        if None not in diff:
            by_cues.setdefault(len(r["cues"]), []).append(diff[0] - diff[1])
    return {str(k): {"n": len(v), "mean_logprob_diff": float(np.mean(v))} for k, v in sorted(by_cues.items())}


def _continuation_logprob(model, prompt: str, continuation: str) -> float | None:
    p = model.to_tokens(prompt)  # BOS + prompt
    c = model.to_tokens(continuation, prepend_bos=False)
    t = torch.cat([p, c], dim=1)
    if t.shape[1] > model.cfg.n_ctx:
        return None
    logp = model(t).log_softmax(-1)[0, p.shape[1] - 1: -1]
    return float(logp.gather(-1, c[0][:, None]).sum())


def evaluate_lm(model, cfg: BuildConfig, stream, val, held, val_x, held_x, build: Path) -> dict:
    """The LM's figures (losses, probes, sycophancy), cached in `build/` under the model and its data."""
    key = {"model": model_digest(model), "val": hashlib.sha256(val.tokens.tobytes()).hexdigest(),
           "held": hashlib.sha256(held.tokens.tobytes() + held.labels.tobytes()).hexdigest(),
           "train": hashlib.sha256(stream.tokens.tobytes()).hexdigest(), "eval_seqs": cfg.eval_seqs,
           "figures": 2}  # bump when the figures computed below change
    path = build / f"lm_eval_{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if cached["key"] == key:
            return cached["result"]
    aurocs, precisions = probe_scores(val_x, val, held_x, held)
    result = {
        "val_loss": lm_loss(model, val.tokens),
        "bigram_val_loss": bigram_loss(stream.tokens, val.tokens, cfg.vocab_size),
        "probe_auroc": aurocs,
        "probe_precision_at_recall_0.5": precisions,
        "sycophancy_logprob_diff_by_cues": sycophancy_behaviour(model, n=cfg.eval_seqs // 2),
    }
    path.write_text(json.dumps({"key": key, "result": result}, indent=1))
    return result


# --- SAEs ------------------------------------------------------------------------------------
def cache_train_activations(model, cfg: BuildConfig, stream: corpus.TokenStream, build: Path) -> torch.Tensor:
    """Activations at the SAE site for `sae_tokens` tokens of BOS-first training windows."""
    from utils.train import model_activations

    path = build / f"acts_{cfg.hook_name}_{cfg.sae_tokens}_{model_digest(model)[:12]}.pt"  # stale if the LM changes
    if path.exists():
        return torch.load(path)
    tokens = torch.from_numpy(stream.tokens.astype(np.int64))
    n_batches = math.ceil(cfg.sae_tokens / (cfg.lm_batch * cfg.n_ctx))
    out = [model_activations(model, cfg.hook_name, lm_batch(tokens, 10**7 + i, cfg, model.tokenizer.bos_token_id))
           for i in tqdm(range(n_batches), desc="caching activations", mininterval=2.0)]
    acts = torch.cat(out)[: cfg.sae_tokens]
    torch.save(acts, path)
    return acts


TRAIN_KEYS = ("d_sae", "steps", "batch", "lr")  # per-variant overrides of d_sae, sae_steps, sae_batch, sae_lr


def sae_plan(variant: str, cfg: BuildConfig) -> tuple[dict, dict]:
    """(the SAE's own settings, its training sizes): `sae_settings[variant]` may override the sizes."""
    settings = dict(cfg.sae_settings[variant])
    train = {"d_sae": cfg.d_sae, "steps": cfg.sae_steps, "batch": cfg.sae_batch, "lr": cfg.sae_lr}
    train |= {k: settings.pop(k) for k in TRAIN_KEYS if k in settings}
    return settings, train


def model_digest(model) -> str:
    """sha256 of a model's weights (names, shapes, values): keys the caches derived from it."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if not name.endswith((".IGNORE", ".mask")):
            h.update(name.encode())
            h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def sae_key(variant: str, acts: torch.Tensor, cfg: BuildConfig) -> dict:
    """Everything an SAE's training depends on (the activations by digest)."""
    settings, train = sae_plan(variant, cfg)
    return {"variant": variant, "settings": settings, **train,
            "resample_every": cfg.sae_resample_every, "seed": cfg.seed, "hook_name": cfg.hook_name,
            "acts": hashlib.sha256(acts.contiguous().numpy().tobytes()).hexdigest()}


def trained_sae(variant: str, acts: torch.Tensor, cfg: BuildConfig, build: Path):
    """`train_one_sae`, cached in `build/` under its key: a rebuild with the same settings reuses it."""
    from utils.train import TrainResult

    key = sae_key(variant, acts, cfg)
    path = build / f"sae_{variant}_{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}.pt"
    if path.exists():
        state = torch.load(path, weights_only=False)
        if state["key"] == key:
            sae = new_sae(variant, acts.shape[-1], cfg)
            sae.load_state_dict(state["sae"])
            return TrainResult(sae.eval(), state["history"])
    result = train_one_sae(variant, acts, cfg)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "sae": result.sae.state_dict(), "history": result.history}, tmp)
    tmp.replace(path)
    return result


def new_sae(variant: str, d_in: int, cfg: BuildConfig):
    """The untrained SAE of `variant` as the build makes it (same config whether trained or loaded from cache)."""
    from utils.saes import build_sae

    settings, train = sae_plan(variant, cfg)
    return build_sae(variant, d_in=d_in, d_sae=train["d_sae"], init_seed=cfg.seed, hook_name=cfg.hook_name,
                     model_name="untangling-features-tiny-lm", **settings)


def train_one_sae(variant: str, acts: torch.Tensor, cfg: BuildConfig):
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


def evaluate_sae(sae, model, cfg: BuildConfig, heldout_x: torch.Tensor, heldout: corpus.LabelledTokens) -> dict:
    """Reconstruction on held-out tokens (BOS excluded), downstream loss, concept table."""
    from utils import metrics
    from utils.data.concepts import concept_latent_table

    x = heldout_x[:, 1:].reshape(-1, heldout_x.shape[-1])
    rec = metrics.evaluate(sae, x)
    n_seq = min(len(heldout.tokens), cfg.eval_seqs // 2)
    ds = metrics.downstream_loss(model, sae, torch.from_numpy(heldout.tokens[:n_seq]), cfg.hook_name)
    with torch.no_grad():
        acts = torch.cat([sae.encode(b) for b in x.split(8192)])
    table = concept_latent_table(acts, torch.from_numpy(heldout.labels[:, 1:].reshape(-1, len(CONCEPTS))), CONCEPTS)
    return {"metrics": {**rec, **{k: v for k, v in ds._asdict().items()}}, "concepts": table}


def evaluated_sae(variant: str, sae, model, cfg: BuildConfig, acts, held_x, held, build: Path) -> dict:
    """`evaluate_sae`, cached in `build/` under the SAE's key, the model and the held-out tokens."""
    key = {"sae": sae_key(variant, acts, cfg), "model": model_digest(model), "eval_seqs": cfg.eval_seqs,
           "held": hashlib.sha256(held.tokens.tobytes() + held.labels.tobytes()).hexdigest()}
    path = build / f"eval_{variant}_{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if cached["key"] == key:
            return cached["result"]
    result = evaluate_sae(sae, model, cfg, held_x, held)
    path.write_text(json.dumps({"key": key, "result": result}, indent=1, default=float))
    return result


# --- the build ----------------------------------------------------------------------------------
def _sizes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*"))
            if p.is_file() and "_build" not in p.parts}


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"python": platform.python_version(), "torch": torch.__version__,
            **{name.replace("-", "_"): version(name)
               for name in ("sae-lens", "transformer-lens", "transformers", "tokenizers")}}


def build(out: Path, cfg: BuildConfig, *, stage: str = "all", build_dir: Path | None = None,
          progress: bool = True) -> dict:
    """Build every asset into `out` and return the manifest (also written to out/manifest.json)."""
    from utils.interop import save_saelens

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    build_dir = build_dir or out / "_build"
    build_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    tokenizer = train_tokenizer(cfg, out)
    stream = train_stream(cfg, tokenizer)
    val, held = eval_tokens(cfg, tokenizer, "validation"), eval_tokens(cfg, tokenizer, "heldout")
    man = {"versions": _versions(), "build_config": asdict(cfg), "concepts": list(CONCEPTS),
           "hook_name": cfg.hook_name, "corpus": {
               "train_tokens": int(len(stream.tokens)),
               "concept_rate_train": {c: float(stream.labels[:, i].mean()) for i, c in enumerate(CONCEPTS)},
               "concept_rate_heldout": {c: float(held.labels[:, 1:, i].mean()) for i, c in enumerate(CONCEPTS)}}}
    if stage == "corpus":
        return man

    if stage == "saes":  # retrain only the SAEs, on the LM already in `out`
        model, man["lm"] = shipped_lm(cfg, out)
    else:
        model, history = train_lm(cfg, tokenizer, stream, build_dir)
        save_lm(model, cfg, out)
        man["lm"] = {"config": lm_config(cfg), "train_tokens_seen": cfg.lm_steps * cfg.lm_batch * cfg.n_ctx,
                     "loss_history": [h for h in history if h["step"] % 10 == 0 or h["step"] == len(history)]}
    if stage == "lm":
        return man

    val_x, held_x = residuals(model, val.tokens, cfg.hook_name), residuals(model, held.tokens, cfg.hook_name)
    if stage != "saes":
        man["lm"] |= evaluate_lm(model, cfg, stream, val, held, val_x, held_x, build_dir)
    if stage == "eval":
        return man

    acts = cache_train_activations(model, cfg, stream, build_dir)
    man["saes"] = {}
    for variant in VARIANTS:
        t = time.time()
        result = trained_sae(variant, acts, cfg, build_dir)
        ev = evaluated_sae(variant, result.sae, model, cfg, acts, held_x, held, build_dir)
        path = save_saelens(result.sae, out / "saes" / variant, hook_name=cfg.hook_name,
                            model_name="untangling-features-tiny-lm")
        _add_metrics_to_cfg(path, ev["metrics"])
        man["saes"][variant] = {"settings": cfg.sae_settings[variant], "d_sae": result.sae.cfg.d_sae,
                                "train_seconds": result.history[-1]["time"] if result.history else None,
                                "stage_seconds": time.time() - t, **ev,
                                "history": result.history[-1:]}
    man["build_seconds"] = time.time() - t0
    man["sizes"] = _sizes(out)
    man["total_bytes"] = sum(man["sizes"].values())
    (out / "manifest.json").write_text(json.dumps(man, indent=1, default=float))
    return man


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


def _add_metrics_to_cfg(path: Path, metrics: dict) -> None:
    """Record the SAE's evaluation in its SAELens cfg.json (under metadata, which SAELens keeps)."""
    cfg_path = path / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("metadata", {})["course_metrics"] = {k: (list(v) if isinstance(v, tuple) else v)
                                                        for k, v in metrics.items()}
    cfg_path.write_text(json.dumps(cfg, indent=1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mini", metavar="OUTDIR", help="build a miniature world into OUTDIR (seconds)")
    ap.add_argument("--out", default=str(ASSETS), help="where to build (default: utils/assets)")
    ap.add_argument("--stage", default="all", choices=["corpus", "lm", "eval", "saes", "all"],
                    help="stop after this stage; `saes` retrains only the SAEs on the LM already built")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    out, cfg = (Path(args.mini), mini_config()) if args.mini else (Path(args.out), BuildConfig())
    man = build(out, cfg, stage=args.stage)
    print(json.dumps(summary(man), indent=1, default=float))


def summary(man: dict) -> dict:
    """The headline figures of a manifest."""
    s = {"python": man["versions"]["python"]}
    if "val_loss" in man.get("lm", {}):
        s["lm"] = {k: man["lm"][k] for k in ("val_loss", "bigram_val_loss", "probe_auroc",
                                             "probe_precision_at_recall_0.5") if k in man["lm"]}
    for v, r in man.get("saes", {}).items():
        m = r["metrics"]
        s[v] = {k: round(m[k], 4) for k in ("l0", "explained_variance", "delta_ce", "frac_recovered_mean",
                                             "frac_recovered_zero", "dead_fraction")}
    if "total_bytes" in man:
        s["total_mb"] = man["total_bytes"] / 2**20
    return s


if __name__ == "__main__":
    main()
