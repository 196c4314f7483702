"""JAX-only extras.

Importing this module imports JAX; ``import probloss`` never does.

* :func:`linear_cross_entropy`: a language model's last layer and its cross-entropy,
  ``CE(hidden @ weight.T + bias, target)``, by chunks of tokens in a ``lax.scan`` whose
  ``custom_vjp`` forward also computes the gradients (three matrix products), so the
  ``N x V`` logits never exist; differentiable with ``jax.grad`` and under ``jit``.
* :func:`linear_log_probs_and_entropy`: per-token log-probabilities of the targets and
  softmax entropies from the same chunked pass, differentiable.
* :func:`vocab_parallel_cross_entropy` and :func:`vocab_parallel_linear_cross_entropy`:
  the cross-entropy of logits (or of the LM head's weight) split over a mesh axis on the
  vocabulary, for code inside ``jax.shard_map`` that owns its collectives (a ``pmax``
  and one ``psum`` of two N-vectors; see ``docs/distributed.md``).  Under plain ``jit``
  the functions above and the Keras-style losses partition a vocabulary-sharded input
  without gathering it.

Same keywords and numbers as :mod:`probloss.torch`'s functions; see ``docs/linear.md``.
"""

from ._linear import LogProbsEntropy, auto_chunk_rows, linear_cross_entropy, linear_log_probs_and_entropy
from ._sharded import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

__all__ = [
    "LogProbsEntropy",
    "auto_chunk_rows",
    "linear_cross_entropy",
    "linear_log_probs_and_entropy",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
]
