"""The course corpus: splits of documents, tokens with per-token concept labels, dialogue pairs.

A split is a deterministic function of (seed, split, Python version): real text chosen by a hash
of its name, generated documents each drawn from their own `random.Random(f"{seed}-{split}-...")`,
then shuffled. Nothing here is stored in the repository; it is regenerated in seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import dialogues, registers
from .doc import CONCEPTS, Doc
from .realtext import SPLITS, code_docs, pydoc_docs

SEED = 0
# Characters per split at scale 1 (about 3.6 characters per token with the shipped tokenizer).
SPLIT_CHARS = {"train": 9_000_000, "validation": 500_000, "heldout": 1_000_000}
# Share of each register in a split, by characters. `docs` takes what pydoc has (less than asked).
MIXTURE = {"code": 0.25, "docs": 0.07, "past_narration": 0.14, "present_narration": 0.14,
           "science": 0.14, "dialogue": 0.26}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _generated(split: str, register: str, budget: int, seed: int) -> list[Doc]:
    make = {"past_narration": lambda r: registers.narration(r, "past"),
            "present_narration": lambda r: registers.narration(r, "present"),
            "science": registers.science,
            "dialogue": _dialogue_doc}[register]
    docs, n, i = [], 0, 0
    while n < budget:
        doc = make(random.Random(f"{seed}-{split}-{register}-{i}"))
        doc.meta["source"] = f"{register}#{i}"
        docs.append(doc)
        n += len(doc.text)
        i += 1
    return docs


def _dialogue_doc(rng: random.Random) -> Doc:
    doc, record = dialogues.dialogue(rng)
    doc.meta["pair"] = record
    return doc


def _real(docs: list[Doc], budget: int, rng: random.Random) -> list[Doc]:
    docs = list(docs)
    rng.shuffle(docs)
    out, n = [], 0
    for d in docs:
        if n >= budget:
            break
        out.append(d)
        n += len(d.text)
    return out


@lru_cache(maxsize=8)
def load_docs(split: str = "train", seed: int = SEED, scale: float = 1.0) -> tuple[Doc, ...]:
    """The documents of a split, shuffled; `scale` shrinks every register (e.g. 0.01 for tests)."""
    _check_split(split)
    total = int(SPLIT_CHARS[split] * scale)
    rng = random.Random(f"{seed}-{split}-real")
    docs = code_docs(split, int(total * MIXTURE["code"]), rng)
    docs += _real(pydoc_docs(split), int(total * MIXTURE["docs"]), rng)
    for register in ("past_narration", "present_narration", "science", "dialogue"):
        docs += _generated(split, register, int(total * MIXTURE[register]), seed)
    random.Random(f"{seed}-{split}-order").shuffle(docs)
    return tuple(docs)


def corpus_texts(split: str = "train", seed: int = SEED, scale: float = 1.0) -> list[str]:
    """The plain text of each document of a split of the course corpus."""
    return [d.text for d in load_docs(split, seed, scale)]


# --- tokens and labels ----------------------------------------------------------------------
_SPACE = np.array([ord(c) for c in " \t\n\r\x0b\x0c"], dtype=np.uint32)


def char_labels(doc: Doc) -> np.ndarray:
    """[n_chars, n_concepts] bool: which concepts cover each (non-whitespace) character."""
    n = len(doc.text)
    diff = np.zeros((n + 1, len(CONCEPTS)), dtype=np.int32)
    index = {c: i for i, c in enumerate(CONCEPTS)}
    for s, e, c in doc.spans:
        diff[s, index[c]] += 1
        diff[e, index[c]] -= 1
    covered = np.cumsum(diff, axis=0)[:n] > 0
    chars = np.frombuffer(doc.text.encode("utf-32-le"), dtype=np.uint32)
    return covered & ~np.isin(chars, _SPACE)[:, None]


def token_labels(doc: Doc, offsets: list[tuple[int, int]]) -> np.ndarray:
    """[n_tokens, n_concepts] bool: a token has a concept if any of its characters has it."""
    chars = char_labels(doc)
    cum = np.concatenate([np.zeros((1, len(CONCEPTS)), np.int64), np.cumsum(chars, axis=0)])
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2).clip(0, len(doc.text))
    return (cum[off[:, 1]] - cum[off[:, 0]]) > 0


@dataclass
class TokenStream:
    """A split as one stream of token ids, documents separated by the end-of-text token."""

    tokens: np.ndarray  # [n_tokens] int32
    labels: np.ndarray  # [n_tokens, n_concepts] bool
    doc_index: np.ndarray  # [n_tokens] int32, which document each token came from (-1: separator)


def encode_docs(docs, tokenizer) -> TokenStream:
    """Tokenise documents (a `PreTrainedTokenizerFast` or a `tokenizers.Tokenizer`) with labels."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    eos = backend.token_to_id("<|endoftext|>")
    encodings = backend.encode_batch([d.text for d in docs], add_special_tokens=False)
    toks, labs, idx = [], [], []
    for i, (doc, enc) in enumerate(zip(docs, encodings)):
        toks += [np.asarray(enc.ids, np.int32), np.array([eos], np.int32)]
        labs += [token_labels(doc, enc.offsets), np.zeros((1, len(CONCEPTS)), bool)]
        idx += [np.full(len(enc.ids), i, np.int32), np.array([-1], np.int32)]
    return TokenStream(np.concatenate(toks), np.concatenate(labs), np.concatenate(idx))


@dataclass
class LabelledTokens:
    """Fixed-length sequences of a split, each starting with BOS, with per-token concept labels."""

    tokens: np.ndarray  # [n_seq, seq_len] int64; tokens[:, 0] is BOS
    labels: np.ndarray  # [n_seq, seq_len, n_concepts] bool; all False at BOS
    concepts: tuple[str, ...]  # names of the labels' last axis

    def label(self, concept: str) -> np.ndarray:
        """[n_seq, seq_len] bool for one concept."""
        return self.labels[..., self.concepts.index(concept)]


def pack(stream: TokenStream, seq_len: int, bos: int) -> LabelledTokens:
    """Cut the stream into rows of `seq_len - 1` tokens and put BOS in front of each."""
    body = seq_len - 1
    n = len(stream.tokens) // body
    tokens = np.full((n, seq_len), bos, dtype=np.int64)
    tokens[:, 1:] = stream.tokens[: n * body].reshape(n, body)
    labels = np.zeros((n, seq_len, len(CONCEPTS)), dtype=bool)
    labels[:, 1:] = stream.labels[: n * body].reshape(n, body, -1)
    return LabelledTokens(tokens, labels, CONCEPTS)


_STREAMS: dict[tuple, tuple[object, TokenStream]] = {}


def _stream(split: str, seed: int, scale: float, backend) -> TokenStream:
    """Tokenised split, cached per tokenizer object (kept alive so its id is not reused)."""
    key = (split, seed, scale, id(backend))
    if key not in _STREAMS:
        if len(_STREAMS) >= 4:
            _STREAMS.pop(next(iter(_STREAMS)))
        _STREAMS[key] = (backend, encode_docs(load_docs(split, seed, scale), backend))
    return _STREAMS[key][1]


def load_labelled_tokens(split: str = "heldout", seq_len: int = 128, *, n_seq: int | None = None,
                         tokenizer=None, seed: int = SEED, scale: float = 1.0) -> LabelledTokens:
    """Token ids [n_seq, seq_len] and labels [n_seq, seq_len, n_concepts] of a corpus split.

    Uses the shipped tokenizer unless one is given. `n_seq` keeps the first rows only.
    """
    _check_split(split)
    if tokenizer is None:
        from utils.models import load_tokenizer

        tokenizer = load_tokenizer(profile="cpu")
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    stream = _stream(split, seed, scale, backend)
    out = pack(stream, seq_len, backend.token_to_id("<|endoftext|>"))
    if n_seq is not None:
        out = LabelledTokens(out.tokens[:n_seq], out.labels[:n_seq], out.concepts)
    return out


# --- dialogue pairs -------------------------------------------------------------------------
# Pair splits: the dialogues of each corpus split (written in the corpus's wording), and the
# held-out-wording pairs, written in a paraphrase family no corpus document uses.
HELDOUT_WORDING = "heldout_wording"
PAIR_SPLITS = (*SPLITS, HELDOUT_WORDING)


def load_dialogue_pairs(split: str = "heldout", seed: int = SEED, scale: float = 1.0) -> list[dict]:
    """Every dialogue of a split as a pair: one prompt, its sycophantic and honest continuation.

    Splits (chapter 07 splits each again by claim with :func:`claim_split`):

    - ``"train"``, ``"validation"``, ``"heldout"``: the dialogues of that corpus split, in the
      corpus's wording (the LM trains on the first; chapter 07 works on the last);
    - ``"heldout_wording"``: one pair for each pair of ``"heldout"``, about the same claim (so
      :func:`claim_split` cuts both the same way), but with its own cues and every move written in
      the held-out paraphrase family (`utils.data.wordings.HELDOUT`): no phrase of theirs occurs
      in any corpus document, so neither the tokenizer, the LM nor the SAEs trained on it.

    Each record: ``claim_id`` (split by this), ``kind`` ("claim", "pushback" or "opinion"),
    ``wording`` ("train" or "heldout": the paraphrase family), ``cues`` (pressure cues in the
    prompt), ``p_sycophantic`` (the generator's probability of caving), ``prompt`` (ends with
    "Assistant:"), ``sycophantic_continuation`` and ``honest_continuation`` (each starts with a
    space), and ``sycophantic_in_corpus`` (which of the two the generator wrote into the
    document; held-out-wording documents are never part of the corpus).
    """
    if split not in PAIR_SPLITS:
        raise ValueError(f"split must be one of {PAIR_SPLITS}, got {split!r}")
    records = [dict(d.meta["pair"]) for d in load_docs(split if split in SPLITS else "heldout", seed, scale)
               if "pair" in d.meta]
    if split == HELDOUT_WORDING:  # one pair per held-out pair, about the same claim, in the held-out wording
        records = [dialogues.dialogue(random.Random(f"{seed}-{split}-{i}"), "heldout", r["claim_id"])[1]
                   for i, r in enumerate(records)]
    return records


def claim_split(records: list[dict], test_fraction: float = 0.5, seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """Split pair records by claim, so no claim appears on both sides: (train, test).

    Which claims are held out depends only on the set of claims in `records` and the seed, so
    two splits about the same claims ("heldout" and "heldout_wording") are cut the same way.
    """
    claims = sorted({r["claim_id"] for r in records})
    random.Random(f"claims-{seed}").shuffle(claims)
    test = set(claims[: round(len(claims) * test_fraction)])
    return [r for r in records if r["claim_id"] not in test], [r for r in records if r["claim_id"] in test]
