"""Where a chapter runs: device, profile, seeding, and a guard that `utils` is this course's.

Profiles (DESIGN.md, "Runtime profiles"), chosen once per chapter by :func:`setup`:

| profile | when                                  | what runs                                           |
|---------|---------------------------------------|-----------------------------------------------------|
| `gpu`   | CUDA present                          | GPT-2 small, `gpt2-small-res-jb`, a public text set |
| `cpu`   | otherwise (laptops, CI, grading)      | the shipped tiny model, SAEs and corpus             |
| `fast`  | `COURSE_FAST=1`                       | `cpu` with fewer steps; the same code path          |

`COURSE_PROFILE=gpu|cpu|fast` overrides the choice (e.g. to try the `cpu` world on a GPU).
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

import utils as _utils

PROFILES = ("gpu", "cpu", "fast")
T = TypeVar("T")


class CourseSetupError(RuntimeError):
    """The environment is not one the course can run in; the message says what to do."""


def check_course_utils(module=_utils) -> None:
    """Fail clearly when `import utils` found some other `utils` (a stray file, or PyPI's).

    PyPI has an unrelated `utils` distribution that installs into the same folder name; when
    it is installed after the course, its `__init__.py` replaces ours and `utils.runtime`
    would import while the rest of the course silently misbehaves.
    """
    here = Path(__file__).resolve().parent
    marker = getattr(module, "COURSE_MARKER", None)
    location = Path(getattr(module, "__file__", "") or ".").resolve().parent
    if marker != "untangling-features" or location != here:
        raise CourseSetupError(
            f"`import utils` loaded {getattr(module, '__file__', module)!r}, which is not the "
            "Untangling Features course library.\n"
            "What to do: delete or rename any `utils.py` or `utils/` folder next to your "
            "notebook; if the unrelated PyPI package is installed, run "
            "`pip uninstall -y utils` and reinstall the course (`pip install --force-reinstall "
            "--no-deps <course>`); then restart the kernel."
        )


def get_device() -> torch.device:
    """The best available device: cuda, then Apple's mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_profile(profile: str | None = None) -> str:
    """`profile` if given; else `gpu` with CUDA, `cpu` otherwise, `fast` when COURSE_FAST=1, and
    COURSE_PROFILE overrides. Loaders take `profile=None` and resolve it here."""
    if profile is not None:
        if profile not in PROFILES:
            raise CourseSetupError(f"profile={profile!r} is not a profile; use one of {', '.join(PROFILES)} "
                                   "or None to choose automatically.")
        return profile
    forced = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if forced:
        if forced not in PROFILES:
            raise CourseSetupError(
                f"COURSE_PROFILE={forced!r} is not a profile; use one of {', '.join(PROFILES)} "
                "or unset it to choose automatically."
            )
        return forced
    if os.environ.get("COURSE_FAST", "").strip() not in ("", "0"):
        return "fast"
    return "gpu" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a torch generator with that seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class Runtime:
    """What `setup()` chose for this chapter."""

    profile: str  # "gpu" | "cpu" | "fast"
    device: torch.device  # where tensors and models live
    seed: int  # the seed every random draw starts from

    @property
    def fast(self) -> bool:
        return self.profile == "fast"

    def pick(self, *, gpu: T, cpu: T, fast: T | None = None) -> T:
        """The value for this profile, e.g. `rt.pick(gpu=20_000, cpu=2_000, fast=200)`."""
        if self.profile == "fast":
            return cpu if fast is None else fast
        return gpu if self.profile == "gpu" else cpu

    def describe(self) -> str:
        return f"profile={self.profile} device={self.device} seed={self.seed} torch={torch.__version__}"


def setup(seed: int = 0, *, quiet: bool = False) -> Runtime:
    """Check the course library, choose profile and device, seed everything.

    The `gpu` profile needs CUDA; asking for it on a machine without raises with the fix.
    """
    check_course_utils()
    profile = get_profile()
    device = get_device()
    if profile == "gpu" and device.type != "cuda":
        raise CourseSetupError(
            "COURSE_PROFILE=gpu needs a CUDA GPU, and none is visible. On Colab choose "
            "Runtime > Change runtime type > T4 GPU; elsewhere unset COURSE_PROFILE to run "
            "the offline `cpu` profile."
        )
    if profile != "gpu":
        device = torch.device("cpu")  # the offline world is sized for the CPU, on any machine
    seed_everything(seed)
    rt = Runtime(profile=profile, device=device, seed=seed)
    if not quiet:
        print(f"Untangling Features: {rt.describe()} python={sys.version.split()[0]}")
    return rt


check_course_utils()
