"""Chapter 07 (capstone: hunting sycophancy with SAE latents): common mistakes per exercise."""

from mistakes import Mistake

CHAPTER = "07_capstone_sycophancy"

# ---- exercise 1: seed_ratio_search --------------------------------------------------------------
_SEED = ("def seed_ratio_search(scores: torch.Tensor, labels: torch.Tensor, ratio: float = 3.0) -> torch.Tensor:\n"
         "    labels = labels.bool()\n")
_MEANS = "    sycophantic = scores[labels].mean(0)\n    honest = scores[~labels].mean(0)\n"

SEED_RATIO = [
    Mistake("test_seed_ratio_search", "greater_equal", _SEED + _MEANS + '''    return torch.nonzero(sycophantic >= ratio * honest).flatten()
''', names=r"strict `>`", subtle=True),
    Mistake("test_seed_ratio_search", "classes_swapped", _SEED + '''    sycophantic = scores[~labels].mean(0)
    honest = scores[labels].mean(0)
    return torch.nonzero(sycophantic > ratio * honest).flatten()
''', names=r"honest against sycophantic", subtle=True),
    Mistake("test_seed_ratio_search", "boolean_mask", _SEED + _MEANS + '''    return sycophantic > ratio * honest
''', names=r"boolean mask"),
    Mistake("test_seed_ratio_search", "ratio_ignored", _SEED + _MEANS + '''    return torch.nonzero(sycophantic > 3 * honest).flatten()
''', names=r"`ratio` argument", subtle=True),
    Mistake("test_seed_ratio_search", "mean_over_all", _SEED + '''    sycophantic = scores[labels].mean(0)
    overall = scores.mean(0)
    return torch.nonzero(sycophantic > ratio * overall).flatten()
''', names=r"negative examples only, not over all", subtle=True),
    Mistake("test_seed_ratio_search", "sum_not_mean", _SEED + '''    sycophantic = scores[labels].sum(0)
    honest = scores[~labels].sum(0)
    return torch.nonzero(sycophantic > ratio * honest).flatten()
''', names=r"sums? .*mean", subtle=True),
    Mistake("test_seed_ratio_search", "mean_per_example", _SEED + '''    sycophantic = scores[labels].mean(1)
    honest = scores[~labels].mean(1)
    return torch.nonzero(sycophantic > ratio * honest).flatten()
''', names=r"wrong axis"),
    Mistake("test_seed_ratio_search", "python_list", '''
def seed_ratio_search(scores, labels, ratio=3.0):
    flagged = []
    for latent_idx in range(scores.shape[1]):
        sycophantic_activation = scores[labels, latent_idx].mean()
        honest_activation = scores[~labels, latent_idx].mean()
        if sycophantic_activation > ratio * honest_activation:
            flagged.append(latent_idx)
    return flagged
''', names=r"returned a list", subtle=True),
    Mistake("test_seed_ratio_search", "no_flatten", _SEED + _MEANS + '''    return torch.nonzero(sycophantic > ratio * honest)
''', names=r"\.flatten\(\)"),
    Mistake("test_seed_ratio_search", "squeeze", _SEED + _MEANS + '''    return torch.nonzero(sycophantic > ratio * honest).squeeze()
''', names=r"0-d tensor", subtle=True),
    Mistake("test_seed_ratio_search", "masked_mean_over_all_rows", _SEED + '''    pos = labels.float()[:, None]
    sycophantic = (scores * pos).mean(0)
    honest = (scores * (1 - pos)).mean(0)
    return torch.nonzero(sycophantic > ratio * honest).flatten()
''', names=r"mean over all rows of a masked tensor", subtle=True),
    Mistake("test_seed_ratio_search", "skip_zero_denominator", _SEED + _MEANS + '''    # a latent that never fires on an honest reply would divide by zero: leave it out
    return torch.nonzero((sycophantic > ratio * honest) & (honest > 0)).flatten()
''', names=r"never fire on a negative", subtle=True),
    Mistake("test_seed_ratio_search", "sorted_by_ratio", _SEED + _MEANS + '''    flagged = torch.nonzero(sycophantic > ratio * honest).flatten()
    # strongest first
    return flagged[(sycophantic[flagged] / honest[flagged]).argsort(descending=True)]
''', names=r"not in ascending order", subtle=True),
]

# ---- exercise 2: auroc --------------------------------------------------------------------------
_AUC = ("def auroc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:\n"
        "    labels = labels.bool()\n"
        "    n_pos, n_neg = int(labels.sum()), int((~labels).sum())\n"
        "    x = scores.double().T.contiguous()\n"
        "    s = x.sort(-1).values\n"
        "    below = torch.searchsorted(s, x, right=False)\n"
        "    at_or_below = torch.searchsorted(s, x, right=True)\n")
_RANKS = "    ranks = (below + at_or_below + 1).double() / 2\n"
_RSUM = "    rank_sum = ranks[:, labels].sum(-1)\n"
_AUC_RET = "    return ((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()\n"

AUROC = [
    Mistake("test_auroc", "ties_as_losses", '''
def auroc(scores, labels):
    labels = labels.bool()
    pos, neg = scores[labels], scores[~labels]
    # P(a random positive scores higher than a random negative)
    return (pos[:, None, :] > neg[None, :, :]).float().mean((0, 1))
''', names=r"ties are counted as losses", subtle=True),
    Mistake("test_auroc", "ties_as_wins", _AUC + "    ranks = at_or_below.double()\n" + _RSUM + _AUC_RET,
            names=r"ties are counted as wins", subtle=True),
    Mistake("test_auroc", "min_ranks", _AUC + "    ranks = (below + 1).double()   # rank = 1 + how many are smaller\n" + _RSUM
            + _AUC_RET, names=r"lowest rank", subtle=True),
    Mistake("test_auroc", "reversed", _AUC + _RANKS + "    rank_sum = ranks[:, ~labels].sum(-1)\n"
            "    return ((rank_sum - n_neg * (n_neg + 1) / 2) / (n_pos * n_neg)).float()\n", names=r"reversed"),
    Mistake("test_auroc", "ordinal_ranks", '''
def auroc(scores, labels):
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    ranks = scores.double().argsort(0).argsort(0).double() + 1     # rank of each value in its column
    rank_sum = ranks[labels].sum(0)
    return ((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()
''', names=r"tied values .*average", subtle=True),
    Mistake("test_auroc", "zero_based_ranks", _AUC + "    ranks = (below + at_or_below).double() / 2\n" + _RSUM + _AUC_RET,
            names=r"0-based", subtle=True),
    Mistake("test_auroc", "not_normalised", _AUC + _RANKS + _RSUM
            + "    return (rank_sum - n_pos * (n_pos + 1) / 2).float()\n", names=r"n₊ · n₋|n₊n₋"),
    Mistake("test_auroc", "no_rank_offset", _AUC + _RANKS + _RSUM + "    return (rank_sum / (n_pos * n_neg)).float()\n",
            names=r"subtract n₊\(n₊ ?\+ ?1\)/2"),
    Mistake("test_auroc", "no_transpose", '''
def auroc(scores, labels):
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    x = scores.double().contiguous()
    s = x.sort(-1).values
    ranks = (torch.searchsorted(s, x) + torch.searchsorted(s, x, right=True) + 1).double() / 2
    rank_sum = ranks[:, labels].sum(-1)
    return ((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()
''', names=r"rank each column|transpose"),
    Mistake("test_auroc", "squeezed", _AUC + _RANKS + _RSUM
            + "    return ((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).squeeze().float()\n",
            names=r"single column", subtle=True),
    Mistake("test_auroc", "ranks_over_matrix", '''
def auroc(scores, labels):
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    flat = scores.double().flatten()
    s = flat.sort().values
    ranks = (torch.searchsorted(s, flat) + torch.searchsorted(s, flat, right=True) + 1).double() / 2
    ranks = ranks.view(scores.shape)
    return ((ranks[labels].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).float()
''', names=r"rank each column"),
    Mistake("test_auroc", "pairs_n_pos_squared", '''
def auroc(scores, labels):
    labels = labels.bool()
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()
    return wins.sum((0, 1)) / (len(pos) * len(pos))
''', names=r"not n₊²"),
]

# ---- exercise 3: cohens_d -----------------------------------------------------------------------
_D = ("def cohens_d(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:\n"
      "    labels = labels.bool()\n"
      "    x = scores.double()\n"
      "    pos, neg = x[labels], x[~labels]\n"
      "    n1, n0 = pos.shape[0], neg.shape[0]\n")
_DIFF = "    diff = pos.mean(0) - neg.mean(0)\n"
_POOLED = "    pooled = ((n1 - 1) * pos.var(0, unbiased=True) + (n0 - 1) * neg.var(0, unbiased=True)) / (n1 + n0 - 2)\n"
_D_RET = "    return torch.where(sd > 0, diff / sd.clamp_min(1e-300), torch.zeros_like(diff)).float()\n"

COHENS_D = [
    Mistake("test_cohens_d", "sign_flipped", _D + _POOLED + "    sd = pooled.sqrt()\n"
            "    diff = neg.mean(0) - pos.mean(0)\n" + _D_RET, names=r"sign is flipped", subtle=True),
    Mistake("test_cohens_d", "nan_for_silent", _D + _POOLED + "    sd = pooled.sqrt()\n" + _DIFF
            + "    return (diff / sd).float()\n", names=r"NaN"),
    Mistake("test_cohens_d", "overall_sd", _D + "    sd = x.std(0)\n" + _DIFF + _D_RET,
            names=r"all examples together", subtle=True),
    Mistake("test_cohens_d", "mean_of_sds", _D + "    sd = (pos.std(0) + neg.std(0)) / 2\n" + _DIFF + _D_RET,
            names=r"average of the two standard deviations", subtle=True),
    Mistake("test_cohens_d", "unweighted_variances", _D + "    sd = ((pos.var(0) + neg.var(0)) / 2).sqrt()\n" + _DIFF + _D_RET,
            names=r"unweighted|weight each group", subtle=True),
    Mistake("test_cohens_d", "biased_variances", _D
            + "    pooled = ((n1 - 1) * pos.var(0, unbiased=False) + (n0 - 1) * neg.var(0, unbiased=False)) / (n1 + n0 - 2)\n"
            + "    sd = pooled.sqrt()\n" + _DIFF + _D_RET, names=r"unbiased", subtle=True),
    Mistake("test_cohens_d", "no_minus_two", _D
            + "    pooled = ((n1 - 1) * pos.var(0) + (n0 - 1) * neg.var(0)) / (n1 + n0)\n"
            + "    sd = pooled.sqrt()\n" + _DIFF + _D_RET, names=r"n₊ \+ n₋ − 2", subtle=True),
    Mistake("test_cohens_d", "variance_not_sd", _D + _POOLED + "    sd = pooled\n" + _DIFF + _D_RET,
            names=r"square root"),
    Mistake("test_cohens_d", "absolute_d", _D + _POOLED + "    sd = pooled.sqrt()\n"
            + "    diff = (pos.mean(0) - neg.mean(0)).abs()   # the size of the effect\n" + _D_RET,
            names=r"d is signed", subtle=True),
    Mistake("test_cohens_d", "centre_in_place", '''
def cohens_d(scores, labels):
    labels = labels.bool()
    x = scores
    x -= x.mean(0)                     # centre each column first (d does not change)
    pos, neg = x[labels], x[~labels]
    n1, n0 = pos.shape[0], neg.shape[0]
    sd = (((n1 - 1) * pos.var(0) + (n0 - 1) * neg.var(0)) / (n1 + n0 - 2)).sqrt()
    diff = pos.mean(0) - neg.mean(0)
    return torch.where(sd > 0, diff / sd.clamp_min(1e-12), torch.zeros_like(diff))
''', names=r"changed its input `scores` in place", subtle=True),
]

# ---- exercise 4: bonferroni and benjamini_hochberg -----------------------------------------------
_BONF = '''
def bonferroni(p_values: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    return p_values <= alpha / p_values.numel()
'''
_BH_HEAD = '''

def benjamini_hochberg(p_values: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    m = p_values.numel()
    order = p_values.argsort()
'''
_BH_PASSES = "    passes = p_values[order] <= alpha * torch.arange(1, m + 1, dtype=p_values.dtype) / m\n"
_BH_TAIL = '''    reject = torch.zeros(m, dtype=torch.bool)
    if passes.any():
        k = int(torch.nonzero(passes).max()) + 1
        reject[order[:k]] = True
    return reject
'''
_BH = _BH_HEAD + _BH_PASSES + _BH_TAIL

CORRECTIONS = [
    Mistake("test_corrections", "bonferroni_uncorrected", '''
def bonferroni(p_values, alpha=0.05):
    return p_values <= alpha
''' + _BH, names=r"no correction at all"),
    Mistake("test_corrections", "bonferroni_strict", '''
def bonferroni(p_values, alpha=0.05):
    return p_values < alpha / len(p_values)
''' + _BH, names=r"bonferroni: .*p ≤ α/m|≤, not <", subtle=True),
    Mistake("test_corrections", "bh_step_down", _BONF + _BH_HEAD + _BH_PASSES + '''    reject = torch.zeros(m, dtype=torch.bool)
    for i in range(m):                 # reject in order until the first p-value above its threshold
        if not passes[i]:
            break
        reject[order[i]] = True
    return reject
''', names=r"step-\*up\*", subtle=True),
    Mistake("test_corrections", "bh_own_threshold", _BONF + _BH_HEAD + _BH_PASSES + '''    reject = torch.zeros(m, dtype=torch.bool)
    reject[order[passes]] = True
    return reject
''', names=r"step-\*up\*", subtle=True),
    Mistake("test_corrections", "bh_sorted_order", _BONF + _BH_HEAD + _BH_PASSES + '''    reject = torch.zeros(m, dtype=torch.bool)
    if passes.any():
        k = int(torch.nonzero(passes).max()) + 1
        reject[:k] = True
    return reject
''', names=r"sorted order"),
    Mistake("test_corrections", "bh_off_by_one", _BONF + _BH_HEAD + _BH_PASSES + '''    reject = torch.zeros(m, dtype=torch.bool)
    if passes.any():
        k = int(torch.nonzero(passes).max())      # the largest k that passes
        reject[order[:k]] = True
    return reject
''', names=r"off by one", subtle=True),
    Mistake("test_corrections", "bh_zero_based_k", _BONF + _BH_HEAD
            + "    passes = p_values[order] <= alpha * torch.arange(m, dtype=p_values.dtype) / m\n" + _BH_TAIL,
            names=r"k runs from 1", subtle=True),
    Mistake("test_corrections", "bh_unsorted", _BONF + '''

def benjamini_hochberg(p_values, alpha=0.05):
    m = p_values.numel()
    passes = p_values <= alpha * torch.arange(1, m + 1) / m
    reject = torch.zeros(m, dtype=torch.bool)
    if passes.any():
        k = int(torch.nonzero(passes).max()) + 1
        reject[:k] = True
    return reject
''', names=r"sort the p-values"),
    Mistake("test_corrections", "bh_count_not_largest", _BONF + _BH_HEAD + _BH_PASSES + '''    k = int(passes.sum())              # how many pass
    reject = torch.zeros(m, dtype=torch.bool)
    reject[order[:k]] = True
    return reject
''', names=r"step-\*up\*|largest k", subtle=True),
    Mistake("test_corrections", "bh_no_guard", _BONF + _BH_HEAD + _BH_PASSES + '''    k = int(torch.nonzero(passes).max()) + 1
    reject = torch.zeros(m, dtype=torch.bool)
    reject[order[:k]] = True
    return reject
''', names=r"rejects nothing"),
    Mistake("test_corrections", "bh_returns_indices", _BONF + _BH_HEAD + _BH_PASSES + '''    if not passes.any():
        return torch.tensor([], dtype=torch.long)
    k = int(torch.nonzero(passes).max()) + 1
    return order[:k]
''', names=r"boolean mask"),
    Mistake("test_corrections", "bh_strict", _BONF + _BH_HEAD
            + "    passes = p_values[order] < alpha * torch.arange(1, m + 1, dtype=p_values.dtype) / m\n" + _BH_TAIL,
            names=r"benjamini_hochberg: .*≤, not <", subtle=True),
]

# ---- exercise 5: continuation_logprob -----------------------------------------------------------
_LP = "def continuation_logprob(logits: torch.Tensor, tokens: torch.Tensor, reply: torch.Tensor) -> torch.Tensor:\n"
_LOGP = "    logp = logits.float().log_softmax(-1)[:, :-1]\n"
_NEXT = "    next_token = logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)\n"

LOGPROB = [
    Mistake("test_continuation_logprob", "same_position", _LP + '''    logp = logits.log_softmax(-1)
    token_logp = logp.gather(-1, tokens[..., None]).squeeze(-1)
    return (token_logp * reply).sum(-1)
''', names=r"off by one", subtle=True),
    Mistake("test_continuation_logprob", "shifted_wrong_way", _LP + '''    logp = logits.log_softmax(-1)[:, 1:]
    next_token = logp.gather(-1, tokens[:, :-1, None]).squeeze(-1)
    return (next_token * reply[:, :-1]).sum(-1)
''', names=r"shifted the wrong way", subtle=True),
    Mistake("test_continuation_logprob", "raw_logits", _LP + '''    picked = logits[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return (picked * reply[:, 1:]).sum(-1)
''', names=r"raw logits"),
    Mistake("test_continuation_logprob", "softmax_over_positions", _LP + '''    logp = logits.log_softmax(1)[:, :-1]
''' + _NEXT + "    return (next_token * reply[:, 1:]).sum(-1)\n", names=r"vocabulary axis", subtle=True),
    Mistake("test_continuation_logprob", "mean_not_sum", _LP + _LOGP + _NEXT + '''    mask = reply[:, 1:].float()
    return (next_token * mask).sum(-1) / mask.sum(-1)
''', names=r"averaged over the reply", subtle=True),
    Mistake("test_continuation_logprob", "mask_shifted_wrong_way", _LP + _LOGP + _NEXT + '''    return (next_token * reply[:, :-1]).sum(-1)
''', names=r"reply\[:, 1:\]", subtle=True),
    Mistake("test_continuation_logprob", "no_mask", _LP + _LOGP + _NEXT + '''    return next_token.sum(-1)
''', names=r"only the reply's tokens"),
    Mistake("test_continuation_logprob", "boolean_index_flattens", _LP + _LOGP + _NEXT + '''    return next_token[reply[:, 1:]].sum()
''', names=r"one log-probability per row"),
    Mistake("test_continuation_logprob", "cross_entropy_sign", '''
import torch.nn.functional as F

def continuation_logprob(logits, tokens, reply):
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return (nll * reply[:, 1:]).sum(-1)
''', names=r"negative log-probability|cross.entropy"),
    Mistake("test_continuation_logprob", "normalise_in_place", _LP + '''    logits -= logits.logsumexp(-1, keepdim=True)      # log-softmax
    next_token = logits[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return (next_token * reply[:, 1:]).sum(-1)
''', names=r"changed its input `logits` in place", subtle=True),
    Mistake("test_continuation_logprob", "probability_product", _LP + '''    probs = logits.softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return torch.where(reply[:, 1:], probs, torch.ones_like(probs)).prod(-1)
''', names=r"probability, not its log"),
    Mistake("test_continuation_logprob", "mean_over_positions", _LP + _LOGP + _NEXT + '''    return (next_token * reply[:, 1:]).mean(-1)
''', names=r"averaged over the positions", subtle=True),
]

# ---- exercise 6: remove_latents -----------------------------------------------------------------
_RM = "def remove_latents(resid: torch.Tensor, sae, latents: torch.Tensor) -> torch.Tensor:\n"

REMOVE = [
    Mistake("test_remove_latents", "whole_reconstruction", _RM + '''    acts = sae.encode(resid)
    return resid - acts @ sae.W_dec
''', names=r"whole reconstruction"),
    Mistake("test_remove_latents", "with_b_dec", _RM + '''    acts = sae.encode(resid)
    mask = torch.zeros_like(acts)
    mask[..., latents] = 1.0
    return resid - sae.decode(acts * mask)
''', names=r"b_dec", subtle=True),
    Mistake("test_remove_latents", "drops_error_term", _RM + '''    acts = sae.encode(resid)
    acts[..., latents] = 0.0
    return sae.decode(acts)
''', names=r"error term", subtle=True),
    Mistake("test_remove_latents", "encoder_directions", _RM + '''    acts = sae.encode(resid)[..., latents]
    return resid - acts @ sae.W_enc[:, latents].T
''', names=r"encoder", subtle=True),
    Mistake("test_remove_latents", "decoder_wrong_axis", _RM + '''    acts = sae.encode(resid)[..., latents]
    return resid - acts @ sae.W_dec[:, latents]
''', names=r"W_dec\[latents\].*rows|rows of W_dec"),
    Mistake("test_remove_latents", "added", _RM + '''    acts = sae.encode(resid)[..., latents]
    return resid + acts @ sae.W_dec[latents]
''', names=r"added"),
    Mistake("test_remove_latents", "reencode_each", _RM + '''    for i in latents:
        resid = resid - sae.encode(resid)[..., i, None] * sae.W_dec[i]
    return resid
''', names=r"encode once", subtle=True),
    Mistake("test_remove_latents", "in_place", _RM + '''    acts = sae.encode(resid)[..., latents]
    resid -= acts @ sae.W_dec[latents]
    return resid
''', names=r"changed its input `resid` in place", subtle=True),
    Mistake("test_remove_latents", "unit_directions", _RM + '''    directions = sae.W_dec[latents]
    directions = directions / directions.norm(dim=-1, keepdim=True)
    return resid - sae.encode(resid)[..., latents] @ directions
''', names=r"as they are|unit", subtle=True),
    Mistake("test_remove_latents", "second_axis", _RM + '''    acts = sae.encode(resid)[:, latents]
    return resid - acts @ sae.W_dec[latents]
''', names=r"last axis"),
    Mistake("test_remove_latents", "hand_encoder", _RM + '''    acts = torch.relu(resid @ sae.W_enc + sae.b_enc)[..., latents]
    return resid - acts @ sae.W_dec[latents]
''', names=r"sae\.encode", subtle=True),
    Mistake("test_remove_latents", "decode_each_latent", _RM + '''    acts = sae.encode(resid)
    for i in latents.tolist():
        only_i = torch.zeros_like(acts)
        only_i[..., i] = acts[..., i]
        resid = resid - sae.decode(only_i)
    return resid
''', names=r"b_dec", subtle=True),
]

# ---- exercise 7: diff_of_means_probe ------------------------------------------------------------
_DM = ("def diff_of_means_probe(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:\n"
       "    labels = labels.bool()\n"
       "    mu_pos, mu_neg = x[labels].float().mean(0), x[~labels].float().mean(0)\n")
_W = "    w = mu_pos - mu_neg\n    w = w / w.norm()\n"

PROBE = [
    Mistake("test_diff_of_means_probe", "wrong_way", _DM + '''    w = mu_neg - mu_pos
    w = w / w.norm()
    b = -((mu_pos + mu_neg) / 2) @ w
    return w, b
''', names=r"wrong way"),
    Mistake("test_diff_of_means_probe", "no_bias", _DM + _W + "    return w, torch.tensor(0.0)\n", names=r"b is 0"),
    Mistake("test_diff_of_means_probe", "not_normalised", _DM + '''    w = mu_pos - mu_neg
    b = -((mu_pos + mu_neg) / 2) @ w
    return w, b
''', names=r"unit length"),
    Mistake("test_diff_of_means_probe", "bias_sign", _DM + _W + "    b = ((mu_pos + mu_neg) / 2) @ w\n    return w, b\n",
            names=r"sign of b", subtle=True),
    Mistake("test_diff_of_means_probe", "threshold_at_negatives", _DM + _W + "    b = -mu_neg @ w\n    return w, b\n",
            names=r"halfway", subtle=True),
    Mistake("test_diff_of_means_probe", "bias_before_normalising", _DM + '''    w = mu_pos - mu_neg
    b = -((mu_pos + mu_neg) / 2) @ w
    w = w / w.norm()
    return w, b
''', names=r"before normalising|unit w", subtle=True),
    Mistake("test_diff_of_means_probe", "l1_normalised", _DM + '''    w = mu_pos - mu_neg
    w = w / w.abs().sum()
    b = -((mu_pos + mu_neg) / 2) @ w
    return w, b
''', names=r"Euclidean|L2", subtle=True),
    Mistake("test_diff_of_means_probe", "mean_per_example", '''
def diff_of_means_probe(x, labels):
    labels = labels.bool()
    mu_pos, mu_neg = x[labels].mean(1), x[~labels].mean(1)
    w = (mu_pos - mu_neg) / (mu_pos - mu_neg).norm()
    b = -((mu_pos + mu_neg) / 2) @ w
    return w, b
''', names=r"\.mean\(0\)"),
    Mistake("test_diff_of_means_probe", "keepdim_means", '''
def diff_of_means_probe(x, labels):
    labels = labels.bool()
    mu_pos = x[labels].mean(0, keepdim=True)
    mu_neg = x[~labels].mean(0, keepdim=True)
    w = (mu_pos - mu_neg) / (mu_pos - mu_neg).norm()
    b = -((mu_pos + mu_neg) / 2) @ w.T
    return w, b
''', names=r"should be 1-D"),
    Mistake("test_diff_of_means_probe", "swapped_pair", _DM + _W + "    b = -((mu_pos + mu_neg) / 2) @ w\n    return b, w\n",
            names=r"swapped"),
    Mistake("test_diff_of_means_probe", "global_mean_threshold", _DM + _W + '''    b = -x.float().mean(0) @ w         # centre the data
    return w, b
''', names=r"mean of all examples", subtle=True),
    Mistake("test_diff_of_means_probe", "midpoint_without_half", _DM + _W + "    b = -(mu_pos + mu_neg) @ w\n    return w, b\n",
            names=r"/2 is missing", subtle=True),
]

from mistakes.ch07_transfer import MISTAKES as TRANSFER  # noqa: E402  (section 7, held-out wording)

MISTAKES = SEED_RATIO + AUROC + COHENS_D + CORRECTIONS + LOGPROB + REMOVE + PROBE + TRANSFER
