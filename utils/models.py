"""Loaders for the model, its SAEs and its tokenizer, chosen by runtime profile.

| profile      | model                          | SAEs                                         | tokenizer      |
|--------------|--------------------------------|----------------------------------------------|----------------|
| `gpu`        | GPT-2 small (hub)              | `gpt2-small-res-jb` (ReLU), OpenAI v5 32k (TopK) | GPT-2's (hub) |
| `cpu`/`fast` | the course's tiny LM (shipped) | one per variant, shipped in SAELens' format  | shipped BPE    |

Nothing downloads at import time. A hub request on a machine without network raises
:class:`CourseOfflineError`, which names the offline alternative, instead of a hub stack trace.
"""

from __future__ import annotations

import json
import os
import socket
from functools import lru_cache
from pathlib import Path

import torch

from utils.runtime import get_profile

ASSETS = Path(__file__).resolve().parent / "assets"
VARIANTS = ("relu", "gated", "jumprelu", "topk")
HUB_HOST = ("huggingface.co", 443)

# GPU profile: (release, sae_id) per variant, at (or equivalent to) GPT-2 small's layer-8 input.
GPU_MODEL = "gpt2-small"
GPU_HOOK = "blocks.8.hook_resid_pre"
GPU_SAES = {
    "relu": ("gpt2-small-res-jb", "blocks.8.hook_resid_pre"),
    "topk": ("gpt2-small-resid-post-v5-32k", "blocks.7.hook_resid_post"),  # = resid_pre of block 8
}


class CourseOfflineError(RuntimeError):
    """A hub resource was asked for without network; the message names the offline alternative."""


def hub_reachable(timeout: float = 1.5) -> bool:
    """False when HF_HUB_OFFLINE is set or the hub's host cannot be reached within `timeout`."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _offline(what: str) -> CourseOfflineError:
    return CourseOfflineError(
        f"no network: cannot download {what} from the Hugging Face hub. Set COURSE_PROFILE=cpu "
        "(or run without a GPU) to use the course's shipped tiny model, SAEs and corpus, which "
        "need no network."
    )


def from_hub(what: str, fn, *args, **kwargs):
    """Call a hub-downloading `fn(*args, **kwargs)`; a missing network becomes a CourseOfflineError
    naming `what` (e.g. "the GPT-2 tokenizer") and the offline alternative."""
    if not hub_reachable():
        raise _offline(what)
    try:
        return fn(*args, **kwargs)
    except (OSError, ConnectionError, TimeoutError) as e:  # hub errors derive from OSError
        if "offline" in str(e).lower() or "connect" in str(e).lower() or "resolve" in str(e).lower():
            raise _offline(what) from e
        raise


# --- shipped assets ------------------------------------------------------------------------------
def assets_dir() -> Path:
    """Where the shipped assets live (`COURSE_ASSETS` overrides, e.g. for a rebuilt copy)."""
    return Path(os.environ.get("COURSE_ASSETS", ASSETS))


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the shipped assets are not built. "
                                "Run `make assets` (about an hour on a laptop CPU).")
    return path


@lru_cache(maxsize=4)
def manifest(root: str | None = None) -> dict:
    """The shipped assets' manifest: versions, model config, training and metrics."""
    return json.loads(_need(Path(root or assets_dir()) / "manifest.json").read_text())


def load_tokenizer(profile: str | None = None, *, root: str | Path | None = None):
    """The tokenizer: GPT-2's on `gpu`, else the course's byte-level BPE (offline)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if get_profile(profile) == "gpu":
        return from_hub("the GPT-2 tokenizer", AutoTokenizer.from_pretrained, "gpt2")
    return PreTrainedTokenizerFast.from_pretrained(str(_need(Path(root or assets_dir()) / "tokenizer")))


def tiny_lm_config(root: str | Path | None = None):
    """The `HookedTransformerConfig` of the shipped tiny LM."""
    from transformer_lens import HookedTransformerConfig

    cfg = json.loads(_need(Path(root or assets_dir()) / "model" / "config.json").read_text())
    return HookedTransformerConfig(**cfg)


def load_model(profile: str | None = None, *, device: str | torch.device | None = None,
               root: str | Path | None = None):
    """A `sae_lens.HookedSAETransformer`: GPT-2 small on `gpu`, the course's tiny LM otherwise."""
    from sae_lens import HookedSAETransformer
    from safetensors.torch import load_file

    if get_profile(profile) == "gpu":
        return from_hub("GPT-2 small", HookedSAETransformer.from_pretrained, GPU_MODEL,
                         device=str(device or "cuda"))
    root = Path(root or assets_dir())
    cfg = tiny_lm_config(root)
    cfg.device = str(device or "cpu")
    model = HookedSAETransformer(cfg, tokenizer=load_tokenizer("cpu", root=root))
    model.load_state_dict(load_file(_need(root / "model" / "model.safetensors")), strict=False)
    model.to(cfg.device).eval()
    return model


def hook_name(profile: str | None = None) -> str:
    """The hook the profile's SAEs read: GPT-2 small's `blocks.8.hook_resid_pre` on `gpu`, the
    shipped SAEs' site (recorded in the manifest) otherwise."""
    return GPU_HOOK if get_profile(profile) == "gpu" else manifest()["hook_name"]


def sae_dir(variant: str, root: str | Path | None = None) -> Path:
    """The folder of a shipped SAE (SAELens' on-disk format: cfg.json, sae_weights.safetensors)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return _need(Path(root or assets_dir()) / "saes" / variant)


def load_sae(variant: str = "topk", profile: str | None = None, *,
             device: str | torch.device | None = None, root: str | Path | None = None):
    """A SAELens `SAE`: pretrained GPT-2 small SAEs on `gpu`, the shipped ones otherwise."""
    from sae_lens import SAE

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if get_profile(profile) == "gpu":
        if variant not in GPU_SAES:
            raise ValueError(
                f"SAELens has no pretrained GPT-2 small {variant} SAE; use one of "
                f"{sorted(GPU_SAES)} on the gpu profile, or load_sae({variant!r}, profile='cpu') "
                "for the course's shipped one."
            )
        release, sae_id = GPU_SAES[variant]
        return from_hub(f"the SAE {release}/{sae_id}", SAE.from_pretrained, release=release,
                         sae_id=sae_id, device=str(device or "cuda"))
    return SAE.load_from_disk(str(sae_dir(variant, root)), device=str(device or "cpu"))


def sae_metrics(variant: str, root: str | Path | None = None) -> dict:
    """The metrics recorded with a shipped SAE at build time (L0, EV, ΔCE, recovery, dead)."""
    return manifest(str(root) if root else None)["saes"][variant]["metrics"]
