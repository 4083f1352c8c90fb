"""Chapter 02 (SAE architecture): common mistakes per exercise.

The StandardSAE exercises attach one method per answer cell; the templates below write the cell
the way the notebook gives it, with the student's body in place of the solution.
"""

from mistakes import Mistake

CHAPTER = "02_sae_architecture"


def _seed(init: str, forward: str) -> str:
    return f'''
class SparseAutoencoder(nn.Module):
    """The seed's SAE: latents = ReLU(W_e x + b_e), reconstructed = W_d latents."""

    def __init__(self, d_model: int, n_latents: int):
        super().__init__()
{init}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructed [... d_model], latents [... n_latents])."""
{forward}
'''


INIT = '''        self.encoder = nn.Linear(d_model, n_latents)
        self.decoder = nn.Linear(n_latents, d_model, bias=False)'''
FORWARD = '''        latents = F.relu(self.encoder(x))
        return self.decoder(latents), latents'''


def _init(body: str) -> str:
    return f'''
class StandardSAE(nn.Module):
    """f = ReLU((x − b_dec) W_enc + b_enc), x̂ = f W_dec + b_dec, unit-norm rows of W_dec."""

    def __init__(self, d_in: int, d_sae: int, *, generator: torch.Generator | None = None):
        super().__init__()
        self.d_in, self.d_sae = d_in, d_sae
{body}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂, acts), the seed's order. `encode` and `decode` come in exercises 3 and 4."""
        acts = self.encode(x)
        return self.decode(acts), acts
'''


def _method(name: str, signature: str, body: str, decorator: str = "") -> str:
    return f'''
{decorator}def {name}(self{signature}:
{body}


StandardSAE.{name} = {name}
'''


def _encode(body: str) -> str:
    return _method("encode", ", x: torch.Tensor) -> torch.Tensor", body)


def _decode(body: str) -> str:
    return _method("decode", ", acts: torch.Tensor) -> torch.Tensor", body)


def _normalize(body: str, decorator: str = "@torch.no_grad()\n") -> str:
    return _method("normalize_decoder_", ") -> None", body, decorator)


def _median(body: str) -> str:
    return f'''
def geometric_median(x: torch.Tensor, iters: int = 100, eps: float = 1e-8) -> torch.Tensor:
    """argmin_m Σ_i ‖x_i − m‖ for x of shape (n, d), by Weiszfeld's algorithm."""
{body}
'''


COUNT = '''
def count_parameters(d_in: int, d_sae: int) -> int:
    """Parameters of a standard SAE: W_enc, b_enc, W_dec, b_dec."""
    return {count}


GPT2_SAE = {{
    "d_sae": {d_sae},
    "n_params": count_parameters(768, {d_sae}),
    "fp32_megabytes": {mb},
    "seed_expansion": {ratio},
}}
print(GPT2_SAE)
'''


def _sizes(count="2 * d_in * d_sae + d_sae + d_in", d_sae="16 * 768",
           mb="count_parameters(768, 16 * 768) * 4 * 4 / 1e6", ratio="16000 / 768") -> str:
    return COUNT.format(count=count, d_sae=d_sae, mb=mb, ratio=ratio)


W_DEC = '''        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
'''
REST = '''        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))'''

MISTAKES = [
    # ---- exercise 1: the seed's SparseAutoencoder --------------------------------------------------
    Mistake("test_sparse_autoencoder", "decoder_bias", _seed('''        self.encoder = nn.Linear(d_model, n_latents)
        self.decoder = nn.Linear(n_latents, d_model)''', FORWARD), names=r"decoder has no bias", subtle=True),
    Mistake("test_sparse_autoencoder", "encoder_no_bias", _seed('''        self.encoder = nn.Linear(d_model, n_latents, bias=False)
        self.decoder = nn.Linear(n_latents, d_model, bias=False)''', FORWARD), names=r"encoder has no bias",
            subtle=True),
    Mistake("test_sparse_autoencoder", "linear_args_swapped", _seed('''        self.encoder = nn.Linear(n_latents, d_model)
        self.decoder = nn.Linear(d_model, n_latents, bias=False)''', FORWARD), names=r"encoder's in and out sizes are swapped"),
    Mistake("test_sparse_autoencoder", "returns_latents_first", _seed(INIT, '''        latents = F.relu(self.encoder(x))
        return latents, self.decoder(latents)'''), names=r"returned \(latents, reconstructed\)", subtle=True),
    Mistake("test_sparse_autoencoder", "no_relu", _seed(INIT, '''        latents = self.encoder(x)
        return self.decoder(latents), latents'''), names=r"there is no ReLU", subtle=True),
    Mistake("test_sparse_autoencoder", "returns_pre_acts", _seed(INIT, '''        pre_acts = self.encoder(x)
        reconstructed = self.decoder(F.relu(pre_acts))
        return reconstructed, pre_acts'''), names=r"pre-activations as `latents`", subtle=True),
    Mistake("test_sparse_autoencoder", "decodes_pre_acts", _seed(INIT, '''        pre_acts = self.encoder(x)
        latents = F.relu(pre_acts)
        reconstructed = self.decoder(pre_acts)
        return reconstructed, latents'''), names=r"decoded the pre-activations", subtle=True),
    Mistake("test_sparse_autoencoder", "relu_on_reconstruction", _seed(INIT, '''        latents = F.relu(self.encoder(x))
        reconstructed = F.relu(self.decoder(latents))
        return reconstructed, latents'''), names=r"ReLU to the reconstruction", subtle=True),
    Mistake("test_sparse_autoencoder", "nn_relu_as_function", _seed(INIT, '''        latents = nn.ReLU(self.encoder(x))
        return self.decoder(latents), latents'''), names=r"nn\.ReLU is a module"),
    Mistake("test_sparse_autoencoder", "decodes_x", _seed(INIT, '''        latents = F.relu(self.encoder(x))
        return self.decoder(x), latents'''), names=r"decoder takes the latents"),
    Mistake("test_sparse_autoencoder", "returns_reconstruction_only", _seed(INIT, '''        latents = F.relu(self.encoder(x))
        return self.decoder(latents)'''), names=r"return a pair"),

    # ---- exercise 2: initialisation ----------------------------------------------------------------
    Mistake("test_standard_init", "transpose_not_cloned", _init(W_DEC + '''        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T)
''' + REST), names=r"shares memory", subtle=True),
    Mistake("test_standard_init", "columns_normalised", _init('''        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec = W_dec / W_dec.norm(dim=0, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
''' + REST), names=r"normalised the columns", subtle=True),
    Mistake("test_standard_init", "whole_matrix_norm", _init('''        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec = W_dec / W_dec.norm()
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
''' + REST), names=r"norm of the whole matrix", subtle=True),
    Mistake("test_standard_init", "uniform_rand", _init('''        W_dec = torch.rand(d_sae, d_in, generator=generator)
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
''' + REST), names=r"torch\.rand\b.*uniform|not torch\.rand", subtle=True),
    Mistake("test_standard_init", "no_generator", _init('''        W_dec = torch.randn(d_sae, d_in)
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
''' + REST), names=r"generator=generator", subtle=True),
    Mistake("test_standard_init", "encoder_drawn_separately", _init(W_DEC + '''        self.W_dec = nn.Parameter(W_dec)
        W_enc = torch.randn(d_in, d_sae, generator=generator)
        self.W_enc = nn.Parameter(W_enc / W_enc.norm(dim=0, keepdim=True))
''' + REST), names=r"decoder's transpose", subtle=True),
    Mistake("test_standard_init", "transposed_before_normalising", _init('''        W = torch.randn(d_sae, d_in, generator=generator)
        self.W_enc = nn.Parameter(W.T.clone())
        self.W_dec = nn.Parameter(W / W.norm(dim=-1, keepdim=True))
''' + REST), names=r"transpose before normalising", subtle=True),
    Mistake("test_standard_init", "linear_layout", _init('''        W_dec = torch.randn(d_in, d_sae, generator=generator)
        W_dec = W_dec / W_dec.norm(dim=0, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
''' + REST), names=r"one row per latent"),
    Mistake("test_standard_init", "norm_without_keepdim", _init('''        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec = W_dec / W_dec.norm(dim=-1)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
''' + REST), names=r"keepdim=True"),
    Mistake("test_standard_init", "plain_tensor_encoder", _init(W_DEC + '''        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = self.W_dec.T
''' + REST), names=r"W_enc` is a Tensor, not an nn\.Parameter"),
    Mistake("test_standard_init", "seed_inside_init", _init('''        torch.manual_seed(0)
        W_dec = torch.randn(d_sae, d_in)
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
''' + REST), names=r"global random generator", subtle=True),

    # ---- exercise 3: encode ------------------------------------------------------------------------
    Mistake("test_standard_encode", "no_b_dec", _encode(
        "    return F.relu(x @ self.W_enc + self.b_enc)"), names=r"ignores b_dec", subtle=True),
    Mistake("test_standard_encode", "adds_b_dec", _encode(
        "    return F.relu((x + self.b_dec) @ self.W_enc + self.b_enc)"), names=r"you added b_dec", subtle=True),
    Mistake("test_standard_encode", "no_b_enc", _encode(
        "    return F.relu((x - self.b_dec) @ self.W_enc)"), names=r"forgot b_enc", subtle=True),
    Mistake("test_standard_encode", "in_place_subtract", _encode('''    x -= self.b_dec
    return F.relu(x @ self.W_enc + self.b_enc)'''), names=r"changed its input `x` in place", subtle=True),
    Mistake("test_standard_encode", "tied_decoder", _encode(
        "    return F.relu((x - self.b_dec) @ self.W_dec.T + self.b_enc)"), names=r"encoded with W_dec\.T", subtle=True),
    Mistake("test_standard_encode", "no_relu", _encode(
        "    return (x - self.b_dec) @ self.W_enc + self.b_enc"), names=r"there is no ReLU", subtle=True),
    Mistake("test_standard_encode", "relu_before_bias", _encode(
        "    return F.relu((x - self.b_dec) @ self.W_enc) + self.b_enc"), names=r"ReLU before adding b_enc", subtle=True),
    Mistake("test_standard_encode", "relu_on_input", _encode(
        "    return F.relu(x - self.b_dec) @ self.W_enc + self.b_enc"), names=r"ReLU to x − b_dec", subtle=True),
    Mistake("test_standard_encode", "weight_first", _encode(
        "    return F.relu(self.W_enc @ (x - self.b_dec) + self.b_enc)"), names=r"\(x − b_dec\) @ W_enc, in that order"),
    Mistake("test_standard_encode", "flattens_batch", _encode('''    x = x.reshape(-1, self.d_in)
    return F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)'''), names=r"flattened the leading dimensions"),
    Mistake("test_standard_encode", "detached_parameters", _encode(
        "    return F.relu((x - self.b_dec.data) @ self.W_enc + self.b_enc)"), names=r"no gradient reaches `b_dec`",
            subtle=True),
    Mistake("test_standard_encode", "under_no_grad", _encode('''    with torch.no_grad():
        acts = F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
    return acts'''), names=r"cut off from autograd", subtle=True),

    # ---- exercise 4: decode ------------------------------------------------------------------------
    Mistake("test_standard_decode", "no_b_dec", _decode("    return acts @ self.W_dec"), names=r"forgot b_dec",
            subtle=True),
    Mistake("test_standard_decode", "subtracts_b_dec", _decode("    return acts @ self.W_dec - self.b_dec"),
            names=r"subtracted b_dec", subtle=True),
    Mistake("test_standard_decode", "tied_encoder", _decode("    return acts @ self.W_enc.T + self.b_dec"),
            names=r"decoded with W_enc\.T", subtle=True),
    Mistake("test_standard_decode", "relu_on_output", _decode("    return F.relu(acts @ self.W_dec + self.b_dec)"),
            names=r"ReLU to the reconstruction", subtle=True),
    Mistake("test_standard_decode", "normalises_inside", _decode('''    W = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
    return acts @ W + self.b_dec'''), names=r"decode normalised W_dec", subtle=True),
    Mistake("test_standard_decode", "transposed_weight", _decode("    return acts @ self.W_dec.T + self.b_dec"),
            names=r"W_dec \[d_sae, d_in\].*acts @ W_dec.*no transpose"),
    Mistake("test_standard_decode", "weight_first", _decode("    return self.W_dec @ acts + self.b_dec"),
            names=r"acts @ W_dec, in that order"),
    Mistake("test_standard_decode", "detached", _decode("    return (acts @ self.W_dec + self.b_dec).detach()"),
            names=r"cut off from autograd", subtle=True),

    # ---- exercise 5: normalize_decoder_ ------------------------------------------------------------
    Mistake("test_normalize_decoder", "columns", _normalize(
        "    self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-8))"), names=r"columns", subtle=True),
    Mistake("test_normalize_decoder", "new_parameter", _normalize(
        "    self.W_dec = nn.Parameter(self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))"),
            names=r"replaced W_dec", subtle=True),
    Mistake("test_normalize_decoder", "no_clamp", _normalize(
        "    self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True))"), names=r"clamp"),
    Mistake("test_normalize_decoder", "no_no_grad", _normalize(
        "    self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))", decorator=""),
            names=r"torch\.no_grad"),
    Mistake("test_normalize_decoder", "local_name", _normalize('''    W = self.W_dec
    W = W / W.norm(dim=-1, keepdim=True).clamp_min(1e-8)'''), names=r"W_dec is unchanged.*local name", subtle=True),
    Mistake("test_normalize_decoder", "returns_result", _normalize(
        "    return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)"),
            names=r"W_dec is unchanged.*returning", subtle=True),
    Mistake("test_normalize_decoder", "whole_matrix", _normalize(
        "    self.W_dec.div_(self.W_dec.norm())"), names=r"norm of the whole matrix", subtle=True),
    Mistake("test_normalize_decoder", "squared_norm", _normalize(
        "    self.W_dec.div_(self.W_dec.pow(2).sum(dim=-1, keepdim=True).clamp_min(1e-8))"),
            names=r"squared norm", subtle=True),
    Mistake("test_normalize_decoder", "clamp_at_one", _normalize(
        "    self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1.0))"), names=r"shorter than 1",
            subtle=True),
    Mistake("test_normalize_decoder", "no_keepdim", _normalize(
        "    self.W_dec.div_(self.W_dec.norm(dim=-1).clamp_min(1e-8))"), names=r"keepdim=True"),
    Mistake("test_normalize_decoder", "normalises_encoder_too", _normalize('''    self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))
    self.W_enc.div_(self.W_enc.norm(dim=0, keepdim=True).clamp_min(1e-8))'''), names=r"changed W_enc", subtle=True),

    # ---- exercise 6: geometric_median --------------------------------------------------------------
    Mistake("test_geometric_median", "mean", _median("    return x.mean(0)"), names=r"that is the mean", subtle=True),
    Mistake("test_geometric_median", "weights_are_distances", _median('''    m = x.mean(0)
    for _ in range(iters):
        w = (x - m).norm(dim=-1).clamp_min(eps)
        m = (w[:, None] * x).sum(0) / w.sum()
    return m'''), names=r"weighted each point by its distance", subtle=True),
    Mistake("test_geometric_median", "squared_distances", _median('''    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / ((x - m) ** 2).sum(dim=-1).clamp_min(eps)
        m = (w[:, None] * x).sum(0) / w.sum()
    return m'''), names=r"squared distance", subtle=True),
    Mistake("test_geometric_median", "coordinate_median", _median(
        "    return x.median(dim=0).values"), names=r"coordinate-wise median", subtle=True),
    Mistake("test_geometric_median", "one_step", _median('''    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=-1).clamp_min(eps)
        m_new = (w[:, None] * x).sum(0) / w.sum()
    return m_new'''), names=r"one Weiszfeld step", subtle=True),
    Mistake("test_geometric_median", "not_normalised", _median('''    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=-1).clamp_min(eps)
        m = (w[:, None] * x).sum(0)
    return m'''), names=r"divide by Σ w_i"),
    Mistake("test_geometric_median", "no_clamp", _median('''    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=-1)
        m = (w[:, None] * x).sum(0) / w.sum()
    return m'''), names=r"clamp the distances"),
    Mistake("test_geometric_median", "norm_wrong_axis", _median('''    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=0).clamp_min(eps)
        m = (w[:, None] * x).sum(0) / w.sum()
    return m'''), names=r"norm\(dim=-1\)"),
    Mistake("test_geometric_median", "weights_not_broadcast", _median('''    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=-1).clamp_min(eps)
        m = (w * x).sum(0) / w.sum()
    return m'''), names=r"w\[:, None\] \* x"),
    Mistake("test_geometric_median", "sums_wrong_axis", _median('''    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=-1).clamp_min(eps)
        m = (w[:, None] * x).sum(-1) / w.sum()
    return m'''), names=r"\.sum\(0\)"),

    # ---- exercise 7: count_parameters and GPT2_SAE -------------------------------------------------
    Mistake("test_sizes", "weights_only", _sizes(count="2 * d_in * d_sae"), names=r"two weight matrices only",
            subtle=True),
    Mistake("test_sizes", "no_b_dec", _sizes(count="2 * d_in * d_sae + d_sae"), names=r"b_dec \[d_in\] is missing",
            subtle=True),
    Mistake("test_sizes", "b_dec_sized_d_sae", _sizes(count="2 * d_in * d_sae + 2 * d_sae"),
            names=r"b_dec has d_in entries", subtle=True),
    Mistake("test_sizes", "one_matrix", _sizes(count="d_in * d_sae + d_sae + d_in"),
            names=r"two separate matrices", subtle=True),
    Mistake("test_sizes", "returns_float", _sizes(count="2.0 * d_in * d_sae + d_sae + d_in"),
            names=r"return a Python int"),
    Mistake("test_sizes", "weights_only_memory", _sizes(mb="count_parameters(768, 16 * 768) * 4 / 1e6"),
            names=r"weights alone", subtle=True),
    Mistake("test_sizes", "mebibytes", _sizes(mb="count_parameters(768, 16 * 768) * 16 / 2**20"),
            names=r"MiB", subtle=True),
    Mistake("test_sizes", "no_adam_moments", _sizes(mb="count_parameters(768, 16 * 768) * 4 * 2 / 1e6"),
            names=r"Adam keeps two moment estimates", subtle=True),
    Mistake("test_sizes", "seed_width", _sizes(d_sae="16000", mb="count_parameters(768, 16000) * 16 / 1e6"),
            names=r"16000 is the seed's diagram", subtle=True),
    Mistake("test_sizes", "expansion_inverted", _sizes(ratio="768 / 16000"), names=r"inverted"),
    Mistake("test_sizes", "expansion_floor", _sizes(ratio="16000 // 768"), names=r"rounded down", subtle=True),
    Mistake("test_sizes", "memory_left_empty", _sizes(mb="None"), names=r"fill in \['fp32_megabytes'\]"),
]
