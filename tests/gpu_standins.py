"""Stand-ins for the hub, for rehearsing the `gpu` profile on a machine without GPU or network.

`COURSE_HUB_STANDINS=gpu_standins` (with tests/ on the path) makes `utils.models.from_hub`, the
one door to the hub, call :func:`from_hub` here instead. Each stand-in has the real thing's
shapes and configuration, with random weights:

| hub call                                   | stand-in                                                   |
|--------------------------------------------|------------------------------------------------------------|
| `AutoTokenizer.from_pretrained("gpt2")`    | the course's byte-level BPE, re-numbered into GPT-2's 50,257 ids, `<|endoftext|>` = 50256 as BOS/EOS/UNK, no pad token |
| `HookedSAETransformer.from_pretrained("gpt2-small")` | TransformerLens' own GPT-2 small config (built from GPT-2's `config.json`), random weights |
| `SAE.from_pretrained(release, sae_id)`     | a folder in the release's on-disk format (its pre-SAELens-6 `cfg.json`, same d_sae, hook, architecture, normalisation), read by `SAE.load_from_disk`; encoder biases set so that about 32 latents fire per token |
| `datasets.load_dataset("NeelNanda/pile-10k")` | a `Dataset` with a "text" column: documents of the course corpus, short and long |

Everything after these calls is the course's code, as a Colab student runs it.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

SEED = 1234
N_DOCS = 400  # stand-in "Pile" documents (load_text splits them 80/10/10)
# GPT-2's config.json on the hub (the fields TransformerLens reads).
GPT2_CONFIG = {
    "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
    "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
    "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": None,
    "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
    "summary_use_proj": True, "vocab_size": 50257,
}
# The `cfg.json` of each SAE the chapters load (utils.models.GPU_SAES), in the releases' own
# (pre-SAELens-6) format, so that SAELens' config handling runs as it does on the hub's files.
SAE_CONFIGS = {
    ("gpt2-small-res-jb", "blocks.8.hook_resid_pre"): {
        "model_name": "gpt2-small", "hook_point": "blocks.8.hook_resid_pre", "hook_point_layer": 8,
        "hook_point_head_index": None, "dataset_path": "Skylion007/openwebtext", "is_dataset_tokenized": False,
        "context_size": 128, "d_in": 768, "d_sae": 24576, "expansion_factor": 32, "dtype": "float32",
        "device": "cpu", "l1_coefficient": 8e-05, "lr": 0.0004, "train_batch_size": 4096,
        "b_dec_init_method": "geometric_median", "prepend_bos": True, "normalize_activations": False,
    },
    ("gpt2-small-resid-post-v5-32k", "blocks.7.hook_resid_post"): {
        "model_name": "gpt2-small", "hook_point": "blocks.7.hook_resid_post", "hook_point_layer": 7,
        "hook_point_head_index": None, "dataset_path": "Skylion007/openwebtext", "context_size": 64,
        "d_in": 768, "d_sae": 32768, "dtype": "float32", "device": "cpu", "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 32}, "apply_b_dec_to_input": True, "prepend_bos": False,
        "normalize_activations": "layer_norm",
    },
}
TARGET_L0 = 32  # latents firing per token, for the ReLU stand-ins' encoder biases


def cache_dir() -> Path:
    d = Path(os.environ.get("COURSE_STANDIN_CACHE", Path(tempfile.gettempdir()) / "course-gpu-standins"))
    d.mkdir(parents=True, exist_ok=True)
    return d


# --- the tokenizer ---------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def tokenizer():
    """GPT-2's vocabulary size and special tokens around the course's BPE (offline, same pieces)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from utils.models import assets_dir

    spec = json.loads((assets_dir() / "tokenizer" / "tokenizer.json").read_text())
    eot, n_vocab = "<|endoftext|>", GPT2_CONFIG["vocab_size"]
    pieces = [p for p, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1]) if p != eot]
    vocab = {p: i for i, p in enumerate(pieces)}
    vocab.update({f"<|unused{i}|>": i for i in range(len(pieces), n_vocab - 1)})
    vocab[eot] = n_vocab - 1
    spec["model"]["vocab"] = vocab
    spec["added_tokens"] = [{**t, "id": n_vocab - 1} for t in spec["added_tokens"] if t["content"] == eot]
    spec["post_processor"] = None  # GPT-2's tokenizer adds no BOS; TransformerLens prepends it
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), bos_token=eot,
                                  eos_token=eot, unk_token=eot, model_max_length=1024)
    # loaded back from a folder, as from the hub: TransformerLens re-loads it by name_or_path
    d = cache_dir() / "gpt2-tokenizer"
    tok.save_pretrained(str(d))
    tok = PreTrainedTokenizerFast.from_pretrained(str(d))
    assert len(tok) == n_vocab and tok.convert_tokens_to_ids(eot) == n_vocab - 1 and tok.pad_token is None
    return tok


# --- GPT-2 small ---------------------------------------------------------------------------------
def gpt2_config(device: str):
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    d = cache_dir() / "gpt2"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(GPT2_CONFIG))
    cfg = get_pretrained_model_config(str(d), fold_ln=True, device=device)  # as from_pretrained does
    cfg.model_name, cfg.tokenizer_name = "gpt2", "gpt2"
    cfg.init_weights = True  # a pretrained config leaves them uninitialised, for the checkpoint to fill
    return cfg


def gpt2_small(device: str = "cpu"):
    """A HookedSAETransformer with GPT-2 small's config and random (seeded) weights."""
    from sae_lens import HookedSAETransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = HookedSAETransformer(gpt2_config("cpu"), tokenizer=tokenizer())
    model.cfg.device = str(device)
    return model.to(device).eval()


@lru_cache(maxsize=1)
def _cpu_gpt2():
    return gpt2_small("cpu")


# --- SAEs ----------------------------------------------------------------------------------------
def sae_folder(release: str, sae_id: str) -> Path:
    """A folder in the release's on-disk format with random weights of the real shapes."""
    from safetensors.torch import save_file

    cfg = SAE_CONFIGS.get((release, sae_id))
    if cfg is None:
        raise KeyError(f"no stand-in for the SAE {release}/{sae_id}: add its cfg.json to SAE_CONFIGS")
    d = cache_dir() / f"{release}__{sae_id}"
    if (d / "sae_weights.safetensors").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    g = torch.Generator().manual_seed(SEED)
    W_dec = torch.randn(d_sae, d_in, generator=g)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    x = _calibration_acts(cfg["hook_point"])
    if cfg.get("normalize_activations") == "layer_norm":
        x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)
    b_dec = x.mean(0)
    W_enc = W_dec.T.clone()
    pre = (x - b_dec) @ W_enc                                            # [tokens d_sae]
    # each latent fires on about TARGET_L0 / d_sae of the tokens
    b_enc = -pre.quantile(1 - TARGET_L0 / d_sae, dim=0) if cfg.get("activation_fn_str") != "topk" \
        else torch.zeros(d_sae)
    save_file({"W_enc": W_enc.contiguous(), "W_dec": W_dec.contiguous(), "b_enc": b_enc.contiguous(),
               "b_dec": b_dec.contiguous()}, d / "sae_weights.safetensors")
    (d / "cfg.json").write_text(json.dumps(cfg, indent=1))
    return d


def _calibration_acts(hook_name: str, n_tokens: int = 2048) -> torch.Tensor:
    from utils.data.corpus import corpus_texts

    model = _cpu_gpt2()
    text = " ".join(corpus_texts("validation")[:40])
    tokens = model.to_tokens(text)[:, :n_tokens]
    _, cache = model.run_with_cache(tokens, names_filter=hook_name)
    return cache[hook_name][0, 1:].float()


def pretrained_sae(release: str, sae_id: str, device: str = "cpu", **_):
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(sae_folder(release, sae_id)), device="cpu")
    return sae.to(device) if str(device) != "cpu" else sae


# --- the text set --------------------------------------------------------------------------------
def pile_10k(*_, **__):
    """Documents of the course corpus, in the Pile's place (long ones and short ones)."""
    import datasets

    from utils.data.corpus import corpus_texts

    texts = [t for split in ("train", "validation", "heldout") for t in corpus_texts(split)]
    step = max(1, len(texts) // N_DOCS)
    return datasets.Dataset.from_dict({"text": texts[::step][:N_DOCS]})


# --- the door ------------------------------------------------------------------------------------
def from_hub(what: str, fn, *args, **kwargs):
    """Answer one hub request of `utils.models.from_hub` with its stand-in."""
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))
    if name.endswith("AutoTokenizer.from_pretrained"):
        return tokenizer()
    if name.endswith("HookedTransformer.from_pretrained") or name.endswith("HookedSAETransformer.from_pretrained"):
        return gpt2_small(kwargs.get("device") or "cpu")
    if name.endswith("SAE.from_pretrained"):
        return pretrained_sae(**kwargs)
    if name == "load_dataset":
        return pile_10k(*args, **kwargs)
    raise NotImplementedError(f"no stand-in for {what} ({name}); add one to tests/gpu_standins.py")


# --- a GPU that is not there ------------------------------------------------------------------------
class MetaAsCuda:
    """`meta` standing in for CUDA, for device discipline off a GPU (COURSE_REHEARSAL=meta).

    The chapter's model and SAEs live on `meta`: shapes, no data. Any operation that mixes one of
    their tensors with a CPU tensor raises, as on CUDA ("Tensor on device meta is not on the
    expected device cpu!"). So that the code goes on past the numbers it reads, a copy from
    `meta` to the CPU gives made-up values (floats drawn in [0.5, 1.5), integers 0, booleans
    True) and so does `.item()` (1 for integers): the values are meaningless (checks may fail),
    the devices are not. TransformerLens' default device (what a model built without `device=`
    gets: CUDA on Colab) becomes `meta` too.
    """

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        aten = torch.ops.aten
        gen = torch.Generator().manual_seed(SEED)

        def made_up(shape, dtype):
            if dtype == torch.bool:
                return torch.ones(shape, dtype=dtype)
            if dtype.is_floating_point or dtype.is_complex:
                return (torch.rand(shape, generator=gen) + 0.5).to(dtype)
            return torch.zeros(shape, dtype=dtype)

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                src = args[0] if args and isinstance(args[0], torch.Tensor) else None
                if func is aten.copy_.default and src is not None and src.device.type == "cpu" \
                        and isinstance(args[1], torch.Tensor) and args[1].device.type == "meta":
                    return src.copy_(made_up(args[1].shape, args[1].dtype))   # meta -> a CPU buffer
                if src is not None and src.device.type == "meta":
                    if func is aten._local_scalar_dense.default:
                        return True if src.dtype == torch.bool else 1 if not src.dtype.is_floating_point \
                            else 0.5 + float(torch.rand((), generator=gen))
                    if func is aten._to_copy.default and kwargs.get("device") is not None \
                            and torch.device(kwargs["device"]).type == "cpu":
                        return made_up(src.shape, kwargs.get("dtype") or src.dtype)
                try:
                    return func(*args, **kwargs)
                except (RuntimeError, NotImplementedError) as e:  # an op that returns a number (allclose, equal)
                    kind = str(func._schema.returns[0].type) if func._schema.returns else ""
                    if kind not in ("bool", "int", "float") or "device" in str(e):
                        raise
                    return True if kind == "bool" else 1 if kind == "int" else 0.5 + float(torch.rand((), generator=gen))

        self.mode = Mode()

    def __enter__(self):
        from transformer_lens import HookedTransformerConfig

        self.post_init = post_init = HookedTransformerConfig.__post_init__

        def accelerator_by_default(cfg):  # TransformerLens: "cuda if available"
            if cfg.device is None:
                cfg.device = "meta"
            post_init(cfg)

        HookedTransformerConfig.__post_init__ = accelerator_by_default
        self.format = fmt = torch.Tensor.__format__

        def format_meta(t, spec):  # a 0-d tensor on CUDA formats as its number; meta refuses to
            return format(t.item(), spec) if t.is_meta and t.dim() == 0 else fmt(t, spec)

        torch.Tensor.__format__ = format_meta
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        from transformer_lens import HookedTransformerConfig

        self.mode.__exit__(*exc)
        HookedTransformerConfig.__post_init__ = self.post_init
        torch.Tensor.__format__ = self.format


def meta_as_cuda() -> None:
    """Enter :class:`MetaAsCuda` for the rest of this process (an IPython startup file)."""
    MetaAsCuda().__enter__()
