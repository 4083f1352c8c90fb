"""utils.models: profile-aware loaders; the gpu path up to the network call; the offline error.

The offline world itself (its build and the shipped assets) is tested in test_world.py."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import REPO
from utils import models
from utils.models import CourseOfflineError


@pytest.fixture
def online(monkeypatch):
    """Pretend the hub is reachable; hub functions are stubbed by each test."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=1.5: True)


def test_import_touches_no_network():
    code = ("import socket\n"
            "def refuse(*a, **k): raise AssertionError('network at import time')\n"
            "socket.create_connection = refuse; socket.socket.connect = refuse\n"
            "import utils.models, utils.data, tools.world\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]


@pytest.mark.network_stub
def test_gpu_model_is_gpt2_small_through_hooked_sae_transformer(monkeypatch, online):
    from sae_lens import HookedSAETransformer

    calls = []
    monkeypatch.setattr(HookedSAETransformer, "from_pretrained",
                        classmethod(lambda cls, *a, **k: calls.append((a, k)) or "gpt2"))
    assert models.load_model(profile="gpu", device="cuda") == "gpt2"
    assert calls == [(("gpt2-small",), {"device": "cuda"})]


@pytest.mark.network_stub
@pytest.mark.parametrize("variant, release, sae_id", [
    ("relu", "gpt2-small-res-jb", "blocks.8.hook_resid_pre"),
    ("topk", "gpt2-small-resid-post-v5-32k", "blocks.7.hook_resid_post"),
])
def test_gpu_saes_are_saelens_pretrained(monkeypatch, online, variant, release, sae_id):
    from sae_lens import SAE

    calls = []
    monkeypatch.setattr(SAE, "from_pretrained", classmethod(lambda cls, **k: calls.append(k) or "sae"))
    assert models.load_sae(variant, profile="gpu") == "sae"
    assert calls == [{"release": release, "sae_id": sae_id, "device": "cuda"}]


@pytest.mark.network_stub
def test_gpu_tokenizer_is_gpt2s(monkeypatch, online):
    import transformers

    calls = []
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: calls.append(a) or "tok")
    assert models.load_tokenizer(profile="gpu") == "tok"
    assert calls == [("gpt2",)]


def test_gpu_variant_without_a_pretrained_release_names_the_shipped_one():
    with pytest.raises(ValueError, match="profile='cpu'"):
        models.load_sae("jumprelu", profile="gpu")
    with pytest.raises(ValueError, match="variant must be one of"):
        models.load_sae("nope", profile="cpu")


@pytest.mark.parametrize("load", [
    lambda: models.load_model(profile="gpu"),
    lambda: models.load_sae("relu", profile="gpu"),
    lambda: models.load_tokenizer(profile="gpu"),
])
def test_offline_hub_request_is_a_clear_error(monkeypatch, load):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CourseOfflineError, match="no network.*COURSE_PROFILE=cpu"):
        load()


def test_hub_failure_after_the_probe_is_a_clear_error(monkeypatch, online):
    from sae_lens import HookedSAETransformer

    def fail(cls, *a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(HookedSAETransformer, "from_pretrained", classmethod(fail))
    with pytest.raises(CourseOfflineError, match="shipped tiny model") as e:
        models.load_model(profile="gpu")
    assert isinstance(e.value.__cause__, OSError)


def test_probe_says_offline_without_network(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def refuse(*a, **k):
        raise OSError("no route")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert models.hub_reachable() is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.hub_reachable() is False


def test_from_hub_names_what_it_could_not_fetch(monkeypatch):
    calls = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CourseOfflineError, match="the text set X.*COURSE_PROFILE=cpu"):
        models.from_hub("the text set X", lambda *a, **k: calls.append((a, k)), 1, split="train")
    assert calls == []                                                         # never tried the network


def test_from_hub_passes_arguments_through(online):
    assert models.from_hub("a thing", lambda *a, **k: (a, k), 1, 2, split="train") == ((1, 2), {"split": "train"})


def test_hook_name_is_the_profiles_sae_site():
    assert models.hook_name("gpu") == models.GPU_SAES["relu"][1] == "blocks.8.hook_resid_pre"
    try:
        shipped = models.manifest()["hook_name"]
    except FileNotFoundError:
        pytest.skip("shipped assets not built")
    assert models.hook_name("cpu") == models.hook_name("fast") == shipped
    assert all(models.load_sae(v, profile="cpu").cfg.metadata.hook_name == shipped for v in models.VARIANTS)


def test_missing_assets_say_how_to_build_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="make assets"):
        models.load_model(profile="cpu", root=tmp_path)
