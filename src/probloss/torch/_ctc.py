"""``CTCLoss``: a drop-in for ``torch.nn.CTCLoss`` built on :func:`probloss.ctc_loss`."""

from __future__ import annotations

import torch

from .._errors import ArgumentError
from ..functional.ctc import ctc_loss

__all__ = ["CTCLoss"]


class CTCLoss(torch.nn.Module):
    """Drop-in for ``torch.nn.CTCLoss``: same constructor, same ``forward``, same numbers.

    ``forward(log_probs, targets, input_lengths, target_lengths)`` takes PyTorch's
    time-major log-probabilities ``(T, N, C)`` (or ``(T, C)`` unbatched), targets padded
    ``(N, S)`` or concatenated 1-D, and the lengths as tensors (or sequences of ints), and computes
    :func:`probloss.ctc_loss` with ``from_logits=False, time_major=True``.
    ``reduction="mean"`` divides each loss by its target length (at least 1) and then
    averages over the batch, as PyTorch does.

    Differences from PyTorch, all deliberate:

    * labels and lengths are validated eagerly (a label equal to the blank or out of
      range, a length outside its bounds, more labels than frames without
      ``zero_infinity``) and raise :class:`~probloss.ProblossError` naming the position;
    * an impossible alignment (``+inf``) has a zero gradient instead of NaN;
    * the gradient with respect to ``log_probs`` is the true derivative (minus the
      posterior of each class), where PyTorch's kernel returns the gradient with respect
      to the logits before a ``log_softmax``; behind a ``log_softmax`` (the usual case)
      both give the same gradient with respect to the logits;
    * int32 targets are accepted, and ``native=False`` (keyword only) runs the array-API
      recursion instead of PyTorch's kernel (see :func:`probloss.ctc_loss`).

    Examples
    --------
    >>> import torch
    >>> from probloss.torch import CTCLoss
    >>> log_probs = torch.linspace(-2, 2, 4 * 3).reshape(4, 1, 3).log_softmax(-1)
    >>> round(float(CTCLoss()(log_probs, torch.tensor([1, 2]), torch.tensor([4]), torch.tensor([2]))), 4)
    0.84
    """

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False, *, native: bool = True):
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            msg = f"`reduction` must be 'none', 'mean' or 'sum' (torch.nn.CTCLoss's); got {reduction!r}."
            raise ArgumentError(msg)
        self.blank = blank
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.native = native

    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return ctc_loss(
            log_probs,
            targets,
            input_lengths,
            target_lengths,
            blank=self.blank,
            from_logits=False,
            time_major=True,
            zero_infinity=self.zero_infinity,
            reduction=self.reduction,
            native=self.native,
        )

    def extra_repr(self) -> str:
        return f"blank={self.blank}, reduction={self.reduction!r}, zero_infinity={self.zero_infinity}"

