"""`python -m tools.world`: build the offline world (see the package docstring)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> None:
    import torch

    from utils.models import ASSETS

    from . import build, summary
    from .build import STAGES
    from .config import BuildConfig, mini_config

    ap = argparse.ArgumentParser(prog="python -m tools.world", description="Build the course's offline world.")
    ap.add_argument("--mini", metavar="OUTDIR", help="build a miniature world into OUTDIR (seconds)")
    ap.add_argument("--out", default=str(ASSETS), help="where to build (default: utils/assets)")
    ap.add_argument("--stage", default="all", choices=STAGES,
                    help="stop after this stage; `saes` retrains only the SAEs on the LM already built")
    ap.add_argument("--cache", default=None,
                    help="the build cache (default: .world-cache/ in the repository; for --mini, next to OUTDIR)")
    ap.add_argument("--table", action="store_true",
                    help="print chapter 07's table of the capstone figures from the shipped manifest, and stop")
    args = ap.parse_args(argv)
    if args.table:
        from utils.models import manifest

        from .capstone import table

        print(table(manifest()["capstone"]))
        return
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    if args.mini:
        out, cfg, cache = Path(args.mini), mini_config(), args.cache
    else:
        out, cfg, cache = Path(args.out), BuildConfig(), args.cache or REPO / ".world-cache"
    man = build(out, cfg, stage=args.stage, cache_dir=Path(cache) if cache else None)
    print(json.dumps(summary(man), indent=1, default=float))


if __name__ == "__main__":
    main()
