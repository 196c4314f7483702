"""``torch.nn.Module`` wrappers."""

from __future__ import annotations

import torch

from ._cross_entropy import cross_entropy

__all__ = ["CrossEntropyLoss", "LossModule"]


class CrossEntropyLoss(torch.nn.Module):
    """Drop-in for ``torch.nn.CrossEntropyLoss`` built on :func:`probloss.torch.cross_entropy`.

    Same constructor arguments (``weight``, ``ignore_index``, ``reduction``,
    ``label_smoothing``) and results, about half the peak memory in forward+backward.
    ``inplace_backward=True`` overwrites the logits with their gradient during backward
    (see :func:`~probloss.torch.cross_entropy`).

    Examples
    --------
    >>> import torch
    >>> from probloss.torch import CrossEntropyLoss
    >>> loss = CrossEntropyLoss(label_smoothing=0.1)
    >>> round(float(loss(torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0]))), 4)
    0.3913
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        inplace_backward: bool = False,
        chunk_size: int | None = None,
    ):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.inplace_backward = inplace_backward
        self.chunk_size = chunk_size

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            inplace_backward=self.inplace_backward,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, inplace_backward={self.inplace_backward}"
        )


class LossModule(torch.nn.Module):
    """Any Keras-style probloss loss as a ``torch.nn.Module``.

    ``loss`` is a :class:`probloss.Loss` instance, or anything :func:`probloss.get`
    accepts (a class or function name such as ``"sparse_categorical_crossentropy"``, or
    a config dict); a per-sample function is reduced with Keras's default
    ``"sum_over_batch_size"``.  ``forward(y_true, y_pred, sample_weight=None)`` keeps
    Keras's argument order.

    Examples
    --------
    >>> import torch
    >>> from probloss.torch import LossModule
    >>> m = LossModule("sparse_categorical_crossentropy")
    >>> round(float(m(torch.tensor([1, 2]), torch.tensor([[0.05, 0.95, 0], [0.1, 0.8, 0.1]]))), 3)
    1.177
    """

    def __init__(self, loss):
        super().__init__()
        from .. import get
        from ..losses import Loss, LossFunctionWrapper

        resolved = loss if isinstance(loss, Loss) else get(loss)
        self.loss = resolved if isinstance(resolved, Loss) else LossFunctionWrapper(resolved)

    def forward(self, y_true, y_pred, sample_weight=None):
        return self.loss(y_true, y_pred, sample_weight=sample_weight)

    def extra_repr(self) -> str:
        return repr(self.loss)
