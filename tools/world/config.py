"""What the world is built from: one frozen config, the miniature one for tests, and per-SAE plans."""

from __future__ import annotations

from dataclasses import dataclass, field

MODEL_NAME = "untangling-features-tiny-lm"
TRAIN_KEYS = ("d_sae", "steps", "batch", "lr")  # per-variant overrides of d_sae, sae_steps, sae_batch, sae_lr


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
    lm_steps: int = 1200
    lm_lr: float = 3e-3
    lm_warmup: int = 50
    lm_decay_start: float = 0.2       # fraction of training after which the LR decays linearly to 0
    checkpoint_every: int = 25
    sae_layer: int = 2                # the SAEs read blocks.{sae_layer}.hook_resid_pre
    d_sae: int = 2048
    sae_tokens: int = 1_200_000       # activations cached from the train split for SAE training
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
        "topk": {"k": 32, "d_sae": 4096, "steps": 5000},
    })
    # The capstone's measurement (chapter 07's pipeline on the SAE it uses, on both held-out splits).
    capstone_variant: str = "topk"
    capstone_top: int = 5             # candidate latents ablated together
    capstone_controls: int = 30       # frequency-matched random latent sets
    capstone_pairs: int | None = None  # pairs per side of each split (None: all)

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.sae_layer}.hook_resid_pre"


def mini_config() -> BuildConfig:
    """Small enough to build end to end in seconds, with the same code path."""
    return BuildConfig(scale=0.004, vocab_size=400, n_layers=2, d_model=32, n_heads=2, d_mlp=64,
                       n_ctx=256, lm_batch=4, lm_steps=6, lm_warmup=2, checkpoint_every=3,
                       sae_layer=1, d_sae=64, sae_tokens=4096, sae_steps=8, sae_batch=256,
                       sae_resample_every=4, eval_seqs=16, capstone_controls=3, capstone_pairs=24,
                       sae_settings={v: {k: x for k, x in s.items() if k not in TRAIN_KEYS}
                                     for v, s in BuildConfig().sae_settings.items()})


def sae_plan(variant: str, cfg: BuildConfig) -> tuple[dict, dict]:
    """(the SAE's own settings, its training sizes): `sae_settings[variant]` may override the sizes."""
    settings = dict(cfg.sae_settings[variant])
    train = {"d_sae": cfg.d_sae, "steps": cfg.sae_steps, "batch": cfg.sae_batch, "lr": cfg.sae_lr}
    train |= {k: settings.pop(k) for k in TRAIN_KEYS if k in settings}
    return settings, train


def lm_config(cfg: BuildConfig) -> dict:
    """The HookedTransformerConfig fields of the tiny LM (stored as model/config.json)."""
    return dict(n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
                d_head=cfg.d_model // cfg.n_heads, d_mlp=cfg.d_mlp, d_vocab=cfg.vocab_size,
                n_ctx=cfg.n_ctx, act_fn="gelu", normalization_type="LN",
                positional_embedding_type="standard", default_prepend_bos=True,
                model_name=MODEL_NAME, seed=cfg.seed)
