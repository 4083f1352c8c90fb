"""The course's text: a labelled offline corpus, and a public text set on the `gpu` profile.

    from utils.data import load_text, load_labelled_tokens, load_dialogue_pairs, CONCEPTS
    texts = load_text("train")                          # list[str], chosen by profile
    lt = load_labelled_tokens("heldout", seq_len=128)   # tokens [n, 128], labels [n, 128, n_concepts]
    rows = load_token_rows("train", 128, n_seq=256)     # BOS-first token rows, by profile
    pairs = load_dialogue_pairs("heldout")              # prompt + sycophantic / honest continuation

The offline corpus mixes real text read from this Python's standard library (source files and
the pydoc topics; never copied into the repository) with generated narration, science and
dialogues whose concepts are labelled per token. See `utils.data.doc.CONCEPTS` for the labels.

Splits. Documents: "train" (what the tokenizer, the LM and the SAEs learn from), "validation"
and "heldout". Dialogue pairs (`load_dialogue_pairs`): the dialogues of each of those, plus
"heldout_wording" — one pair for each "heldout" pair, about the same claim, but with every move
(cues, claim, pushback, agreement, apology, correction, closers) written in a paraphrase family
that no corpus document uses (`utils.data.wordings`). Chapter 07 splits pairs again by claim
(`claim_split`): "heldout" tests new claims, "heldout_wording" new wordings of the same claims
(training claims: wording alone; held-out claims: both).
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from utils.data.concepts import (concept_latent_table, concept_precision_recall, linear_probe_auroc,
                                 precision_at_recall)
from utils.data.corpus import (
    LabelledTokens,
    claim_split,
    corpus_texts,
    load_dialogue_pairs,
    load_docs,
    load_labelled_tokens,
)
from utils.data.doc import CONCEPTS, Doc
from utils.data.realtext import SPLITS
from utils.runtime import get_profile

# The gpu profile's text: the first 10k documents of the Pile, as ARENA's SAE chapters use.
GPU_TEXT = "NeelNanda/pile-10k"
_GPU_SPLIT = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "heldout": (0.9, 1.0)}


def load_text(split: str = "train", profile: str | None = None, *, n_docs: int | None = None) -> list[str]:
    """Documents of a split as plain strings: the Pile (10k docs) on `gpu`, the course corpus otherwise."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if get_profile(profile) == "gpu":
        texts = list(_gpu_dataset()["text"])
        lo, hi = _GPU_SPLIT[split]
        texts = texts[int(lo * len(texts)): int(hi * len(texts))]
    else:
        texts = corpus_texts(split)
    return texts[:n_docs] if n_docs is not None else texts


def _gpu_dataset():
    import datasets

    from utils.models import from_hub

    return from_hub(f"the text set {GPU_TEXT}", datasets.load_dataset, GPU_TEXT, split="train")


def load_token_rows(split: str, seq_len: int, n_seq: int, profile: str | None = None, *,
                    tokenizer=None) -> Int[Tensor, "n_seq seq_len"]:
    """Up to `n_seq` rows of `seq_len` token ids, each BOS first, with no padding.

    Offline, the course corpus's windows (`load_labelled_tokens`). On `gpu`, the Pile's documents
    tokenised with `tokenizer` and packed end to end, separated by the end-of-text token, in rows
    of BOS + `seq_len − 1` tokens (SAELens' `prepend_bos` convention): truncating each document
    instead would right-pad the short ones, and the pad positions would be trained on.
    """
    if get_profile(profile) != "gpu":
        return torch.as_tensor(load_labelled_tokens(split, seq_len, n_seq=n_seq, tokenizer=tokenizer).tokens)
    if tokenizer is None:
        raise ValueError("on the gpu profile pass the model's tokenizer: "
                         "load_token_rows(..., tokenizer=model.tokenizer)")
    bos = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    body, stream = seq_len - 1, []
    texts = load_text(split, profile)
    for i in range(0, len(texts), 64):  # tokenise only as many documents as the rows need
        for ids in tokenizer(texts[i: i + 64], add_special_tokens=False)["input_ids"]:
            stream += ids + [eos]
        if len(stream) >= n_seq * body:
            break
    n = min(n_seq, len(stream) // body)
    rows = torch.tensor(stream[: n * body], dtype=torch.long).reshape(n, body)
    return torch.cat([torch.full((n, 1), bos, dtype=torch.long), rows], dim=1)


def load_hf_dataset(split: str = "train", profile: str | None = None, *, tokenized: bool = False,
                    seq_len: int = 128, n_docs: int | None = None):
    """A `datasets.Dataset` for SAELens' runner (`override_dataset`): a "text" column, or with
    `tokenized=True` (offline only) a "tokens" column of BOS-first rows of `seq_len` tokens."""
    import datasets

    if tokenized:
        if get_profile(profile) == "gpu":
            raise ValueError("tokenized=True is for the offline corpus; on gpu let SAELens tokenize the text")
        lt = load_labelled_tokens(split, seq_len)
        rows = lt.tokens if n_docs is None else lt.tokens[:n_docs]
        return datasets.Dataset.from_dict({"tokens": rows.tolist()})
    return datasets.Dataset.from_dict({"text": load_text(split, profile, n_docs=n_docs)})


__all__ = [
    "CONCEPTS", "SPLITS", "Doc", "LabelledTokens", "GPU_TEXT",
    "load_text", "load_token_rows", "load_hf_dataset", "load_docs", "corpus_texts", "load_labelled_tokens",
    "load_dialogue_pairs", "claim_split",
    "concept_precision_recall", "precision_at_recall", "concept_latent_table", "linear_probe_auroc",
]
