"""Torch-only extras: the ``F.cross_entropy`` drop-in, its kernels, ``nn.Module`` wrappers.

Importing this module imports torch; ``import probloss`` never does.

* :func:`cross_entropy` and :class:`CrossEntropyLoss`: drop-ins for
  ``torch.nn.functional.cross_entropy`` / ``torch.nn.CrossEntropyLoss`` (same arguments
  and numbers) that keep one float32 log-sum-exp per row instead of the ``N x C``
  log-softmax and build the gradient in one buffer: about half the peak memory of
  forward+backward, and about a quarter with ``inplace_backward=True``.
* :class:`LossModule`: any Keras-style probloss loss as an ``nn.Module``.
* :class:`CTCLoss`: a drop-in for ``torch.nn.CTCLoss`` (time-major log-probabilities,
  padded or concatenated targets, unbatched input) on :func:`probloss.ctc_loss`.
* :func:`linear_cross_entropy` and :class:`LinearCrossEntropy`: a language model's last
  layer and its cross-entropy, ``CE(hidden @ weight.T + bias, target)``, by chunks of
  tokens, never holding the ``N x V`` logits (z-loss, softcap, label smoothing, class
  weights); :func:`linear_log_probs_and_entropy`: per-token log-probabilities and
  entropies from the same fused pass (``docs/linear.md``).
* ``probloss.torch.distributed`` (imported on its own: it is the only part of probloss
  that uses ``torch.distributed``): the vocabulary-parallel losses, with the logits or the
  LM head split over the ranks of a process group, and the global token count for data
  parallelism and gradient accumulation (``docs/distributed.md``).

* :func:`check_pending`: on CUDA the value checks of a loss are read later, without
  stopping the device; this waits for them and raises the first error.

The Keras-style functions (``probloss.sparse_categorical_crossentropy`` and
``probloss.categorical_crossentropy`` with ``from_logits=True``) use the same kernels
for torch tensors.
"""

from .._deferred import check_pending
from ._cross_entropy import cross_entropy
from ._ctc import CTCLoss
from ._linear import LinearCrossEntropy, LogProbsEntropy, linear_cross_entropy, linear_log_probs_and_entropy
from ._modules import CrossEntropyLoss, LossModule

__all__ = [
    "CTCLoss",
    "CrossEntropyLoss",
    "LinearCrossEntropy",
    "LogProbsEntropy",
    "LossModule",
    "check_pending",
    "cross_entropy",
    "linear_cross_entropy",
    "linear_log_probs_and_entropy",
]
