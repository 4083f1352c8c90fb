"""Real text that ships with every Python: standard-library source and the pydoc topics.

Read at build and at run time from the Python that runs the course, never copied into the
repository. Which file or topic goes to which split is decided by a hash of its name, so the
splits are stable across machines with the same Python version (the shipped manifest records the
version the assets were built with; another version gives slightly different real text).
"""

from __future__ import annotations

import hashlib
import io
import keyword
import os
import sysconfig
import tokenize
from functools import lru_cache
from pathlib import Path

from .doc import Doc

SPLITS = ("train", "validation", "heldout")
# Packages whose source is mostly data tables, generated or test code: not representative code.
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "encodings",
              "pydoc_data", "turtledemo", "__pycache__", "ensurepip", "venv", "tkinter", "unittest",
              "config-3", "msilib", "distutils", "Tools"}
CHUNK_CHARS = 3000  # a source file or topic is cut at line breaks into documents of about this size


def split_of(name: str, fractions: tuple[float, float] = (0.8, 0.1)) -> str:
    """Stable split for a named item: 80% train, 10% validation, 10% held-out by default."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    if h < fractions[0]:
        return "train"
    return "validation" if h < fractions[0] + fractions[1] else "heldout"


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@lru_cache(maxsize=1)
def stdlib_files() -> tuple[str, ...]:
    """Relative paths of the standard library's own `.py` files, sorted."""
    root = stdlib_dir()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("config-"))
        for f in sorted(filenames):
            if f.endswith(".py") and not f.startswith("test_"):
                out.append(str((Path(dirpath) / f).relative_to(root)))
    return tuple(sorted(out))


def _chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Cut at line breaks into pieces of about `size` characters."""
    out, cur, n = [], [], 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        n += len(line)
        if n >= size:
            out.append("".join(cur))
            cur, n = [], 0
    if "".join(cur).strip():
        out.append("".join(cur))
    return out


def keyword_spans(source: str) -> list[tuple[int, int, str]]:
    """Character spans of Python keywords used as keywords (not inside strings or comments)."""
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    spans = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME and keyword.iskeyword(tok.string):
                (r, c), (r2, c2) = tok.start, tok.end
                spans.append((line_starts[r - 1] + c, line_starts[r2 - 1] + c2, "python_keyword"))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a chunk can end inside a bracket: keep the keywords seen up to there
    return spans


def code_docs(split: str, budget: int | None = None, rng=None) -> list[Doc]:
    """Standard-library source of one split, cut into documents; all `code`, keywords tagged.

    With a `budget` (characters), files are taken in `rng`'s shuffled order until it is spent,
    so only those files are read.
    """
    root = stdlib_dir()
    files = [rel for rel in stdlib_files() if split_of("stdlib:" + rel) == split]
    if rng is not None:
        rng.shuffle(files)
    docs, n = [], 0
    for rel in files:
        if budget is not None and n >= budget:
            break
        try:
            text = (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for i, chunk in enumerate(_chunks(text)):
            if budget is not None and n >= budget:
                break
            spans = [(0, len(chunk), "code"), *keyword_spans(chunk)]
            docs.append(Doc(chunk, spans, "code", {"source": f"stdlib/{rel}#{i}"}))
            n += len(chunk)
    return docs


def pydoc_docs(split: str) -> list[Doc]:
    """The pydoc topic texts of one split, cut into documents; all `docs`."""
    from pydoc_data.topics import topics

    docs = []
    for name in sorted(topics):
        if split_of("pydoc:" + name) != split:
            continue
        for i, chunk in enumerate(_chunks(topics[name])):
            docs.append(Doc(chunk, [(0, len(chunk), "docs")], "docs", {"source": f"pydoc/{name}#{i}"}))
    return docs
