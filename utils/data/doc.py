"""A document with character-level concept spans, and the concept vocabulary.

Generated text is written with a tiny markup so that the generator states its ground truth where
it writes the words: ``[[d:walked]]`` is a past-tense verb, ``[[p:walks]]`` a present-tense one.
Whole segments (a user turn, a reply, a code file) are labelled by :meth:`DocBuilder.add`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The labelled concepts, in the order of the label matrix's last axis. Each is a property of a
# token that the generator knows for certain (see README-style notes per concept below).
CONCEPTS: tuple[str, ...] = (
    "code",                # Python standard-library source text (real, read from this Python)
    "python_keyword",      # a keyword token (`def`, `return`, ...) inside that source
    "docs",                # the pydoc topic texts (real reference documentation)
    "science",             # generated scientific prose
    "past_tense_verb",     # a finite past-tense verb in generated narration
    "present_tense_verb",  # a finite present-tense verb in generated narration, science, facts
    "number",              # a numeral written with digits, in any text
    "dialogue_user",       # a user's turn in a generated dialogue
    "user_pressure",       # a pressure cue in a user's turn (flattery, insistence, emotion)
    "sycophantic_reply",   # an assistant reply that agrees with a wrong claim or flatters
    "honest_reply",        # an assistant reply that states the truth (politely corrects)
)

_MARK = re.compile(r"\[\[([dp]):([^\]]+)\]\]")
_MARK_LABEL = {"d": "past_tense_verb", "p": "present_tense_verb"}


@dataclass
class Doc:
    """Text plus character spans ``(start, end, concept)``; `meta` says where it came from."""

    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    register: str = ""
    meta: dict = field(default_factory=dict)


class DocBuilder:
    """Append text segments, each with optional concept labels; expands the verb markup."""

    def __init__(self, register: str, **meta):
        self.parts: list[str] = []
        self.n = 0
        self.spans: list[tuple[int, int, str]] = []
        self.register = register
        self.meta = meta

    def add(self, text: str, *labels: str) -> "DocBuilder":
        start = self.n
        pos = 0
        for m in _MARK.finditer(text):
            self._raw(text[pos:m.start()])
            s = self.n
            self._raw(m.group(2))
            self.spans.append((s, self.n, _MARK_LABEL[m.group(1)]))
            pos = m.end()
        self._raw(text[pos:])
        for label in labels:
            self.spans.append((start, self.n, label))
        return self

    def _raw(self, text: str) -> None:
        self.parts.append(text)
        self.n += len(text)

    def build(self) -> Doc:
        return Doc("".join(self.parts), list(self.spans), self.register, dict(self.meta))


def strip_markup(text: str) -> str:
    """The text a reader sees: markup removed."""
    return _MARK.sub(lambda m: m.group(2), text)


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w)")  # not the 8 of `utf8`


def number_spans(text: str) -> list[tuple[int, int, str]]:
    """Every numeral written with digits (``42``, ``3.14``) is a `number`."""
    return [(m.start(), m.end(), "number") for m in _NUMBER.finditer(text)]
