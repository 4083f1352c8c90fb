"""utils.browser: the ipywidgets latent browser searches a typed prompt and opens the latent picked from the list."""

from __future__ import annotations

import pytest

from _helpers import tiny_hooked
from utils.activations import cache_activations, sae_latents
from utils.browser import latent_browser


def test_browser_search_and_pick():
    pytest.importorskip("ipywidgets")
    model, sae, tokens = tiny_hooked(n_ctx=32, k=4, n_seq=6, seq=16, saelens=True)
    resid = cache_activations(model, "blocks.1.hook_resid_pre", tokens, flatten=False)
    ui = latent_browser(model, sae, tokens, resid=resid, latent=2)
    latent_box, dropdown = ui.children[0].children
    prompt_box = ui.children[1]
    assert latent_box.value == 2 and latent_box.max == sae.W_dec.shape[0] - 1
    prompt = "def f(x): return x"
    prompt_box.value = prompt
    ids = model.to_tokens(prompt)
    want = sae_latents(model, sae, ids)[0, 1:].mean(0).topk(10).indices.tolist()   # BOS left out
    assert [j for _, j in dropdown.options] == want
    dropdown.value = dropdown.options[3][1]                                  # picking a latent opens its dashboard
    assert latent_box.value == want[3]
