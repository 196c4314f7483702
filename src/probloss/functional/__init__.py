"""Per-sample loss functions, one module per family."""

from .crossentropy import (
    binary_crossentropy,
    categorical_crossentropy,
    sigmoid_cross_entropy_with_logits,
    softmax_cross_entropy_with_logits,
    sparse_categorical_crossentropy,
    sparse_softmax_cross_entropy_with_logits,
    weighted_cross_entropy_with_logits,
)
from .ctc import ctc, ctc_loss
from .distillation import distillation_cross_entropy, distillation_kl, js_divergence_loss
from .divergence import kl_divergence
from .focal import binary_focal_crossentropy, categorical_focal_crossentropy
from .gaussian import gaussian_nll
from .poisson import log_poisson_loss, poisson

__all__ = [
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "ctc",
    "ctc_loss",
    "distillation_cross_entropy",
    "distillation_kl",
    "gaussian_nll",
    "js_divergence_loss",
    "kl_divergence",
    "log_poisson_loss",
    "poisson",
    "sigmoid_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits",
    "sparse_categorical_crossentropy",
    "sparse_softmax_cross_entropy_with_logits",
    "weighted_cross_entropy_with_logits",
]
