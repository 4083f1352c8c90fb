"""The build: corpus → tokenizer → LM → SAEs → evaluation, into one directory with its manifest."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from utils.data.doc import CONCEPTS
from utils.models import VARIANTS

from . import capstone, evaluate, lm, saes, tokenizer
from .cache import Cache
from .config import BuildConfig, lm_config

STAGES = ("corpus", "lm", "eval", "saes", "all")
DATASET = "untangling-features corpus (utils.data), train split"


def build(out: Path, cfg: BuildConfig, *, stage: str = "all", cache_dir: Path | None = None) -> dict:
    """Build every asset into `out` and return the manifest (also written to out/manifest.json).

    `stage` stops after that stage ("saes" instead retrains only the SAEs on the LM already in
    `out`). Products are cached in `cache_dir` (default: next to `out`), so a rebuild redoes only
    what changed and an interrupted LM training resumes.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(cache_dir or out.parent / f".{out.name}-cache")
    torch.manual_seed(cfg.seed)

    tok = tokenizer.train_tokenizer(cfg, out)
    stream = tokenizer.train_stream(cfg, tok)
    val, held = tokenizer.eval_tokens(cfg, tok, "validation"), tokenizer.eval_tokens(cfg, tok, "heldout")
    man = {"versions": _versions(), "build_config": asdict(cfg), "concepts": list(CONCEPTS),
           "hook_name": cfg.hook_name, "corpus": evaluate.corpus_figures(stream, held)}
    if stage == "corpus":
        return man

    timings = {}
    t = time.time()
    if stage == "saes":  # retrain only the SAEs, on the LM already in `out`
        model, man["lm"] = lm.shipped_lm(cfg, out)
    else:
        model, history = lm.train_lm(cfg, tok, stream, cache)
        lm.save_lm(model, cfg, out)
        man["lm"] = {"config": lm_config(cfg), "train_tokens_seen": cfg.lm_steps * cfg.lm_batch * cfg.n_ctx,
                     "loss_history": [h for h in history if h["step"] % 10 == 0 or h["step"] == len(history)]}
    timings["lm"] = time.time() - t
    if stage == "lm":
        return man

    val_x, held_x = (evaluate.residuals(model, lt.tokens, cfg.hook_name) for lt in (val, held))
    if stage != "saes":
        man["lm"] |= evaluate.evaluate_lm(model, cfg, stream, val, held, val_x, held_x, cache)
    if stage == "eval":
        return man

    t = time.time()
    acts = saes.train_activations(model, cfg, stream, cache)
    man["saes"] = {}
    for variant in VARIANTS:
        result = saes.trained_sae(variant, acts, cfg, cache)
        ev = evaluate.evaluated_sae(variant, result.sae, model, cfg, val_x, val, held_x, held, cache)
        saes.save_sae(result.sae, cfg, out / "saes" / variant, ev["metrics"], dataset=DATASET)
        man["saes"][variant] = {"settings": cfg.sae_settings[variant], "d_sae": result.sae.cfg.d_sae,
                                "train_seconds": result.history[-1]["time"] if result.history else None,
                                **ev, "history": result.history[-1:]}
    timings["saes"] = time.time() - t

    t = time.time()
    from utils.models import load_sae

    shipped = load_sae(cfg.capstone_variant, profile="cpu", root=out)  # as chapter 07 loads it
    man["capstone"] = capstone.evaluated_capstone(model, shipped, cfg, cache)
    timings["capstone"] = time.time() - t
    man["build_seconds"] = time.time() - t0
    man["stage_seconds"] = timings  # with the cache warm, the time to check and reuse each stage
    man["sizes"] = _sizes(out)
    man["total_bytes"] = sum(man["sizes"].values())
    (out / "manifest.json").write_text(json.dumps(man, indent=1, default=float))
    return man


def _sizes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"python": platform.python_version(), "torch": torch.__version__,
            **{name.replace("-", "_"): version(name)
               for name in ("sae-lens", "transformer-lens", "transformers", "tokenizers")}}


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
        s[v]["concepts_recovered"] = r["concepts_recovered"]
    if "capstone" in man:
        c = man["capstone"]
        s["capstone"] = {split: {"top_latent_auroc": round(f["top_latent_auroc"], 3),
                                 "ablation_top": round(f["ablation"]["effect_top"], 3),
                                 "ablation_random": f"{f['ablation']['random_mean']:+.3f} ± "
                                                    f"{f['ablation']['random_std']:.3f}",
                                 "n_random_as_far": f["ablation"]["n_random_as_far"]}
                         for split, f in [("heldout_claims", c["heldout_claims"]),
                                          *((f"heldout_wording/{k}", v) for k, v in c["heldout_wording"].items())]}
    if "total_bytes" in man:
        s["total_mb"] = man["total_bytes"] / 2**20
    return s
