"""utils.dashboards: the compute_* pieces on hand-made inputs, and a panel that renders inline and as HTML."""

from __future__ import annotations

import pytest
import torch

from _helpers import tiny_hooked
from utils import dashboards as D
from utils.activations import cache_activations, encode


class _Tok:
    def decode(self, ids):
        return "".join(f"t{i} " for i in ids)


class _Model:
    """Just enough of a HookedTransformer for the logit attribution: W_U, cfg.d_vocab, a tokenizer."""

    def __init__(self, W_U):
        self.W_U = W_U
        self.tokenizer = _Tok()
        self.cfg = type("cfg", (), {"d_vocab": W_U.shape[1], "device": "cpu"})()


class _SAE:
    def __init__(self, W_dec):
        self.W_dec = W_dec


def test_top_activations_windows_and_order():
    acts = torch.zeros(2, 6)
    acts[0, 0] = 99.0        # BOS: skipped
    acts[0, 3] = 2.0
    acts[1, 1] = 5.0
    acts[1, 5] = 1.0
    tokens = torch.arange(12).reshape(2, 6)
    vocab = [f"w{i}" for i in range(12)]
    ex = D.compute_top_activations(acts, tokens, vocab, k=5, window=(2, 1))
    assert [(e.seq, e.pos, e.act) for e in ex] == [(1, 1, 5.0), (0, 3, 2.0), (1, 5, 1.0)]  # stops at zeros
    assert ex[0].tokens == ["w6", "w7", "w8"] and ex[0].center == 1           # window clipped at the left edge
    assert ex[1].tokens == ["w1", "w2", "w3", "w4"] and ex[1].center == 2
    assert ex[2].tokens == ["w9", "w10", "w11"] and ex[2].acts == [0.0, 0.0, 1.0]
    with_bos = D.compute_top_activations(acts, tokens, vocab, k=1, skip_first=False)
    assert (with_bos[0].seq, with_bos[0].pos) == (0, 0)


def test_logit_attribution_by_hand():
    W_dec = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    W_U = torch.tensor([[3.0, -1.0, 0.5, 2.0], [0.0, 1.0, -4.0, 0.0]])
    la = D.compute_logit_attribution(_SAE(W_dec), _Model(W_U), latent=1, k=2)
    # W_dec[1] · W_U = [0, 1, -4, 0]: token 1 first, then a tie at 0 between tokens 0 and 3
    assert la.top_ids[0] == 1 and la.top_ids[1] in (0, 3) and la.top_values == [1.0, 0.0]
    assert la.bottom_ids[0] == 2 and la.bottom_values[0] == -4.0
    assert la.top_tokens[0] == "t1 "
    la0 = D.compute_logit_attribution(_SAE(W_dec), _Model(W_U), latent=0, k=1)
    assert la0.top_ids == [0] and la0.bottom_ids == [1]


def test_histogram_and_density():
    acts = torch.tensor([[0.0, 1.0, 0.0, 3.0], [0.0, 0.0, 2.0, 0.0]])
    h = D.compute_activation_histogram(acts, bins=2)
    assert h.density == pytest.approx(3 / 8) and h.n_tokens == 8
    assert h.counts == [1, 2] and h.edges == pytest.approx([0.0, 1.5, 3.0])
    dead = D.compute_activation_histogram(torch.zeros(5))
    assert dead.density == 0 and sum(dead.counts) == 0


def _panel():
    ex = [D.TopExample(0, 2, 4.0, ["The", " cat", " walked", "\n"], [0.0, 0.5, 4.0, 0.0], 2)]
    la = D.LogitAttribution([1], [2.0], [2], [-1.0], [" walked"], [" <&>"])
    h = D.Histogram([0.0, 2.0, 4.0], [3, 1], 0.25, 16)
    return D.render_dashboard(D.LatentDashboard(7, ex, la, h, title="past tense"))


def test_dashboard_renders_as_standalone_html(tmp_path):
    panel = _panel()
    page = panel.to_html()
    assert page.startswith("<!DOCTYPE html>") and "plotly-graph-div" in page
    assert "Latent 7" in page and "past tense" in page
    assert "font-weight:bold" in page and ">walked</span>" in page.replace(" walked", "walked")
    assert "⏎" in page and "&lt;&amp;&gt;" not in page.split("plotly-graph-div")[0]   # escaped, newline shown
    path = panel.write_html(tmp_path / "latent7.html")
    text = path.read_text(encoding="utf-8")
    assert "plotly-graph-div" in text and 'class="tok"' in text and "rgba(255,127,14,1.00)" in text
    assert "Plotly.newPlot" in text                                       # the figure's script is there


def test_dashboard_displays_inline():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    panel = _panel()
    with capture_output() as cap:
        from IPython.display import display

        display(panel)
    kinds = [set(o.data) for o in cap.outputs]
    assert "text/html" in kinds[0] and "text/html" in kinds[-1]
    assert any("application/vnd.plotly.v1+json" in k for k in kinds[1:-1])    # plotly's own renderer
    assert "Latent 7" in cap.outputs[0].data["text/html"] and 'class="tok"' in cap.outputs[-1].data["text/html"]


@pytest.fixture(scope="module")
def tiny():
    """A random 2-layer HookedSAETransformer with the shipped tokenizer and a random TopK SAE (SAELens)."""
    return tiny_hooked(n_ctx=32, k=4, n_seq=6, seq=16, saelens=True)


def test_compute_dashboard_from_tokens_resid_or_latent_acts(tiny):
    model, sae, tokens = tiny
    resid = cache_activations(model, "blocks.1.hook_resid_pre", tokens, flatten=False)
    j = int(encode(sae, resid).sum((0, 1)).argmax())
    d = D.compute_dashboard(model, sae, tokens, j, resid=resid, k=5)
    assert d.top_examples and d.top_examples[0].act > 0 and len(d.logits.top_ids) == 10
    assert 0 < d.histogram.density <= 1
    for other in (D.compute_dashboard(model, sae, tokens, j, k=5),                       # runs the model itself
                  D.compute_dashboard(model, sae, tokens, j, latent_acts=encode(sae, resid, j), k=5)):
        assert [(e.seq, e.pos) for e in other.top_examples] == [(e.seq, e.pos) for e in d.top_examples]
        assert other.histogram.counts == d.histogram.counts
    assert "plotly-graph-div" in D.render_dashboard(d).to_html(include_plotlyjs=False)
