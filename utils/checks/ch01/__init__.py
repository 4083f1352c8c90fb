"""Visible checks for chapter 01 (superposition). Each names the mistake it most likely found.

Every check runs the student's code through `call` (an exception becomes a message naming the
input), checks what comes back, then compares it with the answer and with the common wrong
variants, each computed from its definition, most specific first, on inputs chosen to tell them
apart: non-unit, non-orthogonal feature directions; negative biases; importances below 1;
instances with different weights; many random draws where a statistic must be pinned down. It
ends with a general hint that claims no particular cause.

`toy` holds exercises 1-3 (the data, the model, the loss); `geometry` exercises 4-5 (dimensions
per feature, interference and CAPACITY).
"""

from utils.checks import CheckFailed, call, tensor_result  # the hidden tests call the answers through `call`
from utils.checks.ch01.geometry import (check_capacity, check_dimensions_per_feature, check_mean_abs_cosine,
                                        expected_abs_cos)
from utils.checks.ch01.toy import check_generate_batch, check_importance_weighted_loss, check_toy_model

__all__ = ["check_generate_batch", "check_toy_model", "check_importance_weighted_loss",
           "check_dimensions_per_feature", "check_mean_abs_cosine", "check_capacity", "expected_abs_cos",
           "CheckFailed", "call", "tensor_result"]
