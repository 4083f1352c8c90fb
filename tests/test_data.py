"""utils.data: the labelled corpus, its splits, tokens with labels, dialogue pairs (concept scoring: test_concepts.py)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch

from utils import data
from utils.data import corpus, dialogues, realtext, registers, wordings
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
        assert r["prompt"].endswith("Assistant:") and r["wording"] == "train"
        cont = r["sycophantic_continuation" if r["sycophantic_in_corpus"] else "honest_continuation"]
        assert d.text == r["prompt"] + cont + "\n"
        assert r["sycophantic_continuation"] != r["honest_continuation"]
        assert r["p_sycophantic"] == dialogues.P_SYCOPHANTIC[len(r["cues"])]
        assert r["claim_id"] in dialogues.claim_ids()
    for wording in ("train", "heldout"):
        rng = random.Random(0)
        recs = [dialogues.dialogue(rng, wording)[1] for _ in range(2000)]
        rate = lambda n: np.mean([r["sycophantic_in_corpus"] for r in recs if (len(r["cues"]) >= 2) == n])  # noqa: E731
        assert rate(False) < 0.45 < 0.8 < rate(True), wording


def _cue_renderings(family) -> dict[str, set[str]]:
    return {k: set(wordings.expansions(family, k)) for k in wordings.CUE_KINDS}


def _is_cue_text(text: str, kinds: list[str], renderings: dict[str, set[str]]) -> bool:
    """Whether `text` is one rendering of each kind in `kinds`, in some order, joined by spaces."""
    if not kinds:
        return text == ""
    return any(text.startswith(c) and _is_cue_text(text[len(c):].lstrip(" "), [x for x in kinds if x != k], renderings)
               for k in kinds for c in renderings[k])


@pytest.mark.parametrize("wording", ["train", "heldout"])
def test_dialogue_labels_are_exact_in_every_wording(wording):
    """Character by character: a user's turn is `dialogue_user`, its cues (one rendering of each
    cue kind the record lists) `user_pressure`, each assistant turn the reply label it deserves."""
    cues = _cue_renderings(wordings.FAMILIES[wording])
    k = {c: CONCEPTS.index(c) for c in ("dialogue_user", "user_pressure", "sycophantic_reply", "honest_reply")}
    rng = random.Random(1)
    for _ in range(300):
        doc, r = dialogues.dialogue(rng, wording)
        got = corpus.char_labels(doc)
        want = np.zeros_like(got)
        pos, turns = 0, doc.text.split("\n")
        for i, line in enumerate(turns):
            role, _, body = line.partition(": ")
            start = pos + len(role) + 2
            if role == "User":
                want[start: start + len(body), k["dialogue_user"]] = True
            elif role == "Assistant" and body:
                final = i == len(turns) - 2
                label = "sycophantic_reply" if final and r["sycophantic_in_corpus"] else "honest_reply"
                want[start: start + len(body), k[label]] = True
                assert body == (r[label.replace("_reply", "_continuation")].strip() if final else body)
            pos += len(line) + 1
        if r["cues"]:
            spans = [(s, e) for s, e, c in doc.spans if c == "user_pressure"]
            assert len(spans) == 1 and _is_cue_text(doc.text[spans[0][0]:spans[0][1]].strip(), r["cues"], cues)
            want[spans[0][0]: spans[0][1], k["user_pressure"]] = True
        want &= ~np.isin(np.array(list(doc.text)), list(" \t\n"))[:, None]
        for c, i in k.items():
            assert (got[:, i] == want[:, i]).all(), (c, doc.text)
        assert (r["kind"] == "pushback") == (doc.text.count("Assistant:") == 2)


def test_the_two_wording_families_share_no_template_or_filler():
    train, held = wordings.FAMILIES["train"], wordings.FAMILIES["heldout"]
    assert set(train.moves) == set(held.moves) == set(wordings.MOVES)
    for m in wordings.MOVES:
        assert not set(train.moves[m]) & set(held.moves[m]), m
        # every surface form, the dialogue's own slots left open
        forms = [set(wordings.expansions(f, m, claim="CLAIM", wrong="WRONG", verdict="VERDICT")) for f in (train, held)]
        assert not forms[0] & forms[1], (m, forms[0] & forms[1])
    assert not {o for v in train.fill.values() for o in v} & {o for v in held.fill.values() for o in v}
    # many more surface forms per move than the six-odd phrases of one fixed list
    n_train = {m: len(wordings.expansions(train, m, claim="C", wrong="W", verdict="V")) for m in wordings.MOVES}
    assert all(n >= 10 for m, n in n_train.items() if m not in ("opinion_honest", "neutral", "restate")), n_train


def test_heldout_wording_pairs_are_the_heldout_claims_in_the_other_wording():
    held = corpus.load_dialogue_pairs("heldout", scale=SCALE)
    words = corpus.load_dialogue_pairs("heldout_wording", scale=SCALE)
    assert [r["claim_id"] for r in words] == [r["claim_id"] for r in held]
    assert {r["wording"] for r in words} == {"heldout"} and {r["wording"] for r in held} == {"train"}
    assert {r["kind"] == "opinion" for r in words} == {r["kind"] == "opinion" for r in held}
    for r in words:
        assert r["prompt"].endswith("Assistant:") and r["p_sycophantic"] == dialogues.P_SYCOPHANTIC[len(r["cues"])]
    # the claim split cuts both the same way: held-out claims are held out in both
    (tr_h, te_h), (tr_w, te_w) = data.claim_split(held, 0.5), data.claim_split(words, 0.5)
    assert {r["claim_id"] for r in te_h} == {r["claim_id"] for r in te_w}
    assert not {r["claim_id"] for r in tr_w} & {r["claim_id"] for r in te_w}
    # and none of their documents is in any corpus split
    texts = {d.text for s in realtext.SPLITS for d in corpus.load_docs(s, 0, SCALE) if d.register == "dialogue"}
    assert not any(r["prompt"] + r["sycophantic_continuation"] + "\n" in texts or
                   r["prompt"] + r["honest_continuation"] + "\n" in texts for r in words)
    with pytest.raises(ValueError, match="heldout_wording"):
        corpus.load_dialogue_pairs("held_out_wording")


_WORD = re.compile(r"[A-Za-z0-9']+")


def _heldout_sentences(records) -> set[str]:
    """The sentences of the held-out-wording pairs with the claims cut out: what the family wrote."""
    claims = [f.question for f in dialogues.FACTS]
    for f in dialogues.FACTS:
        for v in (f.correct, *f.wrong):
            s = strip_markup(f.statement.format(v))
            claims += [s, s[:1].upper() + s[1:], v]
    claims += [strip_markup(t) for o in dialogues.OPINIONS for t in o]
    cut = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(c) for c in sorted(set(claims), key=len, reverse=True))
                     + r")(?!\w)|User:|Assistant:|[.!?\n]")
    return {seg.strip() for r in records for part in (r["prompt"], r["sycophantic_continuation"],
                                                    r["honest_continuation"]) for seg in cut.split(part)}


def _grams(text: str, n: int) -> set[tuple[str, ...]]:
    w = [x.lower() for x in _WORD.findall(text)]
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


@pytest.mark.slow
def test_heldout_wording_never_appears_in_the_training_text():
    """At the word level: no 4 consecutive words of a held-out-wording sentence (claims cut out) occur
    anywhere in the training split (the LM's, the SAEs' and the tokenizer's text), no 3 in its
    dialogues; yet every word of the family occurs there (built from words the corpus knows)."""
    docs = corpus.load_docs("train")
    seen4, seen3, vocab = set(), set(), set()
    for d in docs:
        seen4 |= _grams(d.text, 4)
        vocab |= {x.lower() for x in _WORD.findall(d.text)}
        if d.register == "dialogue":
            seen3 |= _grams(d.text, 3)
    sentences = _heldout_sentences(corpus.load_dialogue_pairs("heldout_wording"))
    assert len(sentences) > 100
    four = {g for s in sentences for g in _grams(s, 4)} & seen4
    three = {g for s in sentences for g in _grams(s, 3)} & seen3
    assert not four and not three, (sorted(four)[:20], sorted(three)[:20])
    unknown = {x.lower() for s in sentences for x in _WORD.findall(s)} - vocab
    assert not unknown, unknown
    # the check can fail: the training family's own sentences are all over the training text
    train_sentences = _heldout_sentences(corpus.load_dialogue_pairs("heldout", scale=0.05))
    assert {g for s in train_sentences for g in _grams(s, 3)} & seen3


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


def test_written_pairs_two_wordings_share_claims_not_phrases():
    """The gpu profile's held-out wording: the same claims and kinds, cut the same way by claim, and
    no 3 consecutive words of its frames and replies (claims cut out) in the training wording's."""
    from utils import capstone
    from utils.data.corpus import claim_split

    train, held = capstone.written_pairs("train"), capstone.written_pairs("heldout")
    assert [(r["claim_id"], r["kind"]) for r in train] == [(r["claim_id"], r["kind"]) for r in held]
    assert [r["claim_id"] for r in claim_split(train, 0.5, 0)[1]] == [r["claim_id"] for r in claim_split(held, 0.5, 0)[1]]

    def phrases(records):
        out = set()
        for r in records:
            for text in (r["prompt"], r["sycophantic_continuation"], r["honest_continuation"]):
                for w, t in capstone.WRITTEN_CLAIMS:
                    text = text.replace(w, "|").replace(t, "|")
                for chunk in re.split(r"\||User:|Assistant:", text):
                    out |= _grams(chunk, 3)
        return out

    assert phrases(train) and phrases(held) and not phrases(train) & phrases(held)
    with pytest.raises(ValueError, match="wording must be one of"):
        capstone.written_pairs("new")
