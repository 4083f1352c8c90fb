"""Plotly figures the chapters show. Pure: each function returns a figure and draws nothing.

Shared by every chapter; add new functions at the end of the file, one per kind of figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from utils.detection import auroc

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


def grouped_bars(
    groups: Mapping[str, Mapping[str, float]],
    *,
    title: str = "",
    yaxis: str = "",
    hline: float | None = None,
    hline_label: str = "",
) -> go.Figure:
    """One group of bars per key of `groups`, one bar per inner key (e.g. CE per SAE and condition)."""
    series: dict[str, dict[str, float]] = {}
    for g, bars in groups.items():
        for name, v in bars.items():
            series.setdefault(name, {})[g] = v
    fig = go.Figure()
    for name, vals in series.items():
        xs = [g for g in groups if g in vals]
        fig.add_trace(go.Bar(x=xs, y=[vals[g] for g in xs], name=name,
                             hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    if hline is not None:
        fig.add_hline(y=hline, line=dict(dash="dot", color="grey"), annotation_text=hline_label)
    fig.update_layout(barmode="group", template=TEMPLATE, title=title, yaxis_title=yaxis, height=400)
    return fig


def heldout_scatter(
    train: Tensor,
    test: Tensor,
    groups: Mapping[str, Sequence[int]],
    *,
    highlight: Mapping[str, int] | None = None,
    frequency: Tensor | None = None,
    title: str = "Chosen on the training claims, judged on held-out claims",
    xaxis: str = "AUROC on the training claims",
    yaxis: str = "AUROC on the held-out claims",
) -> go.Figure:
    """One point per latent of each named group (train statistic vs held-out one); the diagonal
    is "held up", the horizontal line at 0.5 is chance. `highlight` rings single latents."""
    train, test = train.detach().float().cpu(), test.detach().float().cpu()
    freq = None if frequency is None else frequency.detach().float().cpu()
    fig = go.Figure()
    for name, idx in groups.items():
        idx = [int(i) for i in idx]
        hover = [f"latent {i}" + ("" if freq is None else f"<br>fires on {100 * freq[i]:.3g}% of tokens")
                 for i in idx]
        fig.add_trace(go.Scatter(x=train[idx].tolist(), y=test[idx].tolist(), mode="markers", name=name,
                                 text=hover, marker=dict(size=7, opacity=0.7),
                                 hovertemplate="%{text}<br>train %{x:.3f}<br>held-out %{y:.3f}<extra></extra>"))
    for name, i in (highlight or {}).items():
        fig.add_trace(go.Scatter(x=[float(train[i])], y=[float(test[i])], mode="markers+text", name=name,
                                 text=[f"{i}"], textposition="top center",
                                 marker=dict(size=16, symbol="circle-open", line=dict(width=3))))
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(dash="dot", color="grey"))
    fig.add_hline(y=0.5, line=dict(dash="dash", color="grey"), annotation_text="chance")
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=xaxis, yaxis_title=yaxis, height=460,
                      xaxis=dict(range=[0, 1.02]), yaxis=dict(range=[0, 1.02]))
    return fig


def volcano(
    effect: Tensor,
    p_value: Tensor,
    *,
    thresholds: Mapping[str, float] | None = None,
    selected: Sequence[int] = (),
    title: str = "Every latent tested: effect size against significance",
    xaxis: str = "Cohen's d (sycophantic − honest)",
) -> go.Figure:
    """Effect size against −log10 p, one point per latent; dotted lines mark p-value thresholds
    (e.g. uncorrected 0.05, Benjamini–Hochberg's cut-off, Bonferroni's α/m)."""
    effect = effect.detach().float().cpu()
    y = -p_value.detach().double().clamp_min(1e-300).log10().float().cpu()
    sel = torch.zeros(len(effect), dtype=torch.bool)
    sel[list(selected)] = True
    fig = go.Figure()
    for name, mask, color in (("other latents", ~sel, "#9aa5b1"), ("selected", sel, "#d62728")):
        idx = torch.nonzero(mask).flatten()
        fig.add_trace(go.Scattergl(x=effect[idx].tolist(), y=y[idx].tolist(), mode="markers", name=name,
                                   text=[f"latent {i}" for i in idx.tolist()],
                                   marker=dict(size=5 if name == "other latents" else 8, color=color, opacity=0.7),
                                   hovertemplate="%{text}<br>d %{x:.2f}<br>−log10 p %{y:.1f}<extra></extra>"))
    for label, p in (thresholds or {}).items():
        fig.add_hline(y=-torch.log10(torch.tensor(float(p))).item(), line=dict(dash="dot", color="grey"),
                      annotation_text=label)
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=xaxis, yaxis_title="−log10 p",
                      height=440)
    return fig


def null_histogram(
    null: Sequence[float],
    observed: Mapping[str, float],
    *,
    title: str = "",
    xaxis: str = "",
) -> go.Figure:
    """A histogram of a control distribution (e.g. the effect of ablating random latents) with a
    vertical line at each observed value."""
    fig = go.Figure(go.Histogram(x=list(null), name="random controls", marker_color="#9aa5b1",
                                 nbinsx=min(30, max(5, len(null) // 2)),
                                 hovertemplate="%{x}: %{y} draws<extra></extra>"))
    for i, (name, v) in enumerate(observed.items()):
        fig.add_vline(x=float(v), line=dict(color=["#d62728", "#1f77b4", "#2ca02c"][i % 3], width=3),
                      annotation_text=name, annotation_position="top left" if i % 2 else "top right")
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=xaxis, yaxis_title="draws", height=400,
                      showlegend=False)
    return fig


def roc_curves(curves: Mapping[str, tuple[Tensor, Tensor]], *, title: str = "ROC on the held-out claims") -> go.Figure:
    """ROC curve of each named (scores, labels) pair; the legend gives the AUROC (`utils.detection.auroc`)."""
    fig = go.Figure()
    for name, (scores, labels) in curves.items():
        s, y = scores.detach().float().cpu(), labels.bool().cpu()
        order = s.argsort(descending=True)
        s, y = s[order], y[order]
        tp, fp = y.float().cumsum(0), (~y).float().cumsum(0)
        last = torch.cat([s[1:] != s[:-1], torch.tensor([True])])  # one point per distinct threshold
        tpr = torch.cat([torch.zeros(1), tp[last] / y.sum()])
        fpr = torch.cat([torch.zeros(1), fp[last] / (~y).sum()])
        area = auroc(s, y).item()  # the area under these points (ties are diagonal steps)
        fig.add_trace(go.Scatter(x=fpr.tolist(), y=tpr.tolist(), mode="lines", name=f"{name} (AUROC {area:.3f})",
                                 hovertemplate="false positives %{x:.2f}<br>true positives %{y:.2f}<extra></extra>"))
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(dash="dot", color="grey"))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="false positive rate",
                      yaxis_title="true positive rate", height=440, width=560)
    return fig


# ---- chapters 02 and 03: SAE architecture, the loss trade-off -------------------------------------
def histograms(
    series: Mapping[str, Sequence[float] | Tensor],
    *,
    title: str = "",
    xaxis: str = "",
    nbins: int = 60,
    log_y: bool = False,
) -> go.Figure:
    """Overlaid histograms, one per named series (norms, firing frequencies ...)."""
    fig = go.Figure()
    for name, values in series.items():
        vals = values.detach().float().cpu().flatten().tolist() if isinstance(values, Tensor) else list(values)
        fig.add_trace(go.Histogram(x=vals, name=name, opacity=0.6, nbinsx=nbins,
                                   hovertemplate=f"{name}<br>%{{x}}: %{{y}}<extra></extra>"))
    fig.update_layout(barmode="overlay", template=TEMPLATE, title=title, xaxis_title=xaxis,
                      yaxis_title="count", height=380)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def loss_curves(history: Sequence[Mapping[str, float]], *, title: str = "Training an SAE",
                smooth: int = 1) -> go.Figure:
    """Reconstruction and sparsity loss (left axis, log) and L0 (right axis) against the step.

    `history` is a list of dicts with "step", "recon_loss", "sparsity_loss" and optionally "l0";
    `smooth` averages each curve over that many consecutive entries.
    """
    def mean_of(key: str) -> list[float]:
        v = torch.tensor([float(h[key]) for h in history])
        if smooth > 1 and len(v) >= smooth:
            v = torch.nn.functional.avg_pool1d(v[None, None], smooth, 1, count_include_pad=False,
                                               padding=smooth // 2)[0, 0][: len(history)]
        return v.tolist()

    steps = [h["step"] for h in history]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for key, name in (("recon_loss", "reconstruction loss"), ("sparsity_loss", "sparsity loss (mean |latent|)")):
        fig.add_trace(go.Scatter(x=steps, y=mean_of(key), mode="lines", name=name,
                                 hovertemplate=f"step %{{x}}<br>{name} %{{y:.4g}}<extra></extra>"),
                      secondary_y=False)
    if history and "l0" in history[0]:
        fig.add_trace(go.Scatter(x=steps, y=mean_of("l0"), mode="lines", name="L0 (active latents)",
                                 line=dict(dash="dot"),
                                 hovertemplate="step %{x}<br>L0 %{y:.1f}<extra></extra>"), secondary_y=True)
    fig.update_yaxes(type="log", title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="L0", secondary_y=True, rangemode="tozero")
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="step", height=400)
    return fig


def frontier(points: Mapping[str, Sequence[Mapping[str, float]]], *, x: str = "l0",
             y: str = "explained_variance", label: str = "l1_coeff",
             title: str = "The sparsity–reconstruction frontier",
             xaxis: str = "L0 (active latents per token)   ← sparser",
             yaxis: str = "explained variance   better →") -> go.Figure:
    """One line of points per named run set (e.g. an l1_coeff sweep), L0 against explained variance.

    Each point is a dict with keys `x`, `y` and `label`; the label is written next to the point
    and shown on hover, so the reader can see which way the coefficient moves the frontier.
    """
    fig = go.Figure()
    for name, pts in points.items():
        pts = sorted(pts, key=lambda p: p[x])
        fig.add_trace(go.Scatter(
            x=[p[x] for p in pts], y=[p[y] for p in pts], mode="lines+markers+text", name=name,
            text=[f"{p[label]:.3g}" for p in pts], textposition="top center",
            hovertemplate=f"{label} %{{text}}<br>L0 %{{x:.1f}}<br>{y} %{{y:.3f}}<extra>{name}</extra>"))
    fig.update_xaxes(type="log", title=xaxis)
    fig.update_yaxes(title=yaxis)
    fig.update_layout(template=TEMPLATE, title=title, height=440)
    return fig


def dead_fraction_curves(histories: Mapping[str, Sequence[Mapping]], *, title: str = "Dead latents during training",
                         key: str = "dead_fraction") -> go.Figure:
    """Dead fraction against training step, one line per run (chapter 05); hover shows the run's L0 and EV."""
    fig = go.Figure()
    for name, hist in histories.items():
        text = [f"L0 {h.get('l0', float('nan')):.1f}, explained variance {h.get('explained_variance', float('nan')):.3f}"
                for h in hist]
        fig.add_trace(go.Scatter(x=[h["step"] for h in hist], y=[h[key] for h in hist], mode="lines+markers",
                                 name=name, text=text, marker=dict(size=4),
                                 hovertemplate="step %{x}<br>dead %{y:.1%}<br>%{text}<extra>" + name + "</extra>"))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="training step",
                      yaxis_title="fraction of latents dead", yaxis=dict(tickformat=".0%", rangemode="tozero"),
                      height=400)
    return fig


def firing_histogram(freqs: Mapping[str, Tensor], *, title: str = "Firing frequency per latent",
                     bins: int = 40) -> go.Figure:
    """log10 firing frequency of every latent, one overlaid histogram per run; dead latents (frequency 0)
    are counted in a separate bar at the left, labelled "dead"."""
    named = {n: f.detach().float().cpu().flatten() for n, f in freqs.items()}
    alive = torch.cat([f[f > 0] for f in named.values()]) if named else torch.zeros(0)
    lo = float(alive.min().log10()) if alive.numel() else -6.0
    lo = min(lo, -1.0)
    dead_x = lo - 0.6
    fig = go.Figure()
    for name, f in named.items():
        logf = f[f > 0].log10()
        n_dead = int((f == 0).sum())
        fig.add_trace(go.Histogram(x=logf.tolist(), name=name, opacity=0.55, legendgroup=name,
                                   xbins=dict(start=lo - 0.05, end=0.05, size=(0.1 - lo) / bins),
                                   hovertemplate="10^%{x} of tokens: %{y} latents<extra>" + name + "</extra>"))
        fig.add_trace(go.Bar(x=[dead_x], y=[n_dead], width=0.3, name=f"{name}: dead", legendgroup=name,
                             showlegend=False, opacity=0.55,
                             hovertemplate=f"{name}: {n_dead} dead latents ({n_dead / max(1, len(f)):.1%})<extra></extra>"))
    fig.add_vline(x=dead_x + 0.3, line=dict(dash="dot", color="grey"))
    fig.add_annotation(x=dead_x, y=1.02, yref="paper", text="dead", showarrow=False)
    fig.update_layout(template=TEMPLATE, title=title, barmode="overlay", height=420,
                      xaxis_title="log10 firing frequency (fraction of tokens)", yaxis_title="latents")
    return fig


def variant_frontier(
    points: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    title: str = "Sparsity against reconstruction, every variant on the same activations",
) -> go.Figure:
    """L0 (log x) against explained variance, one line of points per variant (ch04).

    Each point is a dict with "l0", "explained_variance", and optionally "setting" (the
    coefficient or k that produced it) and "relative_reconstruction_bias" (γ, shown on hover:
    below 1 means shrinkage). Up and to the left is better.
    """
    fig = go.Figure()
    for name, pts in points.items():
        pts = sorted(pts, key=lambda p: p["l0"])
        hover = [f"{name}<br>{p.get('setting', '')}<br>L0 {p['l0']:.1f}<br>explained variance "
                 f"{p['explained_variance']:.3f}"
                 + (f"<br>γ {p['relative_reconstruction_bias']:.2f}" if "relative_reconstruction_bias" in p else "")
                 for p in pts]
        fig.add_trace(go.Scatter(x=[p["l0"] for p in pts], y=[p["explained_variance"] for p in pts],
                                 mode="lines+markers", name=name, text=hover, marker=dict(size=9),
                                 hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(type="log", title="L0: active latents per token (log scale; ← sparser)")
    fig.update_yaxes(title="explained variance (about the mean; ↑ better)")
    fig.update_layout(template=TEMPLATE, title=title, height=480)
    return fig


def feature_split(
    cosines: Sequence[Tensor],
    titles: Sequence[str],
    *,
    title: str = "Decoder cosine similarity between dictionaries of growing size",
) -> go.Figure:
    """Heatmaps of |cos| between the decoder rows of a smaller (rows) and a larger (columns)
    dictionary (ch04). Sort both axes by parent first, so that a parent latent's children sit
    in one horizontal band: a split shows as one row lit over several columns."""
    fig = make_subplots(rows=1, cols=len(cosines), subplot_titles=list(titles), horizontal_spacing=0.08)
    for i, cos in enumerate(cosines):
        c = cos.detach().float().cpu()
        fig.add_trace(go.Heatmap(z=c.numpy(), zmin=0, zmax=1, colorscale="Viridis", showscale=i == 0,
                                 colorbar=dict(title="cos"),
                                 hovertemplate="smaller latent %{y}<br>larger latent %{x}<br>cos %{z:.2f}<extra></extra>"),
                      row=1, col=i + 1)
        fig.update_yaxes(autorange="reversed", title="latent of the smaller SAE", row=1, col=i + 1)
        fig.update_xaxes(title="latent of the larger SAE", row=1, col=i + 1)
    fig.update_layout(template=TEMPLATE, title=title, height=420, width=max(700, 420 * len(cosines)))
    return fig
