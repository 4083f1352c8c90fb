"""Visible checks for chapter 07 (capstone: hunting sycophancy with SAE latents). Each names the
mistake it most likely found.

Every check runs the student's code through `call` (an exception becomes a message naming the
input), checks what comes back and that the inputs are left as they were, then compares the
result with the right value and with the value each common mistake would give, all computed from
the definitions (AUROC by comparing every positive with every negative, BH from its sorted
thresholds, the ablation from encode and W_dec), most specific first, and ends with a general hint
that claims no particular cause. No reference implementation from the course library is used.

`search` holds exercises 1–3 (the seed's ratio, AUROC, Cohen's d), `corrections` exercise 4
(Bonferroni, Benjamini–Hochberg), `causal` exercises 5–7 (a reply's log-probability, removing
latents, the difference-of-means probe), `transfer` exercise 8 (the latents on held-out wording).
"""

from utils.checks import CheckFailed, call, tensor_result  # the hidden tests call the answers through `call`
from utils.checks.ch07.causal import check_continuation_logprob, check_diff_of_means_probe, check_remove_latents
from utils.checks.ch07.corrections import check_corrections
from utils.checks.ch07.search import check_auroc, check_cohens_d, check_seed_ratio_search
from utils.checks.ch07.transfer import check_transfer

__all__ = ["check_seed_ratio_search", "check_auroc", "check_cohens_d", "check_corrections",
           "check_continuation_logprob", "check_remove_latents", "check_diff_of_means_probe", "check_transfer",
           "CheckFailed", "call", "tensor_result"]
