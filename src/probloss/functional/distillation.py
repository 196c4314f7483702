"""Knowledge distillation: KL divergence, cross-entropy and Jensen-Shannon divergence
between a teacher's and a student's distributions, given as logits or log-probabilities,
softened by a temperature (Hinton, Vinyals and Dean, 2015).

Everything is computed in log space: ``log p`` and ``log q`` come from ``log_softmax``
(a max-shifted log-sum-exp) or are taken as given, probabilities are ``exp`` of
log-probabilities (never of a logit), and a zero teacher probability contributes
exactly 0 (no ``0 * -inf``), so values and gradients are finite for finite logits.
"""

from __future__ import annotations

import math
import numbers

from .. import _checks as C
from .._errors import ArgumentError
from .._ops import log_softmax
from ._common import finish, prepare

__all__ = ["distillation_cross_entropy", "distillation_kl", "js_divergence_loss"]

TEACHER_FORMS = ("logits", "log_probs", "probs")
STUDENT_FORMS = ("logits", "log_probs")

LOG_PROBS_HINT = (
    "log-probabilities are <= 0; values above 0 are almost surely logits: pass `{arg}='logits'`."
)
PROBS_HINT = "`teacher_from='probs'` expects probabilities in [0, 1]; for logits pass `teacher_from='logits'`."


def distillation_kl(
    teacher,
    student,
    *,
    temperature=1.0,
    teacher_from="logits",
    student_from="logits",
    scale_by_temperature_squared=True,
    axis=-1,
):
    """Distillation loss ``T^2 KL(p_T || q_T)`` between softened teacher and student distributions.

    .. math::

        \\ell = T^2 \\sum_{\\mathrm{axis}} p_T \\,(\\log p_T - \\log q_T), \\qquad
        \\log p_T = \\operatorname{log\\_softmax}(z_t / T), \\;
        \\log q_T = \\operatorname{log\\_softmax}(z_s / T)

    The factor ``T^2`` (``scale_by_temperature_squared=True``, Hinton et al.) keeps the
    gradients' size independent of ``T``.  At ``T = 1`` with log-probabilities on both
    sides this is exactly ``torch.nn.functional.kl_div(student, teacher,
    log_target=True, reduction="none").sum(-1)`` and
    ``optax.losses.kl_divergence_with_log_targets(student, teacher)``, value and
    gradient, except that a teacher log-probability of ``-inf`` contributes 0 here
    (NaN in both peers).

    Parameters
    ----------
    teacher : array_like, shape (..., K, ...)
        The target distribution: logits, log-probabilities or probabilities (``teacher_from``).
    student : array_like, same shape
        The model's distribution: logits or log-probabilities (``student_from``).
    temperature : float, default 1.0
        ``T > 0``; both sides are softened by it.
    teacher_from, student_from : {"logits", "log_probs"} (teacher also "probs"), default "logits"
        What the inputs hold.  Logits are divided by ``T`` and ``log_softmax``-ed.
        Log-probabilities are used as given at ``T = 1`` (not renormalised, like the
        peers, with the same gradient) and as ``log_softmax(x / T)`` otherwise
        (``p^(1/T)`` renormalised); they must be ``<= 0``.  Probabilities (teacher only)
        must lie in ``[0, 1]``; they are used as given at ``T = 1``, else as
        ``softmax(log(p) / T)``.
    scale_by_temperature_squared : bool, default True
        Multiply by ``T^2``.
    axis : int, default -1
        The class axis, summed over.

    Returns
    -------
    array, shape of the inputs without ``axis``
        Same array type, device and floating dtype as ``student``.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> teacher, student = [[2.0, 1.0, 0.1]], [[1.5, 1.2, 0.3]]
    >>> np.round(pl.distillation_kl(teacher, student), 5)
    array([0.05821], dtype=float32)
    >>> np.round(pl.distillation_kl(teacher, student, temperature=2.0), 5)
    array([0.06096], dtype=float32)
    """
    xp, lp, lq, out_dtype, axis, scale, raw = _prepare(
        teacher, student, temperature, teacher_from, student_from, scale_by_temperature_squared, axis
    )
    p = xp.exp(lp)
    kl = xp.sum(p * _where_mass(xp, p, lp - lq), axis=axis)
    return finish(xp, kl * scale if scale != 1.0 else kl, out_dtype, **raw)


def distillation_cross_entropy(
    teacher,
    student,
    *,
    temperature=1.0,
    teacher_from="logits",
    student_from="logits",
    scale_by_temperature_squared=True,
    axis=-1,
):
    """Distillation cross-entropy ``-T^2 sum p_T log q_T`` between softened distributions.

    .. math::

        \\ell = -T^2 \\sum_{\\mathrm{axis}} p_T \\log q_T
              = T^2 \\big[H(p_T) + KL(p_T \\,\\|\\, q_T)\\big]

    Options as :func:`distillation_kl`, from which it differs by the teacher's entropy
    ``T^2 H(p_T)``: the same gradient with respect to the student.  At ``T = 1`` from
    logits it is ``torch.nn.functional.cross_entropy(student, softmax(teacher),
    reduction="none")`` and ``optax.softmax_cross_entropy(student, softmax(teacher))``.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.distillation_cross_entropy([[2.0, 1.0, 0.1]], [[1.5, 1.2, 0.3]]), 5)
    array([0.90494], dtype=float32)
    """
    xp, lp, lq, out_dtype, axis, scale, raw = _prepare(
        teacher, student, temperature, teacher_from, student_from, scale_by_temperature_squared, axis
    )
    p = xp.exp(lp)
    ce = 0.0 - xp.sum(p * _where_mass(xp, p, lq), axis=axis)
    return finish(xp, ce * scale if scale != 1.0 else ce, out_dtype, **raw)


def js_divergence_loss(
    teacher,
    student,
    *,
    temperature=1.0,
    teacher_from="logits",
    student_from="logits",
    scale_by_temperature_squared=True,
    axis=-1,
):
    """Jensen-Shannon divergence between two softened distributions, as a loss (nats).

    .. math::

        \\ell = T^2 \\Big[\\tfrac12 KL(p_T \\,\\|\\, m) + \\tfrac12 KL(q_T \\,\\|\\, m)\\Big],
        \\qquad \\log m = \\operatorname{logaddexp}(\\log p_T, \\log q_T) - \\log 2

    Symmetric in its two inputs and bounded by ``T^2 log 2``: a distillation loss that
    stays finite where the student gives a class zero probability.  Options as
    :func:`distillation_kl`.  Equal to :func:`probloss.info.js_divergence` on the
    probabilities, and to the square of SciPy's ``jensenshannon`` distance (which is
    its square root).  Neither PyTorch nor Optax has it.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.js_divergence_loss([[2.0, 1.0, 0.1]], [[1.5, 1.2, 0.3]]), 5)
    array([0.01473], dtype=float32)
    """
    xp, lp, lq, out_dtype, axis, scale, raw = _prepare(
        teacher, student, temperature, teacher_from, student_from, scale_by_temperature_squared, axis
    )
    p, q = xp.exp(lp), xp.exp(lq)
    mass = (p > 0) | (q > 0)  # log m is finite there; elsewhere both terms are 0 (and so is the gradient)
    zero = xp.zeros_like(lp)
    lm = xp.logaddexp(xp.where(mass, lp, zero), xp.where(mass, lq, zero)) - math.log(2.0)
    js = 0.5 * xp.sum(p * _where_mass(xp, p, lp - lm), axis=axis)
    js = js + 0.5 * xp.sum(q * _where_mass(xp, q, lq - lm), axis=axis)
    return finish(xp, js * scale if scale != 1.0 else js, out_dtype, **raw)


# ----------------------------------------------------------------------------- helpers


def _prepare(teacher, student, temperature, teacher_from, student_from, scale_by_t2, axis):
    """``(xp, log p_T, log q_T, out_dtype, axis, scale, inputs)`` with every argument checked."""
    teacher_from = _check_form("teacher_from", teacher_from, TEACHER_FORMS)
    student_from = _check_form("student_from", student_from, STUDENT_FORMS)
    T = _check_temperature(temperature)
    scale_by_t2 = C.check_bool("scale_by_temperature_squared", scale_by_t2)
    xp, t, s, out_dtype = prepare(teacher, student, names=("teacher", "student"))
    C.check_same_shape(t, s, "distillation")
    axis = C.check_axis(axis, s.ndim, what="student")
    if C.eager(t, s):
        if teacher_from == "probs":
            C.check_range(xp, t, "teacher", 0.0, 1.0, why=PROBS_HINT)
        elif teacher_from == "log_probs":
            C.check_range(xp, t, "teacher", None, 0.0, why=LOG_PROBS_HINT.format(arg="teacher_from"))
        if student_from == "log_probs":
            C.check_range(xp, s, "student", None, 0.0, why=LOG_PROBS_HINT.format(arg="student_from"))
    lp = _log_probs(xp, t, teacher_from, T, axis)
    lq = _log_probs(xp, s, student_from, T, axis)
    return xp, lp, lq, out_dtype, axis, T * T if scale_by_t2 else 1.0, {"teacher": t, "student": s}


def _log_probs(xp, x, form, T, axis):
    if form == "logits":
        return log_softmax(x / T if T != 1.0 else x, xp, axis=axis)
    if form == "probs":  # log p, with log 0 = -inf and a finite gradient at p = 0
        has_mass = x > 0
        x = xp.where(has_mass, xp.log(xp.where(has_mass, x, xp.ones_like(x))), xp.full_like(x, -math.inf))
    if T == 1.0:
        return x
    return log_softmax(x / T, xp, axis=axis)


def _where_mass(xp, p, x):
    """``x`` where ``p > 0``, else 0: a class without mass contributes ``0 * 0``, never
    ``0 * inf`` or ``-inf - -inf`` (NaN), and passes a zero gradient."""
    return xp.where(p > 0, x, xp.zeros_like(x))


def _check_form(name, value, forms):
    if not isinstance(value, str) or value not in forms:
        msg = f"`{name}` must be one of {', '.join(repr(f) for f in forms)}; got {value!r}."
        raise ArgumentError(msg)
    return value


def _check_temperature(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) < math.inf:
        msg = f"`temperature` must be a finite number > 0; got {value!r}."
        raise ArgumentError(msg)
    return float(value)
