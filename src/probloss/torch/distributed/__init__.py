"""Losses over ``torch.distributed``: the vocabulary split over ranks, tokens counted over ranks.

Importing this module imports ``torch.distributed``; ``import probloss.torch`` does not.

Vocabulary (tensor) parallelism, each rank holding a contiguous slice of the classes:

* :func:`sparse_categorical_crossentropy`, :func:`categorical_crossentropy`,
  :func:`categorical_focal_crossentropy`: Keras's losses (``from_logits``,
  ``label_smoothing``, ``ignore_class``, probabilities with Keras's clip, focal ``alpha``
  and ``gamma``, Keras's reductions) of predictions sharded on the class axis, given as
  this rank's slice or as a DTensor with ``Shard(class_dim)``.  From logits the forward
  all-reduces three N-vectors (row maxima, sums of exponentials, target logits); the
  backward is local.
* :func:`linear_cross_entropy`: the LM head and its cross-entropy fused, with the
  classifier's rows split over the ranks: one chunk of logits at a time, none gathered.
* :func:`vocab_shard`: the even split of a vocabulary over a group (DTensor's).

Global token normalisation (data parallelism, gradient accumulation):

* :func:`count_valid_tokens`: the valid tokens of every micro-batch on every rank, one
  all-reduce; ``reduction="global_mean"`` with ``num_tokens=`` divides by it.

See ``docs/distributed.md``.
"""

from ._group import vocab_shard
from ._linear import linear_cross_entropy
from ._tokens import count_valid_tokens
from ._vocab import categorical_crossentropy, categorical_focal_crossentropy, sparse_categorical_crossentropy

__all__ = [
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "count_valid_tokens",
    "linear_cross_entropy",
    "sparse_categorical_crossentropy",
    "vocab_shard",
]
