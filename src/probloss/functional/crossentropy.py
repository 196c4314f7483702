"""Cross-entropy: binary, categorical and sparse categorical, plus the ``tf.nn`` forms.

All functions return per-sample values (reduced over the class axis only) with Keras 3's
numbers.  Probabilities are clipped to ``[epsilon, 1 - epsilon]`` where Keras clips;
logits are handled in log space (log-sum-exp, log-sigmoid), so any finite logit gives a
finite loss.

Each public function validates its options into an :class:`Options`, prepares the
arrays (one namespace, compute dtype, shapes) and calls the implementation that
:mod:`probloss._dispatch` names for the backend.  The ``*_generic`` functions here are
the formulas: the implementation for backends without a native one, and the reference
the native ones are tested against.  Each runs its own value checks.
"""

from __future__ import annotations

import math

from .. import _checks as C
from .._compat import dtype_kind, is_half, namespace
from .._dispatch import implementation
from .._errors import LabelFormatError, ProblossTypeError, ShapeError
from .._ops import clip, softplus, take_along_axis
from .._reduction import align_ranks
from . import _logits as L
from ._common import EPSILON, Options, finish, prepare
from ._where import where_mask

__all__ = [
    "binary_crossentropy",
    "categorical_crossentropy",
    "sigmoid_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits",
    "sparse_categorical_crossentropy",
    "sparse_softmax_cross_entropy_with_logits",
    "weighted_cross_entropy_with_logits",
]


def options(
    from_logits=False,
    label_smoothing=0.0,
    epsilon=EPSILON,
    ignore_class=None,
    ruled_out_target="raise",
    class_weight=None,
    pos_weight=None,
) -> Options:
    """Validated :class:`Options` of the cross-entropy losses."""
    return Options(
        C.check_bool("from_logits", from_logits),
        C.check_float_in("label_smoothing", label_smoothing, 0.0, 1.0),
        C.check_epsilon(epsilon),
        C.check_ignore_class(ignore_class),
        L.check_ruled_out_target(ruled_out_target),
        L.check_weights("class_weight", class_weight, "class"),
        L.check_pos_weight(pos_weight),
    )


# ----------------------------------------------------------------------------- binary


def _binary_elementwise(xp, t, p, from_logits: bool, epsilon: float, pos_weight=None):
    """Elementwise binary cross-entropy ``-q t log p - (1 - t) log(1 - p)``, ``q = pos_weight`` (1 if None)."""
    tq = t if pos_weight is None else t * pos_weight
    if from_logits:
        # -t*log(sigmoid(x)) - (1-t)*log(1-sigmoid(x)) = t*softplus(-x) + (1-t)*softplus(x)
        return tq * softplus(-p, xp) + (1.0 - t) * softplus(p, xp)
    p = clip(p, xp, epsilon, 1.0 - epsilon)
    return -(tq * xp.log(p) + (1.0 - t) * xp.log(1.0 - p))


def _pos_weight(xp, o: Options, p, axis):
    """``o.pos_weight`` as a number, or as an array laid along ``axis`` of ``p``; or None."""
    if o.pos_weight is None or isinstance(o.pos_weight, float):
        return o.pos_weight
    return L.class_weights(xp, o.pos_weight, p, axis)


def prepare_binary(y_true, y_pred, axis, loss):
    """``(xp, t, p, out_dtype, axis)`` for a binary loss: same shapes, axis non-negative."""
    xp, t, p, out_dtype = prepare(y_true, y_pred)
    t, p = align_ranks(t, p, xp)
    C.check_same_shape(
        t, p, loss, hint="Binary losses compare each prediction with its own 0/1 target; for class indices use `sparse_categorical_crossentropy`."
    )
    return xp, t, p, out_dtype, C.check_axis(axis, p.ndim)


def check_binary(xp, t, p, o: Options):
    """The value checks of a binary loss: targets in [0, 1], probabilities in [0, 1]."""
    if C.eager(t, p):
        C.check_binary_targets(xp, t)
        if not o.from_logits:
            C.check_probabilities(xp, p)


def smooth_binary(t, label_smoothing: float):
    """Keras's binary label smoothing, ``t (1 - a) + a / 2``."""
    return t * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else t


def binary_generic(xp, t, p, axis, o: Options):
    """``mean(-q t log p - (1 - t) log(1 - p), axis)``, ``t`` smoothed, ``q`` the positive
    weight (see :func:`binary_crossentropy` and :class:`~probloss.BinaryCrossentropy`)."""
    check_binary(xp, t, p, o)
    t = smooth_binary(t, o.label_smoothing)
    return xp.mean(_binary_elementwise(xp, t, p, o.from_logits, o.epsilon, _pos_weight(xp, o, p, axis)), axis=axis)


def binary_masked(xp, t, p, axis, o: Options, m):
    """:func:`binary_generic` over the entries where the boolean ``m`` (``p``'s shape) is
    True: their mean along ``axis`` (0 for a row with none).  The other entries are
    replaced by harmless values first, so they reach neither the value nor the gradient."""
    t = xp.where(m, t, xp.zeros_like(t))
    p = xp.where(m, p, xp.zeros_like(p) if o.from_logits else xp.full_like(p, 0.5))
    check_binary(xp, t, p, o)
    t = smooth_binary(t, o.label_smoothing)
    e = _binary_elementwise(xp, t, p, o.from_logits, o.epsilon, _pos_weight(xp, o, p, axis))
    n = xp.sum(xp.astype(m, e.dtype), axis=axis)
    return xp.sum(xp.where(m, e, xp.zeros_like(e)), axis=axis) / xp.where(n > 0, n, xp.ones_like(n))


def binary_values(y_true, y_pred, axis, o: Options, where=None):
    """Per-sample binary cross-entropy with validated options (the classes' path)."""
    loss = "binary_crossentropy"
    xp, t, p, out_dtype, axis = prepare_binary(y_true, y_pred, axis, loss)
    if isinstance(o.pos_weight, tuple):
        L.check_class_count("pos_weight", o.pos_weight, p.shape[axis], loss)
    if where is None:
        values = implementation("binary", xp)(xp, t, p, axis, o)
    else:
        m, per_entry = where_mask(xp, where, p, axis, loss)
        if not per_entry:
            m = xp.broadcast_to(xp.expand_dims(m, axis=axis), p.shape)
        values = binary_masked(xp, t, p, axis, o, m)
    return finish(xp, values, out_dtype, y_true=t, y_pred=p)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1, *, epsilon=EPSILON, where=None):
    """Binary cross-entropy between 0/1 targets and predicted probabilities (or logits).

    .. math::

        \\ell = \\operatorname{mean}_{axis}\\big[-t\\log p - (1-t)\\log(1-p)\\big],
        \\qquad t = y(1-a) + a/2

    where ``a`` is ``label_smoothing`` and ``p = clip(y_pred, epsilon, 1 - epsilon)``, or
    with ``from_logits=True`` ``-log p = softplus(-x)`` and ``-log(1-p) = softplus(x)``
    (no clipping: a logit of -100 against target 1 costs 100).  With ``where`` the mean
    runs over the entries inside the mask: ``sum(m l) / sum(m)`` along ``axis``, as
    ``jnp.mean(..., where=m)`` (0 for a sample with no entry inside).

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
    where : array_like of bool, optional
        The entries to include: the shape of ``y_pred`` (one flag per entry), or that
        shape without ``axis`` (one per sample).  Entries outside contribute nothing to
        the value and get a zero gradient, whatever they hold (as Optax's ``where``).

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
    >>> np.round(pl.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]],
    ...                                 where=[[True, True], [False, True]]), 4)
    array([0.9163, 0.9163], dtype=float32)
    """
    return binary_values(y_true, y_pred, axis, options(from_logits, label_smoothing, epsilon), where)


# ------------------------------------------------------------------------ categorical


def _check_categorical_shapes(t, p, loss):
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


def prepare_categorical(y_true, y_pred, axis, loss, names=("y_true", "y_pred")):
    """``(xp, t, p, out_dtype, axis)`` for a categorical loss (one-hot or soft labels)."""
    xp, t, p, out_dtype = prepare(y_true, y_pred, names=names)
    _check_categorical_shapes(t, p, loss)
    axis = C.check_axis(axis, p.ndim, what=names[1])
    if p.shape[axis] == 1:
        C.warn(
            f"{loss}: `y_pred` has a single class along axis {axis}, so the loss is always ~0. "
            "For a binary problem with one output unit use `binary_crossentropy`."
        )
    return xp, t, p, out_dtype, axis


def check_soft_labels(xp, t, name="y_true"):
    """Soft or one-hot labels are probabilities: never negative."""
    C.check_nonnegative_values(xp, t, name, "labels are probabilities and cannot be negative.")


def smooth_categorical(t, label_smoothing: float, num_classes: int):
    """Keras's label smoothing, ``t (1 - a) + a / K`` with ``K`` classes."""
    return t * (1.0 - label_smoothing) + label_smoothing / num_classes if label_smoothing else t


def row_sums(xp, p, axis, *, check: bool = True):
    """Sums of probabilities along the class axis (kept), and in eager mode their checks.

    The checks reuse the sums (:func:`probloss._checks.check_probability_rows`):
    entries in [0, 1] (else raise), rows summing to 1 (else warn; Keras renormalises).
    ``check=False`` when ``p`` came from a softmax of logits.
    """
    sums = xp.sum(p, axis=axis, keepdims=True)
    if check and C.eager(sums):
        if p.shape[axis] > 1:
            C.check_probability_rows(xp, p, sums, axis)
        else:  # a single class has already been warned about
            C.check_probabilities(xp, p)
    return sums


def normalized_clipped(xp, p, axis, epsilon, *, check: bool = True):
    """Keras's probability path: renormalise along ``axis``, then clip."""
    return clip(p / row_sums(xp, p, axis, check=check), xp, epsilon, 1.0 - epsilon)


def categorical_generic(xp, t, p, axis, o: Options, name="y_true"):
    """``-sum(w q log p^, axis)``: ``q`` the smoothed targets, ``w`` the class weights (or 1),
    ``p^`` the softmax of logits (:func:`probloss.functional._logits.soft_logits`: ``-inf``
    logits rule classes out) or Keras's clipped probabilities."""
    if C.eager(t):
        check_soft_labels(xp, t, name)
    w = None if o.class_weight is None else L.class_weights(xp, o.class_weight, p, axis)
    if o.from_logits:
        return L.soft_logits(xp, t, p, axis, o.label_smoothing, w)
    t = smooth_categorical(t, o.label_smoothing, p.shape[axis])
    if w is not None:
        t = t * w
    return -xp.sum(t * xp.log(normalized_clipped(xp, p, axis, o.epsilon)), axis=axis)


def categorical_values(y_true, y_pred, axis, o: Options, where=None, *, loss="categorical_crossentropy", names=("y_true", "y_pred")):
    """Per-sample categorical cross-entropy with validated options (the functions' and classes' path)."""
    return _categorical(y_true, y_pred, axis, o, where, loss, names)[0]


def categorical_values_and_weights(y_true, y_pred, axis, o: Options):
    """``(values, target_weights)``: the per-sample losses with ``o.class_weight`` and each
    sample's target weight ``sum_c w_c y_c`` (the unsmoothed labels), the class's normaliser."""
    values, xp, t, p, axis = _categorical(y_true, y_pred, axis, o, None, "categorical_crossentropy", ("y_true", "y_pred"))
    w = L.class_weights(xp, o.class_weight, p, axis)
    return values, xp.sum(t * w, axis=axis)


def _categorical(y_true, y_pred, axis, o, where, loss, names):
    xp, t, p, out_dtype, axis = prepare_categorical(y_true, y_pred, axis, loss, names)
    L.check_class_count("class_weight", o.class_weight, p.shape[axis], loss)
    rows = None
    if where is not None:
        m, per_entry = where_mask(xp, where, p, axis, loss, entries=o.from_logits)
        if per_entry:  # a masked entry leaves the softmax: a logit of -inf, no target weight
            t = xp.where(m, t, xp.zeros_like(t))
            p = xp.where(m, p, xp.full_like(p, -math.inf))
        else:  # a masked sample gives 0: finite stand-ins, then 0
            rows, m = m, xp.expand_dims(m, axis=axis)
            t = xp.where(m, t, xp.zeros_like(t))
            p = xp.where(m, p, xp.zeros_like(p) if o.from_logits else xp.full_like(p, 1.0 / p.shape[axis]))
    values = implementation("categorical", xp)(xp, t, p, axis, o, name=names[0])
    if rows is not None:
        values = xp.where(rows, values, xp.zeros_like(values))
    if o.from_logits:
        values = L.finish_logits(xp, values, out_dtype, o, t, p, axis, sparse=False, names=names)
    else:
        values = finish(xp, values, out_dtype, **{names[0]: t, names[1]: p})
    return values, xp, t, p, axis


def categorical_crossentropy(
    y_true,
    y_pred,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
    *,
    epsilon=EPSILON,
    where=None,
    ruled_out_target="raise",
):
    """Categorical cross-entropy between one-hot (or soft) labels and predictions.

    .. math::

        \\ell = -\\sum_{c} q_c \\log p_c, \\qquad q = y(1-a) + a/K

    where ``K = y_pred.shape[axis]``, and ``log p = log_softmax(y_pred)`` with
    ``from_logits=True``, else ``p = clip(y / sum(y), epsilon, 1 - epsilon)`` for
    ``y = y_pred`` (Keras renormalises rows, then clips).

    From logits, a logit of ``-inf`` rules its class out (constrained decoding, action
    masking): such classes contribute nothing (``0 * log 0 = 0``) and get a zero
    gradient, label smoothing spreads ``a`` over the ``K_r`` allowed classes of the row
    (``q = y(1-a) + a/K_r`` there, 0 on ruled-out classes), and a label with weight on a
    ruled-out class makes the loss infinite: see ``ruled_out_target``.

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
    where : array_like of bool, optional
        As Optax's ``where``.  The shape of ``y_pred`` (logits only): an entry outside the
        mask leaves the softmax as a ``-inf`` logit would, and its label weight is dropped.
        The shape of ``y_pred`` without ``axis``: a sample outside gives 0.  Either way
        what lies outside contributes nothing and gets a zero gradient.
    ruled_out_target : {"raise", "inf"}, default "raise"
        A label with weight on a class whose logit is ``-inf``: ``"raise"`` reports it as
        a :class:`~probloss.PredictionValueError` naming both (a value check: eagerly, or
        when a jitted program runs; with value checks off the loss is ``inf``); ``"inf"``
        returns ``inf`` for that sample.

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

    A ruled-out class (logit ``-inf``) costs nothing unless the label sits on it:

    >>> inf = float("inf")
    >>> np.round(pl.categorical_crossentropy([[0, 0, 1]], [[-inf, 1.0, 2.0]], from_logits=True), 4)
    array([0.3133], dtype=float32)
    """
    o = options(from_logits, label_smoothing, epsilon, ruled_out_target=ruled_out_target)
    return categorical_values(y_true, y_pred, axis, o, where)


# ---------------------------------------------------------------------------- sparse


def prepare_sparse(y_true, y_pred, axis, loss, names=("y_true", "y_pred"), xp=None):
    """``(xp, labels, p, out_dtype, axis)``: integer labels of ``p``'s shape without ``axis``."""
    xp, labels, p, out_dtype = prepare(y_true, y_pred, dense_labels=False, names=names, xp=xp)
    axis = C.check_axis(axis, p.ndim, what=names[1])
    if labels.ndim == p.ndim and labels.shape[axis] == 1 and p.shape[axis] != 1:
        labels = xp.squeeze(labels, axis=axis)
    shape = tuple(p.shape)
    expected = shape[:axis] + shape[axis + 1 :]
    if tuple(labels.shape) != expected:
        if tuple(labels.shape) == shape:
            msg = (
                f"{loss}: `{names[0]}` has the shape of `{names[1]}`, {shape}, so it looks one-hot "
                f"(or multi-hot), but this loss takes integer class indices of shape {expected}. "
                "Use `categorical_crossentropy` for one-hot labels, or convert them with "
                "`argmax(y_true, axis=-1)`."
            )
            raise LabelFormatError(msg)
        msg = (
            f"{loss}: `{names[0]}` of shape {tuple(labels.shape)} does not fit `{names[1]}` of shape "
            f"{tuple(p.shape)}: class indices must have shape {expected} (`{names[1]}` without its "
            f"class axis {axis}), or that shape with a trailing 1."
        )
        raise ShapeError(msg)
    kind = dtype_kind(xp, labels.dtype)
    if kind == "bool":
        labels = xp.astype(labels, xp.int32)
    elif kind != "integral":
        if kind != "real floating":
            msg = f"{loss}: `{names[0]}` must hold integer class indices; got dtype {labels.dtype}."
            raise ProblossTypeError(msg)
        if C.eager(labels):
            C.check_finite(xp, labels, names[0])
            C.check_integer_valued(xp, labels, names[0])
        # Keras truncates float labels toward zero; they are whole numbers once checked.
        labels = xp.astype(labels, xp.int64 if xp.__name__.endswith("torch") else xp.int32)
    return xp, labels, p, out_dtype, axis


def sparse_generic(xp, labels, p, axis, o: Options):
    """``(1 - a) w_y (-log q_y) + (a / K) sum_c w_c (-log q_c)``: ``log q`` the log-softmax of
    logits (:func:`probloss.functional._logits.sparse_logits`, over the ``K_r`` allowed
    classes for the smoothing term), else Keras's clipped ``p / sum(p)``.

    ``labels`` must lie in ``[0, K)`` (ignored positions already replaced by a valid
    class); in eager mode that is checked here.
    """
    if C.eager(labels, p):
        labels = C.check_sparse_labels(xp, labels, p.shape[axis], None)
    w = None if o.class_weight is None else L.class_weights(xp, o.class_weight, p)
    if o.from_logits:
        return L.sparse_logits(xp, labels, p, axis, o.label_smoothing, w)
    sums = row_sums(xp, p, axis)
    q = take_along_axis(p, labels, xp, axis=axis) / xp.squeeze(sums, axis=axis)
    loss = -xp.log(clip(q, xp, o.epsilon, 1.0 - o.epsilon))
    if w is not None:
        loss = loss * L._gather(xp, w, labels)
    if o.label_smoothing:
        nlq = -xp.log(clip(p / sums, xp, o.epsilon, 1.0 - o.epsilon))
        if w is not None:
            nlq = nlq * L.class_weights(xp, o.class_weight, p, axis)
        loss = (1.0 - o.label_smoothing) * loss + (o.label_smoothing / p.shape[axis]) * xp.sum(nlq, axis=axis)
    return loss


def sparse_values(
    y_true, y_pred, axis, o: Options, where=None, *, loss="sparse_categorical_crossentropy", names=("y_true", "y_pred")
):
    """``(per-sample losses, valid mask or None, labels)`` with validated options (the
    functions' and classes' path).  The mask marks the positions whose label is not
    ``ignore_class``; ``labels`` are those labels with ignored positions set to 0."""
    xp, labels, p, out_dtype, axis = prepare_sparse(y_true, y_pred, axis, loss, names)
    if o.class_weight is not None:
        L.check_class_count("class_weight", o.class_weight, p.shape[axis], loss)
    valid = None
    if o.ignore_class is not None:
        valid = labels != o.ignore_class
        labels = xp.where(valid, labels, xp.zeros_like(labels))
    keep = valid
    if where is not None:
        m, per_entry = where_mask(xp, where, p, axis, loss, entries=o.from_logits)
        # the label of a sample with nothing inside the mask is never read (padding may hold any id)
        inside = xp.any(m, axis=axis) if per_entry else m
        labels = xp.where(inside, labels, xp.zeros_like(labels))
        if per_entry:  # a masked entry leaves the softmax; a sample whose label is masked gives 0
            if C.eager(labels, p):  # (the gather below needs labels in range)
                labels = C.check_sparse_labels(xp, labels, p.shape[axis], None, names[0])
            p = xp.where(m, p, xp.full_like(p, -math.inf))
            m = take_along_axis(xp.astype(m, p.dtype), labels, xp, axis=axis) > 0
        p = xp.where(xp.expand_dims(m, axis=axis), p, xp.zeros_like(p) if o.from_logits else xp.full_like(p, 1.0 / p.shape[axis]))
        keep = m if keep is None else keep & m
    values = implementation("sparse", xp)(xp, labels, p, axis, o)
    if keep is not None:
        values = xp.where(keep, values, xp.zeros_like(values))
    if o.from_logits:
        values = L.finish_logits(xp, values, out_dtype, o, labels, p, axis, sparse=True, names=names)
    else:
        values = finish(xp, values, out_dtype, **{names[1]: p})
    return values, valid, labels


def sparse_values_and_weights(y_true, y_pred, axis, o: Options):
    """``(values, valid mask or None, target_weights)``: the per-sample losses with
    ``o.class_weight`` and each sample's target weight ``w[y]`` (0 where ignored), the
    class's normaliser."""
    values, valid, labels = sparse_values(y_true, y_pred, axis, o)
    xp = namespace(values)
    weights = L._gather(xp, L.class_weights(xp, o.class_weight, values), labels)
    if valid is not None:
        weights = xp.where(valid, weights, xp.zeros_like(weights))
    return values, valid, weights


def sparse_mean_generic(xp, labels, p, axis, o: Options):
    """The mean over every position of the backend's ``"sparse"`` implementation."""
    return xp.mean(implementation("sparse", xp)(xp, labels, p, axis, o))


def sparse_mean(y_true, y_pred, axis, o: Options, xp=None):
    """``mean(sparse_categorical_crossentropy(...))``: Keras's default reduction without
    weights or ``ignore_class``, in one call that a backend may fuse (the classes' path)."""
    loss = "sparse_categorical_crossentropy"
    xp, labels, p, out_dtype, axis = prepare_sparse(y_true, y_pred, axis, loss, xp=xp)
    if o.class_weight is not None:
        L.check_class_count("class_weight", o.class_weight, p.shape[axis], loss)
    if is_half(out_dtype):  # as the general path: per-sample values in that dtype, then the mean
        values = _finish_sparse(xp, implementation("sparse", xp)(xp, labels, p, axis, o), out_dtype, o, labels, p, axis)
        return xp.astype(xp.mean(xp.astype(values, xp.float32)), out_dtype)
    return _finish_sparse(xp, implementation("sparse_mean", xp)(xp, labels, p, axis, o), out_dtype, o, labels, p, axis)


def _finish_sparse(xp, values, out_dtype, o, labels, p, axis):
    if o.from_logits:
        return L.finish_logits(xp, values, out_dtype, o, labels, p, axis, sparse=True)
    return finish(xp, values, out_dtype, y_pred=p)


def sparse_categorical_crossentropy(
    y_true,
    y_pred,
    from_logits=False,
    ignore_class=None,
    axis=-1,
    *,
    epsilon=EPSILON,
    label_smoothing=0.0,
    where=None,
    ruled_out_target="raise",
):
    """Categorical cross-entropy with integer class labels.

    .. math::

        \\ell = -(1 - a) \\log q_{y} - \\frac{a}{K} \\sum_c \\log q_c, \\qquad
        \\log q = \\operatorname{log\\_softmax}(x)
        \\;\\text{or}\\; q = \\operatorname{clip}(p / \\textstyle\\sum p, \\epsilon, 1-\\epsilon)

    Equal to :func:`categorical_crossentropy` with ``one_hot(y_true)`` (and the same
    ``label_smoothing``), but it needs only ``N`` labels instead of ``N x K`` and never
    builds the one-hot matrix.  With ``a = 0`` (the default) it is ``-log q_y``.

    From logits, a logit of ``-inf`` rules its class out: it contributes nothing and gets a
    zero gradient, label smoothing spreads over the ``K_r`` allowed classes of the row
    (``K_r`` in place of ``K`` above, the sum over those classes), and a label on a
    ruled-out class makes the loss infinite (see ``ruled_out_target``).

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
    label_smoothing : float in [0, 1], default 0
        As ``torch.nn.functional.cross_entropy(label_smoothing=a)``: the label's one-hot
        vector becomes ``(1 - a) one_hot + a / K``, computed without building it.  (Keras's
        sparse loss has no smoothing.)
    where : array_like of bool, optional
        As Optax's ``where``: the shape of ``y_true`` (one flag per sample; a sample outside
        gives 0), or with logits the shape of ``y_pred`` (an entry outside leaves the
        softmax as a ``-inf`` logit would; a sample whose label is outside gives 0, where
        Optax returns the log-normaliser of the other classes minus the label's logit).
        What lies outside contributes nothing and gets a zero gradient.
    ruled_out_target : {"raise", "inf"}, default "raise"
        A label on a class whose logit is ``-inf``: ``"raise"`` reports it as a
        :class:`~probloss.PredictionValueError` (a value check), ``"inf"`` returns ``inf``.

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
    >>> logits = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]
    >>> np.round(pl.sparse_categorical_crossentropy([0, 1], logits, from_logits=True, label_smoothing=0.1), 4)
    array([0.5137, 0.36  ], dtype=float32)
    """
    o = options(from_logits, label_smoothing, epsilon, ignore_class, ruled_out_target)
    return sparse_values(y_true, y_pred, axis, o, where)[0]


# ----------------------------------------------------------------------- tf.nn forms

_LOGITS = Options(from_logits=True)


def softmax_cross_entropy_with_logits(*, labels, logits, axis=-1, where=None):
    """``tf.nn.softmax_cross_entropy_with_logits``: ``sum(-labels * log_softmax(logits))``.

    .. math:: \\ell = \\sum_c y_c \\big(\\operatorname{LSE}(x) - x_c\\big)

    Labels may be soft; they are not renormalised.  The gradient is the true derivative
    ``sum(y) * softmax(x) - y`` (TensorFlow's fused kernel returns ``softmax(x) - y``,
    which differs when label rows do not sum to 1).  ``where`` and logits of ``-inf`` as
    in :func:`categorical_crossentropy` (``where`` as ``optax.softmax_cross_entropy``'s).

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.softmax_cross_entropy_with_logits(
    ...     labels=[[1.0, 0, 0], [0, 0.8, 0.2]], logits=[[4.0, 2, 1], [0, 5, 1]]), 6)
    array([0.169846, 0.824745], dtype=float32)
    """
    loss, names = "softmax_cross_entropy_with_logits", ("labels", "logits")
    return categorical_values(labels, logits, axis, _LOGITS, where, loss=loss, names=names)


def sparse_softmax_cross_entropy_with_logits(*, labels, logits, where=None):
    """``tf.nn.sparse_softmax_cross_entropy_with_logits``: ``LSE(logits) - logits[label]``.

    The class axis is the last one.  Labels out of ``[0, K)`` raise (TensorFlow raises on
    CPU and returns NaN on GPU).  ``where`` and logits of ``-inf`` as in
    :func:`sparse_categorical_crossentropy`.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> logits = [[2, -5, 0.5, -0.1], [0, 0, 1.9, 1.4], [-100, 100, -100, -100]]
    >>> np.round(pl.sparse_softmax_cross_entropy_with_logits(labels=[0, 3, 1], logits=logits), 4)
    array([0.2975, 1.1448, 0.    ], dtype=float32)
    """
    loss, names = "sparse_softmax_cross_entropy_with_logits", ("labels", "logits")
    return sparse_values(labels, logits, -1, _LOGITS, where, loss=loss, names=names)[0]


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
