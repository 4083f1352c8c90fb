"""The mistake catalogue (issue 17): common wrong answers to every autograded exercise.

Each chapter has a module `chNN.py` with `CHAPTER` (its folder name) and `MISTAKES`, a list of
`Mistake`s. `runner.py` executes the chapter's solution notebook in one process and, at each
test cell, swaps every catalogued mistake in for the answer and runs the cell's visible check and
its hidden tests separately. `tests/test_mistakes.py` asserts that the visible check fails with a
message naming the mistake and that the hidden tests fail with a message too;
`benchmarks/bench_checks.py` prints the rates per chapter.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Mistake:
    test: str
    """grade_id of the exercise's test cell (the unit that scores points)."""
    name: str
    """Short, unique (within the test) name of the mistake."""
    source: str
    """The mistaken answer cell, as a student would write it."""
    names: str
    """Regex (case-insensitive) the visible check's message must match: the phrase that names the mistake."""
    subtle: bool = False
    """The mistaken answer runs and gives plausible numbers (no exception, no absurd value)."""
    answer: str | None = None
    """grade_id of the answer cell it replaces; needed only when several answer cells precede the test."""

    @property
    def key(self) -> str:
        return f"{self.test}/{self.name}"


def chapter_modules() -> list[str]:
    return sorted(p.stem for p in HERE.glob("ch[0-9][0-9].py"))


def catalogue(module: str):
    """(chapter folder name, list of mistakes) of one catalogue module, e.g. "ch03"."""
    mod = importlib.import_module(f"{__name__}.{module}")
    keys = [m.key for m in mod.MISTAKES]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise ValueError(f"{module}: duplicate mistake names {sorted(dupes)}")
    return mod.CHAPTER, list(mod.MISTAKES)
