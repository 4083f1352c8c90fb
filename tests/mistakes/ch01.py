"""Chapter 01 (superposition): common mistakes per exercise, written as a student would."""

from mistakes import Mistake

CHAPTER = "01_superposition"

# ---- test_generate_batch ---------------------------------------------------------------------------
_GB = '''
def generate_batch(n_inst: int, n_feats: int, feature_probability, batch: int, *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Sparse features, shape (batch, n_inst, n_feats): U[0,1] with probability p, else 0."""
{body}'''


def _gb(name, body, names, subtle=False):
    return Mistake("test_generate_batch", name, _GB.format(body=body), names=names, subtle=subtle)


GENERATE_BATCH = [
    _gb("inverted_probability", '''
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    values = torch.rand(batch, n_inst, n_feats, generator=generator)
    off = torch.rand(batch, n_inst, n_feats, generator=generator) < p[None, :, None]   # sparsity S = p
    return values * ~off
''', r"inverted", subtle=True),
    _gb("gaussian_magnitudes", '''
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    values = torch.randn(batch, n_inst, n_feats, generator=generator)
    on = torch.rand(batch, n_inst, n_feats, generator=generator) < p[None, :, None]
    return values * on
''', r"torch\.rand .*not torch\.randn"),
    _gb("ignores_generator", '''
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    values = torch.rand(batch, n_inst, n_feats)
    on = torch.rand(batch, n_inst, n_feats) < p[None, :, None]
    return values * on
''', r"generator=generator", subtle=True),
    _gb("generator_in_one_draw_only", '''
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    values = torch.rand(batch, n_inst, n_feats, generator=generator)
    on = torch.rand(batch, n_inst, n_feats) < p[None, :, None]
    return values * on
''', r"every torch\.rand call", subtle=True),
    _gb("one_draw_for_mask_and_value", '''
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    u = torch.rand(batch, n_inst, n_feats, generator=generator)
    return u * (u < p[None, :, None])
''', r"one random draw decides both", subtle=True),
    _gb("mask_without_magnitudes", '''
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    return torch.bernoulli(p[None, :, None].expand(batch, n_inst, n_feats), generator=generator)
''', r"every active feature equals 1"),
    _gb("probability_on_feature_axis", '''
    values = torch.rand(batch, n_inst, n_feats, generator=generator)
    on = torch.rand(batch, n_inst, n_feats, generator=generator) < torch.as_tensor(feature_probability)
    return values * on
''', r"p\[None, :, None\]"),
    _gb("instance_axis_first", '''
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    values = torch.rand(n_inst, batch, n_feats, generator=generator)
    on = torch.rand(n_inst, batch, n_feats, generator=generator) < p[:, None, None]
    return values * on
''', r"wrong order"),
    _gb("mask_shared_by_batch", '''
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    values = torch.rand(batch, n_inst, n_feats, generator=generator)
    on = torch.rand(1, n_inst, n_feats, generator=generator) < p[None, :, None]     # broadcasts over the batch
    return values * on
''', r"shared by the whole batch", subtle=True),
    _gb("dropout_rescaling", '''
    p = torch.as_tensor(feature_probability, dtype=torch.float32).expand(n_inst)
    values = torch.rand(batch, n_inst, n_feats, generator=generator)
    on = torch.rand(batch, n_inst, n_feats, generator=generator) < p[None, :, None]
    return values * on / p[None, :, None]          # keep the expected value, as dropout does
''', r"dropout"),
]

# ---- test_toy_model -------------------------------------------------------------------------------
_TM = '''
class ToyModel(nn.Module):
    """x' = ReLU(Wᵀ W x + b), one independent (W, b) per instance."""

    def __init__(self, cfg, *, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        W = torch.empty(cfg.n_inst, cfg.d_hidden, cfg.n_feats)
        nn.init.xavier_normal_(W, generator=generator)
        self.W = nn.Parameter(W)  # [inst d_hidden feats]
        self.b_final = nn.Parameter(torch.zeros(cfg.n_inst, cfg.n_feats))  # [inst feats]

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """h = W x: (batch, inst, feats) -> (batch, inst, d_hidden)."""
{hidden}
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x' = ReLU(Wᵀ h + b_final): (batch, inst, feats) -> (batch, inst, feats)."""
{forward}'''
_HIDDEN = '''        return einops.einsum(self.W, x, "inst hid feats, batch inst feats -> batch inst hid")
'''
_BACK = '''        h = self.hidden(x)
        out = einops.einsum(self.W, h, "inst hid feats, batch inst hid -> batch inst feats")
'''


def _tm(name, names, *, hidden=_HIDDEN, forward=_BACK + "        return torch.relu(out + self.b_final)\n",
        subtle=False):
    return Mistake("test_toy_model", name, _TM.format(hidden=hidden, forward=forward), names=names, subtle=subtle)


TOY_MODEL = [
    _tm("no_bias", r"b_final is missing", forward=_BACK + "        return torch.relu(out)\n", subtle=True),
    _tm("no_relu", r"ReLU is missing", forward=_BACK + "        return out + self.b_final\n"),
    _tm("relu_before_bias", r"ReLU comes before b_final",
        forward=_BACK + "        return torch.relu(out) + self.b_final\n", subtle=True),
    _tm("relu_in_hidden", r"hidden applies a ReLU", subtle=True, hidden='''        h = einops.einsum(self.W, x, "inst hid feats, batch inst feats -> batch inst hid")
        return torch.relu(h)
'''),
    _tm("relu_on_h_in_forward", r"ReLU to the hidden vector", subtle=True, forward='''        h = torch.relu(self.hidden(x))
        out = einops.einsum(self.W, h, "inst hid feats, batch inst hid -> batch inst feats")
        return torch.relu(out + self.b_final)
'''),
    _tm("first_instance_weights", r"instance 0's W", subtle=True, hidden='''        return x @ self.W[0].T
''', forward='''        return torch.relu(self.hidden(x) @ self.W[0] + self.b_final)
'''),
    _tm("instances_summed_in_hidden", r"summed over the instances", hidden='''        return einops.einsum(self.W, x, "inst hid feats, batch inst feats -> batch hid")
'''),
    _tm("instances_mixed", r"adds up all instances|instances are mixed", subtle=True, hidden='''        return torch.einsum("ihf,bjf->bjh", self.W, x)
'''),
    _tm("forward_under_no_grad", r"no gradient reached `W`", subtle=True, forward='''        with torch.no_grad():           # no need to track the arithmetic
            h = self.hidden(x)
            out = einops.einsum(self.W, h, "inst hid feats, batch inst hid -> batch inst feats")
        return torch.relu(out + self.b_final)
'''),
    _tm("detached_weights", r"hidden step h = W x: W is detached", subtle=True, hidden='''        return einops.einsum(self.W.data, x, "inst hid feats, batch inst feats -> batch inst hid")
'''),
]

# ---- test_importance_weighted_loss ----------------------------------------------------------------
_IL = '''
def importance_weighted_loss(out: torch.Tensor, x: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
    """Σ_i I_i (x_i − x'_i)², averaged over the batch: shape (n_inst,)."""
{body}'''


def _il(name, body, names, subtle=False):
    return Mistake("test_importance_weighted_loss", name, _IL.format(body=body), names=names, subtle=subtle)


LOSS = [
    _il("mean_over_features", "    return ((x - out).pow(2) * importance).mean((0, 2))\n",
        r"averaged over features", subtle=True),
    _il("mean_over_instances_too", "    return ((x - out).pow(2) * importance).sum(-1).mean()\n",
        r"one loss per instance"),
    _il("no_importance", "    return (x - out).pow(2).sum(-1).mean(0)\n", r"importance weights are missing"),
    _il("importance_squared", "    return ((importance * (x - out)) ** 2).sum(-1).mean(0)\n",
        r"importance is squared", subtle=True),
    _il("absolute_error", "    return (importance * (x - out).abs()).sum(-1).mean(0)\n",
        r"absolute error", subtle=True),
    _il("sum_over_batch", "    return ((x - out).pow(2) * importance).sum(-1).sum(0)\n",
        r"summed over the batch", subtle=True),
    _il("weighted_average", "    return ((x - out).pow(2) * importance).sum(-1).mean(0) / importance.sum()\n",
        r"divided by Σ I_i", subtle=True),
    _il("reductions_swapped", "    return ((x - out).pow(2) * importance).mean(-1).sum(0)\n",
        r"reductions are swapped", subtle=True),
    _il("wrong_axis", "    return ((x - out).pow(2) * importance).sum(1).mean(0)\n",
        r"one value per feature"),
    _il("in_place_on_x", '''    x -= out                       # the error, without another tensor
    return (x.pow(2) * importance).sum(-1).mean(0)
''', r"changed its input `x` in place", subtle=True),
    _il("rebuilt_from_numbers", '''    losses = []
    for k in range(x.shape[1]):
        losses.append(((x[:, k] - out[:, k]).pow(2) * importance).sum(-1).mean().item())
    return torch.tensor(losses)
''', r"cut off from autograd", subtle=True),
]

# ---- test_dimensions_per_feature ------------------------------------------------------------------
_DF = '''
def dimensions_per_feature(W: torch.Tensor) -> torch.Tensor:
    """D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)² for W of shape (n_inst, d_hidden, n_feats)."""
{body}'''


def _df(name, body, names, subtle=False):
    return Mistake("test_dimensions_per_feature", name, _DF.format(body=body), names=names, subtle=subtle)


DIMS = [
    _df("abs_not_square", '''    W = W.detach()
    norms = W.norm(dim=1)
    W_hat = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = einops.einsum(W_hat, W, "inst hid i, inst hid j -> inst i j").abs().sum(-1)
    return norms.pow(2) / overlaps.clamp_min(1e-8)
''', r"square the overlaps", subtle=True),
    _df("not_normalised", '''    W = W.detach()
    norms = W.norm(dim=1)
    overlaps = einops.einsum(W, W, "inst hid i, inst hid j -> inst i j").pow(2).sum(-1)
    return norms.pow(2) / overlaps.clamp_min(1e-8)
''', r"normalise W_i", subtle=True),
    _df("self_excluded", '''    W = W.detach()
    norms = W.norm(dim=1)
    W_hat = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = einops.einsum(W_hat, W, "inst hid i, inst hid j -> inst i j").pow(2)
    others = overlaps * (1 - torch.eye(W.shape[-1]))      # interference from the *other* features
    return norms.pow(2) / others.sum(-1).clamp_min(1e-8)
''', r"left out j = i", subtle=True),
    _df("no_clamp_nan", '''    W = W.detach()
    norms = W.norm(dim=1)
    W_hat = W / norms[:, None, :]
    overlaps = einops.einsum(W_hat, W, "inst hid i, inst hid j -> inst i j").pow(2).sum(-1)
    return norms.pow(2) / overlaps
''', r"NaN"),
    _df("norm_over_features", '''    W = W.detach()
    norms = W.norm(dim=-1)
    W_hat = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = einops.einsum(W_hat, W, "inst hid i, inst hid j -> inst i j").pow(2).sum(-1)
    return norms.pow(2) / overlaps.clamp_min(1e-8)
''', r"wrong axis"),
    _df("summed_over_i", '''    W = W.detach()
    norms = W.norm(dim=1)
    W_hat = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = einops.einsum(W_hat, W, "inst hid i, inst hid j -> inst i j").pow(2).sum(1)
    return norms.pow(2) / overlaps.clamp_min(1e-8)
''', r"over i instead of j", subtle=True),
    _df("normalised_in_place", '''    W_hat = W.detach()
    norms = W_hat.norm(dim=1)
    W_hat /= norms.clamp_min(1e-8)[:, None, :]
    overlaps = einops.einsum(W_hat, W, "inst hid i, inst hid j -> inst i j").pow(2).sum(-1)
    return norms.pow(2) / overlaps.clamp_min(1e-8)
''', r"changed its input `W` in place", subtle=True),
    _df("both_normalised", '''    W = W.detach()
    W_hat = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    overlaps = einops.einsum(W_hat, W_hat, "inst hid i, inst hid j -> inst i j").pow(2).sum(-1)
    return W.norm(dim=1).pow(2) / overlaps.clamp_min(1e-8)
''', r"normalised W_j too", subtle=True),
    _df("norm_not_squared", '''    W = W.detach()
    norms = W.norm(dim=1)
    W_hat = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = einops.einsum(W_hat, W, "inst hid i, inst hid j -> inst i j").pow(2).sum(-1)
    return norms / overlaps.clamp_min(1e-8)
''', r"squared norm", subtle=True),
    _df("upside_down", '''    W = W.detach()
    norms = W.norm(dim=1)
    W_hat = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = einops.einsum(W_hat, W, "inst hid i, inst hid j -> inst i j").pow(2).sum(-1)
    return overlaps / norms.pow(2).clamp_min(1e-8)
''', r"upside down"),
    _df("rows_as_features", '''    W = W.detach()
    norms = W.norm(dim=2)
    W_hat = W / norms.clamp_min(1e-8)[:, :, None]
    overlaps = einops.einsum(W_hat, W, "inst i hid, inst j hid -> inst i j").pow(2).sum(-1)
    return norms.pow(2) / overlaps.clamp_min(1e-8)
''', r"rows of W as the features"),
]

# ---- test_capacity (mean_abs_cosine and CAPACITY, one answer cell) ---------------------------------
_MAC = '''
def mean_abs_cosine(n: int, d: int, generator: torch.Generator | None = None) -> float:
    """Mean |cos| over pairs i != j of n random Gaussian directions in d dimensions."""
{body}

CAPACITY = {{
    "latents": None,            # dictionary entries of a 16x SAE on a 768-dimensional stream
    "orthogonal": None,         # at most how many of its decoder directions can be exactly orthogonal
    "interference_768": None,   # mean_abs_cosine(2000, 768)
}}
CAPACITY = {{
    "latents": {latents},
    "orthogonal": {orthogonal},
    "interference_768": {interference},
}}
print(CAPACITY)
'''
_MAC_OK = '''    V = torch.randn(n, d, generator=generator)
    V = V / V.norm(dim=1, keepdim=True)
    cos = V @ V.T
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    return cos[off_diagonal].abs().mean().item()'''
_INTER_OK = "mean_abs_cosine(2000, 768, torch.Generator().manual_seed(0))"


def _mac(name, names, *, body=_MAC_OK, latents="16 * 768", orthogonal="768", interference=_INTER_OK,
         subtle=False):
    return Mistake("test_capacity", name, _MAC.format(body=body, latents=latents, orthogonal=orthogonal,
                                                      interference=interference), names=names, subtle=subtle)


CAPACITY = [
    _mac("diagonal_included", r"diagonal", subtle=True, body='''    V = torch.randn(n, d, generator=generator)
    V = V / V.norm(dim=1, keepdim=True)
    return (V @ V.T).abs().mean().item()'''),
    _mac("uniform_vectors", r"Gaussian", body='''    V = torch.rand(n, d, generator=generator)
    V = V / V.norm(dim=1, keepdim=True)
    cos = V @ V.T
    return cos[~torch.eye(n, dtype=torch.bool)].abs().mean().item()'''),
    _mac("not_normalised", r"normalise each vector", body='''    V = torch.randn(n, d, generator=generator)
    cos = V @ V.T
    return cos[~torch.eye(n, dtype=torch.bool)].abs().mean().item()'''),
    _mac("returns_tensor", r"Python float", subtle=True, body='''    V = torch.randn(n, d, generator=generator)
    V = V / V.norm(dim=1, keepdim=True)
    cos = V @ V.T
    return cos[~torch.eye(n, dtype=torch.bool)].abs().mean()'''),
    _mac("upper_triangle_over_n_squared", r"upper triangle", subtle=True, body='''    V = torch.randn(n, d, generator=generator)
    V = V / V.norm(dim=1, keepdim=True)
    return torch.triu(V @ V.T, diagonal=1).abs().mean().item()'''),
    _mac("diagonal_removed_n_squared", r"n\(n − 1\) pairs", subtle=True, body='''    V = torch.randn(n, d, generator=generator)
    V = V / V.norm(dim=1, keepdim=True)
    cos = (V @ V.T).abs()
    return ((cos.sum() - cos.trace()) / n**2).item()'''),
    _mac("no_abs", r"absolute value", body='''    V = torch.randn(n, d, generator=generator)
    V = V / V.norm(dim=1, keepdim=True)
    cos = V @ V.T
    return cos[~torch.eye(n, dtype=torch.bool)].mean().item()'''),
    _mac("ignores_generator", r"generator=generator", subtle=True, body='''    V = torch.randn(n, d)
    V = V / V.norm(dim=1, keepdim=True)
    cos = V @ V.T
    return cos[~torch.eye(n, dtype=torch.bool)].abs().mean().item()'''),
    _mac("norm_without_keepdim", r"keepdim", body='''    V = torch.randn(n, d, generator=generator)
    V = V / V.norm(dim=1)
    cos = V @ V.T
    return cos[~torch.eye(n, dtype=torch.bool)].abs().mean().item()'''),
    _mac("latents_is_ratio", r"expansion ratio", latents="16"),
    _mac("all_orthogonal", r"cannot all be orthogonal", orthogonal="16 * 768"),
    _mac("interference_in_sae_width", r"12288 dimensions", subtle=True,
         interference="mean_abs_cosine(2000, 16 * 768, torch.Generator().manual_seed(0))"),
    _mac("interference_arguments_swapped", r"swapped", subtle=True,
         interference="mean_abs_cosine(768, 2000, torch.Generator().manual_seed(0))"),
    _mac("interference_left_empty", r"fill in CAPACITY", interference="None"),
]

MISTAKES = GENERATE_BATCH + TOY_MODEL + LOSS + DIMS + CAPACITY
