"""The builder of the course's offline world (`make assets`): not needed by students.

    python -m tools.world                  # the shipped assets into utils/assets (about an hour on 2 cores)
    python -m tools.world --mini OUTDIR    # a miniature world in seconds, same code path (tests)
    python -m tools.world --stage lm       # stop after a stage (corpus, lm, eval)
    python -m tools.world --stage saes     # retrain only the SAEs, on the LM already built

One module per stage: `tokenizer` (corpus token streams, BPE), `lm` (the tiny LM and its
trainer), `saes` (one SAE per variant, SAELens format), `evaluate` (the LM's and the SAEs'
figures) and `capstone` (chapter 07's finding on held-out claims and held-out wordings);
`build` runs them in order and writes the manifest; `cache` is the one cache they share
(`.world-cache/`, git-ignored). Every stage is deterministic from `BuildConfig.seed`. At run time
the course reads only what lands in `utils/assets/`, through `utils.models`.
"""

import os

# On a shared, oversubscribed CPU, OpenMP threads that spin while waiting for each other make
# every step ~10x slower (measured here: 14 s vs 1-2 s per LM step); passive waiting avoids it.
# Effective only if set before torch is first imported, hence here, before anything imports it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .build import build, summary  # noqa: E402
from .config import BuildConfig, mini_config  # noqa: E402

__all__ = ["BuildConfig", "build", "mini_config", "summary"]
