"""Softmax cross-entropy from logits when some classes are ruled out (a logit of ``-inf``).

Constrained decoding and action masking set the logits of forbidden classes to ``-inf``:
their probability is exactly 0.  The rules, on every backend:

* ``0 * (-inf)`` counts as 0: a class with no target weight contributes nothing to the
  loss, and every ruled-out class gets a zero gradient.  A row whose every logit is
  ``-inf`` (nothing allowed, e.g. padding) with zero targets gives 0.
* Target weight on a ruled-out class makes the loss ``+inf`` (the model gives the target
  probability 0).  ``ruled_out_target="raise"`` (the default) reports it as a
  :class:`~probloss.PredictionValueError` naming the target and the logit (a value
  check: eagerly, or when a jitted program runs; with value checks off the loss is
  ``inf``); ``ruled_out_target="inf"`` returns ``inf``.
* Label smoothing spreads its mass ``a`` over the *allowed* classes only,
  ``q = (1 - a) t + a / K_r`` on the ``K_r`` classes whose logit is not ``-inf``; with
  nothing ruled out that is Keras's (and torch's) ``(1 - a) t + a / K``.  (torch's
  ``F.cross_entropy(label_smoothing=a)`` returns ``inf`` for any row with a ``-inf``
  logit, and NaN for probability targets with a 0 on a ``-inf`` class.)
* NaN and ``+inf`` logits are still errors.

The generic formulas here are written with ``xp.*`` calls only; with ``m`` the row max
(0 where it is not finite), ``d = x - m`` and ``s = sum(exp(d))`` (1 where it is 0, which
happens only when every logit of the row is ``-inf``)::

    sum_c u_c (lse - x_c) = U log(s) - sum_{c: u_c != 0} u_c d_c,    U = sum_c u_c

Both terms are >= 0 for ``u >= 0``, so nothing cancels.
"""

from __future__ import annotations

import math
import numbers

from .. import _checks as C
from .. import _deferred
from .._compat import device_of, is_jax_tracer, is_traced
from .._errors import ArgumentError, PredictionValueError, ShapeError
from .._ops import take_along_axis

__all__ = [
    "RULED_OUT_TARGETS",
    "check_class_count",
    "check_pos_weight",
    "check_ruled_out_target",
    "check_weights",
    "class_weights",
    "finish_logits",
    "shifted",
    "smooth_allowed",
    "smoothing_term",
    "soft_logits",
    "sparse_logits",
]

RULED_OUT_TARGETS = ("raise", "inf")

RULED_OUT_HINT = (
    "the model gives that class probability 0 (it is ruled out), so the cross-entropy is infinite. "
    "Fix the target, or the mask that set the logit to -inf, or pass ruled_out_target='inf' to get "
    "an infinite loss there instead of this error."
)


# --------------------------------------------------------------------------- arguments


def check_ruled_out_target(value) -> str:
    """``ruled_out_target`` is ``"raise"`` or ``"inf"``."""
    if not isinstance(value, str) or value not in RULED_OUT_TARGETS:
        msg = (
            "`ruled_out_target` must be 'raise' (an error when a target sits on a class whose logit is -inf) "
            f"or 'inf' (an infinite loss there); got {_short(value)}."
        )
        raise ArgumentError(msg)
    return value


def check_weights(name: str, value, what: str):
    """``None``, or a list, tuple or 1-D array of finite numbers >= 0, as a tuple of floats.

    ``what`` names what one weight belongs to, for the message ("class").
    """
    if value is None:
        return None
    items = value.tolist() if hasattr(value, "tolist") and not isinstance(value, (list, tuple)) else value
    if not isinstance(items, (list, tuple)):
        msg = f"`{name}` must be a list of numbers >= 0, one per {what}; got {_short(value)}."
        raise ArgumentError(msg)
    out = []
    for i, w in enumerate(items):
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            msg = f"`{name}` must hold finite numbers >= 0, one per {what}; entry {i} is {_short(w)}."
            raise ArgumentError(msg)
        out.append(float(w))
    if not out:
        msg = f"`{name}` is empty; give one weight per {what}."
        raise ArgumentError(msg)
    return tuple(out)


def check_pos_weight(value):
    """``pos_weight``: ``None``, a finite number >= 0, or a list of them (one per entry of the last axis)."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            msg = f"`pos_weight` must be a finite number >= 0, or a list of them (one per class); got {value!r}."
            raise ArgumentError(msg)
        return float(value)
    return check_weights("pos_weight", value, "class (entry of the last axis)")


def check_class_count(name: str, weights, num_classes: int, loss: str):
    """One weight per class: ``len(weights) == num_classes`` (a :class:`ShapeError` otherwise)."""
    if weights is not None and len(weights) != num_classes:
        msg = (
            f"{loss}: `{name}` has {len(weights)} weights but `y_pred` has {num_classes} classes; "
            "give one weight per class, in class order."
        )
        raise ShapeError(msg)


def class_weights(xp, weights, like, axis: int | None = None):
    """``weights`` (a tuple) as an array of ``like``'s dtype and device, laid along ``axis``
    of an array of ``like``'s rank (``axis=None``: 1-D)."""
    w = xp.asarray(weights, dtype=like.dtype, device=device_of(like))
    if axis is None:
        return w
    return xp.reshape(w, (len(weights),) + (1,) * (like.ndim - 1 - axis))


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------- formulas


def shifted(xp, x, axis: int):
    """``(d, log_s)``: ``d = x - m`` with ``m`` the row max (0 where not finite), and
    ``log(s)`` with ``s = sum(exp(d))`` (kept axis; ``log(1) = 0`` for rows of ``-inf`` only).

    ``lse(x) = m + log_s`` and ``lse(x) - x_c = log_s - d_c``.  The ``where`` on ``s`` keeps
    the value and the gradient of a row of ``-inf`` finite.
    """
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    d = x - m
    s = xp.sum(xp.exp(d), axis=axis, keepdims=True)
    return d, xp.log(xp.where(s == 0, xp.ones_like(s), s))  # (NaN stays NaN)


def smooth_allowed(xp, t, x, axis: int, a: float):
    """``(1 - a) t + a / K_r`` on the classes whose logit is not ``-inf`` (``K_r`` per row), 0 elsewhere."""
    if not a:
        return t
    allowed = xp.astype(x != -math.inf, t.dtype)
    k = xp.sum(allowed, axis=axis, keepdims=True)
    return t * (1.0 - a) + allowed * (a / xp.where(k > 0, k, xp.ones_like(k)))


def soft_logits(xp, t, x, axis: int, a: float = 0.0, w=None, *, shift=None):
    """``sum_c w_c q_c (lse(x) - x_c)``, ``q`` the targets smoothed over the allowed classes.

    ``w`` is ``None`` or the class weights laid along ``axis``; ``t`` must be >= 0 (the
    caller checks).  ``shift`` is ``shifted(xp, x, axis)`` when the caller has it (JAX
    computes it with the max outside the gradient).  Returns the per-row losses
    (``axis`` removed).
    """
    d, log_s = shifted(xp, x, axis) if shift is None else shift
    zero = xp.zeros_like(d)
    u = t if w is None else t * w
    # 0 * (-inf) counts as 0: the where keeps d finite where u is 0, for the value and for
    # the gradient with respect to u (a where after the product would leak 0 * inf = NaN)
    loss = xp.sum(u, axis=axis, keepdims=True) * log_s - xp.sum(u * xp.where(u == 0, zero, d), axis=axis, keepdims=True)
    if a:
        loss = (1.0 - a) * loss + a * _smoothing(xp, d, log_s, axis, w)
    return xp.squeeze(loss, axis=axis)


def _smoothing(xp, d, log_s, axis, w):
    """``(1 / K_r) sum_{allowed c} w_c (lse - x_c)`` (kept axis), 0 for a row with nothing allowed."""
    allowed = d != -math.inf  # (NaN counts as allowed, so that it reaches the loss)
    zero = xp.zeros_like(d)
    k = xp.sum(xp.astype(allowed, d.dtype), axis=axis, keepdims=True)
    wa = xp.astype(allowed, d.dtype) if w is None else xp.where(allowed, w * xp.ones_like(d), zero)
    total = xp.sum(wa, axis=axis, keepdims=True) * log_s - xp.sum(wa * xp.where(allowed, d, zero), axis=axis, keepdims=True)
    return total / xp.where(k > 0, k, xp.ones_like(k))


def smoothing_term(xp, x, axis: int, w=None):
    """Per row ``(1 / K_r) sum_{allowed c} w_c (lse(x) - x_c)``: label smoothing's part of the
    sparse cross-entropy (``axis`` removed)."""
    d, log_s = shifted(xp, x, axis)
    return xp.squeeze(_smoothing(xp, d, log_s, axis, w), axis=axis)


def sparse_logits(xp, labels, x, axis: int, a: float = 0.0, w=None, *, shift=None):
    """``(1 - a) w_y (lse(x) - x_y) + (a / K_r) sum_{allowed c} w_c (lse(x) - x_c)``.

    ``labels`` lie in ``[0, K)``; ``w`` is ``None`` or the 1-D class weights; ``shift`` as
    in :func:`soft_logits`.  A label on a ruled-out class gives ``+inf``; a row of
    ``-inf`` only gives ``+inf`` too, never NaN.
    """
    d, log_s = shifted(xp, x, axis) if shift is None else shift
    loss = xp.squeeze(log_s, axis=axis) - take_along_axis(d, labels, xp, axis=axis)
    if w is not None:
        loss = loss * _gather(xp, w, labels)
    if a:
        wk = None if w is None else xp.reshape(w, (w.shape[0],) + (1,) * (x.ndim - 1 - axis))
        loss = (1.0 - a) * loss + a * xp.squeeze(_smoothing(xp, d, log_s, axis, wk), axis=axis)
    return loss


def _gather(xp, w, labels):
    """``w[labels]`` for a 1-D ``w`` (``xp.take`` takes 1-D indices only)."""
    return xp.reshape(xp.take(w, xp.reshape(labels, (-1,)), axis=0), labels.shape)


# ------------------------------------------------------------------------ result check


def finish_logits(xp, values, out_dtype, o, target, x, axis: int, *, sparse: bool, names=("y_true", "y_pred")):
    """The result check of a softmax cross-entropy from logits, then the cast to ``out_dtype``.

    Logits of ``-inf`` are allowed.  The loss is finite unless a target sits on such a
    class: with ``o.ruled_out_target == "inf"`` that ``+inf`` is accepted, with
    ``"raise"`` it is reported, naming the target and the logit.  NaN and ``+inf``
    logits, and non-finite targets, are always reported.  Only a failing call scans the
    inputs; a passing one reads the per-sample losses (or their mean) once.  Inside a
    compiled program (``jax.jit``, ``torch.compile``) the per-sample values are tested
    and the message names the sample.
    """
    if C.known_finite(values):  # NumPy and all finite: nothing staged or deferred either
        return values if values.dtype == out_dtype else xp.astype(values, out_dtype)
    if C.eager(values):  # (computed from the inputs: traced when they are)
        if _deferred.applies(values):  # CUDA: read later, without stopping the device
            _deferred.result(values, names[1:] if sparse else names, allow_inf=o.ruled_out_target == "inf")
        else:
            _check(xp, values, o.ruled_out_target, target, x, axis, sparse, names)
    values = C.attach_checks(values)
    return values if values.dtype == out_dtype else xp.astype(values, out_dtype)


def _check(xp, values, ruled_out, target, x, axis, sparse, names):
    if is_jax_tracer(values) or is_jax_tracer(x):  # tested when the program runs: the sample is named
        bad = xp.any(xp.isnan(values)) if ruled_out == "inf" else ~xp.all(xp.isfinite(values))
        C.verify(xp, bad, _report_staged, (values,), names=names, ruled_out=ruled_out)
        return
    if _compiling(values):  # (torch.compile runs the reports it knows: the generic one)
        if ruled_out == "inf":  # an infinite loss is a result here: test the others
            values = xp.where(values == math.inf, xp.zeros_like(values), values)
        inputs = {names[1]: x} if sparse else {names[0]: target, names[1]: x}
        C.check_result_finite(xp, values, **inputs)
        return
    if values.ndim == 0 and hasattr(values, "detach"):  # a torch fused mean: read it as a Python float
        try:
            value = values.detach().item()
        except RuntimeError as exc:  # torch.func.vmap: no single value to read
            if "vmap" in str(exc):
                return
            raise
        if math.isfinite(value):
            return
        has_nan = math.isnan(value)
    else:
        if C.truth(xp.all(xp.isfinite(values)), True):
            return
        has_nan = C.truth(xp.any(xp.isnan(values)), False)
    _raise_bad_logits(xp, x, names[1])
    if not sparse:
        C._raise_nonfinite(xp, target, names[0])
    if ruled_out == "raise":
        _raise_ruled_out_target(xp, target, x, axis, sparse, names)
    elif not has_nan:
        return  # +inf from targets on ruled-out classes: the loss the caller asked for
    msg = "the loss is not finite although every input is; please report this with the inputs."
    raise PredictionValueError(msg)


def _report_staged(xp, values, names, ruled_out):
    """The error of a failed test inside a JAX program: it sees the per-sample values only."""
    pos = C._first_bad(xp, xp.isnan(values) if ruled_out == "inf" else ~xp.isfinite(values))
    if pos is None:  # (vmap runs this for every batch)
        return
    at = pos[0] if len(pos) == 1 else pos
    where = f"the loss of sample {at} is {C._value_at(values, pos)}" if pos else f"the loss is {C._value_at(values, pos)}"
    ruled = "" if ruled_out == "inf" else (
        f", or `{names[0]}` puts weight on a class whose logit is -inf there (a ruled-out class: pass "
        "ruled_out_target='inf' to get an infinite loss instead)"
    )
    msg = (
        f"{where}: `{names[1]}` holds NaN or +inf there{ruled}. Run the step without compiling it to see the element."
    )
    raise PredictionValueError(msg)


def _compiling(values) -> bool:
    """True while ``torch.compile`` traces (the values have no numbers yet)."""
    return is_traced(values) and not is_jax_tracer(values)


def _raise_bad_logits(xp, x, name):
    found = C._find(xp, x, lambda block: xp.isnan(block) | (block == math.inf))
    if found is not None:
        pos, value = found
        msg = (
            f"`{name}` contains {value} at index {pos}; logits must be finite, or -inf for a class that is "
            "ruled out. Find where the NaN/inf first appears upstream (a division by zero, log(0), an overflow)."
        )
        raise PredictionValueError(msg)


def _raise_ruled_out_target(xp, target, x, axis, sparse, names):
    """Name the first target on a class whose logit is -inf (a failing call only)."""
    t_name, x_name = names
    if sparse:
        pos = C._first_bad(xp, take_along_axis(x, target, xp, axis=axis) == -math.inf)
        if pos is None:
            return
        label = int(C._value_at(target, pos))
        x_pos = pos[:axis] + (label,) + pos[axis:]
        msg = f"`{t_name}` holds class {label} at index {pos}, but `{x_name}` is -inf at index {x_pos}: {RULED_OUT_HINT}"
    else:
        pos = C._first_bad(xp, (target > 0) & (x == -math.inf))
        if pos is None:
            return
        msg = (
            f"`{t_name}` puts weight {C._value_at(target, pos):g} on class {pos[axis]} at index {pos}, but "
            f"`{x_name}` is -inf there: {RULED_OUT_HINT}"
        )
    raise PredictionValueError(msg)
