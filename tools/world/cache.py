"""The build's one cache: every product stored under a digest of everything it depends on.

    cache = Cache(Path(".world-cache"))
    acts = cache.memo("acts", {"model": fingerprint(model), "tokens": 600_000}, lambda: compute())
    state = cache.get("lm", key)          # None when absent or stale
    cache.put("lm", key, state)           # atomic: an interrupted write never leaves a half file

A key is a JSON-able dict; `fingerprint` turns tensors, arrays and models into digests first.
The file name carries a digest of the key and the file stores the key itself, so a product is
reused only when every input is the same, and changing an input simply misses. Nothing in the
cache is needed at run time: deleting it costs only time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def fingerprint(x: Any) -> str:
    """sha256 of a tensor's or an array's values, or of a module's weights (names, shapes, values)."""
    h = hashlib.sha256()
    if isinstance(x, torch.nn.Module):
        for name, t in sorted(x.state_dict().items()):
            if not name.endswith((".IGNORE", ".mask")):  # TransformerLens' buffers rebuilt from the config
                h.update(name.encode())
                h.update(t.detach().float().contiguous().numpy().tobytes())
    elif isinstance(x, torch.Tensor):
        h.update(str(tuple(x.shape)).encode())
        h.update(x.detach().contiguous().cpu().numpy().tobytes())
    elif isinstance(x, np.ndarray):
        h.update(str(x.shape).encode())
        h.update(np.ascontiguousarray(x).tobytes())
    else:
        raise TypeError(f"fingerprint takes a module, a tensor or an array, got {type(x).__name__}")
    return h.hexdigest()


def digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class Cache:
    """A directory of build products, each keyed by the dict of everything it depends on."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str, key: dict) -> Path:
        return self.root / f"{name}_{digest(key)[:16]}.pt"

    def get(self, name: str, key: dict) -> Any | None:
        """The stored product, or None when there is none for exactly this key."""
        path = self.path(name, key)
        if not path.exists():
            return None
        stored = torch.load(path, weights_only=False)
        # the stored key is compared through JSON, as it was digested: tuples and lists are equal
        return stored["value"] if json.loads(json.dumps(stored["key"], default=str)) == \
            json.loads(json.dumps(key, default=str)) else None

    def put(self, name: str, key: dict, value: Any) -> None:
        path = self.path(name, key)
        tmp = path.with_suffix(".tmp")
        torch.save({"key": key, "value": value}, tmp)
        tmp.replace(path)

    def memo(self, name: str, key: dict, compute: Callable[[], Any]) -> Any:
        """`compute()`, or its stored result when it was computed before under the same key."""
        value = self.get(name, key)
        if value is None:
            value = compute()
            self.put(name, key, value)
        return value
