"""Stage 1: the corpus's token streams and the byte-level BPE tokenizer trained on its training split."""

from __future__ import annotations

from pathlib import Path

from utils.data import corpus

from .config import BuildConfig


def train_tokenizer(cfg: BuildConfig, out: Path):
    """Byte-level BPE on the training split, saved with `save_pretrained` (offline-loadable).

    Only the training split's text is seen, so the held-out-wording pairs (never in any split's
    documents) play no part in the vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus.corpus_texts("train", cfg.seed, cfg.scale), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", model_max_length=cfg.n_ctx)
    fast.save_pretrained(str(out / "tokenizer"))
    for f in (out / "tokenizer").iterdir():
        f.chmod(0o644)
    # reloaded from disk: TransformerLens re-opens a tokenizer by its `name_or_path`
    return PreTrainedTokenizerFast.from_pretrained(str(out / "tokenizer"))


def train_stream(cfg: BuildConfig, tokenizer) -> corpus.TokenStream:
    """The training split as one labelled token stream (documents separated by end-of-text)."""
    return corpus.encode_docs(corpus.load_docs("train", cfg.seed, cfg.scale), tokenizer)


def eval_tokens(cfg: BuildConfig, tokenizer, split: str) -> corpus.LabelledTokens:
    """The first `eval_seqs` BOS-first rows of an evaluation split, with their labels."""
    stream = corpus.encode_docs(corpus.load_docs(split, cfg.seed, cfg.scale), tokenizer)
    lt = corpus.pack(stream, cfg.n_ctx, tokenizer.bos_token_id)
    return corpus.LabelledTokens(lt.tokens[: cfg.eval_seqs], lt.labels[: cfg.eval_seqs], lt.concepts)
