"""Chapter 05 (dead latents): common mistakes per exercise."""

from mistakes import Mistake

CHAPTER = "05_dead_latents"

# ---- exercise 1: firing_frequency, find_dead, P_SILENT -----------------------------------------
_FREQ = '''
def firing_frequency(sae, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Fraction of the tokens in the window `x` [n_tokens, d_in] on which each latent is != 0: [d_sae]."""
    counts = None
    with torch.no_grad():
        for xb in x.split(batch_size):
            fired = (sae.encode(xb) != 0).sum(0).float()
            counts = fired if counts is None else counts + fired
    return counts / x.shape[0]
'''
_DEAD = '''
def find_dead(freq: torch.Tensor) -> torch.Tensor:
    """Boolean mask [d_sae]: the latents that fired on none of the window's tokens."""
    return freq == 0
'''
_PSIL = '''
P_SILENT = (1 - 1e-5) ** 10_000
'''


def _ex1(freq: str = _FREQ, dead: str = _DEAD, psil: str = _PSIL) -> str:
    return freq + dead + psil


def _freq(body: str) -> str:
    return ('\ndef firing_frequency(sae, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:\n'
            '    """Fraction of the tokens in the window `x` [n_tokens, d_in] on which each latent is != 0: [d_sae]."""\n'
            + body)


FIRING = [
    Mistake("test_firing_frequency", "positive_only", _ex1(freq=_freq('''    counts = 0
    with torch.no_grad():
        for xb in x.split(batch_size):
            counts = counts + (sae.encode(xb) > 0).float().sum(0)
    return counts / x.shape[0]
''')), names=r"!= 0, not > 0", subtle=True),
    Mistake("test_firing_frequency", "mean_of_batch_means", _ex1(freq=_freq('''    freqs = []
    with torch.no_grad():
        for xb in x.split(batch_size):
            freqs.append((sae.encode(xb) != 0).float().mean(0))
    return torch.stack(freqs).mean(0)
''')), names=r"per-batch frequencies.*short last batch", subtle=True),
    Mistake("test_firing_frequency", "returns_counts", _ex1(freq=_freq('''    counts = 0
    with torch.no_grad():
        for xb in x.split(batch_size):
            counts = counts + (sae.encode(xb) != 0).float().sum(0)
    return counts
''')), names=r"returned counts"),
    Mistake("test_firing_frequency", "divide_by_batch_size", _ex1(freq=_freq('''    counts = 0
    with torch.no_grad():
        for xb in x.split(batch_size):
            counts = counts + (sae.encode(xb) != 0).float().sum(0)
    return counts / batch_size
''')), names=r"divided by batch_size", subtle=True),
    Mistake("test_firing_frequency", "last_batch_size", _ex1(freq=_freq('''    counts = 0
    with torch.no_grad():
        for xb in x.split(batch_size):
            counts = counts + (sae.encode(xb) != 0).float().sum(0)
    return counts / len(xb)
''')), names=r"size of the last batch"),
    Mistake("test_firing_frequency", "overwrites_counts", _ex1(freq=_freq('''    with torch.no_grad():
        for xb in x.split(batch_size):
            counts = (sae.encode(xb) != 0).float().sum(0)
    return counts / x.shape[0]
''')), names=r"only the last batch counts.*running total", subtle=True),
    Mistake("test_firing_frequency", "mean_of_values", _ex1(freq=_freq('''    total = 0
    with torch.no_grad():
        for xb in x.split(batch_size):
            total = total + sae.encode(xb).sum(0)
    return total / x.shape[0]
''')), names=r"averaged activation \*values\*"),
    Mistake("test_firing_frequency", "wrong_axis", _ex1(freq=_freq('''    parts = []
    with torch.no_grad():
        for xb in x.split(batch_size):
            parts.append((sae.encode(xb) != 0).float().sum(-1))
    return torch.cat(parts) / x.shape[0]
''')), names=r"one number per \*token\*.*dim 0"),
    Mistake("test_firing_frequency", "no_batching", _ex1(freq=_freq('''    with torch.no_grad():
        return (sae.encode(x) != 0).float().mean(0)
''')), names=r"encode the window in batches", subtle=True),
    Mistake("test_firing_frequency", "return_in_loop", _ex1(freq=_freq('''    counts = 0
    with torch.no_grad():
        for xb in x.split(batch_size):
            counts = counts + (sae.encode(xb) != 0).float().sum(0)
            return counts / x.shape[0]
''')), names=r"only the first batch counts.*return"),
    Mistake("test_firing_frequency", "dead_threshold", _ex1(dead='''
def find_dead(freq: torch.Tensor) -> torch.Tensor:
    """Boolean mask [d_sae]: the latents that fired on none of the window's tokens."""
    return freq < 1e-8
'''), names=r"rare, not dead", subtle=True),
    Mistake("test_firing_frequency", "dead_is_alive", _ex1(dead='''
def find_dead(freq: torch.Tensor) -> torch.Tensor:
    """Boolean mask [d_sae]: the latents that fired on none of the window's tokens."""
    return freq > 0
'''), names=r"\*alive\* latents"),
    Mistake("test_firing_frequency", "dead_indices", _ex1(dead='''
def find_dead(freq: torch.Tensor) -> torch.Tensor:
    """Boolean mask [d_sae]: the latents that fired on none of the window's tokens."""
    return torch.nonzero(freq == 0).squeeze(-1)
'''), names=r"indices of the dead latents.*boolean \*mask\*"),
    Mistake("test_firing_frequency", "dead_float", _ex1(dead='''
def find_dead(freq: torch.Tensor) -> torch.Tensor:
    """Boolean mask [d_sae]: the latents that fired on none of the window's tokens."""
    return (freq == 0).float()
'''), names=r"return a boolean tensor"),
    Mistake("test_firing_frequency", "p_fires", _ex1(psil='''
P_SILENT = 1 - (1 - 1e-5) ** 10_000
'''), names=r"fires at least once", subtle=True),
    Mistake("test_firing_frequency", "p_first_order", _ex1(psil='''
P_SILENT = 1 - 1e-5 * 10_000
'''), names=r"first-order approximation", subtle=True),
    Mistake("test_firing_frequency", "p_percent", _ex1(psil='''
import math
P_SILENT = 100 * math.exp(-1e-5 * 10_000)
'''), names=r"percentage"),
    Mistake("test_firing_frequency", "p_unset", _ex1(psil='''
P_SILENT = None   # probability that a latent firing with p = 1e-5 is silent for 10,000 tokens
'''), names=r"set P_SILENT"),
]

# ---- exercise 2: claims about the seed's resampler ----------------------------------------------
_CLAIMS = '''
TRUE_CLAIMS = {letters}    # a set of letters from "A" to "J"
'''


def _claims(letters: str) -> str:
    return _CLAIMS.format(letters=letters)


CLAIMS = [
    Mistake("test_claims", "believes_axis", _claims('{"A", "C", "D", "E", "F", "H", "I"}'),
            names=r"claim H: you marked it true.*rows are latents", subtle=True),
    Mistake("test_claims", "topk_is_sampling", _claims('{"A", "C", "D", "E", "F", "G", "I"}'),
            names=r"claim G: you marked it true.*top-k", subtle=True),
    Mistake("test_claims", "one_batch_window", _claims('{"A", "B", "C", "D", "E", "F", "I"}'),
            names=r"claim B: you marked it true.*silent on a batch"),
    Mistake("test_claims", "misses_grad_error", _claims('{"A", "C", "D", "E", "F"}'),
            names=r"claim I: you marked it false.*leaf", subtle=True),
    Mistake("test_claims", "latents_fix_it", _claims('{"A", "C", "D", "E", "F", "I", "J"}'),
            names=r"claim J: you marked it true.*defects"),
    Mistake("test_claims", "misses_input_mean", _claims('{"C", "D", "E", "F", "I"}'),
            names=r"claim A: you marked it false.*one entry per input dimension"),
    Mistake("test_claims", "misses_decoder_and_adam", _claims('{"A", "C", "F", "I"}'),
            names=r"claim D: you marked it false.*decoder\.weight.*claim E: you marked it false"),
    Mistake("test_claims", "one_string", _claims('"ACDEFI"'), names=r"not one string"),
]

# ---- exercise 3: resample_dead_latents_ ----------------------------------------------------------


def _resampler(*, loss="(x - sae.decode(sae.encode(x))).pow(2).sum(-1)",
               pick="torch.multinomial(loss.pow(2), idx.numel(), replacement=True, generator=generator)",
               dirs="x[pick] - sae.b_dec", normalise="dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-8)",
               mean="sae.W_enc.norm(dim=0)[~dead].mean()", w_dec="sae.W_dec[idx] = dirs",
               w_enc="sae.W_enc[:, idx] = (dirs * enc_scale * mean_alive).T", bias="sae.b_enc[idx] = 0.0",
               counter="sae.tokens_since_fired[idx] = 0.0",
               params="((sae.W_enc, 1), (sae.W_dec, 0), (sae.b_enc, 0))",
               reset="state[key].index_fill_(axis, idx, 0.0)", ret="int(idx.numel())") -> str:
    return f'''
@torch.no_grad()
def resample_dead_latents_(sae, x: torch.Tensor, dead: torch.Tensor, *, optimizer=None,
                           enc_scale: float = 0.2, generator: torch.Generator | None = None) -> int:
    """Anthropic's resampling of the `dead` latents [d_sae] from inputs `x` [n, d_in]; returns how many."""
    idx = dead.nonzero().squeeze(-1)
    if idx.numel() == 0:
        return 0
    loss = {loss}
    pick = {pick}
    dirs = {dirs}
    {normalise}
    mean_alive = {mean}
    {w_dec}
    {w_enc}
    {bias}
    {counter}
    if optimizer is not None:
        for p, axis in {params}:
            state = optimizer.state.get(p, {{}})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    {reset}
    return {ret}
'''


RESAMPLE = [
    Mistake("test_resample", "not_centred", _resampler(dirs="x[pick]"), names=r"raw inputs x; use x − b_dec",
            subtle=True),
    Mistake("test_resample", "not_normalised", _resampler(normalise="pass"), names=r"unit norm"),
    Mistake("test_resample", "mean_over_all", _resampler(mean="sae.W_enc.norm(dim=0).mean()"),
            names=r"averaged over all latents, dead ones included", subtle=True),
    Mistake("test_resample", "norm_wrong_axis", _resampler(mean="sae.W_enc.norm(dim=1).mean()"),
            names=r"wrong axis.*norm\(dim=0\)", subtle=True),
    Mistake("test_resample", "keeps_bias", _resampler(bias="pass"), names=r"encoder bias", subtle=True),
    Mistake("test_resample", "no_adam_reset", _resampler(reset="pass"), names=r"Adam's exp_avg for W_enc still holds",
            subtle=True),
    Mistake("test_resample", "adam_bias_forgotten", _resampler(params="((sae.W_enc, 1), (sae.W_dec, 0))"),
            names=r"Adam's exp_avg for b_enc still holds", subtle=True),
    Mistake("test_resample", "adam_reset_all", _resampler(reset="state[key].zero_()"),
            names=r"alive latents too"),
    Mistake("test_resample", "counter_kept", _resampler(counter="pass"), names=r"tokens_since_fired", subtle=True),
    Mistake("test_resample", "proportional_to_loss",
            _resampler(pick="torch.multinomial(loss, idx.numel(), replacement=True, generator=generator)"),
            names=r"∝ loss \(not loss²\)", subtle=True),
    Mistake("test_resample", "norm_weights", _resampler(loss="(x - sae.decode(sae.encode(x))).norm(dim=-1)"),
            names=r"the norm ‖x − x̂‖ as the loss", subtle=True),
    Mistake("test_resample", "top_k", _resampler(pick="loss.topk(idx.numel()).indices"), names=r"top-k"),
    Mistake("test_resample", "hard_coded_scale", _resampler(w_enc="sae.W_enc[:, idx] = (dirs * 0.2 * mean_alive).T"),
            names=r"hard-coded 0\.2", subtle=True),
    Mistake("test_resample", "encoder_rows", _resampler(w_enc="sae.W_enc[idx] = dirs * enc_scale * mean_alive"),
            names=r"wrong axis"),
    Mistake("test_resample", "no_return", _resampler(ret="None"), names=r"returned None"),
]

# ---- exercise 4: auxk_loss -----------------------------------------------------------------------


def _auxk(*, guard="    if n_dead == 0:\n        return pre_acts.new_zeros(())\n",
          z="pre_acts.masked_fill(~dead, -torch.inf)", k="min(k_aux, n_dead)",
          e_hat="torch.zeros_like(z).scatter(-1, top.indices, top.values) @ W_dec",
          ret="(residual.detach() - e_hat).pow(2).sum(-1).mean()") -> str:
    return f'''
def auxk_loss(residual: torch.Tensor, pre_acts: torch.Tensor, W_dec: torch.Tensor, dead: torch.Tensor,
              k_aux: int) -> torch.Tensor:
    """‖e − ê‖² averaged over tokens, ê decoded from the top-k_aux dead pre-activations (no b_dec)."""
    n_dead = int(dead.sum())
{guard}    z = {z}
    top = z.topk({k}, dim=-1)
    e_hat = {e_hat}
    return {ret}
'''


AUXK = [
    Mistake("test_auxk_loss", "relu", _auxk(z="pre_acts.relu().masked_fill(~dead, -torch.inf)"),
            names=r"you applied a ReLU", subtle=True),
    Mistake("test_auxk_loss", "mask_with_zero", _auxk(z="pre_acts.masked_fill(~dead, 0.0)"),
            names=r"with 0 instead of −inf", subtle=True),
    Mistake("test_auxk_loss", "all_latents", _auxk(z="pre_acts"), names=r"over \*all\* latents"),
    Mistake("test_auxk_loss", "not_detached", _auxk(ret="(residual - e_hat).pow(2).sum(-1).mean()"),
            names=r"detach it"),
    Mistake("test_auxk_loss", "mean_over_d", _auxk(ret="(residual.detach() - e_hat).pow(2).mean()"),
            names=r"averaged the squared error over d_in", subtle=True),
    Mistake("test_auxk_loss", "sum_over_tokens", _auxk(ret="(residual.detach() - e_hat).pow(2).sum()"),
            names=r"summed over tokens too"),
    Mistake("test_auxk_loss", "norm_not_squared", _auxk(ret="(residual.detach() - e_hat).norm(dim=-1).mean()"),
            names=r"norm ‖e − ê‖; the loss is its square", subtle=True),
    Mistake("test_auxk_loss", "no_min_k", _auxk(k="k_aux"), names=r"min\(k_aux"),
    Mistake("test_auxk_loss", "no_zero_guard", _auxk(guard="", k="min(k_aux, n_dead)"),
            names=r"no dead latents.*should be 0", subtle=True),
    Mistake("test_auxk_loss", "returns_float", _auxk(ret="(residual.detach() - e_hat).pow(2).sum(-1).mean().item()"),
            names=r"Python float"),
    Mistake("test_auxk_loss", "mask_in_place", _auxk(z="pre_acts\n    z[:, ~dead] = -torch.inf"),
            names=r"changed its input `pre_acts` in place", subtle=True),
    Mistake("test_auxk_loss", "transposed_decoder",
            _auxk(e_hat="torch.zeros_like(z).scatter(-1, top.indices, top.values) @ W_dec.T"),
            names=r"transposing"),
    Mistake("test_auxk_loss", "detached_pre_acts", _auxk(z="pre_acts.detach().masked_fill(~dead, -torch.inf)"),
            names=r"no gradient reaches the dead latents' pre-activations", subtle=True),
]

MISTAKES = FIRING + CLAIMS + RESAMPLE + AUXK
