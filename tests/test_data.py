"""utils.data: the labelled corpus, its splits, tokens with labels, dialogue pairs (concept scoring: test_concepts.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from utils import data
from utils.data import corpus, dialogues, realtext, registers
from utils.data.doc import CONCEPTS, DocBuilder, number_spans, strip_markup

SCALE = 0.01  # about 10k characters per split: enough for every register


@pytest.fixture(scope="module")
def tokenizer():
    """A small byte-level BPE trained here, so these tests never need the shipped assets."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus.corpus_texts("train", scale=SCALE),
                            trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                show_progress=False))
    return tok


def test_splits_are_deterministic_and_seeded():
    a = [d.text for d in corpus.load_docs("heldout", 0, SCALE)]
    assert a == [d.text for d in corpus.load_docs.__wrapped__("heldout", 0, SCALE)]
    assert a != [d.text for d in corpus.load_docs("heldout", 1, SCALE)]
    registers_seen = {d.register for d in corpus.load_docs("heldout", 0, SCALE)}
    assert registers_seen == {"code", "docs", "past_narration", "present_narration", "science", "dialogue"}


def test_real_text_is_read_from_this_python_and_split_by_name():
    sources = {s: {d.meta["source"].split("#")[0] for d in corpus.load_docs(s, 0, SCALE)
                   if d.register in ("code", "docs")} for s in realtext.SPLITS}
    assert not (sources["train"] & sources["heldout"]) and not (sources["train"] & sources["validation"])
    doc = next(d for d in corpus.load_docs("heldout", 0, SCALE) if d.register == "code")
    rel, i = doc.meta["source"].removeprefix("stdlib/").split("#")
    text = (realtext.stdlib_dir() / rel).read_text(encoding="utf-8")
    assert doc.text in text  # the real file, read at run time
    from pydoc_data.topics import topics

    doc = next(d for d in corpus.load_docs("heldout", 0, SCALE) if d.register == "docs")
    assert doc.text in topics[doc.meta["source"].removeprefix("pydoc/").split("#")[0]]


def test_keyword_spans_skip_strings_and_comments():
    src = 'def f(x):\n    # return in a comment\n    return "if" if x else None\n'
    words = [src[s:e] for s, e, _ in realtext.keyword_spans(src)]
    assert words == ["def", "return", "if", "else", "None"]


def test_markup_labels_verbs_and_numbers():
    b = DocBuilder("t").add("In 1987 she [[d:walked]] home and [[p:sings]].", "science")
    doc = b.build()
    assert doc.text == "In 1987 she walked home and sings."
    got = {(doc.text[s:e], c) for s, e, c in doc.spans}
    assert ("walked", "past_tense_verb") in got and ("sings", "present_tense_verb") in got
    assert (doc.text, "science") in got
    text = "utf8 x = 42 + 3.14 at 0x1F"
    assert [text[s:e] for s, e, _ in number_spans(text)] == ["42", "3.14"]
    assert strip_markup("a [[p:is]] b") == "a is b"


@pytest.mark.parametrize("tense", ["past", "present"])
def test_narration_verbs_are_in_the_right_tense(tense):
    past = {p for _, p, _ in registers.VERBS}
    present = {p for p, _, _ in registers.VERBS}
    for i in range(20):
        doc = registers.narration(random.Random(i), tense)
        verbs = [doc.text[s:e] for s, e, c in doc.spans if c.endswith("tense_verb")]
        assert verbs and set(verbs) <= (past if tense == "past" else present)
        assert {c for *_, c in doc.spans} <= {f"{tense}_tense_verb", "number"}


def test_token_labels_follow_characters_not_whitespace(tokenizer):
    doc = DocBuilder("t").add("Then she").add(" [[d:walked]]").add(" home.").build()
    enc = tokenizer.encode(doc.text)
    labels = corpus.token_labels(doc, enc.offsets)
    k = CONCEPTS.index("past_tense_verb")
    labelled = [tokenizer.decode([t]) for t, lab in zip(enc.ids, labels[:, k]) if lab]
    assert "".join(labelled).strip() == "walked"


def test_labelled_tokens_shapes_bos_and_rates(tokenizer):
    lt = corpus.load_labelled_tokens("heldout", seq_len=64, tokenizer=tokenizer, scale=SCALE)
    assert lt.tokens.shape == lt.labels.shape[:2] and lt.labels.shape[2] == len(CONCEPTS)
    assert lt.concepts == CONCEPTS
    bos = tokenizer.token_to_id("<|endoftext|>")
    assert (lt.tokens[:, 0] == bos).all() and not lt.labels[:, 0].any()
    rates = lt.labels[:, 1:].mean((0, 1))
    assert (rates > 0).all(), dict(zip(CONCEPTS, rates))  # every concept occurs
    assert lt.label("code").shape == lt.tokens.shape
    # mutually exclusive registers
    for a, b in [("code", "science"), ("sycophantic_reply", "honest_reply"), ("docs", "code")]:
        assert not (lt.label(a) & lt.label(b)).any()


def test_dialogue_pairs_match_the_corpus_and_cues_drive_caving():
    pairs = corpus.load_dialogue_pairs("heldout", scale=SCALE)
    docs = [d for d in corpus.load_docs("heldout", 0, SCALE) if d.register == "dialogue"]
    assert len(pairs) == len(docs) > 10
    for r, d in zip(pairs, docs):
        assert r["prompt"].endswith("Assistant:")
        cont = r["sycophantic_continuation" if r["sycophantic_in_corpus"] else "honest_continuation"]
        assert d.text == r["prompt"] + cont + "\n"
        assert r["sycophantic_continuation"] != r["honest_continuation"]
        assert r["p_sycophantic"] == dialogues.P_SYCOPHANTIC[len(r["cues"])]
        assert r["claim_id"] in dialogues.claim_ids()
    rng = random.Random(0)
    recs = [dialogues.dialogue(rng)[1] for _ in range(2000)]
    rate = lambda n: np.mean([r["sycophantic_in_corpus"] for r in recs if (len(r["cues"]) >= 2) == n])  # noqa: E731
    assert rate(False) < 0.45 < 0.8 < rate(True)


def test_claim_split_is_disjoint():
    pairs = corpus.load_dialogue_pairs("heldout", scale=SCALE)
    train, test = data.claim_split(pairs, 0.5)
    assert train and test and len(train) + len(test) == len(pairs)
    assert not ({r["claim_id"] for r in train} & {r["claim_id"] for r in test})


def test_load_text_offline(monkeypatch):
    texts = data.load_text("validation", profile="cpu", n_docs=3)
    assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)


@pytest.mark.network_stub
def test_load_text_gpu_reaches_the_hub_with_the_right_arguments(monkeypatch):
    import datasets

    from utils import models

    calls = []
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=1.5: True)
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda *a, **k: calls.append((a, k)) or {"text": [f"doc {i}" for i in range(100)]})
    assert data.load_text("heldout", profile="gpu") == [f"doc {i}" for i in range(90, 100)]
    assert calls == [((data.GPU_TEXT,), {"split": "train"})]


def test_load_text_gpu_offline_names_the_alternative(monkeypatch):
    from utils.models import CourseOfflineError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CourseOfflineError, match="COURSE_PROFILE=cpu"):
        data.load_text("train", profile="gpu")
