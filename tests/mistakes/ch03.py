"""Chapter 03 (the loss trade-off): common mistakes per exercise."""

from mistakes import Mistake

CHAPTER = "03_loss_tradeoff"

# ---- exercise 1: sae_loss -----------------------------------------------------------------------
_LOSS = "def sae_loss(x: torch.Tensor, reconstructed: torch.Tensor, latents: torch.Tensor, l1_coeff: float) -> torch.Tensor:\n"

SAE_LOSS = [
    Mistake("test_sae_loss", "sum_not_mean", '''
def sae_loss(x, reconstructed, latents, l1_coeff):
    return (x - reconstructed).pow(2).sum() + l1_coeff * latents.abs().sum()
''', names=r"summed where the seed averages"),
    Mistake("test_sae_loss", "no_abs", '''
def sae_loss(x, reconstructed, latents, l1_coeff):
    return (x - reconstructed).pow(2).mean() + l1_coeff * latents.mean()
''', names=r"\.abs\(\)", subtle=True),
    Mistake("test_sae_loss", "returns_float", '''
def sae_loss(x, reconstructed, latents, l1_coeff):
    return float((x - reconstructed).pow(2).mean() + l1_coeff * latents.abs().mean())
''', names=r"differentiable|Python float"),
    Mistake("test_sae_loss", "per_token_sums", _LOSS + '''    # sum over the feature dimension, average over the batch
    reconstruction_loss = (x - reconstructed).pow(2).sum(dim=-1).mean()
    sparsity_loss = latents.abs().sum(dim=-1).mean()
    return reconstruction_loss + l1_coeff * sparsity_loss
''', names=r"summed over the last axis", subtle=True),
    Mistake("test_sae_loss", "l2_penalty", _LOSS + '''    reconstruction_loss = (x - reconstructed).pow(2).mean()
    sparsity_loss = latents.pow(2).mean()
    return reconstruction_loss + l1_coeff * sparsity_loss
''', names=r"L2 penalty", subtle=True),
    Mistake("test_sae_loss", "coeff_on_recon", _LOSS + '''    reconstruction_loss = (x - reconstructed).pow(2).mean()
    sparsity_loss = latents.abs().mean()
    return l1_coeff * reconstruction_loss + sparsity_loss
''', names=r"l1_coeff multiplies the sparsity term", subtle=True),
    Mistake("test_sae_loss", "item_on_recon", _LOSS + '''    reconstruction_loss = (x - reconstructed).pow(2).mean().item()
    sparsity_loss = latents.abs().mean()
    return reconstruction_loss + l1_coeff * sparsity_loss
''', names=r"reconstruction term does not reach autograd", subtle=True),
    Mistake("test_sae_loss", "abs_in_place", _LOSS + '''    reconstruction_loss = (x - reconstructed).pow(2).mean()
    sparsity_loss = latents.abs_().mean()
    return reconstruction_loss + l1_coeff * sparsity_loss
''', names=r"changed its input `latents` in place"),
    Mistake("test_sae_loss", "square_of_mean", _LOSS + '''    reconstruction_loss = (x - reconstructed).mean() ** 2
    sparsity_loss = latents.abs().mean()
    return reconstruction_loss + l1_coeff * sparsity_loss
''', names=r"square of the mean error", subtle=True),
    Mistake("test_sae_loss", "rebuilt_tensor", _LOSS + '''    reconstruction_loss = (x - reconstructed).pow(2).mean()
    sparsity_loss = latents.abs().mean()
    return torch.tensor(reconstruction_loss.item() + l1_coeff * sparsity_loss.item())
''', names=r"cut off from autograd"),
    Mistake("test_sae_loss", "mean_per_row", _LOSS + '''    reconstruction_loss = (x - reconstructed).pow(2).mean(dim=-1)
    sparsity_loss = latents.abs().mean(dim=-1)
    return reconstruction_loss + l1_coeff * sparsity_loss
''', names=r"one loss per row"),
]

# ---- exercise 2: l1_gradient --------------------------------------------------------------------
_GRAD = "def l1_gradient(latents: torch.Tensor, l1_coeff: float) -> torch.Tensor:\n"

L1_GRADIENT = [
    Mistake("test_l1_gradient", "no_one_over_n", _GRAD + '''    return l1_coeff * torch.sign(latents)
''', names=r"1/N"),
    Mistake("test_l1_gradient", "l2_gradient", _GRAD + '''    return 2 * l1_coeff * latents / latents.numel()
''', names=r"L2 penalty", subtle=True),
    Mistake("test_l1_gradient", "divide_by_batch", _GRAD + '''    batch_size = latents.shape[0]
    return l1_coeff * torch.sign(latents) / batch_size
''', names=r"latents\.shape\[0\]", subtle=True),
    Mistake("test_l1_gradient", "z_over_abs_z", _GRAD + '''    # d|z|/dz = z / |z|
    return l1_coeff * (latents / latents.abs()) / latents.numel()
''', names=r"not finite"),
    Mistake("test_l1_gradient", "sign_zero_positive", _GRAD + '''    sign = torch.where(latents >= 0, 1.0, -1.0)
    return l1_coeff * sign / latents.numel()
''', names=r"0 counted as positive", subtle=True),
    Mistake("test_l1_gradient", "with_autograd", _GRAD + '''    z = latents.detach().clone().requires_grad_()
    (l1_coeff * z.abs().mean()).backward()
    return z.grad
''', names=r"needs autograd"),
    Mistake("test_l1_gradient", "no_l1_coeff", _GRAD + '''    return torch.sign(latents) / latents.numel()
''', names=r"l1_coeff is missing", subtle=True),
    Mistake("test_l1_gradient", "sign_in_place", _GRAD + '''    return latents.sign_() * l1_coeff / latents.numel()
''', names=r"changed its input `latents` in place", subtle=True),
    Mistake("test_l1_gradient", "returns_penalty", _GRAD + '''    return l1_coeff * latents.abs().mean()
''', names=r"returned one number"),
    Mistake("test_l1_gradient", "descent_direction", _GRAD + '''    # the pull toward zero
    return -l1_coeff * torch.sign(latents) / latents.numel()
''', names=r"sign is flipped", subtle=True),
]

# ---- exercise 3: optimal_latent -----------------------------------------------------------------
_OPT = "def optimal_latent(x: torch.Tensor, l1_coeff: float) -> torch.Tensor:\n"

OPTIMAL_LATENT = [
    Mistake("test_optimal_latent", "factor_two", _OPT + '''    return (x - l1_coeff).clamp_min(0.0)
''', names=r"factor 2", subtle=True),
    Mistake("test_optimal_latent", "no_clamp", _OPT + '''    return x - l1_coeff / 2
''', names=r"f ≥ 0.*clamp"),
    Mistake("test_optimal_latent", "clamp_first", _OPT + '''    return torch.relu(x) - l1_coeff / 2
''', names=r"clamped before subtracting"),
    Mistake("test_optimal_latent", "two_sided", _OPT + '''    # the lasso's soft threshold
    return torch.sign(x) * (x.abs() - l1_coeff / 2).clamp_min(0.0)
''', names=r"two-sided soft threshold", subtle=True),
    Mistake("test_optimal_latent", "hard_threshold", _OPT + '''    return torch.where(x > l1_coeff / 2, x, torch.zeros_like(x))
''', names=r"hard threshold", subtle=True),
    Mistake("test_optimal_latent", "in_place", _OPT + '''    return x.sub_(l1_coeff / 2).clamp_(min=0.0)
''', names=r"changed its input `x` in place", subtle=True),
    Mistake("test_optimal_latent", "python_max", _OPT + '''    return max(x - l1_coeff / 2, 0)
''', names=r"several values|torch\.where|clamp"),
]

# ---- exercise 4: train_toy_sae ------------------------------------------------------------------


def _trainer(*, before_loop="", shuffle="    for idx in torch.randperm(len(activations), generator=g).split(batch_size):\n",
             step="            optimizer.zero_grad()\n            loss.backward()\n            optimizer.step()\n"
                  "            sae.normalize_decoder_()\n",
             log='{"step": step, "recon_loss": (x - reconstructed).pow(2).mean().item(),\n'
                 '                            "sparsity_loss": latents.abs().mean().item(),\n'
                 '                            "l0": (latents != 0).float().sum(-1).mean().item()}',
             create="    sae = SparseAutoencoder(activations.shape[-1], n_latents, seed=seed)\n    sae.normalize_decoder_()\n",
             optimizer="    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)\n",
             loss="            loss = sae_loss(x, reconstructed, latents, l1_coeff)\n",
             ret="    return sae, history\n") -> str:
    """The reference loop with one part replaced, written out as a student's whole answer cell."""
    return ("def train_toy_sae(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):\n"
            + create + optimizer
            + "    g = torch.Generator().manual_seed(seed)\n    history, step = [], 0\n" + before_loop
            + "    for epoch in range(epochs):\n"
            + "    " + shuffle
            + "            x = activations[idx]\n            reconstructed, latents = sae(x)\n" + loss + step
            + "            history.append(" + log + ")\n            step += 1\n" + ret)


TRAIN = [
    Mistake("test_train_toy_sae", "no_zero_grad", _trainer(
        step="            loss.backward()\n            optimizer.step()\n            sae.normalize_decoder_()\n"),
        names=r"zero_grad", subtle=True),
    Mistake("test_train_toy_sae", "no_normalize", _trainer(
        step="            optimizer.zero_grad()\n            loss.backward()\n            optimizer.step()\n"),
        names=r"normalize_decoder_\(\) after every optimiser step"),
    Mistake("test_train_toy_sae", "l0_fraction", _trainer(
        log='{"step": step, "recon_loss": (x - reconstructed).pow(2).mean().item(),\n'
            '                            "sparsity_loss": latents.abs().mean().item(),\n'
            '                            "l0": (latents != 0).float().mean().item()}'),
        names=r"fraction of active latents", subtle=True),
    Mistake("test_train_toy_sae", "step_restarts", '''
def train_toy_sae(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):
    sae = SparseAutoencoder(activations.shape[-1], n_latents, seed=seed)
    sae.normalize_decoder_()
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        batches = torch.randperm(len(activations), generator=g).split(batch_size)
        for step, idx in enumerate(batches):
            x = activations[idx]
            reconstructed, latents = sae(x)
            loss = sae_loss(x, reconstructed, latents, l1_coeff)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sae.normalize_decoder_()
            history.append({"step": step, "recon_loss": (x - reconstructed).pow(2).mean().item(),
                            "sparsity_loss": latents.abs().mean().item(),
                            "l0": (latents != 0).float().sum(-1).mean().item()})
    return sae, history
''', names=r"restarts every epoch", subtle=True),
    Mistake("test_train_toy_sae", "tensors_in_history", _trainer(
        log='{"step": step, "recon_loss": (x - reconstructed).pow(2).mean(),\n'
            '                            "sparsity_loss": latents.abs().mean(),\n'
            '                            "l0": (latents != 0).float().sum(-1).mean()}'),
        names=r"plain floats"),
    Mistake("test_train_toy_sae", "drop_last_batch", '''
def train_toy_sae(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):
    sae = SparseAutoencoder(activations.shape[-1], n_latents, seed=seed)
    sae.normalize_decoder_()
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    history, step = [], 0
    n_batches = len(activations) // batch_size
    for epoch in range(epochs):
        perm = torch.randperm(len(activations), generator=g)
        for b in range(n_batches):
            x = activations[perm[b * batch_size:(b + 1) * batch_size]]
            reconstructed, latents = sae(x)
            loss = sae_loss(x, reconstructed, latents, l1_coeff)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sae.normalize_decoder_()
            history.append({"step": step, "recon_loss": (x - reconstructed).pow(2).mean().item(),
                            "sparsity_loss": latents.abs().mean().item(),
                            "l0": (latents != 0).float().sum(-1).mean().item()})
            step += 1
    return sae, history
''', names=r"last, smaller batch", subtle=True),
    Mistake("test_train_toy_sae", "no_sparsity_term", _trainer(
        loss="            loss = (x - reconstructed).pow(2).mean()\n"),
        names=r"sparsity part|sparsity term does not reach", subtle=True),
    Mistake("test_train_toy_sae", "global_rng_shuffle", _trainer(
        shuffle="    for idx in torch.randperm(len(activations)).split(batch_size):\n"),
        names=r"torch\.Generator\(\)\.manual_seed\(seed\)", subtle=True),
    Mistake("test_train_toy_sae", "unseeded_sae", _trainer(
        create="    sae = SparseAutoencoder(activations.shape[-1], n_latents)\n    sae.normalize_decoder_()\n"),
        names=r"seed=seed", subtle=True),
    Mistake("test_train_toy_sae", "lr_ignored", _trainer(
        optimizer="    optimizer = torch.optim.Adam(sae.parameters())\n"),
        names=r"learning rate", subtle=True),
    Mistake("test_train_toy_sae", "optimizer_per_epoch", '''
def train_toy_sae(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):
    sae = SparseAutoencoder(activations.shape[-1], n_latents, seed=seed)
    sae.normalize_decoder_()
    g = torch.Generator().manual_seed(seed)
    history, step = [], 0
    for epoch in range(epochs):
        optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
        for idx in torch.randperm(len(activations), generator=g).split(batch_size):
            x = activations[idx]
            reconstructed, latents = sae(x)
            loss = sae_loss(x, reconstructed, latents, l1_coeff)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sae.normalize_decoder_()
            history.append({"step": step, "recon_loss": (x - reconstructed).pow(2).mean().item(),
                            "sparsity_loss": latents.abs().mean().item(),
                            "l0": (latents != 0).float().sum(-1).mean().item()})
            step += 1
    return sae, history
''', names=r"optimiser is created inside the loop", subtle=True),
    Mistake("test_train_toy_sae", "swapped_return", _trainer(ret="    return history, sae\n"),
            names=r"pair is swapped"),
    Mistake("test_train_toy_sae", "recon_is_total", _trainer(
        log='{"step": step, "recon_loss": loss.item(),\n'
            '                            "sparsity_loss": latents.abs().mean().item(),\n'
            '                            "l0": (latents != 0).float().sum(-1).mean().item()}'),
        names=r"holds the total loss", subtle=True),
    Mistake("test_train_toy_sae", "shuffle_once", _trainer(
        before_loop="    batches = torch.randperm(len(activations), generator=g).split(batch_size)\n",
        shuffle="    for idx in batches:\n"),
        names=r"same batches", subtle=True),
    Mistake("test_train_toy_sae", "normalize_before_step", _trainer(
        step="            optimizer.zero_grad()\n            loss.backward()\n            sae.normalize_decoder_()\n"
             "            optimizer.step()\n"),
        names=r"normalize_decoder_\(\) after every optimiser step", subtle=True),
    Mistake("test_train_toy_sae", "no_initial_normalize", _trainer(
        create="    sae = SparseAutoencoder(activations.shape[-1], n_latents, seed=seed)\n"),
        names=r"before training", subtle=True),
    Mistake("test_train_toy_sae", "sgd", _trainer(
        optimizer="    optimizer = torch.optim.SGD(sae.parameters(), lr=lr)\n"),
        names=r"plain SGD", subtle=True),
    Mistake("test_train_toy_sae", "history_per_epoch", '''
def train_toy_sae(activations, n_latents, l1_coeff, epochs=1000, *, batch_size=512, lr=1e-3, seed=0):
    sae = SparseAutoencoder(activations.shape[-1], n_latents, seed=seed)
    sae.normalize_decoder_()
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        for idx in torch.randperm(len(activations), generator=g).split(batch_size):
            x = activations[idx]
            reconstructed, latents = sae(x)
            loss = sae_loss(x, reconstructed, latents, l1_coeff)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sae.normalize_decoder_()
        history.append({"step": epoch, "recon_loss": (x - reconstructed).pow(2).mean().item(),
                        "sparsity_loss": latents.abs().mean().item(),
                        "l0": (latents != 0).float().sum(-1).mean().item()})
    return sae, history
''', names=r"one entry per epoch"),
]

# ---- exercise 5: l0_and_explained_variance ------------------------------------------------------
_EV = "def l0_and_explained_variance(x: torch.Tensor, x_hat: torch.Tensor, latents: torch.Tensor) -> tuple[float, float]:\n"
_L0 = "    l0 = (latents != 0).float().sum(-1).mean().item()\n"
_EVOK = "    ev = 1 - ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()\n"
_RET = "    return l0, ev\n"

L0_EV = [
    Mistake("test_l0_and_ev", "ev_about_zero", _EV + _L0 + '''    ev = 1 - ((x - x_hat).pow(2).sum() / x.pow(2).sum()).item()
''' + _RET, names=r"about zero", subtle=True),
    Mistake("test_l0_and_ev", "ev_scalar_var", _EV + _L0 + '''    # the seed's evaluate_sae
    ev = 1 - ((x - x_hat).pow(2).mean() / x.var()).item()
''' + _RET, names=r"one scalar mean", subtle=True),
    Mistake("test_l0_and_ev", "l0_fraction", _EV + '''    l0 = (latents != 0).float().mean().item()
''' + _EVOK + _RET, names=r"a count"),
    Mistake("test_l0_and_ev", "l0_positive_only", _EV + '''    l0 = (latents > 0).float().sum(-1).mean().item()
''' + _EVOK + _RET, names=r"latents > 0.*!= 0", subtle=True),
    Mistake("test_l0_and_ev", "l0_wrong_axis", _EV + '''    l0 = (latents != 0).float().sum(0).mean().item()
''' + _EVOK + _RET, names=r"wrong axis", subtle=True),
    Mistake("test_l0_and_ev", "ev_token_mean", _EV + _L0 + '''    ev = 1 - ((x - x_hat).pow(2).sum() / (x - x.mean(-1, keepdim=True)).pow(2).sum()).item()
''' + _RET, names=r"each token on its own mean", subtle=True),
    Mistake("test_l0_and_ev", "ev_residual_variance", _EV + _L0 + '''    ev = 1 - ((x - x_hat).var(0).sum() / x.var(0).sum()).item()
''' + _RET, names=r"variance of the residual", subtle=True),
    Mistake("test_l0_and_ev", "ev_mean_of_ratios", _EV + _L0 + '''    ev = 1 - ((x - x_hat).pow(2).mean(0) / x.var(0)).mean().item()
''' + _RET, names=r"averaged per-dimension ratios", subtle=True),
    Mistake("test_l0_and_ev", "ev_unbiased_var", _EV + _L0 + '''    ev = 1 - ((x - x_hat).pow(2).sum(-1).mean() / x.var(0).sum()).item()
''' + _RET, names=r"n − 1", subtle=True),
    Mistake("test_l0_and_ev", "returns_tensors", _EV + '''    l0 = (latents != 0).float().sum(-1).mean()
    ev = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
''' + _RET, names=r"Python floats"),
    Mistake("test_l0_and_ev", "swapped_pair", _EV + _L0 + _EVOK + "    return ev, l0\n", names=r"pair is swapped"),
]

MISTAKES = SAE_LOSS + L1_GRADIENT + OPTIMAL_LATENT + TRAIN + L0_EV
