"""Information theory: self-information, entropy, cross-entropy, KL and JS divergence, perplexity.

These are the exact quantities the losses come from, with none of the losses' clipping:

* ``0 log 0 = 0``: an outcome with ``p = 0`` contributes nothing;
* ``q = 0`` where ``p > 0`` gives ``inf`` (cross-entropy, KL), as in :func:`scipy.special.rel_entr`;
* nothing is renormalised silently: rows along ``axis`` must sum to 1 (within a tolerance
  that depends on the dtype, see below) unless ``normalize=True`` divides each row by its
  sum first (what :func:`scipy.stats.entropy` always does).

Every function takes ``base=``: ``None`` for nats (natural logarithm), ``2`` for bits,
``10`` for hartleys (any positive number other than 1 works).  All of them are written with
``xp.*`` calls only, so they run on NumPy, PyTorch, JAX and CuPy arrays, return the caller's
array type, trace under ``jax.jit`` and ``torch.compile``, and are differentiable.

Gradients are finite wherever the value is: at ``p = 0`` the derivative of ``0 log 0`` is
taken as 0 (the one-sided limit is infinite), so a zero in ``p`` never turns a gradient
into NaN.

Value checks (finite, non-negative, rows summing to 1) run in eager mode only, like the
rest of probloss (see :func:`probloss.set_value_checks`); under a JIT a bad row simply
gives the formula's value.  Bad values in ``p`` raise
:class:`~probloss.LabelValueError`, bad values in ``q`` raise
:class:`~probloss.PredictionValueError`; both are :class:`~probloss.ProblossError`.

Inputs keep their array type, device and floating dtype; Python lists become float32 NumPy
arrays (as everywhere in probloss), integer inputs such as counts (with ``normalize=True``)
are computed in float32 unless the other input is floating, and float16 / bfloat16 are
computed in float32 and cast back.

The row-sum tolerance is ``|sum - 1| <= max(sqrt(eps), 1e-6)`` with ``eps`` the machine
epsilon of the input dtype: about 3.5e-4 for float32, 1e-6 for float64, 0.03 for float16.

Examples
--------
>>> import numpy as np
>>> from probloss import info
>>> p, q = np.array([0.4, 0.6]), np.array([0.3, 0.7])
>>> round(float(info.kl_divergence(p, q)), 6)
0.022582
>>> round(float(info.cross_entropy(p, q) - info.entropy(p)), 6)
0.022582
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _checks as C
from ._compat import _is_array, as_array, is_half, namespace
from ._errors import ArgumentError, LabelValueError, PredictionValueError, ProblossTypeError, ShapeError
from ._ops import xlogy

__all__ = [
    "cross_entropy",
    "entropy",
    "js_divergence",
    "kl_divergence",
    "perplexity",
    "self_information",
]


# ------------------------------------------------------------------------------ helpers


def _check_base(base):
    """``None`` or a finite real number > 0 other than 1; returned as a float (or None)."""
    if base is None:
        return None
    ok = isinstance(base, numbers.Real) and not isinstance(base, bool) and math.isfinite(base)
    if not ok or base <= 0 or base == 1:
        msg = (
            f"`base` must be None (natural log: nats), 2 (bits), 10 (hartleys) or another "
            f"positive number other than 1; got {base!r}."
        )
        raise ArgumentError(msg)
    return float(base)


def _in_base(values, base):
    # ``+ 0.0`` turns the -0.0 of a sure outcome (-1 * log 1) into 0.0.
    return (values if base is None else values / math.log(base)) + 0.0


def _check_normalize(normalize):
    return C.check_bool("normalize", normalize)


def _prepare(**arrays):
    """Convert the named inputs to one namespace and one floating compute dtype.

    Returns ``(xp, [arrays...], out_dtype)``.  Python lists become NumPy arrays (floats as
    float32, like the rest of probloss); integer and boolean inputs become float32 unless
    another input is floating, in which case they take its dtype; float16 and bfloat16 are
    computed in float32 and the result is cast back.
    """
    xp = namespace(*arrays.values())
    like = next((a for a in arrays.values() if _is_array(a)), None)
    converted = []
    for name, x in arrays.items():
        a = as_array(x, xp, like=like, name=name)
        if xp.isdtype(a.dtype, "complex floating"):
            msg = f"`{name}` must be real probabilities; got complex dtype {a.dtype}."
            raise ProblossTypeError(msg)
        converted.append(a)
    floats = [a.dtype for a in converted if xp.isdtype(a.dtype, "real floating")]
    out_dtype = xp.result_type(*floats) if floats else xp.float32
    compute = xp.float32 if is_half(out_dtype) else out_dtype
    converted = [a if a.dtype == compute else xp.astype(a, compute) for a in converted]
    return xp, converted, out_dtype


def _finish(xp, values, out_dtype):
    return values if values.dtype == out_dtype else xp.astype(values, out_dtype)


def _broadcast_shape(shapes, names):
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            desc = " and ".join(f"`{n}` of shape {tuple(s)}" for n, s in zip(names, shapes))
            msg = f"{desc} do not broadcast together; give them the same shape (one distribution per row)."
            raise ShapeError(msg)
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _check_axis(axis, shape, what):
    if len(shape) == 0:
        msg = (
            f"`{what}` is a scalar; a distribution needs at least one dimension holding its "
            "outcomes (e.g. [0.25, 0.75]). For the information of one event use "
            "`self_information`."
        )
        raise ShapeError(msg)
    return C.check_axis(axis, len(shape), what=what)


def _to_numpy(x):
    """A host NumPy copy of ``x``, for error messages only."""
    if hasattr(x, "detach"):  # torch, possibly requiring grad or on a GPU
        return x.detach().cpu().numpy()
    if hasattr(x, "get") and not isinstance(x, np.ndarray):  # CuPy
        return x.get()
    return np.asarray(x)


def _first_true(bad) -> tuple:
    """Index of the first True element of a boolean array (``()`` for a 0-d array)."""
    return tuple(int(i) for i in np.argwhere(_to_numpy(bad))[0])


def _sum_tolerance(xp, dtype) -> float:
    return max(math.sqrt(float(xp.finfo(dtype).eps)), 1e-6)


def _check_distribution(xp, x, name, axis, normalize, in_dtype, shown_axis):
    """Eager value checks on one distribution argument (skipped under a JIT)."""
    if not C.concrete(x):
        return
    error = LabelValueError if name == "p" else PredictionValueError
    bad = ~xp.isfinite(x) | (x < 0)
    if not C.concrete(bad):  # a concrete array captured by a jitted function still traces
        return
    if bool(xp.any(bad)):
        pos = _first_true(bad)
        msg = (
            f"`{name}` holds {float(_to_numpy(x)[pos]):g} at index {pos}; probabilities must be finite and >= 0. "
            "If these are logits, apply softmax first; if they are log-probabilities, apply exp."
        )
        raise error(msg)
    sums = xp.sum(x, axis=axis)
    if normalize:
        bad = sums <= 0
        if bool(xp.any(bad)):
            pos = _first_true(bad)
            msg = (
                f"`{name}` has an all-zero row at index {pos} along axis {shown_axis}; it cannot be "
                "normalized to a distribution. Drop it, or give it at least one positive weight."
            )
            raise error(msg)
        return
    tol = _sum_tolerance(xp, in_dtype)
    bad = xp.abs(sums - 1.0) > tol
    if bool(xp.any(bad)):
        pos = _first_true(bad)
        total = float(_to_numpy(sums)[pos])
        where = f"the row at index {pos}" if pos else "it"
        msg = (
            f"`{name}` must hold probability distributions along axis {shown_axis} (each summing to 1 "
            f"within {tol:.2g} for {in_dtype}), but {where} sums to {total:.6g}. Pass "
            "`normalize=True` to divide each row by its sum (as scipy.stats.entropy does), or "
            "fix the input; probloss never renormalises silently."
        )
        raise error(msg)


def _normalized(xp, x, axis, normalize):
    return x / xp.sum(x, axis=axis, keepdims=True) if normalize else x


def _prepare_pair(p, q, axis, normalize):
    """Shared front end of the two-distribution functions."""
    normalize = _check_normalize(normalize)
    xp, (p, q), out_dtype = _prepare(p=p, q=q)
    shape = _broadcast_shape([p.shape, q.shape], ["p", "q"])
    shown_axis, axis = axis, _check_axis(axis, shape, "p")
    p, q = xp.broadcast_arrays(p, q) if tuple(p.shape) != tuple(q.shape) else (p, q)
    for name, x in (("p", p), ("q", q)):
        _check_distribution(xp, x, name, axis, normalize, out_dtype, shown_axis)
    return xp, _normalized(xp, p, axis, normalize), _normalized(xp, q, axis, normalize), out_dtype, axis


def _prepare_one(p, axis, normalize):
    normalize = _check_normalize(normalize)
    xp, (p,), out_dtype = _prepare(p=p)
    shown_axis, axis = axis, _check_axis(axis, p.shape, "p")
    _check_distribution(xp, p, "p", axis, normalize, out_dtype, shown_axis)
    return xp, _normalized(xp, p, axis, normalize), out_dtype, axis


def _rel_entr(xp, p, q):
    """Elementwise ``p log(p / q)``: 0 where ``p == 0``, ``inf`` where ``p > 0 == q``.

    The logarithm and the division only ever see safe arguments (no NumPy warnings, and
    finite gradients where ``p == 0``).
    """
    positive = p > 0
    finite = positive & (q > 0)
    one = xp.ones_like(p)
    ratio = xp.where(finite, p, one) / xp.where(finite, q, one)
    inf = xp.full_like(p, math.inf)
    return xp.where(finite, p * xp.log(ratio), xp.where(positive, inf, xp.zeros_like(p)))


def _cross_terms(xp, p, q):
    """Elementwise ``-p log q``: 0 where ``p == 0``, ``inf`` where ``p > 0 == q``."""
    positive = p > 0
    finite = positive & (q > 0)
    log_q = xp.log(xp.where(finite, q, xp.ones_like(q)))
    inf = xp.full_like(p, math.inf)
    return xp.where(finite, -p * log_q, xp.where(positive, inf, xp.zeros_like(p)))


def _surprisal(xp, p):
    """Elementwise ``-log p`` with ``-log 0 = inf`` and no warning."""
    positive = p > 0
    return xp.where(positive, -xp.log(xp.where(positive, p, xp.ones_like(p))), xp.full_like(p, math.inf))


def _kl(xp, p, q, axis):
    return xp.sum(_rel_entr(xp, p, q), axis=axis)


# ---------------------------------------------------------------------------- functions


def self_information(p, *, base=None):
    """Self-information (surprisal) of events with probability ``p``, elementwise.

    .. math:: I(p) = -\\log_b p

    An event that was sure to happen (``p = 1``) carries no information; an impossible
    one (``p = 0``) carries ``inf``.  The loss of one sample under sparse categorical
    cross-entropy is the self-information of its true class.

    Parameters
    ----------
    p : array_like, any shape
        Probabilities in [0, 1].
    base : float or None, default None
        Logarithm base: ``None`` for nats, ``2`` for bits, ``10`` for hartleys.

    Returns
    -------
    array, shape of ``p``
        Same array type, device and dtype as ``p`` (float32 for lists).

    Raises
    ------
    LabelValueError
        A value outside [0, 1] or not finite (eager mode).
    ArgumentError
        An invalid ``base``.

    Examples
    --------
    >>> import numpy as np
    >>> from probloss import info
    >>> info.self_information(np.array([1.0, 0.5, 0.25, 0.0]), base=2)
    array([ 0.,  1.,  2., inf])
    >>> round(float(info.self_information(np.array(0.6))), 4)  # -log 0.6: the guide's 5-class example
    0.5108
    """
    base = _check_base(base)
    xp, (p,), out_dtype = _prepare(p=p)
    if C.concrete(p):
        bad = ~xp.isfinite(p) | (p < 0) | (p > 1)
        if C.concrete(bad) and bool(xp.any(bad)):
            pos = _first_true(bad)
            msg = (
                f"`p` holds {float(_to_numpy(p)[pos]):g}{f' at index {pos}' if pos else ''}; a probability must lie in "
                "[0, 1]. If these are logits, apply sigmoid or softmax first."
            )
            raise LabelValueError(msg)
    return _finish(xp, _in_base(_surprisal(xp, p), base), out_dtype)


def entropy(p, *, axis=-1, base=None, normalize=False):
    """Shannon entropy of the distributions along ``axis``.

    .. math:: H(p) = -\\sum_i p_i \\log_b p_i, \\qquad 0 \\log 0 = 0

    It ranges from 0 (a sure outcome) to ``log_b K`` (``K`` equally likely outcomes).

    Parameters
    ----------
    p : array_like, shape (..., K, ...)
        Probabilities; each slice along ``axis`` must sum to 1 unless ``normalize``.
    axis : int, default -1
        The axis holding the outcomes (SciPy's default is 0; ours is the class axis).
    base : float or None, default None
        ``None`` for nats, ``2`` for bits, ``10`` for hartleys.
    normalize : bool, default False
        Divide each slice by its sum first (what :func:`scipy.stats.entropy` does).

    Returns
    -------
    array, shape of ``p`` without ``axis``

    Raises
    ------
    LabelValueError
        Negative or non-finite values, or (without ``normalize``) a slice not summing to 1.

    Examples
    --------
    >>> import numpy as np
    >>> from probloss import info
    >>> info.entropy(np.array([[0.5, 0.5], [1.0, 0.0]]), base=2)
    array([1., 0.])
    >>> round(float(info.entropy(np.array([1, 2, 3]), normalize=True)), 4)  # = scipy.stats.entropy([1, 2, 3])
    1.0114
    """
    base = _check_base(base)
    xp, p, out_dtype, axis = _prepare_one(p, axis, normalize)
    return _finish(xp, _in_base(-xp.sum(xlogy(p, p, xp), axis=axis), base), out_dtype)


def cross_entropy(p, q, *, axis=-1, base=None, normalize=False):
    """Cross-entropy of ``q`` relative to ``p``: the expected surprisal of ``q`` under ``p``.

    .. math:: H(p, q) = -\\sum_i p_i \\log_b q_i = H(p) + D_{KL}(p \\,\\|\\, q)

    With one-hot ``p`` this is the categorical cross-entropy loss without clipping:
    ``-log q[true class]``.  It is ``inf`` where ``q_i = 0 < p_i``.

    Parameters
    ----------
    p : array_like, shape (..., K, ...)
        The reference ("true") distributions.
    q : array_like, broadcastable with ``p``
        The model's distributions.
    axis : int, default -1
    base : float or None, default None
    normalize : bool, default False
        Divide each slice of ``p`` and of ``q`` by its sum first.

    Returns
    -------
    array, broadcast shape of ``p`` and ``q`` without ``axis``

    Raises
    ------
    LabelValueError, PredictionValueError
        Bad values in ``p`` (resp. ``q``): negative, not finite, or not summing to 1.
    ShapeError
        ``p`` and ``q`` do not broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> from probloss import info
    >>> y = np.array([0, 0, 0, 1.0, 0])          # 5 classes, the true one is 4
    >>> q = np.array([0.1, 0.15, 0.05, 0.6, 0.1])
    >>> round(float(info.cross_entropy(y, q)), 4)  # -log 0.6
    0.5108
    >>> float(info.cross_entropy(np.array([0.5, 0.5]), np.array([1.0, 0.0])))
    inf
    """
    base = _check_base(base)
    xp, p, q, out_dtype, axis = _prepare_pair(p, q, axis, normalize)
    return _finish(xp, _in_base(xp.sum(_cross_terms(xp, p, q), axis=axis), base), out_dtype)


def kl_divergence(p, q, *, axis=-1, base=None, normalize=False):
    """Kullback-Leibler divergence ``KL(p || q)``, the relative entropy of ``p`` to ``q``.

    .. math:: D_{KL}(p \\,\\|\\, q) = \\sum_i p_i \\log_b \\frac{p_i}{q_i}, \\qquad
              0 \\log \\tfrac{0}{q} = 0, \\quad p \\log \\tfrac{p}{0} = \\infty \\;(p > 0)

    It is >= 0, zero only when ``p == q``, and not symmetric.  Elementwise it is
    :func:`scipy.special.rel_entr`.  Unlike :func:`probloss.kl_divergence` (Keras's loss,
    which clips both inputs to ``[1e-7, 1]``), nothing is clipped here.

    Parameters
    ----------
    p, q : array_like, broadcastable shapes (..., K, ...)
        Distributions along ``axis``.
    axis : int, default -1
    base : float or None, default None
    normalize : bool, default False

    Returns
    -------
    array, broadcast shape without ``axis``

    Raises
    ------
    LabelValueError, PredictionValueError
        Bad values in ``p`` (resp. ``q``).

    Examples
    --------
    >>> import numpy as np
    >>> from probloss import info
    >>> P, Q = np.array([0.4, 0.6]), np.array([0.3, 0.7])   # the Keras walkthrough's example
    >>> round(float(info.kl_divergence(P, Q)), 6)
    0.022582
    >>> round(float(info.kl_divergence(Q, P)), 6)          # not symmetric
    0.021601
    """
    base = _check_base(base)
    xp, p, q, out_dtype, axis = _prepare_pair(p, q, axis, normalize)
    return _finish(xp, _in_base(_kl(xp, p, q, axis), base), out_dtype)


def js_divergence(p, q, *, axis=-1, base=None, normalize=False):
    """Jensen-Shannon divergence: the symmetric, always finite mean KL to the midpoint.

    .. math:: JS(p, q) = \\tfrac12 D_{KL}(p \\,\\|\\, m) + \\tfrac12 D_{KL}(q \\,\\|\\, m),
              \\qquad m = \\tfrac12 (p + q)

    It lies in ``[0, log_b 2]`` (at most 1 bit).  Note that
    :func:`scipy.spatial.distance.jensenshannon` returns its square root (a metric).

    Parameters
    ----------
    p, q : array_like, broadcastable shapes (..., K, ...)
    axis : int, default -1
    base : float or None, default None
    normalize : bool, default False

    Returns
    -------
    array, broadcast shape without ``axis``

    Examples
    --------
    >>> import numpy as np
    >>> from probloss import info
    >>> float(info.js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0]), base=2))
    1.0
    """
    base = _check_base(base)
    xp, p, q, out_dtype, axis = _prepare_pair(p, q, axis, normalize)
    m = 0.5 * (p + q)
    js = 0.5 * _kl(xp, p, m, axis) + 0.5 * _kl(xp, q, m, axis)
    return _finish(xp, _in_base(js, base), out_dtype)


def perplexity(p, q=None, *, axis=-1, base=None, normalize=False):
    """Perplexity: the exponential of the entropy, or of the cross-entropy when ``q`` is given.

    .. math::

        \\mathrm{PP}(p) = b^{H_b(p)} = e^{H(p)}, \\qquad
        \\mathrm{PP}(p, q) = b^{H_b(p, q)} = e^{H(p, q)}

    ``perplexity(p)`` is the effective number of equally likely outcomes of ``p`` (``K``
    for a uniform distribution over ``K``, 1 for a sure outcome).  ``perplexity(p, q)`` is
    the perplexity of a model ``q`` on data ``p``: with one-hot ``p`` it is ``1 / q[true
    class]``.  One value per distribution is returned.

    For a language model the *corpus* perplexity is the exponential of the **mean**
    per-token cross-entropy, not the mean of per-token perplexities: compute
    ``exp(mean(cross_entropy(p, q)))`` (or ``exp(mean(loss))`` from any probloss
    cross-entropy loss in nats), as the example shows.

    Parameters
    ----------
    p : array_like, shape (..., K, ...)
        Distributions (the data, when ``q`` is given).
    q : array_like or None, default None
        The model's distributions, broadcastable with ``p``.
    axis : int, default -1
    base : float or None, default None
        Accepted (and validated) for a uniform signature; the value does not depend on it,
        since ``b ** H_b = e ** H``.
    normalize : bool, default False

    Returns
    -------
    array, shape without ``axis``

    Examples
    --------
    >>> import numpy as np
    >>> from probloss import info
    >>> round(float(info.perplexity(np.full(6, 1 / 6))), 6)  # a fair die: 6 outcomes
    6.0
    >>> tokens = np.eye(4)[[0, 2, 1]]                      # one-hot next tokens
    >>> model = np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.1, 0.4, 0.4], [0.25, 0.25, 0.25, 0.25]])
    >>> info.perplexity(tokens, model)                     # per token: 1 / q[true token]
    array([2. , 2.5, 4. ])
    >>> round(float(np.exp(np.mean(info.cross_entropy(tokens, model)))), 4)  # corpus perplexity
    2.7144
    """
    _check_base(base)
    if q is None:
        xp, p, out_dtype, axis = _prepare_one(p, axis, normalize)
        h = -xp.sum(xlogy(p, p, xp), axis=axis)
    else:
        xp, p, q, out_dtype, axis = _prepare_pair(p, q, axis, normalize)
        h = xp.sum(_cross_terms(xp, p, q), axis=axis)
    return _finish(xp, xp.exp(h), out_dtype)
