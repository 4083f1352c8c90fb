"""Plotly figures the chapters show. Pure: each function returns a figure and draws nothing.

Shared by every chapter; add new functions at the end of the file, one per kind of figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

TEMPLATE = "plotly_white"


def lines(
    series: Mapping[str, Sequence[float]],
    *,
    x: Sequence[float] | None = None,
    title: str = "",
    xaxis: str = "step",
    yaxis: str = "",
    log_y: bool = False,
) -> go.Figure:
    """One line per named series (loss curves, sweeps)."""
    fig = go.Figure()
    for name, ys in series.items():
        xs = list(x) if x is not None else list(range(len(ys)))
        fig.add_trace(go.Scatter(x=xs, y=list(ys), mode="lines", name=name))
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, template=TEMPLATE,
                      height=380)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def feature_geometry(W: Tensor, titles: Sequence[str]) -> go.Figure:
    """Per instance: WᵀW (which features share directions) and ‖W_i‖ coloured by superposition.

    The colour of feature i's bar is Σ_{j≠i} (Ŵ_i·W_j)²: 0 (dark) when it has a direction of
    its own, larger (bright) when it shares one with other features.
    """
    W = W.detach().float().cpu()  # [inst d_hidden feats]
    n = W.shape[0]
    fig = make_subplots(rows=2, cols=n, subplot_titles=list(titles) + [""] * n,
                        vertical_spacing=0.08, row_heights=[0.6, 0.4])
    norms = W.norm(dim=1)  # [inst feats]
    W_hat = W / norms.clamp_min(1e-8)[:, None, :]
    interference = torch.einsum("ihf,ihg->ifg", W_hat, W).pow(2)
    interference = interference.sum(-1) - torch.diagonal(interference, dim1=1, dim2=2)
    for i in range(n):
        gram = (W[i].T @ W[i]).numpy()
        fig.add_trace(go.Heatmap(z=gram, zmin=-1, zmax=1, colorscale="RdBu", showscale=i == 0,
                                 colorbar=dict(len=0.55, y=0.75, title="WᵀW")), row=1, col=i + 1)
        fig.add_trace(go.Bar(y=norms[i].numpy(), marker=dict(
            color=interference[i].numpy(), colorscale="Viridis", cmin=0, cmax=1),
            showlegend=False, hovertemplate="feature %{x}<br>‖W_i‖ %{y:.2f}<extra></extra>"),
            row=2, col=i + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=i + 1)
        fig.update_yaxes(range=[0, 1.3], row=2, col=i + 1)
    fig.update_layout(template=TEMPLATE, height=560, width=max(700, 260 * n),
                      title="Feature geometry: WᵀW (top) and ‖W_i‖ coloured by superposition (bottom)")
    return fig


def dimensionality(
    one_over_density: Sequence[float],
    dims: Tensor,
    dims_overall: Sequence[float],
) -> go.Figure:
    """Elhage et al.'s Figure: per-feature dimensionality D_i against 1/(1−S).

    Points cluster on the fractions 1, 1/2, 2/5, 1/3 ...: the polytopes (antipodal pairs,
    pentagons, tetrahedra) that features arrange themselves into. The line is D* per model.
    """
    dims = dims.detach().float().cpu()  # [inst feats]
    fig = go.Figure()
    xs = [x for x, row in zip(one_over_density, dims) for _ in row]
    fig.add_trace(go.Scatter(x=xs, y=dims.flatten().tolist(), mode="markers", name="D_i",
                             marker=dict(size=5, opacity=0.5)))
    fig.add_trace(go.Scatter(x=list(one_over_density), y=list(dims_overall), mode="lines+markers",
                             name="D* = m / ‖W‖²"))
    for frac, label in [(1, "1"), (1 / 2, "1/2"), (2 / 5, "2/5"), (1 / 3, "1/3"), (1 / 4, "1/4")]:
        fig.add_hline(y=frac, line=dict(dash="dot", width=1, color="grey"), annotation_text=label)
    fig.update_xaxes(type="log", title="1 / (1 − S)   (sparser →)")
    fig.update_yaxes(title="dimensions per feature", range=[-0.05, 1.1])
    fig.update_layout(template=TEMPLATE, height=420, title="Dimensionality per feature")
    return fig
