"""Chapter 04 (SAE variants): common mistakes per exercise."""

from mistakes import Mistake

CHAPTER = "04_variants"

# ---- exercise 1: seed_gated_encode ---------------------------------------------------------------
_SEED = "def seed_gated_encode(sae, x):\n"

SEED_GATED = [
    Mistake("test_seed_gated_encode", "relu_gate", _SEED + '''    gate = F.relu(x @ sae.W_gate.T)
    magnitude = F.relu(x @ sae.W_mag.T)
    return gate * magnitude, gate
''', names=r"sigmoid, not a ReLU", subtle=True),
    Mistake("test_seed_gated_encode", "magnitude_alone", _SEED + '''    gate = torch.sigmoid(x @ sae.W_gate.T)
    magnitude = F.relu(x @ sae.W_mag.T)
    return magnitude, gate
''', names=r"magnitude alone", subtle=True),
    Mistake("test_seed_gated_encode", "no_transpose", _SEED + '''    # the seed writes W_gate @ x
    gate = torch.sigmoid(x @ sae.W_gate)
    magnitude = F.relu(x @ sae.W_mag)
    return gate * magnitude, gate
''', names=r"without transposing"),
    Mistake("test_seed_gated_encode", "swapped_outputs", _SEED + '''    gate = torch.sigmoid(x @ sae.W_gate.T)
    magnitude = F.relu(x @ sae.W_mag.T)
    return gate, gate * magnitude
''', names=r"outputs are swapped", subtle=True),
    Mistake("test_seed_gated_encode", "gate_from_W_mag", _SEED + '''    gate = torch.sigmoid(x @ sae.W_mag.T)
    magnitude = F.relu(x @ sae.W_mag.T)
    return gate * magnitude, gate
''', names=r"gate is computed from W_mag", subtle=True),
    Mistake("test_seed_gated_encode", "hard_gate", _SEED + '''    gate = (x @ sae.W_gate.T > 0).float()
    magnitude = F.relu(x @ sae.W_mag.T)
    return gate * magnitude, gate
''', names=r"not a hard step", subtle=True),
    Mistake("test_seed_gated_encode", "acts_only", _SEED + '''    gate = torch.sigmoid(x @ sae.W_gate.T)
    return gate * F.relu(x @ sae.W_mag.T)
''', names=r"returned one tensor.*pair"),
]

# ---- exercise 2: gated_encode --------------------------------------------------------------------
_GATED = "def gated_encode(sae, x):\n"

GATED_ENCODE = [
    Mistake("test_gated_encode", "no_b_dec", _GATED + '''    pi_gate = x @ sae.W_enc + sae.b_gate
    pi_mag = x @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag
    return (pi_gate > 0).float() * F.relu(pi_mag), pi_gate
''', names=r"does not subtract b_dec", subtle=True),
    Mistake("test_gated_encode", "soft_gate", _GATED + '''    x_cent = x - sae.b_dec
    pi_gate = x_cent @ sae.W_enc + sae.b_gate
    pi_mag = x_cent @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag
    return F.relu(pi_gate) * F.relu(pi_mag), pi_gate
''', names=r"Heaviside", subtle=True),
    Mistake("test_gated_encode", "r_mag_no_exp", _GATED + '''    x_cent = x - sae.b_dec
    pi_gate = x_cent @ sae.W_enc + sae.b_gate
    pi_mag = x_cent @ (sae.W_enc * sae.r_mag) + sae.b_mag
    return (pi_gate > 0).float() * F.relu(pi_mag), pi_gate
''', names=r"exp\(r_mag\), not by r_mag", subtle=True),
    Mistake("test_gated_encode", "centre_in_place", _GATED + '''    x -= sae.b_dec
    pi_gate = x @ sae.W_enc + sae.b_gate
    pi_mag = x @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag
    return (pi_gate > 0).float() * F.relu(pi_mag), pi_gate
''', names=r"changed its input `x` in place", subtle=True),
    Mistake("test_gated_encode", "returns_relu_gate", _GATED + '''    x_cent = x - sae.b_dec
    pi_gate = F.relu(x_cent @ sae.W_enc + sae.b_gate)
    pi_mag = x_cent @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag
    return (pi_gate > 0).float() * F.relu(pi_mag), pi_gate
''', names=r"before any ReLU", subtle=True),
    Mistake("test_gated_encode", "gate_rescaled_too", _GATED + '''    W = sae.W_enc * sae.r_mag.exp()
    x_cent = x - sae.b_dec
    pi_gate = x_cent @ W + sae.b_gate
    pi_mag = x_cent @ W + sae.b_mag
    return (pi_gate > 0).float() * F.relu(pi_mag), pi_gate
''', names=r"rescales only the magnitude path", subtle=True),
    Mistake("test_gated_encode", "biases_swapped", _GATED + '''    x_cent = x - sae.b_dec
    pi_gate = x_cent @ sae.W_enc + sae.b_mag
    pi_mag = x_cent @ (sae.W_enc * sae.r_mag.exp()) + sae.b_gate
    return (pi_gate > 0).float() * F.relu(pi_mag), pi_gate
''', names=r"b_gate and b_mag are swapped", subtle=True),
    Mistake("test_gated_encode", "bias_before_rescale", _GATED + '''    x_cent = x - sae.b_dec
    pi_gate = x_cent @ sae.W_enc + sae.b_gate
    pi_mag = (x_cent @ sae.W_enc + sae.b_mag) * sae.r_mag.exp()
    return (pi_gate > 0).float() * F.relu(pi_mag), pi_gate
''', names=r"b_mag is added after the rescaling", subtle=True),
]

# ---- exercise 3: gated_loss_terms ----------------------------------------------------------------
_LOSS = "def gated_loss_terms(sae, x, x_hat, pi_gate):\n"
_RECON = '"recon": (x - x_hat).pow(2).sum(-1).mean()'
_SPARSE = '"sparsity": sae.cfg.l1_coeff * (gate_acts * sae.W_dec.norm(dim=-1)).sum(-1).mean()'
_AUX = '"aux": (x - via_gate).pow(2).sum(-1).mean()'


def _loss(*, pre="    gate_acts = F.relu(pi_gate)\n    via_gate = gate_acts @ sae.W_dec.detach() + sae.b_dec.detach()\n",
          recon=_RECON, sparsity=_SPARSE, aux=_AUX) -> str:
    return _LOSS + pre + f"    return {{{recon},\n            {sparsity},\n            {aux}}}\n"


GATED_LOSS = [
    Mistake("test_gated_loss_terms", "aux_no_detach", _loss(
        pre="    gate_acts = F.relu(pi_gate)\n    via_gate = gate_acts @ sae.W_dec + sae.b_dec\n"),
        names=r"aux loss sends a gradient to W_dec", subtle=True),
    Mistake("test_gated_loss_terms", "l1_without_decoder_norm", _loss(
        sparsity='"sparsity": sae.cfg.l1_coeff * gate_acts.sum(-1).mean()'),
        names=r"norm of its decoder row", subtle=True),
    Mistake("test_gated_loss_terms", "l1_on_acts", _loss(
        pre="    gate_acts = F.relu(pi_gate)\n    via_gate = gate_acts @ sae.W_dec.detach() + sae.b_dec.detach()\n"
            "    acts, _ = gated_encode(sae, x)\n",
        sparsity='"sparsity": sae.cfg.l1_coeff * (acts * sae.W_dec.norm(dim=-1)).sum(-1).mean()'),
        names=r"L1 goes on the gate path", subtle=True),
    Mistake("test_gated_loss_terms", "recon_mean_all", _loss(recon='"recon": (x - x_hat).pow(2).mean()'),
            names=r"recon is averaged over every element", subtle=True),
    Mistake("test_gated_loss_terms", "aux_no_b_dec", _loss(
        pre="    gate_acts = F.relu(pi_gate)\n    via_gate = gate_acts @ sae.W_dec.detach()\n"),
        names=r"decoder bias is missing", subtle=True),
    Mistake("test_gated_loss_terms", "norm_wrong_axis", _loss(
        sparsity='"sparsity": sae.cfg.l1_coeff * (gate_acts * sae.W_dec.norm(dim=0)).sum(-1).mean()'),
        names=r"reduction over the wrong axis"),
    Mistake("test_gated_loss_terms", "python_floats", _loss(
        recon='"recon": (x - x_hat).pow(2).sum(-1).mean().item()',
        sparsity='"sparsity": (sae.cfg.l1_coeff * (gate_acts * sae.W_dec.norm(dim=-1)).sum(-1).mean()).item()',
        aux='"aux": (x - via_gate).pow(2).sum(-1).mean().item()'),
        names=r"Python float"),
    Mistake("test_gated_loss_terms", "gate_detached", _loss(
        pre="    gate_acts = F.relu(pi_gate).detach()  # the gate is a step: no gradient anyway\n"
            "    via_gate = gate_acts @ sae.W_dec.detach() + sae.b_dec.detach()\n"),
        names=r"cut off from autograd", subtle=True),
    Mistake("test_gated_loss_terms", "aux_from_x_hat", _loss(aux='"aux": (x - x_hat.detach()).pow(2).sum(-1).mean()'),
            names=r"aux is the reconstruction from the gate path", subtle=True),
]

# ---- exercise 4: threshold_grad ------------------------------------------------------------------
_TG = "def threshold_grad(loss_fn, z, theta):\n"

THRESHOLD_GRAD = [
    Mistake("test_threshold_grad", "requires_grad_on_caller", _TG + '''    theta.requires_grad_(True)
    loss = loss_fn(z, theta)
    if not loss.requires_grad:
        return None
    return torch.autograd.grad(loss, theta)[0]
''', names=r"switched on `requires_grad`", subtle=True),
    Mistake("test_threshold_grad", "backward_accumulates", _TG + '''    theta.requires_grad_(True)
    loss = loss_fn(z, theta)
    if not loss.requires_grad:
        return None
    loss.backward()
    return theta.grad
''', names=r"accumulate", subtle=True),
    Mistake("test_threshold_grad", "no_none_branch", _TG + '''    theta = theta.detach().clone().requires_grad_(True)
    loss = loss_fn(z, theta)
    return torch.autograd.grad(loss, theta)[0]
''', names=r"return None"),
    Mistake("test_threshold_grad", "forgot_requires_grad", _TG + '''    theta = theta.detach().clone()
    loss = loss_fn(z, theta)
    if not loss.requires_grad:
        return None
    return torch.autograd.grad(loss, theta)[0]
''', names=r"returned None for a smooth loss"),
    Mistake("test_threshold_grad", "grad_wrt_z", _TG + '''    z = z.detach().clone().requires_grad_(True)
    loss = loss_fn(z, theta)
    if not loss.requires_grad:
        return None
    return torch.autograd.grad(loss, z)[0]
''', names=r"shaped like z"),
    Mistake("test_threshold_grad", "descent_direction", _TG + '''    theta = theta.detach().clone().requires_grad_(True)
    loss = loss_fn(z, theta)
    if not loss.requires_grad:
        return None
    return -torch.autograd.grad(loss, theta)[0]   # the way θ moves
''', names=r"sign is flipped", subtle=True),
    Mistake("test_threshold_grad", "returns_loss", _TG + '''    theta = theta.detach().clone().requires_grad_(True)
    loss = loss_fn(z, theta)
    if not loss.requires_grad:
        return None
    loss.backward()
    return loss
''', names=r"not the loss"),
]

# ---- exercise 5: JumpReLU -----------------------------------------------------------------------
_FWD = '''
    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return {fwd}
'''
_BWD = '''
    @staticmethod
    def backward(ctx, grad):
        z, theta = ctx.saved_tensors
        u = (z - theta) / ctx.eps
        kernel = {kernel}
        grad_z = {grad_z}
        grad_theta = {grad_theta}
        return {ret}
'''


def _jump(*, fwd="z * (z > theta)", kernel="((u > -0.5) & (u < 0.5)).to(z.dtype)", grad_z="grad * (z > theta)",
          grad_theta="-(theta / ctx.eps) * kernel * grad",
          ret="grad_z, grad_theta.reshape(-1, theta.shape[-1]).sum(0), None", name="JumpReLU") -> str:
    return (f"class {name}(torch.autograd.Function):\n" + _FWD.format(fwd=fwd)
            + _BWD.format(kernel=kernel, grad_z=grad_z, grad_theta=grad_theta, ret=ret))


JUMPRELU = [
    Mistake("test_jumprelu_ste", "seed_forward", _jump(fwd="F.relu(z - theta)"), names=r"seed's jump_relu"),
    Mistake("test_jumprelu_ste", "no_theta_factor", _jump(grad_theta="-(1 / ctx.eps) * kernel * grad"),
            names=r"lacks the factor θ", subtle=True),
    Mistake("test_jumprelu_ste", "no_inverse_eps", _jump(grad_theta="-theta * kernel * grad"),
            names=r"lacks the factor 1/ε", subtle=True),
    Mistake("test_jumprelu_ste", "sign_flipped", _jump(grad_theta="(theta / ctx.eps) * kernel * grad"),
            names=r"wrong sign", subtle=True),
    Mistake("test_jumprelu_ste", "kernel_too_wide", _jump(kernel="(u.abs() < 1).to(z.dtype)"),
            names=r"\|z − θ\| < ε/2, not ε", subtle=True),
    Mistake("test_jumprelu_ste", "grad_z_unmasked", _jump(grad_z="grad"), names=r"∂/∂z is masked", subtle=True),
    Mistake("test_jumprelu_ste", "forward_ge", _jump(fwd="z * (z >= theta)"), names=r"strict", subtle=True),
    Mistake("test_jumprelu_ste", "batch_mean", _jump(ret="grad_z, grad_theta.reshape(-1, theta.shape[-1]).mean(0), None"),
            names=r"do not average", subtle=True),
    Mistake("test_jumprelu_ste", "two_gradients", _jump(ret="grad_z, grad_theta.reshape(-1, theta.shape[-1]).sum(0)"),
            names=r"one gradient per input"),
    Mistake("test_jumprelu_ste", "no_upstream", _jump(grad_theta="-(theta / ctx.eps) * kernel"),
            names=r"multiply by the upstream gradient", subtle=True),
]

# ---- exercise 6: Step ---------------------------------------------------------------------------
_STEP = dict(fwd="(z > theta).to(z.dtype)", grad_z="None", grad_theta="-(1.0 / ctx.eps) * kernel * grad",
             ret="None, grad_theta.reshape(-1, theta.shape[-1]).sum(0), None", name="Step")


def _step(**changes) -> str:
    return _jump(**{**_STEP, **changes})


STEP = [
    Mistake("test_step_ste", "grad_for_z", _step(grad_z="grad * (z > theta)",
                                                 ret="grad_z, grad_theta.reshape(-1, theta.shape[-1]).sum(0), None"),
            names=r"return None \(no gradient\) for z", subtle=True),
    Mistake("test_step_ste", "theta_factor", _step(grad_theta="-(theta / ctx.eps) * kernel * grad"),
            names=r"no factor θ here", subtle=True),
    Mistake("test_step_ste", "sign_flipped", _step(grad_theta="(1.0 / ctx.eps) * kernel * grad"),
            names=r"wrong sign", subtle=True),
    Mistake("test_step_ste", "bool_forward", _step(fwd="z > theta"), names=r"float tensor"),
    Mistake("test_step_ste", "kernel_too_wide", _step(kernel="(u.abs() < 1).to(z.dtype)"),
            names=r"\|z − θ\| < ε/2, not ε", subtle=True),
    Mistake("test_step_ste", "jumprelu_forward", _step(fwd="z * (z > theta)"), names=r"that is JumpReLU"),
    Mistake("test_step_ste", "no_inverse_eps", _step(grad_theta="-kernel * grad"), names=r"lacks the factor 1/ε",
            subtle=True),
    Mistake("test_step_ste", "one_sided_kernel", _step(kernel="((u > 0) & (u < 0.5)).to(z.dtype)"),
            names=r"both sides of θ", subtle=True),
]

# ---- exercise 7: topk_activation ----------------------------------------------------------------
_TOPK = "def topk_activation(pre_acts, k):\n"

TOPK = [
    Mistake("test_topk_activation", "no_relu", _TOPK + '''    top = pre_acts.topk(k, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values)
''', names=r"negative values were kept", subtle=True),
    Mistake("test_topk_activation", "along_dim0", _TOPK + '''    top = pre_acts.topk(k, dim=0)
    return torch.zeros_like(pre_acts).scatter(0, top.indices, top.values.relu())
''', names=r"along dim 0"),
    Mistake("test_topk_activation", "by_magnitude", _TOPK + '''    idx = pre_acts.abs().topk(k, dim=-1).indices
    return torch.zeros_like(pre_acts).scatter(-1, idx, pre_acts.gather(-1, idx).relu())
''', names=r"largest \|z\|", subtle=True),
    Mistake("test_topk_activation", "values_only", _TOPK + '''    return pre_acts.topk(k, dim=-1).values.relu()
''', names=r"only the k selected values"),
    Mistake("test_topk_activation", "threshold_ties", _TOPK + '''    kth = pre_acts.topk(k, dim=-1).values[..., -1:]      # the k-th largest of each token
    return F.relu(pre_acts * (pre_acts >= kth))
''', names=r"tied", subtle=True),
    Mistake("test_topk_activation", "off_by_one", _TOPK + '''    kth = pre_acts.sort(dim=-1, descending=True).values[..., k]
    return F.relu(pre_acts * (pre_acts >= kth[..., None]))
''', names=r"off by one", subtle=True),
    Mistake("test_topk_activation", "masks_in_place", _TOPK + '''    kth = pre_acts.topk(k, dim=-1).values[..., -1:]
    pre_acts[pre_acts < kth] = 0
    return pre_acts.relu()
''', names=r"changed its input `pre_acts` in place", subtle=True),
    Mistake("test_topk_activation", "dim1_not_last", _TOPK + '''    top = pre_acts.topk(k, dim=1)
    return torch.zeros_like(pre_acts).scatter(1, top.indices, top.values.relu())
''', names=r"extra leading dimensions", subtle=True),
]

# ---- exercise 8: batch_topk_activation ----------------------------------------------------------
_BTK = "def batch_topk_activation(pre_acts, k):\n"

BATCH_TOPK = [
    Mistake("test_batch_topk_activation", "per_token", _BTK + '''    top = pre_acts.relu().topk(k, dim=-1)
    return torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values)
''', names=r"that is TopK", subtle=True),
    Mistake("test_batch_topk_activation", "k_in_total", _BTK + '''    flat = pre_acts.relu().reshape(-1)
    top = flat.topk(k)
    return torch.zeros_like(flat).scatter(0, top.indices, top.values).reshape(pre_acts.shape)
''', names=r"keep k · B"),
    Mistake("test_batch_topk_activation", "no_relu", _BTK + '''    flat = pre_acts.reshape(-1)
    top = flat.topk(k * pre_acts.shape[0])
    return torch.zeros_like(flat).scatter(0, top.indices, top.values).reshape(pre_acts.shape)
''', names=r"negative values were kept", subtle=True),
    Mistake("test_batch_topk_activation", "batch_is_d_sae", _BTK + '''    batch, d_sae = pre_acts.shape
    flat = pre_acts.relu().reshape(-1)
    top = flat.topk(k * d_sae)
    return torch.zeros_like(flat).scatter(0, top.indices, top.values).reshape(pre_acts.shape)
''', names=r"B is the number of tokens", subtle=True),
    Mistake("test_batch_topk_activation", "no_reshape", _BTK + '''    flat = pre_acts.relu().reshape(-1)
    top = flat.topk(k * pre_acts.shape[0])
    return torch.zeros_like(flat).scatter(0, top.indices, top.values)
''', names=r"reshape it back"),
    Mistake("test_batch_topk_activation", "relu_in_place", _BTK + '''    flat = pre_acts.relu_().reshape(-1)
    top = flat.topk(k * pre_acts.shape[0])
    return torch.zeros_like(flat).scatter(0, top.indices, top.values).reshape(pre_acts.shape)
''', names=r"changed its input `pre_acts` in place", subtle=True),
    Mistake("test_batch_topk_activation", "by_magnitude", _BTK + '''    flat = pre_acts.reshape(-1)
    idx = flat.abs().topk(k * pre_acts.shape[0]).indices
    return torch.zeros_like(flat).scatter(0, idx, flat[idx].relu()).reshape(pre_acts.shape)
''', names=r"largest \|z\|", subtle=True),
    Mistake("test_batch_topk_activation", "threshold_ties", _BTK + '''    acts = pre_acts.relu()
    threshold = acts.reshape(-1).topk(k * pre_acts.shape[0]).values.min()
    return acts * (acts >= threshold)
''', names=r"tied", subtle=True),
]

# ---- exercise 9: find_splits --------------------------------------------------------------------
_FS = "def find_splits(W_small, W_large, threshold=0.5):\n"
_FS_LOOP = '''    best_cos, best = cos.max(0)
    splits = {i: [] for i in range(W_small.shape[0])}
    for j in best_cos.argsort(descending=True).tolist():
        if best_cos[j] > threshold:
            splits[int(best[j])].append(j)
    return splits
'''
_COS = "    cos = F.normalize(W_small, dim=-1) @ F.normalize(W_large, dim=-1).T\n"

FIND_SPLITS = [
    Mistake("test_find_splits", "no_normalise", _FS + "    cos = W_small @ W_large.T\n" + _FS_LOOP,
            names=r"normalise the rows of both decoders", subtle=True),
    Mistake("test_find_splits", "abs_cosine", _FS + "    cos = (F.normalize(W_small, dim=-1) @ F.normalize(W_large, dim=-1).T).abs()\n"
            + _FS_LOOP, names=r"not its absolute value", subtle=True),
    Mistake("test_find_splits", "ascending", _FS + _COS + _FS_LOOP.replace("argsort(descending=True)", "argsort()"),
            names=r"descending cosine", subtle=True),
    Mistake("test_find_splits", "no_empty_keys", _FS + _COS + _FS_LOOP.replace(
        "splits = {i: [] for i in range(W_small.shape[0])}", "splits = {}").replace(
        "splits[int(best[j])].append(j)", "splits.setdefault(int(best[j]), []).append(j)"),
        names=r"empty list"),
    Mistake("test_find_splits", "at_threshold_kept", _FS + _COS + _FS_LOOP.replace("> threshold", ">= threshold"),
            names=r"strictly above", subtle=True),
    Mistake("test_find_splits", "every_parent_above", _FS + _COS + '''    splits = {i: [] for i in range(W_small.shape[0])}
    for i in range(W_small.shape[0]):
        for j in cos[i].argsort(descending=True).tolist():
            if cos[i, j] > threshold:
                splits[i].append(j)
    return splits
''', names=r"one parent only", subtle=True),
    Mistake("test_find_splits", "best_child_per_parent", _FS + _COS + '''    best_cos, best = cos.max(1)          # the best large latent of each small one
    return {i: [int(best[i])] if best_cos[i] > threshold else [] for i in range(W_small.shape[0])}
''', names=r"for each large latent find its best small latent"),
    Mistake("test_find_splits", "normalise_in_place", _FS + '''    W_small /= W_small.norm(dim=-1, keepdim=True)
    W_large /= W_large.norm(dim=-1, keepdim=True)
    cos = W_small @ W_large.T
''' + _FS_LOOP, names=r"changed its input `W_small` in place", subtle=True),
]

MISTAKES = SEED_GATED + GATED_ENCODE + GATED_LOSS + THRESHOLD_GRAD + JUMPRELU + STEP + TOPK + BATCH_TOPK + FIND_SPLITS
