"""Neuronpedia-style latent dashboards, rebuilt: `compute_*` returns data, `render_*` draws it.

    resid = cache_activations(model, hook_name, tokens, flatten=False)   # utils.activations, once
    data = compute_dashboard(model, sae, tokens, latent, resid=resid)
    panel = render_dashboard(data)                                    # shows inline in a notebook
    panel.write_html("latent.html")                                   # and as a standalone page

A dashboard (Bricken et al. 2023's feature view; Neuronpedia) has three parts:
- the latent's **top activating examples**, each a window of context with every token shaded by
  the latent's activation on it;
- its **logit attribution**: W_dec[latent] · W_U, the tokens whose logits the decoder direction
  pushes up and down along the direct path (ignoring later layers and the final LayerNorm's
  scale, which is why it is an attribution and not a prediction);
- its **activation histogram** over the tokens where it fires, and its firing density.

`utils.browser.latent_browser` puts dashboards in an ipywidgets app; `utils.latent_search`
finds the latents worth a dashboard.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from plotly.subplots import make_subplots
from torch import Tensor

from utils.activations import encode, sae_latents

TEMPLATE = "plotly_white"


# ---- compute -------------------------------------------------------------------------------------
def vocab_strings(model) -> list[str]:
    """Every token id as the text it stands for (byte-level BPE tokens decoded one at a time)."""
    tok = model.tokenizer
    return [tok.decode([i]) for i in range(model.cfg.d_vocab)]


class TopExample(NamedTuple):
    """One top activating example: a window of context around the token where the latent peaked."""

    seq: int
    """Row of the token batch."""
    pos: int
    """Position of the peak token in that row."""
    act: float
    """The latent's activation on the peak token."""
    tokens: list[str]
    """The window's tokens as text."""
    acts: list[float]
    """The latent's activation on each token of the window."""
    center: int
    """Index of the peak token inside the window."""


class LogitAttribution(NamedTuple):
    top_ids: list[int]
    top_values: list[float]
    bottom_ids: list[int]
    bottom_values: list[float]
    top_tokens: list[str]
    bottom_tokens: list[str]


class Histogram(NamedTuple):
    edges: list[float]
    """Bin edges of the non-zero activations (len = bins + 1)."""
    counts: list[int]
    """Number of firing tokens per bin."""
    density: float
    """Fraction of all tokens on which the latent fires (activation ≠ 0)."""
    n_tokens: int


def compute_top_activations(latent_acts: Float[Tensor, "n_seq seq"], tokens: Int[Tensor, "n_seq seq"],
                            vocab: list[str], k: int = 10, *, window: tuple[int, int] = (8, 3),
                            skip_first: bool = True) -> list[TopExample]:
    """The k tokens with the largest activation, each with `window` = (left, right) tokens of context.

    `skip_first` leaves out position 0 (BOS, an attention sink many latents fire on).
    """
    a = latent_acts.detach().float().clone()
    if skip_first:
        a[:, 0] = float("-inf")
    seq_len = a.shape[1]
    values, flat = a.flatten().topk(min(k, a.numel()))
    out = []
    for v, i in zip(values.tolist(), flat.tolist()):
        if v <= 0:
            break
        s, p = divmod(i, seq_len)
        lo, hi = max(0, p - window[0]), min(seq_len, p + window[1] + 1)
        out.append(TopExample(s, p, v, [vocab[t] for t in tokens[s, lo:hi].tolist()],
                              latent_acts[s, lo:hi].float().clamp_min(0).tolist(), p - lo))
    return out


@torch.no_grad()
def compute_logit_attribution(sae, model, latent: int, k: int = 10, *, vocab: list[str] | None = None) -> LogitAttribution:
    """Top and bottom k tokens of W_dec[latent] · W_U (the direct effect of the decoder direction)."""
    logits = sae.W_dec[latent].float().to(model.W_U.device) @ model.W_U.float()  # [d_vocab]
    top, bottom = logits.topk(k), logits.topk(k, largest=False)
    vocab = vocab or vocab_strings(model)
    return LogitAttribution(top.indices.tolist(), top.values.tolist(), bottom.indices.tolist(),
                            bottom.values.tolist(), [vocab[i] for i in top.indices.tolist()],
                            [vocab[i] for i in bottom.indices.tolist()])


def compute_activation_histogram(latent_acts: Tensor, bins: int = 30) -> Histogram:
    """Histogram of the non-zero activations in `bins` equal bins on [0, max], and the firing density."""
    a = latent_acts.detach().float().flatten()
    on = a[a != 0]
    if on.numel() == 0:
        return Histogram([0.0, 1.0], [0], 0.0, a.numel())
    hi = max(float(on.max()), 1e-6)
    counts = torch.histc(on, bins=bins, min=0.0, max=hi)
    edges = torch.linspace(0.0, hi, bins + 1)
    return Histogram(edges.tolist(), counts.long().tolist(), on.numel() / a.numel(), a.numel())


@dataclass
class LatentDashboard:
    """Everything a dashboard shows about one latent."""

    latent: int
    top_examples: list[TopExample]
    logits: LogitAttribution
    histogram: Histogram
    title: str = ""


def compute_dashboard(model, sae, tokens: Int[Tensor, "n_seq seq"], latent: int, *,
                      resid: Tensor | None = None, latent_acts: Tensor | None = None,
                      vocab: list[str] | None = None, k: int = 10, title: str = "") -> LatentDashboard:
    """All three parts for `latent` on `tokens` (pass `resid` or `latent_acts` to skip the model run)."""
    vocab = vocab or vocab_strings(model)
    if latent_acts is None:
        latent_acts = sae_latents(model, sae, tokens, latent) if resid is None else encode(sae, resid, latent)
    return LatentDashboard(latent, compute_top_activations(latent_acts, tokens, vocab, k),
                           compute_logit_attribution(sae, model, latent, vocab=vocab),
                           compute_activation_histogram(latent_acts[:, 1:]), title)


# ---- render --------------------------------------------------------------------------------------
def _shown(tok: str) -> str:
    return html.escape(tok.replace("\n", "⏎").replace("\t", "⇥"))


def render_tokens(tokens: list[str], acts: list[float], *, vmax: float, center: int | None = None) -> str:
    """Tokens as HTML spans shaded by activation (orange ∝ act / vmax); hover shows the value."""
    spans = []
    for i, (t, a) in enumerate(zip(tokens, acts)):
        alpha = 0.0 if vmax <= 0 else min(1.0, max(0.0, a / vmax))
        style = f"background:rgba(255,127,14,{alpha:.2f});white-space:pre"
        if i == center:
            style += ";font-weight:bold;border-bottom:2px solid #d62728"
        spans.append(f'<span class="tok" style="{style}" title="{a:.3f}">{_shown(t)}</span>')
    return "".join(spans)


def render_top_examples(examples: list[TopExample]) -> str:
    """The top examples as an HTML block, one row each, shaded on a shared scale."""
    vmax = max((e.act for e in examples), default=1.0)
    rows = [f'<div class="ex"><span class="val" style="display:inline-block;width:4.5em;color:#555">'
            f'{e.act:.2f}</span>{render_tokens(e.tokens, e.acts, vmax=vmax, center=e.center)}</div>'
            for e in examples]
    if not rows:
        rows = ['<div class="ex" style="color:#888">the latent never fires on these tokens</div>']
    return ('<div class="sae-top-examples" style="font-family:monospace;font-size:13px;line-height:1.7">'
            + "".join(rows) + "</div>")


def render_logit_attribution(la: LogitAttribution) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Bar(y=[repr(t) for t in la.top_tokens][::-1], x=la.top_values[::-1], orientation="h",
                         name="promoted", marker_color="#1f77b4"))
    fig.add_trace(go.Bar(y=[repr(t) for t in la.bottom_tokens][::-1], x=la.bottom_values[::-1],
                         orientation="h", name="suppressed", marker_color="#d62728"))
    fig.update_layout(template=TEMPLATE, title="Logit attribution W_dec·W_U", xaxis_title="logit effect")
    return fig


def render_activation_histogram(h: Histogram) -> go.Figure:
    centers = [(a + b) / 2 for a, b in zip(h.edges[:-1], h.edges[1:])]
    fig = go.Figure(go.Bar(x=centers, y=h.counts, marker_color="#ff7f0e",
                           hovertemplate="act %{x:.2f}: %{y} tokens<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=f"Activations (fires on {100 * h.density:.3g}% of tokens)",
                      xaxis_title="activation", yaxis_title="tokens")
    return fig


class DashboardPanel:
    """One latent's dashboard: a header, a plotly figure (histogram and logit attribution), the examples.

    In a notebook it displays itself (the figure through plotly's own renderer, which works in
    JupyterLab and Colab); `to_html()` / `write_html(path)` give a standalone page.
    """

    def __init__(self, header: str, figure: go.Figure, examples_html: str):
        self.header, self.figure, self.examples_html = header, figure, examples_html

    def to_html(self, *, include_plotlyjs: bool | str = True, full_html: bool = True) -> str:
        body = (f'<div class="sae-dashboard">{self.header}'
                f'{self.figure.to_html(full_html=False, include_plotlyjs=include_plotlyjs)}'
                f"<h4>Top activating examples</h4>{self.examples_html}</div>")
        if not full_html:
            return body
        return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}</body></html>'

    def write_html(self, path: str | Path, **kwargs) -> Path:
        path = Path(path)
        path.write_text(self.to_html(**kwargs), encoding="utf-8")
        return path

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self.header))
        display(self.figure)
        display(HTML("<h4>Top activating examples</h4>" + self.examples_html))


def render_dashboard(d: LatentDashboard) -> DashboardPanel:
    """The three parts of a dashboard as one panel."""
    h, la = d.histogram, d.logits
    fig = make_subplots(rows=1, cols=3, column_widths=[0.4, 0.3, 0.3], horizontal_spacing=0.12,
                        subplot_titles=(f"activations (fires on {100 * h.density:.3g}% of tokens)",
                                        "promoted tokens", "suppressed tokens"))
    for trace in render_activation_histogram(h).data:
        fig.add_trace(trace, row=1, col=1)
    fig.add_trace(go.Bar(y=[repr(t) for t in la.top_tokens][::-1], x=la.top_values[::-1], orientation="h",
                         marker_color="#1f77b4", hovertemplate="%{y}: %{x:.2f}<extra></extra>"), row=1, col=2)
    fig.add_trace(go.Bar(y=[repr(t) for t in la.bottom_tokens][::-1], x=la.bottom_values[::-1],
                         orientation="h", marker_color="#d62728", hovertemplate="%{y}: %{x:.2f}<extra></extra>"),
                  row=1, col=3)
    fig.update_xaxes(title_text="activation", row=1, col=1)
    fig.update_yaxes(title_text="tokens", row=1, col=1)
    fig.update_xaxes(title_text="W_dec·W_U", row=1, col=2)
    fig.update_xaxes(title_text="W_dec·W_U", row=1, col=3)
    fig.update_layout(template=TEMPLATE, height=360, showlegend=False, margin=dict(t=60, b=40))
    max_act = max((e.act for e in d.top_examples), default=0.0)
    header = (f'<h3 style="margin:4px 0">Latent {d.latent}{" — " + html.escape(d.title) if d.title else ""}</h3>'
              f'<div style="color:#555">max activation {max_act:.2f} · fires on {100 * h.density:.3g}% '
              f"of {h.n_tokens} tokens</div>")
    return DashboardPanel(header, fig, render_top_examples(d.top_examples))
