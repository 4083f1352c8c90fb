"""The shared base of every SAE in the course: decoder, b_dec, renormalisation, loss bookkeeping.

    x_hat = acts W_dec + b_dec,    loss = Σ_name losses[name]

A variant owns `encode_with_pre` (its activation function) and `loss_terms` (its sparsity and
auxiliary losses); the base owns everything the trainer touches, so the training loop never
branches on the architecture:

    out = sae.output(x); loss = sum(out.losses.values()); loss.backward()
    sae.before_optimizer_step_(); opt.step(); sae.after_optimizer_step_(sae.firing(out.acts))

This is the readable path, the one to read next to the papers. `utils.saes.fast` computes the
same numbers faster for the trainer when asked (`TrainConfig(fast_kernels=True)`); it hands the
trainer a `Firing` summary instead of the code, so nothing outside it sees its internal formats.

Shapes use one vocabulary: `... d_in` for inputs (any leading dims), `d_sae` latents. They are
checked by jaxtyping + beartype under pytest (tests/conftest.py), not at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar, NamedTuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from utils import losses as L

# A student's (or any) replacement for a variant's own pieces, as `output` and the trainer take them.
EncodeFn = Callable[["SAE", Tensor], tuple[Tensor, Tensor]]  # (sae, x) -> (acts, pre_acts)
LossFn = Callable[["SAE", Tensor, Tensor, Tensor, Tensor], dict]  # (sae, x, x_hat, acts, pre_acts) -> terms


@dataclass(kw_only=True)
class SAEConfig:
    d_in: int  # width of the activations (d_model for a residual stream)
    d_sae: int  # number of latents (expansion ratio × d_in)
    unit_norm_decoder: bool = True  # keep ‖W_dec[i]‖ = 1 and project its gradient (Bricken et al. 2023)
    init_seed: int | None = None  # seed of the weight initialisation (None: torch's global RNG)
    hook_name: str | None = None  # TransformerLens hook the activations come from (kept for SAELens)
    model_name: str | None = None  # the model those activations come from (kept for SAELens)

    def to_dict(self) -> dict:
        return asdict(self)


class SAEOutput(NamedTuple):
    """What `SAE.output` (and so `forward`) returns: the reconstruction, the code, and the loss terms."""

    x_hat: Float[Tensor, "... d_in"]
    """Reconstruction of the input."""
    acts: Float[Tensor, "... d_sae"]
    """Latent activations (the sparse code, stored dense); zero means "not firing"."""
    losses: dict[str, Tensor]
    """Scalar loss terms whose sum is the training loss: "recon", and per variant "sparsity", "aux"."""


def count_fired(acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "d_sae"]:
    """On how many tokens each latent fires. "Fires" means acts != 0 (a code may be negative).

    The one definition of firing: `metrics.firing_frequency`, `metrics.evaluate`, resampling's
    `firing_counts` and the training logs' L0 count with it; `fired_any` is its cheap "> 0" form.
    """
    return (acts.reshape(-1, acts.shape[-1]) != 0).float().sum(0)


def fired_any(acts: Float[Tensor, "... d_sae"]) -> Bool[Tensor, "d_sae"]:
    """count_fired(acts) > 0, in two plain reductions and no [tokens d_sae] temporary (every step)."""
    flat = acts.reshape(-1, acts.shape[-1])
    return (flat.amax(0) > 0) | (flat.amin(0) < 0)


class Firing(NamedTuple):
    """How the latents fired on one training batch: all the firing counters, the logged L0 and
    BatchTopK's threshold need, in plain dense form. The readable path builds it from its dense
    code (`SAE.firing`); the fast path from its own, so no sparse format leaves utils/saes/fast.py."""

    fired: Bool[Tensor, "d_sae"]
    """Latents that fired on at least one token of the batch."""
    n_tokens: int
    """Tokens in the batch."""
    n_active: Float[Tensor, ""] | None = None
    """Non-zero entries of the batch's code, when the path knows it for free (else `l0` counts `acts`)."""
    acts: Float[Tensor, "... d_sae"] | None = None
    """The dense code, so that `l0` counts it only when asked (the logs ask every `log_every` steps)."""
    min_active: Float[Tensor, ""] | None = None
    """The smallest positive activation, for variants that ask for it (BatchTopK)."""

    @property
    def l0(self) -> Float[Tensor, ""]:
        """Mean number of latents firing per token."""
        n_active = self.n_active if self.n_active is not None else count_fired(self.acts).sum()
        return n_active / self.n_tokens


class SAE(nn.Module):
    """Base class. Subclasses set `config_class` and implement `encode_with_pre` and `loss_terms`.

    Parameters: W_enc [d_in d_sae], b_enc [d_sae], W_dec [d_sae d_in], b_dec [d_in].
    """

    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    # Which axis of each parameter indexes latents: resampling uses it to reinitialise rows and
    # reset their Adam state; variants with more per-latent parameters extend it.
    LATENT_AXES: ClassVar[dict[str, int]] = {"W_enc": 1, "b_enc": 0, "W_dec": 0}

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        gen = None if cfg.init_seed is None else torch.Generator().manual_seed(cfg.init_seed)
        self.init_weights_(gen)
        # Tokens seen since each latent last fired: one counter serves the dead fraction in the
        # history, AuxK's dead mask and resampling (float so it never overflows in long runs).
        self.register_buffer("tokens_since_fired", torch.zeros(cfg.d_sae))
        # Multiplier of the sparsity coefficient, set by the trainer during warm-up (1 = full).
        self.sparsity_scale = 1.0

    # ---- initialisation ------------------------------------------------------------------
    def init_weights_(self, gen: torch.Generator | None) -> None:
        """Unit-norm random decoder rows, encoder tied to their transpose (Gao et al. 2024, §2.4)."""
        d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
        W_dec = torch.randn(d_sae, d_in, generator=gen)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)  # [d_sae d_in]
        self.W_enc = nn.Parameter(W_dec.T.clone().contiguous())  # [d_in d_sae]
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @torch.no_grad()
    def init_b_dec_(self, b: Float[Tensor, "d_in"]) -> None:
        """Set b_dec, e.g. to the geometric median of the data (Bricken et al. 2023)."""
        self.b_dec.copy_(b)

    @torch.no_grad()
    def init_encoder_scale_(self, x: Float[Tensor, "n d_in"]) -> float:
        """Rescale the encoder so that the first reconstruction is least-squares optimal; returns s.

        With the encoder tied to the unit-norm decoder, the code of a fresh SAE overshoots: x̂ − b_dec
        sums many partly aligned directions. Scaling every encoder output by
            s = ⟨x − b_dec, x̂ − b_dec⟩ / ‖x̂ − b_dec‖²        (over the batch x)
        is the best uniform fix, and it is exact: each variant's encoder is positively homogeneous
        in its scale (`scale_encoder_`), so the code becomes s·f and x̂ − b_dec becomes s(x̂ − b_dec).
        SAELens gets a similar effect from decoder rows started at norm 0.1; here s is measured.
        """
        x_c = x - self.b_dec
        x_hat_c = self.decode(self.encode(x)) - self.b_dec
        s = float((x_c * x_hat_c).sum() / (x_hat_c * x_hat_c).sum().clamp_min(1e-12))
        if s > 0:
            self.scale_encoder_(s)
        return s

    @torch.no_grad()
    def scale_encoder_(self, s: float) -> None:
        """Multiply every latent activation by s > 0 (ReLU(s·z) = s·ReLU(z); TopK keeps its choice)."""
        self.W_enc.mul_(s)
        self.b_enc.mul_(s)

    # ---- the model -----------------------------------------------------------------------
    def pre_activation(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """z = (x − b_dec) W_enc + b_enc: the encoder's affine map, before the activation function."""
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode_with_pre(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        """(acts, pre_acts): the code and the pre-activation the variant's losses need."""
        raise NotImplementedError

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        return self.encode_with_pre(x)[0]

    def decode(self, acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_in"]:
        return acts @ self.W_dec + self.b_dec

    def loss_terms(self, x: Tensor, x_hat: Tensor, acts: Tensor, pre_acts: Tensor) -> dict[str, Tensor]:
        """Σ_b ‖x − x̂‖² / batch; variants add "sparsity" and "aux" terms."""
        return {"recon": L.reconstruction_loss(x, x_hat)}

    def output(self, x: Float[Tensor, "... d_in"], *, encode_fn: EncodeFn | None = None,
               loss_fn: LossFn | None = None) -> SAEOutput:
        """Reconstruction, code and loss terms: what `forward` returns and the trainer uses.

        `encode_fn(sae, x) -> (acts, pre_acts)` and `loss_fn(sae, x, x_hat, acts, pre_acts) -> terms`
        stand in for the variant's `encode_with_pre` and `loss_terms`: how a chapter trains an SAE
        with a student's functions (`train_sae(..., encode_fn=...)`) without touching the class.
        """
        acts, pre_acts = encode_fn(self, x) if encode_fn is not None else self.encode_with_pre(x)
        x_hat = self.decode(acts)
        if loss_fn is not None:
            return SAEOutput(x_hat, acts, loss_fn(self, x, x_hat, acts, pre_acts))
        return SAEOutput(x_hat, acts, self.loss_terms(x, x_hat, acts, pre_acts))

    def forward(self, x: Float[Tensor, "... d_in"]) -> SAEOutput:
        return self.output(x)

    def loss(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, ""]:
        """The training loss: the sum of the loss terms."""
        return sum(self.output(x).losses.values())

    # ---- decoder constraint (Bricken et al. 2023; Gao et al. 2024 §A.2) -----------------------
    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every decoder row to unit norm (after each optimiser step)."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Remove the gradient component parallel to each decoder row (before each step).

        With rows on the unit sphere, the parallel part would only change their norm, which
        renormalisation undoes; removing it makes Adam's step a tangent move.
        """
        W, G = self.W_dec, self.W_dec.grad
        if G is None:
            return
        G.sub_((G * W).sum(-1, keepdim=True) * W)

    # ---- training hooks (the trainer calls these; variants extend them) ----------------------
    @torch.no_grad()
    def firing(self, acts: Float[Tensor, "... d_sae"]) -> Firing:
        """Summarise a training batch's code for `after_optimizer_step_` and the logs."""
        acts = acts.detach()
        return Firing(fired_any(acts), acts.shape[:-1].numel(), acts=acts)

    def before_optimizer_step_(self) -> None:
        if self.cfg.unit_norm_decoder:
            self.project_decoder_grad_()

    @torch.no_grad()
    def after_optimizer_step_(self, firing: Firing) -> None:
        if self.cfg.unit_norm_decoder:
            self.normalize_decoder_()
        self.update_firing_(firing)

    @torch.no_grad()
    def update_firing_(self, firing: Firing) -> None:
        """Advance every latent's silence counter by the batch, and restart those that fired."""
        self.tokens_since_fired += firing.n_tokens
        self.tokens_since_fired.masked_fill_(firing.fired, 0.0)

    def dead_mask(self, window_tokens: float) -> Bool[Tensor, "d_sae"]:
        """Latents that have not fired in the last `window_tokens` training tokens."""
        return self.tokens_since_fired >= window_tokens

    # ---- surgery -------------------------------------------------------------------------
    @torch.no_grad()
    def reinit_latents_(
        self,
        idx: Tensor,
        dec_dirs: Float[Tensor, "n d_in"],
        enc_dirs: Float[Tensor, "n d_in"],
    ) -> None:
        """Point latents `idx` at new directions (resampling); their biases restart at zero."""
        self.W_dec[idx] = dec_dirs
        self.W_enc[:, idx] = enc_dirs.T
        self.b_enc[idx] = 0.0
        self.tokens_since_fired[idx] = 0.0

    @torch.no_grad()
    def fold_input_scale_(self, c: float) -> None:
        """Turn an SAE trained on x·c into one for raw x, with identical outputs (up to ×1/c).

        Dividing every quantity measured in activation units (biases, thresholds) by c gives
        acts_raw = acts/c and x̂_raw = x̂/c, and keeps the decoder rows at unit norm.
        """
        self.b_dec.div_(c)
        self.b_enc.div_(c)

    # ---- conveniences ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    def extra_repr(self) -> str:
        return f"d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"
