"""Chapter 07, section 7 (held-out wording): common mistakes in exercise 8, `transfer`.

A file of its own next to the chapter's main catalogue, which includes these (`ch07.MISTAKES`)."""

from mistakes import Mistake

CHAPTER = "07_capstone_sycophancy"

_DEF = "def transfer(latents, scores, labels, change_fn, controls):\n"
_REST = '''    effect = float(change_fn(latents).mean())
    random = torch.tensor([float(change_fn(c).mean()) for c in controls])
    n_as_far = int((random <= effect).sum()) if effect < 0 else int((random >= effect).sum())
    return {"aurocs": aurocs, "effect": effect, "random": random, "n_as_far": n_as_far}
'''
_HEAD = _DEF + '''    aurocs = auroc(scores[:, latents], labels)
    effect = float(change_fn(latents).mean())
    random = torch.tensor([float(change_fn(c).mean()) for c in controls])
'''
_RETURN = '''    return {"aurocs": aurocs, "effect": effect, "random": random, "n_as_far": n_as_far}
'''

MISTAKES = [
    # which latents, in which order
    Mistake("test_transfer", "chooses_again_on_the_split", _DEF + '''    # the best latents of this split, as many as we were given
    every = auroc(scores, labels)
    aurocs = every[every.argsort(descending=True)[:len(latents)]]
''' + _REST, names=r"chose the best latents again on this split", subtle=True),
    Mistake("test_transfer", "first_k_columns", _DEF + '''    aurocs = auroc(scores[:, :len(latents)], labels)
''' + _REST, names=r"AUROCs of columns 0, 1, 2, not of `latents`", subtle=True),
    Mistake("test_transfer", "sorted_aurocs", _DEF + '''    aurocs = auroc(scores[:, latents], labels).sort(descending=True).values
''' + _REST, names=r"order of `latents`", subtle=True),
    # the effects
    Mistake("test_transfer", "sum_over_pairs", _DEF + '''    aurocs = auroc(scores[:, latents], labels)
    effect = float(change_fn(latents).sum())
    random = torch.tensor([float(change_fn(c).sum()) for c in controls])
    n_as_far = int((random <= effect).sum()) if effect < 0 else int((random >= effect).sum())
''' + _RETURN, names=r"sum over pairs: take the mean"),
    Mistake("test_transfer", "all_controls_at_once", _DEF + '''    aurocs = auroc(scores[:, latents], labels)
    effect = float(change_fn(latents).mean())
    random = change_fn(controls)
    n_as_far = int((random <= effect).sum()) if effect < 0 else int((random >= effect).sum())
''' + _RETURN, names=r"one mean change per random set"),
    # counting the random sets that move the metric as far
    Mistake("test_transfer", "strict_inequality", _HEAD + '''    n_as_far = int((random < effect).sum()) if effect < 0 else int((random > effect).sum())
''' + _RETURN, names=r"exactly as far .* use <=, not <", subtle=True),
    Mistake("test_transfer", "compares_sizes", _HEAD + '''    n_as_far = int((random.abs() >= abs(effect)).sum())
''' + _RETURN, names=r"compared sizes \(abs\)", subtle=True),
    Mistake("test_transfer", "always_counts_below", _HEAD + '''    n_as_far = int((random <= effect).sum())
''' + _RETURN, names=r"positive effect.*>= the effect", subtle=True),
    Mistake("test_transfer", "fraction_not_count", _HEAD + '''    n_as_far = float((random <= effect).float().mean()) if effect < 0 else float((random >= effect).float().mean())
''' + _RETURN, names=r"count of random sets .* not a fraction"),
]
