"""Cross-entropy: binary, categorical and sparse categorical, plus the ``tf.nn`` forms.

All functions return per-sample values (reduced over the class axis only) with Keras 3's
numbers.  Probabilities are clipped to ``[epsilon, 1 - epsilon]`` where Keras clips;
logits are handled in log space (log-sum-exp, log-sigmoid), so any finite logit gives a
finite loss.
"""

from __future__ import annotations

from .. import _checks as C
from .. import _fast, _fused
from .._errors import LabelFormatError, ShapeError
from .._ops import clip, log_softmax, logsumexp, softplus, take_along_axis
from .._reduction import align_ranks
from ._common import finish, prepare

__all__ = [
    "binary_crossentropy",
    "categorical_crossentropy",
    "sigmoid_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits",
    "sparse_categorical_crossentropy",
    "sparse_softmax_cross_entropy_with_logits",
    "weighted_cross_entropy_with_logits",
]

EPSILON = 1e-7


# ----------------------------------------------------------------------------- binary


def _binary_elementwise(xp, t, p, from_logits: bool, epsilon: float):
    """Elementwise binary cross-entropy ``-t log p - (1 - t) log(1 - p)``."""
    if from_logits:
        # -t*log(sigmoid(x)) - (1-t)*log(1-sigmoid(x)) = t*softplus(-x) + (1-t)*softplus(x)
        return t * softplus(-p, xp) + (1.0 - t) * softplus(p, xp)
    p = clip(p, xp, epsilon, 1.0 - epsilon)
    return -(t * xp.log(p) + (1.0 - t) * xp.log(1.0 - p))


def _prepare_binary(y_true, y_pred, from_logits, label_smoothing, axis, epsilon, loss, *, deferred=None):
    """Validated ``(xp, t, p, out_dtype, axis, epsilon)``, with ``t`` label-smoothed.

    Value checks run here, unless a list ``deferred`` is given: then those on the arrays
    returned are appended to it, for the loss's own pass to test (see
    :class:`probloss._checks.RangeCheck`).
    """
    C.check_bool("from_logits", from_logits)
    label_smoothing = C.check_float_in("label_smoothing", label_smoothing, 0.0, 1.0)
    epsilon = C.check_epsilon(epsilon)
    xp, t, p, out_dtype = prepare(y_true, y_pred)
    t, p = align_ranks(t, p, xp)
    C.check_same_shape(
        t, p, loss, hint="Binary losses compare each prediction with its own 0/1 target; for class indices use `sparse_categorical_crossentropy`."
    )
    axis = C.check_axis(axis, p.ndim)
    if C.eager(t, p):
        checks = [C.binary_targets_check(t)] + ([] if from_logits else [C.probabilities_check(p)])
        # Smoothing can move a bad target into [0, 1], so then the targets are checked now.
        now = checks if deferred is None else checks[:1] if label_smoothing else []
        C.run_checks(xp, now)
        if deferred is not None:
            deferred.extend(checks[len(now):])
    if label_smoothing:
        t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return xp, t, p, out_dtype, axis, epsilon


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1, *, epsilon=EPSILON):
    """Binary cross-entropy between 0/1 targets and predicted probabilities (or logits).

    .. math::

        \\ell = \\operatorname{mean}_{axis}\\big[-t\\log p - (1-t)\\log(1-p)\\big],
        \\qquad t = y(1-a) + a/2

    where ``a`` is ``label_smoothing`` and ``p = clip(y_pred, epsilon, 1 - epsilon)``, or
    with ``from_logits=True`` ``-log p = softplus(-x)`` and ``-log(1-p) = softplus(x)``
    (no clipping: a logit of -100 against target 1 costs 100).

    Parameters
    ----------
    y_true : array_like, shape (..., K)
        Targets in [0, 1] (0/1 labels, or soft targets).
    y_pred : array_like, shape (..., K)
        Probabilities in [0, 1], or logits with ``from_logits=True``.  A rank difference
        of one with a trailing axis of size 1 is aligned as Keras does.
    from_logits : bool, default False
    label_smoothing : float in [0, 1], default 0
        Moves targets towards 0.5.
    axis : int, default -1
        The axis averaged over (Keras takes the *mean*, not the sum).
    epsilon : float, default 1e-7
        Clipping bound for probabilities (Keras's ``backend.epsilon()``).

    Returns
    -------
    array, shape of ``y_pred`` without ``axis``
        Per-sample losses, same array type, device and dtype as ``y_pred``.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]), 4)
    array([0.9163, 0.7136], dtype=float32)
    """
    checks = []
    xp, t, p, out_dtype, axis, epsilon = _prepare_binary(
        y_true, y_pred, from_logits, label_smoothing, axis, epsilon, "binary_crossentropy", deferred=checks
    )
    kind = "bce_logits" if from_logits else "bce"
    values = _fast.elementwise(xp, kind, t, p, epsilon, axis, checks=checks)  # native kernel, or None
    if values is None:
        C.run_checks(xp, checks)
        values = xp.mean(_binary_elementwise(xp, t, p, from_logits, epsilon), axis=axis)
    return finish(xp, values, out_dtype, y_true=t, y_pred=p)


# ------------------------------------------------------------------------ categorical


def _check_categorical_shapes(xp, t, p, loss):
    if tuple(t.shape) == tuple(p.shape):
        return
    looks_sparse = t.ndim == p.ndim - 1 or (t.ndim == p.ndim and t.shape[-1] == 1 and p.shape[-1] > 1)
    if looks_sparse and tuple(t.shape[: p.ndim - 1]) == tuple(p.shape[:-1]):
        msg = (
            f"{loss}: `y_true` of shape {tuple(t.shape)} looks like integer class labels, but this loss "
            f"needs one-hot (or soft) labels of the shape of `y_pred`, {tuple(p.shape)}. Use "
            "`sparse_categorical_crossentropy` (or `SparseCategoricalCrossentropy`) for class indices, "
            "or one-hot encode them first."
        )
        raise LabelFormatError(msg)
    C.check_same_shape(t, p, loss)


def _prepare_categorical(y_true, y_pred, from_logits, label_smoothing, axis, epsilon, loss, *, check_labels=True):
    C.check_bool("from_logits", from_logits)
    label_smoothing = C.check_float_in("label_smoothing", label_smoothing, 0.0, 1.0)
    epsilon = C.check_epsilon(epsilon)
    xp, t, p, out_dtype = prepare(y_true, y_pred)
    _check_categorical_shapes(xp, t, p, loss)
    axis = C.check_axis(axis, p.ndim)
    num_classes = p.shape[axis]
    if num_classes == 1:
        C.warn(
            f"{loss}: `y_pred` has a single class along axis {axis}, so the loss is always ~0. "
            "For a binary problem with one output unit use `binary_crossentropy`."
        )
    if check_labels and C.eager(t, p):
        _check_soft_labels(xp, t)
    if label_smoothing:
        t = t * (1.0 - label_smoothing) + label_smoothing / num_classes
    return xp, t, p, out_dtype, axis, epsilon


def _soft_labels_check(t, name="y_true"):
    return C.nonnegative_check(t, name, "labels are probabilities and cannot be negative.")


def _check_soft_labels(xp, t, name="y_true"):
    _soft_labels_check(t, name).run(xp)


def _soft_ce_checking_labels(xp, t, x, axis, name="y_true"):
    """Soft-target CE from logits (native kernel, or ``None``) with the check ``t >= 0``.

    The kernels test ``t`` in the pass that reads it anyway (see
    :func:`probloss._fast.soft_from_logits`); only on failure is ``t`` scanned again, to
    name the element.
    """
    check = _soft_labels_check(t, name) if C.eager(t, x) else None
    loss = _fast.soft_from_logits(xp, t, x, axis, t_check=check)
    if loss is None and check is not None:
        check.run(xp)
    return loss


def _fused_probs_checking(xp, t, p, axis, epsilon, *, check_labels: bool):
    """Categorical CE from probabilities with all its value checks in one compiled pass.

    Returns ``None`` where :func:`probloss._fast.fused_categorical_from_probs` does not
    apply (the caller then runs the checks and the loss separately).  The checks are
    those of the separate path, in its order: labels ``>= 0`` (if ``check_labels``),
    probabilities in [0, 1], a warning for rows that do not sum to 1.
    """
    eager = C.eager(t, p)
    fused = _fast.fused_categorical_from_probs(xp, t, p, axis, epsilon, check=eager)
    if fused is None:
        return None
    loss, sums, t_bits, p_bits = fused
    if eager:
        if check_labels and not _fused.within(t_bits, 0.0, None):
            _check_soft_labels(xp, t)  # raises, naming the element (a -0.0 passes)
        if not _fused.within(p_bits, 0.0, 1.0):
            C.check_probabilities(xp, p)
        if p.shape[axis] > 1:
            C.warn_unnormalized(xp, sums, axis)
    return loss


def _row_sums(xp, p, axis, *, check: bool = True):
    """Sums along the class axis (kept); in eager mode also the probability checks.

    The checks reuse the sums (see :func:`probloss._checks.check_probability_rows`); for
    a big CPU array with numba installed, sums and range check are one compiled pass
    (:func:`probloss._fast.row_sums_in_range`).  ``check=False`` when ``p`` came from a
    softmax of logits.
    """
    if check and C.eager(p):
        fused = _fast.row_sums_in_range(xp, p, axis, 0.0, 1.0)  # sums and range in one pass, or None
        if fused is not None:
            sums, in_range = fused
            if not in_range:
                C.check_probabilities(xp, p)  # raises, naming the first bad element
            if p.shape[axis] > 1:
                C.warn_unnormalized(xp, sums, axis)
            return sums
    sums = xp.sum(p, axis=axis, keepdims=True)
    if check and C.eager(sums):
        if p.shape[axis] > 1:
            C.check_probability_rows(xp, p, sums, axis)
        else:  # a single class has already been warned about
            C.check_probabilities(xp, p)
    return sums


def _normalized_clipped(xp, p, axis, epsilon, *, check: bool = True):
    """Keras's probability path: renormalise along ``axis``, then clip."""
    return clip(p / _row_sums(xp, p, axis, check=check), xp, epsilon, 1.0 - epsilon)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1, *, epsilon=EPSILON):
    """Categorical cross-entropy between one-hot (or soft) labels and predictions.

    .. math::

        \\ell = -\\sum_{c} t_c \\log q_c, \\qquad t = y(1-a) + a/K

    where ``K = y_pred.shape[axis]``, and ``log q = log_softmax(y_pred)`` with
    ``from_logits=True``, else ``q = clip(p / sum(p), epsilon, 1 - epsilon)`` (Keras
    renormalises rows, then clips).

    Parameters
    ----------
    y_true : array_like, shape of ``y_pred``
        One-hot or soft labels.  For integer class labels use
        :func:`sparse_categorical_crossentropy`.
    y_pred : array_like, shape (..., K, ...)
        Probabilities, or logits with ``from_logits=True``.
    from_logits : bool, default False
    label_smoothing : float in [0, 1], default 0
    axis : int, default -1
        The class axis (any axis).  Label smoothing counts the classes on this axis
        (Keras 3.16 behaviour; Keras <= 3.15 counted the last axis).
    epsilon : float, default 1e-7

    Returns
    -------
    array, shape of ``y_pred`` without ``axis``

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    >>> np.round(pl.categorical_crossentropy(y_true, y_pred), 4)
    array([0.0513, 2.3026], dtype=float32)
    """
    # Without smoothing, the labels reach the kernel unchanged, so it can check them as
    # it reads them; smoothing would hide a negative label, so check first.
    fold = not label_smoothing
    xp, t, p, out_dtype, axis, epsilon = _prepare_categorical(
        y_true, y_pred, from_logits, label_smoothing, axis, epsilon, "categorical_crossentropy", check_labels=not fold
    )
    if from_logits:
        # native kernel, or None
        fast = _soft_ce_checking_labels(xp, t, p, axis) if fold else _fast.soft_from_logits(xp, t, p, axis)
    else:
        fast = _fused_probs_checking(xp, t, p, axis, epsilon, check_labels=fold)  # one compiled pass, or None
        if fast is None:
            if fold and C.eager(t, p):
                _check_soft_labels(xp, t)
            sums = _row_sums(xp, p, axis)  # Keras renormalises rows; in eager mode, the probability checks
            fast = _fast.categorical_from_probs(xp, t, p, axis, epsilon)  # native kernel, or None
    if fast is not None:
        return finish(xp, fast, out_dtype, y_true=t, y_pred=p)
    log_q = log_softmax(p, xp, axis=axis) if from_logits else xp.log(clip(p / sums, xp, epsilon, 1.0 - epsilon))
    return finish(xp, -xp.sum(t * log_q, axis=axis), out_dtype, y_true=t, y_pred=p)


# ---------------------------------------------------------------------------- sparse


def _prepare_sparse(y_true, y_pred, axis, ignore_class, loss, *, axis_last_only=False):
    xp, labels, p, out_dtype = prepare(y_true, y_pred, dense_labels=False)
    axis = C.check_axis(axis, p.ndim)
    num_classes = p.shape[axis]
    if labels.ndim == p.ndim and labels.shape[axis] == 1 and num_classes != 1:
        labels = xp.squeeze(labels, axis=axis)
    expected = tuple(p.shape[:axis]) + tuple(p.shape[axis + 1 :])
    if tuple(labels.shape) != expected:
        if tuple(labels.shape) == tuple(p.shape):
            msg = (
                f"{loss}: `y_true` has the shape of `y_pred`, {tuple(p.shape)}, so it looks one-hot "
                f"(or multi-hot), but this loss takes integer class indices of shape {expected}. "
                "Use `categorical_crossentropy` for one-hot labels, or convert them with "
                "`argmax(y_true, axis=-1)`."
            )
            raise LabelFormatError(msg)
        msg = (
            f"{loss}: `y_true` of shape {tuple(labels.shape)} does not fit `y_pred` of shape "
            f"{tuple(p.shape)}: class indices must have shape {expected} (`y_pred` without its "
            f"class axis {axis}), or that shape with a trailing 1."
        )
        raise ShapeError(msg)
    if xp.isdtype(labels.dtype, "bool"):
        labels = xp.astype(labels, xp.int32)
    elif not xp.isdtype(labels.dtype, "integral"):
        if not xp.isdtype(labels.dtype, "real floating"):
            msg = f"{loss}: `y_true` must hold integer class indices; got dtype {labels.dtype}."
            from .._errors import ProblossTypeError

            raise ProblossTypeError(msg)
        if C.eager(labels):
            C.check_finite(xp, labels, "y_true")
            C.check_integer_valued(xp, labels)
        # Keras truncates float labels toward zero; they are whole numbers once checked.
        labels = xp.astype(labels, xp.int64 if _is_torch_array(labels) else xp.int32)
    valid = None
    if ignore_class is not None:
        valid = labels != ignore_class
        labels = xp.where(valid, labels, xp.zeros_like(labels))
    if C.eager(labels, p):
        C.check_sparse_labels(xp, labels, num_classes, None)
    return xp, labels, p, out_dtype, axis, valid


def _is_torch_array(x):
    from .._compat import array_api_compat

    return array_api_compat.is_torch_array(x)


def _sparse_with_mask(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1, *, epsilon=EPSILON):
    """Sparse categorical cross-entropy and the valid mask (``None`` without ignore_class)."""
    C.check_bool("from_logits", from_logits)
    ignore_class = C.check_ignore_class(ignore_class)
    epsilon = C.check_epsilon(epsilon)
    xp, labels, p, out_dtype, axis, valid = _prepare_sparse(
        y_true, y_pred, axis, ignore_class, "sparse_categorical_crossentropy"
    )
    if from_logits:
        # -log_softmax(x)[y] = logsumexp(x) - x[y]: one reduction, no N x K temporary kept.
        loss = _fast.sparse_from_logits(xp, p, labels, axis)  # native kernel, or None
        if loss is None:
            loss = logsumexp(p, xp, axis=axis) - take_along_axis(p, labels, xp, axis=axis)
    else:
        q = take_along_axis(p, labels, xp, axis=axis) / xp.squeeze(_row_sums(xp, p, axis), axis=axis)
        loss = -xp.log(clip(q, xp, epsilon, 1.0 - epsilon))
    if valid is not None:
        loss = xp.where(valid, loss, xp.zeros_like(loss))
    return finish(xp, loss, out_dtype, y_pred=p), valid


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1, *, epsilon=EPSILON):
    """Categorical cross-entropy with integer class labels.

    .. math::

        \\ell = -\\log q_{y}, \\qquad \\log q = \\operatorname{log\\_softmax}(x)
        \\;\\text{or}\\; q = \\operatorname{clip}(p / \\textstyle\\sum p, \\epsilon, 1-\\epsilon)

    Equal to :func:`categorical_crossentropy` with ``one_hot(y_true)``, but it needs only
    ``N`` labels instead of ``N x K`` and never builds the one-hot matrix.

    Parameters
    ----------
    y_true : array_like of int, shape of ``y_pred`` without ``axis`` (or with a 1 there)
        Class indices in ``[0, K)``.  Whole-valued floats are accepted (Keras casts).
    y_pred : array_like, shape (..., K, ...)
        Probabilities, or logits with ``from_logits=True``.
    from_logits : bool, default False
    ignore_class : int or None, default None
        Positions whose label equals it get loss 0 (and are left out of the mean by the
        class form).
    axis : int, default -1
        The class axis of ``y_pred`` (e.g. 1 for channels-first segmentation).
    epsilon : float, default 1e-7

    Returns
    -------
    array, shape of ``y_true`` (without a trailing 1)

    Raises
    ------
    LabelFormatError
        One-hot labels (use :func:`categorical_crossentropy`) or fractional labels.
    LabelValueError
        A class index outside ``[0, K)`` (checked in eager mode).

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.sparse_categorical_crossentropy([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]), 4)
    array([0.0513, 2.3026], dtype=float32)
    """
    return _sparse_with_mask(y_true, y_pred, from_logits, ignore_class, axis, epsilon=epsilon)[0]


# ----------------------------------------------------------------------- tf.nn forms


def softmax_cross_entropy_with_logits(*, labels, logits, axis=-1):
    """``tf.nn.softmax_cross_entropy_with_logits``: ``sum(-labels * log_softmax(logits))``.

    .. math:: \\ell = \\sum_c y_c \\big(\\operatorname{LSE}(x) - x_c\\big)

    Labels may be soft; they are not renormalised.  The gradient is the true derivative
    ``sum(y) * softmax(x) - y`` (TensorFlow's fused kernel returns ``softmax(x) - y``,
    which differs when label rows do not sum to 1).

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.softmax_cross_entropy_with_logits(
    ...     labels=[[1.0, 0, 0], [0, 0.8, 0.2]], logits=[[4.0, 2, 1], [0, 5, 1]]), 6)
    array([0.169846, 0.824745], dtype=float32)
    """
    xp, t, x, out_dtype = prepare(labels, logits, names=("labels", "logits"))
    _check_categorical_shapes(xp, t, x, "softmax_cross_entropy_with_logits")
    axis = C.check_axis(axis, x.ndim, what="logits")
    fast = _soft_ce_checking_labels(xp, t, x, axis, name="labels")  # native kernel (checking labels), or None
    if fast is not None:
        return finish(xp, fast, out_dtype, labels=t, logits=x)
    return finish(xp, -xp.sum(t * log_softmax(x, xp, axis=axis), axis=axis), out_dtype, labels=t, logits=x)


def sparse_softmax_cross_entropy_with_logits(*, labels, logits):
    """``tf.nn.sparse_softmax_cross_entropy_with_logits``: ``LSE(logits) - logits[label]``.

    The class axis is the last one.  Labels out of ``[0, K)`` raise (TensorFlow raises on
    CPU and returns NaN on GPU).

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> logits = [[2, -5, 0.5, -0.1], [0, 0, 1.9, 1.4], [-100, 100, -100, -100]]
    >>> np.round(pl.sparse_softmax_cross_entropy_with_logits(labels=[0, 3, 1], logits=logits), 4)
    array([0.2975, 1.1448, 0.    ], dtype=float32)
    """
    xp, y, x, out_dtype, axis, _ = _prepare_sparse(labels, logits, -1, None, "sparse_softmax_cross_entropy_with_logits")
    return finish(xp, logsumexp(x, xp, axis=-1) - take_along_axis(x, y, xp, axis=-1), out_dtype, logits=x)


def sigmoid_cross_entropy_with_logits(*, labels, logits):
    """``tf.nn.sigmoid_cross_entropy_with_logits``, elementwise (no reduction).

    .. math:: \\ell = \\max(x, 0) - x z + \\log(1 + e^{-|x|})

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> logits = [[0.5, 0.7, 0.3], [0.8, 0.2, 0.9]]
    >>> np.round(pl.sigmoid_cross_entropy_with_logits(labels=np.ones((2, 3)), logits=logits), 3)
    array([[0.474, 0.403, 0.554],
           [0.371, 0.598, 0.341]], dtype=float32)
    """
    return weighted_cross_entropy_with_logits(labels=labels, logits=logits, pos_weight=1.0)


def weighted_cross_entropy_with_logits(*, labels, logits, pos_weight):
    """``tf.nn.weighted_cross_entropy_with_logits``: positives weighted by ``pos_weight``.

    .. math:: \\ell = q\\,z\\,\\operatorname{softplus}(-x) + (1 - z)\\,\\operatorname{softplus}(x)

    with ``q = pos_weight`` (a scalar or an array broadcastable to ``logits``).  Same as
    ``torch.nn.functional.binary_cross_entropy_with_logits(..., pos_weight=q,
    reduction="none")``.
    """
    xp, z, x, out_dtype = prepare(labels, logits, names=("labels", "logits"))
    C.check_same_shape(z, x, "weighted_cross_entropy_with_logits")
    from .._compat import as_array

    q = as_array(pos_weight, xp, like=x, name="pos_weight")
    q = xp.astype(q, x.dtype)
    if C.eager(z, x):
        C.check_binary_targets(xp, z, "labels")
    # TensorFlow writes (1 - z) x + (1 + (q - 1) z) softplus(-x); the form below is the
    # same number without the cancellation of x against softplus(-x) for negative x.
    values = q * z * softplus(-x, xp) + (1.0 - z) * softplus(x, xp)
    return finish(xp, values, out_dtype, labels=z, logits=x, pos_weight=q)
