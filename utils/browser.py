"""An ipywidgets latent browser: one latent's dashboard at a time, or the latents a typed prompt lights up.

    latent_browser(model, sae, tokens, resid=resid)     # the last expression of a notebook cell

It uses only core widgets and plain outputs, so it works in JupyterLab and Colab. The pieces
are `utils.dashboards` (what a dashboard shows) and `utils.latent_search.search_latents`.
"""

from __future__ import annotations

from jaxtyping import Int
from torch import Tensor

from utils.activations import cache_activations, sae_hook_name, sae_latents
from utils.dashboards import compute_dashboard, render_dashboard, render_tokens, vocab_strings
from utils.latent_search import search_latents


def latent_browser(model, sae, tokens: Int[Tensor, "n_seq seq"], *, resid: Tensor | None = None,
                   latent: int = 0, k: int = 10):
    """An ipywidgets browser: choose a latent (number box) to see its dashboard, or type a prompt
    to see the latents most active on it (pick one from the list to open its dashboard).

    `resid` ([n_seq seq d_in] at the SAE's hook, from `utils.activations`) skips the model run."""
    import ipywidgets as w
    from IPython.display import HTML, display

    vocab = vocab_strings(model)
    resid = cache_activations(model, sae_hook_name(sae), tokens, flatten=False) if resid is None else resid
    latent_box = w.BoundedIntText(value=latent, min=0, max=sae.W_dec.shape[0] - 1, description="latent")
    prompt_box = w.Text(placeholder="type a prompt and press Enter", description="prompt",
                        continuous_update=False, layout=w.Layout(width="60%"))
    found = w.Dropdown(options=[], description="top latents")
    out, prompt_out = w.Output(), w.Output()

    def show(change=None):
        out.clear_output(wait=True)
        with out:
            display(render_dashboard(compute_dashboard(model, sae, tokens, latent_box.value, resid=resid,
                                                       vocab=vocab, k=k)))

    def search(_=None):
        if not prompt_box.value:
            return
        prompt_out.clear_output(wait=True)
        ids = model.to_tokens(prompt_box.value)
        acts = sae_latents(model, sae, ids)[0]  # [seq d_sae]
        latents, scores = search_latents(acts[1:] if acts.shape[0] > 1 else acts, k=k)
        found.options = [(f"{j}  (mean {s:.2f})", j) for j, s in zip(latents, scores)]
        with prompt_out:
            strs = [vocab[t] for t in ids[0].tolist()]
            a = acts[:, latent_box.value].tolist()
            display(HTML(f"<div style='font-family:monospace'>latent {latent_box.value} on the prompt: "
                         f"{render_tokens(strs, a, vmax=max(max(a), 1e-6))}</div>"))

    def pick(change):
        if change["new"] is not None:
            latent_box.value = change["new"]

    latent_box.observe(show, names="value")
    found.observe(pick, names="value")
    prompt_box.observe(search, names="value")
    show()
    return w.VBox([w.HBox([latent_box, found]), prompt_box, prompt_out, out])
