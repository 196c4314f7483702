"""``probloss.torch.cross_entropy``: a drop-in for ``torch.nn.functional.cross_entropy``.

Same arguments, same numbers (torch's normalisation with class weights, ``ignore_index``
and label smoothing), built on the chunked kernels of :mod:`probloss.torch._kernels`,
so forward+backward needs about half of ``F.cross_entropy``'s peak memory, or a quarter
with ``inplace_backward=True``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _checks as C
from .. import _dispatch
from .._backends.torch import SMALL_ELEMENTS, soft_target_ce, sparse_ce
from .._checks import value_checks_enabled
from .._errors import ArgumentError, LabelValueError, ProblossTypeError, ShapeError

__all__ = ["cross_entropy"]


# The drop-in's errors are also instances of what F.cross_entropy raises for the same input,
# so code written against torch (``except RuntimeError``) still catches them.
class CrossEntropyArgumentError(ArgumentError, RuntimeError):
    """An argument of :func:`cross_entropy` is out of its domain (torch: ``RuntimeError``)."""


class CrossEntropyTypeError(ProblossTypeError, RuntimeError):
    """A tensor of :func:`cross_entropy` has the wrong dtype (torch: ``RuntimeError``)."""


class CrossEntropyShapeError(ShapeError, RuntimeError):
    """Shapes of :func:`cross_entropy`'s tensors do not fit (torch: ``RuntimeError``)."""


class CrossEntropyLabelError(LabelValueError, IndexError, RuntimeError):
    """A class index is out of range (torch: ``IndexError`` on the CPU, ``RuntimeError`` on CUDA)."""

_REDUCTIONS = ("none", "mean", "sum")


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    inplace_backward: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy with torch's conventions, in about half the memory.

    Same signature and results as :func:`torch.nn.functional.cross_entropy` (class axis
    1; class-index or probability targets), plus two keywords.  Let ``logp =
    log_softmax(input, 1)``, ``C`` the number of classes, ``w`` the class weights (ones
    by default) and ``e`` the label smoothing.

    * Class-index targets (``target`` has ``input``'s shape without axis 1, integer):
      ``l_n = (1 - e) w[y_n] (-logp[n, y_n]) + (e / C) sum_c w_c (-logp[n, c])``, and
      ``l_n = 0`` where ``y_n == ignore_index``.  ``"mean"`` divides the sum by
      ``sum_n w[y_n]`` over the non-ignored positions (NaN if there are none).
    * Probability targets (``target`` has ``input``'s shape, floating):
      ``l_n = -sum_c w_c q[n, c] logp[n, c]`` with ``q = (1 - e) target + e / C``;
      ``"mean"`` divides by the number of positions, not by the weights.
      ``ignore_index`` must be negative (it is not used).

    Parameters
    ----------
    input : Tensor, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Logits, any floating dtype; float16/bfloat16 are reduced in float32.
    target : Tensor
        Class indices of shape (), (N,) or (N, d1, ..., dk) (any integer dtype), or
        class probabilities of ``input``'s shape.
    weight : Tensor of shape (C,), optional
        Class weights.
    ignore_index : int, default -100
        Class-index targets equal to it contribute nothing (not even to the mean's
        denominator).
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0
    inplace_backward : bool, default False
        Write the gradient into ``input``'s own buffer during backward instead of a new
        one: forward+backward then needs no ``N x C`` memory beyond the logits.  **The
        logits tensor is overwritten by its gradient when backward runs**, so use it
        only when nothing reads ``input`` after the backward pass (the usual case for
        the logits of a final linear layer).  If ``input`` is a leaf tensor its
        ``.grad`` then shares memory with it.  Autograd's version counter still raises
        if another graph node saved ``input`` for its own backward.
    chunk_size : int, optional
        Rows per chunk (default: about 256k elements per chunk on CPU, 64M on GPU).

    Returns
    -------
    Tensor
        A scalar for ``"mean"``/``"sum"``, else the per-position losses of shape
        (N, d1, ..., dk); dtype of ``input``.

    Notes
    -----
    Inputs of fewer than 65,536 elements on the CPU (without ``inplace_backward`` or
    ``chunk_size``) go to ``F.cross_entropy`` itself: there it is the fastest, and the
    numbers are torch's.  Bigger inputs take the chunked kernels.  Memory: forward keeps
    one float32 log-sum-exp per position; backward writes the gradient in one buffer, one
    chunk of rows at a time.  ``F.cross_entropy`` keeps the ``N x C`` log-softmax and
    allocates two more ``N x C`` buffers in backward.  Gradients of every order are exact,
    and ``torch.func`` transforms work.  Under ``torch.compile`` the chunked kernels run
    eagerly (a graph break).

    Errors say what to do, and are also instances of what ``F.cross_entropy`` raises for
    the same input (``RuntimeError``, ``ValueError``, ``IndexError``), so code written for
    torch still catches them.  With value checks on (:func:`probloss.set_value_checks`),
    class indices outside ``[0, C)`` raise a :class:`probloss.LabelValueError` (torch
    raises ``IndexError`` on the CPU and asserts on CUDA).

    Examples
    --------
    >>> import torch
    >>> from probloss.torch import cross_entropy
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> round(float(cross_entropy(logits, torch.tensor([0, 2]))), 4)
    0.1755
    """
    if (
        type(input) is torch.Tensor
        and input.layout is torch.strided
        and input.device.type == "cpu"
        and input.numel() < SMALL_ELEMENTS
        and (target.dtype == torch.int64 or target.dtype == input.dtype)
        and not inplace_backward
        and chunk_size is None
        and reduction in _REDUCTIONS
        and type(label_smoothing) in (int, float)
        and 0.0 <= label_smoothing <= 1.0
    ):
        # Small CPU inputs: torch's own fused loss has the same semantics and the least cost
        # per call, and it tests the class indices itself; only when it refuses an input is
        # the full validation below run, to raise our error that says what to do.
        try:
            return F.cross_entropy(input, target, weight, None, ignore_index, None, reduction, label_smoothing)
        except (IndexError, RuntimeError, ValueError):
            _validate(input, target, weight, ignore_index, reduction, label_smoothing, check_values=value_checks_enabled())
            raise
    return _chunked(input, target, weight, ignore_index, reduction, label_smoothing, inplace_backward, chunk_size)


def _chunked(input, target, weight, ignore_index, reduction, label_smoothing, inplace_backward, chunk_size):
    """The validated call of the chunked kernels (big inputs), or of the Triton kernels
    (CUDA inputs, when Triton imports: ``chunk_size`` does not apply there)."""
    cuda = _dispatch.cuda_module(input)
    check = value_checks_enabled() and not torch.compiler.is_compiling()
    # With the Triton kernels the indices are checked in the kernel and read later,
    # without a device synchronisation (probloss.torch.check_pending).
    x3, y, weight, eps, squeeze, expected = _validate(
        input, target, weight, ignore_index, reduction, label_smoothing, check_values=check and cuda is None
    )
    if y is None:
        return _probability_targets(x3, input, target, weight, reduction, eps, inplace_backward, chunk_size, squeeze, cuda)
    num_classes = x3.shape[1]
    valid = y != ignore_index
    y_safe = torch.where(valid, y, torch.zeros_like(y))
    if cuda is not None:
        y_safe = y_safe.clamp(0, num_classes - 1)  # (an index out of range gives NaN, and an error later)
        nll, smoothing = cuda.cross_entropy_indices(
            x3, y, weight, eps > 0, inplace_backward, ignore_index, _label_error(num_classes, ignore_index), tuple(target.shape)
        )
    else:
        out = sparse_ce(x3, y_safe, weight, eps > 0, inplace_backward, chunk_size)
        nll, smoothing = out if eps > 0 else (out, None)
    stat = nll.dtype
    wy = valid.to(stat) if weight is None else torch.where(valid, weight.to(stat)[y_safe], torch.zeros((), dtype=stat, device=x3.device))
    loss = nll * (wy * (1.0 - eps)) if eps else nll * wy
    if eps:
        loss = loss + smoothing * (eps / num_classes)
    loss = torch.where(valid, loss, torch.zeros((), dtype=stat, device=x3.device))
    if reduction == "none":
        loss = loss.reshape(expected)
        return (loss.squeeze(0) if squeeze else loss).to(input.dtype)
    total = loss.sum()
    if reduction == "sum":
        return total.to(input.dtype)
    return (total / wy.sum()).to(input.dtype)


def _validate(input, target, weight, ignore_index, reduction, label_smoothing, *, check_values):
    """Every check of :func:`cross_entropy`, raising a :class:`probloss.ProblossError` that
    says what to do; returns ``(x3, y, weight, eps, squeeze, expected)`` with ``y`` the
    class indices as int64 ``(N[, B])``, or ``None`` for probability targets."""
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        msg = f"cross_entropy: `input` and `target` must be torch tensors; got {type(input).__name__} and {type(target).__name__}."
        raise ProblossTypeError(msg)
    for name, t in (("input", input), ("target", target)):
        if t.layout is not torch.strided:
            msg = f"cross_entropy: `{name}` is a {t.layout} tensor; this loss takes dense tensors: pass `{name}.to_dense()`."
            raise ProblossTypeError(msg)
    if reduction not in _REDUCTIONS:
        msg = f"cross_entropy: `reduction` must be one of 'mean', 'sum', 'none'; got {reduction!r}."
        raise ArgumentError(msg)
    if isinstance(label_smoothing, bool) or not 0.0 <= float(label_smoothing) <= 1.0:
        msg = f"cross_entropy: `label_smoothing` must be a number in [0, 1]; got {label_smoothing!r}."
        raise CrossEntropyArgumentError(msg)
    eps = float(label_smoothing)
    if not input.is_floating_point():
        msg = f"cross_entropy: `input` must hold floating-point logits; got dtype {input.dtype}."
        raise CrossEntropyTypeError(msg)
    if input.ndim == 0:
        msg = "cross_entropy: `input` must have shape (C,), (N, C) or (N, C, d1, ...); got a 0-d tensor."
        raise CrossEntropyShapeError(msg)
    squeeze = input.ndim == 1
    x = input.unsqueeze(0) if squeeze else input
    num_classes = x.shape[1]
    if weight is not None:
        if tuple(weight.shape) != (num_classes,) or not weight.is_floating_point():
            msg = (
                f"cross_entropy: `weight` must be a floating tensor of shape ({num_classes},), one weight "
                f"per class; got {weight.dtype} of shape {tuple(weight.shape)}."
            )
            raise CrossEntropyShapeError(msg)
        weight = weight.to(device=x.device)
    n_rows = x.shape[0]
    spatial = tuple(x.shape[2:])
    b = math.prod(spatial)
    x3 = x.reshape((n_rows, num_classes) if x.ndim == 2 else (n_rows, num_classes, b))

    if tuple(target.shape) == tuple(input.shape):
        if not target.is_floating_point():
            msg = (
                f"cross_entropy: `target` has `input`'s shape {tuple(input.shape)}, so it is read as class "
                f"probabilities, which must be floating point; got {target.dtype}."
            )
            raise CrossEntropyTypeError(msg)
        if ignore_index >= 0:
            msg = (
                f"cross_entropy: `ignore_index`={ignore_index} is not supported with probability targets "
                "(as in torch); leave it at the default -100, or give class indices."
            )
            raise CrossEntropyArgumentError(msg)
        return x3, None, weight, eps, squeeze, None
    expected = (n_rows,) + spatial
    y = target.unsqueeze(0) if squeeze else target
    if tuple(y.shape) != expected:
        msg = (
            f"cross_entropy: `target` of shape {tuple(target.shape)} does not fit `input` of shape "
            f"{tuple(input.shape)}: class indices need shape {expected[1:] if squeeze else expected} "
            f"(input without its class axis 1), probabilities need {tuple(input.shape)}."
        )
        raise CrossEntropyShapeError(msg)
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        msg = (
            f"cross_entropy: class-index `target` must be an integer tensor; got {target.dtype}. "
            "Cast it with `.long()`, or give probabilities of `input`'s shape."
        )
        raise CrossEntropyTypeError(msg)
    y = y.reshape((n_rows,) if x.ndim == 2 else (n_rows, b)).long()
    if check_values:
        bad = (y != ignore_index) & ((y < 0) | (y >= num_classes))
        if C.truth(bad.any(), False):
            value = int(y[bad][0])
            msg = (
                f"cross_entropy: `target` holds class index {value}, but `input` has {num_classes} classes "
                f"(axis 1), so indices must be in [0, {num_classes - 1}] or equal `ignore_index`={ignore_index}."
            )
            raise CrossEntropyLabelError(msg)
    return x3, y, weight, eps, squeeze, expected


def _label_error(num_classes, ignore_index):
    """How a class index out of range found by the Triton kernels is reported."""

    def raise_it(value, pos):
        msg = (
            f"cross_entropy: `target` holds class index {value} at index {pos}, but `input` has {num_classes} classes "
            f"(axis 1), so indices must be in [0, {num_classes - 1}] or equal `ignore_index`={ignore_index}."
        )
        raise CrossEntropyLabelError(msg)

    return raise_it


def _probability_targets(x3, input, target, weight, reduction, eps, inplace, chunk, squeeze, cuda=None):
    t3 = target.reshape(x3.shape)
    if cuda is not None:
        loss = cuda.cross_entropy_probabilities(x3, t3, weight, eps, inplace)
    else:
        loss = soft_target_ce(x3, t3, weight, eps, inplace, chunk)
    if reduction == "none":
        shape = (input.shape[0],) + tuple(input.shape[2:]) if not squeeze else ()
        return loss.reshape(shape).to(input.dtype)
    total = loss.sum()
    if reduction == "sum":
        return total.to(input.dtype)
    return (total / loss.numel()).to(input.dtype)
