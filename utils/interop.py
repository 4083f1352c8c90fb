"""SAELens interop: the course's SAEs in SAELens' on-disk format (cfg.json + sae_weights.safetensors), both ways.

    save_saelens(sae, "assets/saes/topk", hook_name="blocks.1.hook_resid_post")
    lens_sae = sae_lens.SAE.load_from_disk("assets/saes/topk")      # works in HookedSAETransformer.saes(...)
    sae = load_saelens("assets/saes/topk")                          # back to the course's class

| course           | SAELens 6.54 architecture | notes                                                    |
|------------------|---------------------------|----------------------------------------------------------|
| relu, seed_relu  | standard                  | the seed's Linear weights transposed, b_dec = 0           |
| gated            | gated                     | same parameters (W_enc, b_gate, r_mag, b_mag)             |
| jumprelu         | jumprelu                  | θ stored directly, as SAELens since #718                  |
| topk             | topk                      | rescale_acts_by_decoder_norm = False (rows are unit norm) |
| batchtopk        | jumprelu                  | inference form: one θ for every latent (as SAELens saves) |
| seed_gated       | —                         | a sigmoid gate has no SAELens equivalent                  |

The course's variant and config travel in `cfg.metadata` ("course_variant", "course_cfg"), so
a saved course SAE loads back into its own class exactly; other SAELens SAEs load by
architecture.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import torch
from torch import Tensor

from utils.saes import (
    SAE,
    SAE_CLASSES,
    BatchTopKSAE,
    GatedSAE,
    JumpReLUSAE,
    ReLUSAE,
    SeedGatedSAE,
    SeedSparseAutoencoder,
    TopKSAE,
    build_sae,
    variant_name,
)

# course class -> (SAELens architecture, parameters in SAELens' names)
_EXPORT = {
    ReLUSAE: ("standard", lambda s: {"W_enc": s.W_enc, "b_enc": s.b_enc, "W_dec": s.W_dec, "b_dec": s.b_dec}),
    SeedSparseAutoencoder: ("standard", lambda s: {"W_enc": s.W_enc, "b_enc": s.b_enc, "W_dec": s.W_dec,
                                                   "b_dec": s.b_dec}),
    GatedSAE: ("gated", lambda s: {"W_enc": s.W_enc, "b_gate": s.b_gate, "r_mag": s.r_mag, "b_mag": s.b_mag,
                                   "W_dec": s.W_dec, "b_dec": s.b_dec}),
    JumpReLUSAE: ("jumprelu", lambda s: {"W_enc": s.W_enc, "b_enc": s.b_enc, "W_dec": s.W_dec, "b_dec": s.b_dec,
                                         "threshold": s.threshold}),
    TopKSAE: ("topk", lambda s: {"W_enc": s.W_enc, "b_enc": s.b_enc, "W_dec": s.W_dec, "b_dec": s.b_dec}),
    BatchTopKSAE: ("jumprelu", lambda s: {"W_enc": s.W_enc, "b_enc": s.b_enc, "W_dec": s.W_dec, "b_dec": s.b_dec,
                                          "threshold": s.threshold.float().expand(s.cfg.d_sae)}),
}
# SAELens architecture -> course variant, for SAEs that did not come from the course
_IMPORT = {"standard": "relu", "gated": "gated", "jumprelu": "jumprelu", "topk": "topk"}


# What SAELens' own runner records about the data an SAE was trained on (`LanguageModelSAERunner.
# _set_sae_metadata` in sae_lens 6.54), with the runner's defaults. `ActivationsStore.from_sae` needs
# `context_size` and `prepend_bos` from it; the rest says how to reproduce the training data.
RUNNER_METADATA = {
    "model_class_name": "HookedTransformer",
    "hook_head_index": None,
    "context_size": None,          # tokens per training sequence (required by from_sae)
    "prepend_bos": True,           # whether each sequence starts with BOS (required by from_sae)
    "dataset_path": "",            # where the training text came from
    "seqpos_slice": (None,),
    "model_from_pretrained_kwargs": {},
    "exclude_special_tokens": False,
    "sequence_separator_token": "bos",
    "disable_concat_sequences": False,
}


def to_saelens(sae: SAE, *, hook_name: str | None = None, model_name: str | None = None, **metadata):
    """A `sae_lens` inference SAE with the same weights and the same outputs (in eval mode).

    `metadata` adds to what lands in `cfg.metadata`: the runner's fields (:data:`RUNNER_METADATA`,
    e.g. ``context_size=128``) and anything else JSON-able.
    """
    from sae_lens.registry import get_sae_class
    from sae_lens.saes.sae import SAEMetadata

    if type(sae) not in _EXPORT:
        raise ValueError(f"{type(sae).__name__} has no SAELens equivalent"
                         + (" (its sigmoid gate is not a SAELens architecture)" if isinstance(sae, SeedGatedSAE) else ""))
    arch, params = _EXPORT[type(sae)]
    lens_cls, lens_cfg_cls = get_sae_class(arch)
    extra = {"k": sae.cfg.k, "rescale_acts_by_decoder_norm": False} if arch == "topk" else {}
    meta = SAEMetadata(
        hook_name=hook_name or sae.cfg.hook_name, model_name=model_name or sae.cfg.model_name,
        course_variant=variant_name(sae), course_cfg=asdict(sae.cfg), **metadata,
    )
    lens = lens_cls(lens_cfg_cls(d_in=sae.cfg.d_in, d_sae=sae.cfg.d_sae, dtype="float32", device="cpu",
                                 apply_b_dec_to_input=True, metadata=meta, **extra))
    state = {name: t.detach().float().cpu().contiguous().clone() for name, t in params(sae).items()}
    lens.load_state_dict(state, strict=True)
    return lens.to(sae.device)


def save_saelens(sae: SAE, path: str | Path, *, hook_name: str | None = None, model_name: str | None = None,
                 context_size: int | None = None, prepend_bos: bool = True, dataset_path: str = "",
                 **metadata) -> Path:
    """Write `sae` in SAELens' format (loadable with `sae_lens.SAE.load_from_disk(path)`).

    The cfg.json carries what SAELens' runner writes about the training data
    (:data:`RUNNER_METADATA`): give `context_size` (the training sequence length) so that
    `ActivationsStore.from_sae(model, sae, dataset)` can stream activations for it. Extra
    keywords go into `cfg.metadata` as well.
    """
    path = Path(path)
    runner = RUNNER_METADATA | {"context_size": context_size, "prepend_bos": prepend_bos,
                                "dataset_path": dataset_path}
    to_saelens(sae, hook_name=hook_name, model_name=model_name, **runner, **metadata).save_model(path)
    for f in path.iterdir():  # safetensors writes 0600: the grading sandbox's user must read them
        f.chmod(0o644)
    return path


def _bias_shift(lens, W: Tensor) -> Tensor:
    """With apply_b_dec_to_input=False, x W + b = (x − b_dec) W + (b + b_dec W)."""
    return torch.zeros(W.shape[1]) if lens.cfg.apply_b_dec_to_input else lens.b_dec.detach() @ W


@torch.no_grad()
def from_saelens(lens) -> SAE:
    """A course SAE equivalent to a `sae_lens` inference SAE (standard, gated, jumprelu or topk)."""
    if lens.cfg.normalize_activations not in (None, "none"):
        raise ValueError(f"normalize_activations={lens.cfg.normalize_activations!r}: fold it into the weights "
                         "first (SAELens' fold_activation_norm_scaling_factor)")
    arch = lens.cfg.architecture()
    meta = lens.cfg.metadata
    variant = meta.get("course_variant") or _IMPORT.get(arch)
    if variant is None or variant not in SAE_CLASSES:
        raise ValueError(f"SAELens architecture {arch!r} has no course equivalent")
    if arch == "topk" and lens.cfg.rescale_acts_by_decoder_norm:
        import copy

        lens = copy.deepcopy(lens)
        lens.fold_W_dec_norm()  # same outputs, unit-norm rows
    cls = SAE_CLASSES[variant]
    names = {f.name for f in fields(cls.config_class)}
    cfg = {k: v for k, v in (meta.get("course_cfg") or {}).items() if k in names}
    cfg.update(d_in=lens.cfg.d_in, d_sae=lens.cfg.d_sae)
    if arch == "topk":
        cfg["k"] = lens.cfg.k
    cfg.setdefault("hook_name", meta.get("hook_name"))
    cfg.setdefault("model_name", meta.get("model_name"))
    sae = build_sae(variant, **cfg)
    W_enc, W_dec = lens.W_enc.detach().float(), lens.W_dec.detach().float()
    if variant == "seed_relu":
        sae.encoder.weight.copy_(W_enc.T)
        sae.encoder.bias.copy_(lens.b_enc + _bias_shift(lens, W_enc))
        sae.decoder.weight.copy_(W_dec.T)
        return sae.eval()
    sae.W_enc.copy_(W_enc)
    sae.W_dec.copy_(W_dec)
    sae.b_dec.copy_(lens.b_dec)
    if arch == "gated":
        sae.b_gate.copy_(lens.b_gate + _bias_shift(lens, W_enc))
        sae.r_mag.copy_(lens.r_mag)
        sae.b_mag.copy_(lens.b_mag + _bias_shift(lens, W_enc * lens.r_mag.exp()))
    else:
        sae.b_enc.copy_(lens.b_enc + _bias_shift(lens, W_enc))
    if variant == "batchtopk":
        sae.threshold.fill_(float(lens.threshold[0]))
    elif arch == "jumprelu":
        sae.threshold.copy_(lens.threshold)
    norms = W_dec.norm(dim=-1)
    sae.cfg.unit_norm_decoder = bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-4))
    return sae.eval()


def load_saelens(path: str | Path, device: str = "cpu") -> SAE:
    """Read an SAE saved in SAELens' format into the course's class for it."""
    from sae_lens import SAE as LensSAE

    return from_saelens(LensSAE.load_from_disk(str(path), device="cpu")).to(device)
