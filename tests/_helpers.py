"""Helpers shared by the test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import nbformat
import pytest
import torch

from conftest import REPO
from utils.checks import CheckFailed

PLANTED_ERROR = "RuntimeError: planted in a read-only cell"


def mine(obj):
    """Answers must live in `__main__` (a notebook): re-home one defined in a test file, with its
    methods (including @torch.no_grad()-wrapped ones and autograd.Function's static methods)."""
    obj.__module__ = "__main__"
    if isinstance(obj, type):
        for v in vars(obj).values():
            fn = v.__func__ if isinstance(v, staticmethod) else v
            if callable(fn) and hasattr(fn, "__module__"):
                fn.__module__ = "__main__"
                if hasattr(fn, "__wrapped__"):
                    fn.__wrapped__.__module__ = "__main__"
    return obj


def fails(check, *args, match: str):
    with pytest.raises(CheckFailed, match=match):
        check(*args)


def tiny_hooked(*, n_ctx: int, k: int, n_seq: int, seq: int, saelens: bool = False):
    """(model, SAE, tokens): a random 2-layer HookedSAETransformer with the shipped tokenizer, a
    random TopK SAE at blocks.1.hook_resid_pre (the course's, or as SAELens' SAE when `saelens`),
    and random tokens after BOS (drawn after the SAE, so they depend on `saelens`)."""
    pytest.importorskip("sae_lens")
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    from utils.saes import build_sae

    try:
        from utils.models import load_tokenizer

        tok = load_tokenizer("cpu")
    except FileNotFoundError:
        pytest.skip("shipped tokenizer not built")
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, d_vocab=len(tok),
                                  n_ctx=n_ctx, act_fn="gelu", normalization_type="LN")
    model = HookedSAETransformer(cfg, tokenizer=tok).eval()
    sae = build_sae("topk", d_in=32, d_sae=64, k=k, init_seed=0, hook_name="blocks.1.hook_resid_pre")
    if saelens:
        from utils.interop import to_saelens

        sae = to_saelens(sae)
    tokens = torch.randint(1, len(tok), (n_seq, seq))
    tokens[:, 0] = tok.bos_token_id
    return model, sae, tokens


def planted_raise(ch: str) -> tuple[nbformat.NotebookNode, int]:
    """Chapter `ch`'s solution with a `raise` planted at the top of the first read-only cell after
    a test cell (where chapter 05's crash hid), cut after that cell to keep a run of it quick.
    Returns the notebook and the planted cell's index."""
    nb = nbformat.read(REPO / "solutions" / ch / f"{ch}.ipynb", as_version=4)
    md = [c.metadata.get("nbgrader", {}) for c in nb.cells]
    first_test = next(i for i, m in enumerate(md) if m.get("grade") and nb.cells[i].cell_type == "code")
    target = next(i for i in range(first_test + 1, len(nb.cells)) if nb.cells[i].cell_type == "code"
                  and md[i].get("locked") and not md[i].get("grade") and not md[i].get("solution"))
    nb.cells = nb.cells[:target + 1]
    nb.cells[target].source = 'raise RuntimeError("planted in a read-only cell")\n' + nb.cells[target].source
    return nb, target
