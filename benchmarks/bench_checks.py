"""How well the visible checks catch and name the catalogued mistakes, per chapter (issue 17).

    python benchmarks/bench_checks.py [ch03 ...]

Runs tests/mistakes/runner.py for each chapter (one execution of its solution notebook) and prints
per chapter: mistakes in the catalogue, caught by the visible check (it raised CheckFailed), named
(the message matches the mistake's phrase), caught by the hidden tests, and caught by the hidden
tests with a message of their own.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from mistakes import chapter_modules  # noqa: E402


def run(module: str) -> dict:
    """The runner's result for one chapter, in a process of its own (chapters change global state)."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        subprocess.run([sys.executable, str(REPO / "tests" / "mistakes" / "runner.py"), module, "--out", str(out)],
                       check=True)
        return json.loads(out.read_text())


def rates(result: dict, test: str | None = None) -> dict[str, int]:
    """Counts over a chapter's mistakes (or one exercise's, by its test cell's grade_id)."""
    n = caught = named = hidden = hidden_msg = 0
    for m in result["mistakes"]:
        if "error" in m or (test is not None and m["test"] != test):
            continue
        n += 1
        vis, hid = m["visible"], m["hidden"]
        caught += vis["raised"] == "CheckFailed"
        named += vis["raised"] == "CheckFailed" and bool(re.search(m["names"], vis["message"], re.I | re.S))
        hidden += hid["raised"] is not None
        hidden_msg += hid["raised"] in ("AssertionError", "CheckFailed") and bool(hid["message"].strip())
    return {"mistakes": n, "visible": caught, "named": named, "hidden": hidden, "hidden_msg": hidden_msg}


def main(argv: list[str]) -> None:
    modules = argv or chapter_modules()
    print(f"{'chapter':<22} {'mistakes':>8} {'visible':>8} {'named':>8} {'hidden':>8} {'hid+msg':>8} {'time':>6}")
    total = dict.fromkeys(("mistakes", "visible", "named", "hidden", "hidden_msg"), 0)
    for mod in modules:
        t0 = time.perf_counter()
        result = run(mod)
        r = rates(result)
        for k in total:
            total[k] += r[k]
        print(f"{result['chapter']:<22} {r['mistakes']:>8} {r['visible']:>8} {r['named']:>8} {r['hidden']:>8} "
              f"{r['hidden_msg']:>8} {time.perf_counter() - t0:>5.0f}s", flush=True)
        for t in dict.fromkeys(m["test"] for m in result["mistakes"]):
            e = rates(result, t)
            print(f"  {t:<20} {e['mistakes']:>8} {e['visible']:>8} {e['named']:>8} {e['hidden']:>8} {e['hidden_msg']:>8}")
    n = max(1, total["mistakes"])
    print(f"{'all':<22} {total['mistakes']:>8} {total['visible']:>8} {total['named']:>8} {total['hidden']:>8} "
          f"{total['hidden_msg']:>8}")
    print(f"visible caught {total['visible'] / n:.0%} [bar >= 95%], named {total['named'] / n:.0%} [bar >= 80%], "
          f"hidden caught {total['hidden'] / n:.0%} [bar 100%]")


if __name__ == "__main__":
    main(sys.argv[1:])
