"""Connectionist temporal classification (CTC): Keras's ``ctc`` and a general ``ctc_loss``.

CTC scores an unsegmented label sequence ``l`` (length ``L``) against ``T`` frames of
per-class scores.  An *alignment* is a frame-by-frame path ``pi`` over the classes plus a
blank; it *collapses* to ``l`` when merging repeated symbols and then removing blanks
gives ``l`` (so a repeated label needs a blank between its two copies).  The loss is the
negative log-likelihood of all such paths (Graves et al., 2006):

.. math::

    \\ell = -\\log \\sum_{\\pi \\in \\mathcal{B}^{-1}(l)} \\prod_{t=1}^{T} p_t(\\pi_t)

It is computed by the forward (alpha) recursion over the extended sequence
``l' = (b, l_1, b, l_2, ..., b, l_L, b)`` of length ``2L + 1`` (``b`` is the blank):

.. math::

    \\alpha_1(s) = \\log p_1(l'_s) \\;(s \\le 2), \\qquad
    \\alpha_t(s) = \\log p_t(l'_s) + \\operatorname{LSE}\\big(\\alpha_{t-1}(s),
    \\alpha_{t-1}(s-1), [\\alpha_{t-1}(s-2)]\\big)

where the ``s - 2`` term is present only when ``l'_s`` is a label different from
``l'_{s-2}``, and ``\\ell = -\\operatorname{LSE}(\\alpha_T(2L+1), \\alpha_T(2L))``.
Everything runs in log space, vectorised over the batch and the ``2L + 1`` positions,
with one loop over time; gradients come from the caller's framework (autograd in
PyTorch, ``jax.grad``).

Implementation choices (also in ``docs/ctc.md``):

* "Log zero" inside the recursion is the finite sentinel ``-1e30`` rather than ``-inf``,
  so that no ``exp(-inf - (-inf))`` ever appears and gradients stay finite.  A final
  log-likelihood below ``-1e29`` means "no alignment": the loss is ``+inf`` (PyTorch,
  TensorFlow), or 0 with ``zero_infinity=True``.  In both cases the gradient of that
  sequence is exactly 0.  (Keras's JAX and NumPy backends and Optax return about
  ``1e5`` instead; we deliberately do not.)
* Sequence lengths are handled by gathers, not branches: alpha is computed for all
  ``T`` frames, the one at frame ``input_length - 1`` is picked per sequence, and the
  final value is read at positions ``2L`` and ``2L - 1``.  Padded labels become blanks.
  No Python branch depends on array values, so the code traces under ``jax.jit`` and
  ``torch.compile``.
* Native paths (``native=True``, the default) come from :mod:`probloss._dispatch`: on
  PyTorch the recursion is PyTorch's own CTC kernel, with a zero-valued correction term
  so that the gradient with respect to log-probabilities is the true derivative; on JAX
  the time loop is a ``jax.lax.scan`` inside a cached ``jax.jit`` (see
  :mod:`probloss._backends`).  ``native=False`` runs :func:`ctc_generic`, the array-API
  recursion (needed e.g. for double backward in PyTorch).  The test suite checks that
  both paths agree in value and gradient.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

from .. import _checks as C
from .._compat import _is_array, as_array, device_of, is_half, is_jax, is_torch, is_traced, namespace
from .._dispatch import implementation
from .._errors import ArgumentError, LabelFormatError, LabelValueError, PredictionValueError, ProblossTypeError, ShapeError
from .._ops import log_softmax

__all__ = ["CTC_REDUCTIONS", "ctc", "ctc_loss"]

#: The reductions accepted by :func:`ctc_loss`.
CTC_REDUCTIONS = ("none", "sum", "mean", "sum_over_batch_size")

LOG_ZERO = -1e30
"""Finite stand-in for ``log 0`` inside the recursion (exp of it is exactly 0)."""

IMPOSSIBLE_BELOW = -1e29
"""A final log-likelihood below this means that no alignment exists."""



# ------------------------------------------------------------------------- public API


def ctc(y_true, y_pred):
    """Keras 3's CTC loss: label 0 is both the blank and the padding; ``y_pred`` are logits.

    .. math::

        \\ell_b = -\\log \\sum_{\\pi \\in \\mathcal{B}^{-1}(l_b)} \\prod_{t=1}^{T}
        \\operatorname{softmax}(y_{\\mathrm{pred}}[b, t])_{\\pi_t}

    with blank 0, ``L_b`` = the number of nonzero entries of ``y_true[b]``, the label
    sequence ``l_b = y_true[b, :L_b]`` (the *first* ``L_b`` entries: zeros must be
    trailing padding) and every input using all ``T`` frames.  ``log_softmax`` is applied
    to ``y_pred`` internally, so log-probabilities give the same result but softmax
    probabilities do not.  No normalisation by label length (unlike PyTorch's
    ``reduction="mean"``); the class form :class:`~probloss.CTC` averages over the batch.

    Parameters
    ----------
    y_true : array_like of int, shape (B, S)
        Labels in ``[1, C)``, right-padded with 0.  Whole-valued floats are accepted
        (Keras's class form casts labels to float32).
    y_pred : array_like of float, shape (B, T, C)
        Unnormalised logits, batch-major, class 0 = blank.

    Returns
    -------
    array, shape (B,)
        Per-sequence negative log-likelihood, same array type, device and dtype as
        ``y_pred`` (float16/bfloat16 are computed in float32).  ``+inf`` where no
        alignment exists.

    Raises
    ------
    ShapeError
        Wrong ranks, batch sizes that differ, or (in eager mode) a label sequence
        longer than ``T``.
    LabelValueError
        A label outside ``[0, C)`` (eager mode).

    Notes
    -----
    Differences from Keras 3, both deliberate:

    * **Impossible alignments** (``T`` too short for the labels plus the blanks
      required between repeats) give ``+inf``, as PyTorch and TensorFlow do; Keras's JAX
      and NumPy backends give about ``1e5`` (an Optax-style ``log_epsilon``).  Use
      :func:`ctc_loss` with ``zero_infinity=True`` to get 0 instead.  Labels longer than
      ``T`` raise in eager mode (they cannot be a correct input).
    * A zero that is followed by a nonzero label (e.g. ``[1, 2, 0, 2]``) is read exactly
      as Keras reads it (``[1, 2, 0]``, a blank used as a label), but a
      :class:`~probloss.ProblossWarning` says so.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> logits = (np.arange(24, dtype=np.float32).reshape(2, 4, 3) - 12) / 100
    >>> np.round(pl.ctc([[1, 2, 1, 0], [1, 2, 2, 0]], logits), 5)
    array([2.44293, 4.38458], dtype=float32)
    """
    xp = namespace(y_true, y_pred, names=("y_true", "y_pred"))
    x, out_dtype = _prediction(xp, y_pred, "y_pred")
    if x.ndim != 3:
        msg = (
            f"ctc: `y_pred` must have shape (batch, time, classes) with logits; got shape "
            f"{tuple(x.shape)}. For one unbatched sequence add a batch axis (`y_pred[None]`)."
        )
        raise ShapeError(msg)
    labels = _integers(xp, y_true, x, "y_true", "labels")
    if labels.ndim != 2:
        msg = (
            f"ctc: `y_true` must have shape (batch, max_label_length) with 0-padded integer "
            f"labels; got shape {tuple(labels.shape)}."
        )
        raise ShapeError(msg)
    B, T, K = x.shape
    if labels.shape[0] != B:
        msg = f"ctc: `y_true` has {labels.shape[0]} rows but `y_pred` has batch size {B}; they must match."
        raise ShapeError(msg)
    label_lengths = xp.sum(xp.astype(labels != 0, labels.dtype), axis=1)
    input_lengths = xp.full((B,), T, dtype=labels.dtype, device=device_of(x))
    if C.eager(x, labels):
        _run_checks(xp, [
            _scores_check(xp, x, "y_pred"),
            *_keras_label_checks(xp, labels, K),
            _length_check(xp, label_lengths, input_lengths, "y_true", "T"),
        ])
    lp = log_softmax(x, xp, axis=-1)
    return _finish(xp, _ctc_nll(xp, lp, labels, input_lengths, label_lengths, 0, False, False, True), out_dtype)


def ctc_loss(
    log_probs_or_logits,
    labels,
    input_lengths,
    label_lengths,
    *,
    blank=0,
    from_logits=True,
    time_major=False,
    zero_infinity=False,
    reduction="none",
    native=True,
):
    """General CTC loss covering the PyTorch, TensorFlow and Optax conventions.

    .. math::

        \\ell_b = -\\log \\sum_{\\pi \\in \\mathcal{B}^{-1}(l_b)}
        \\prod_{t=1}^{T_b} p_{b,t}(\\pi_t), \\qquad
        l_b = \\mathtt{labels}[b, :L_b]

    where ``T_b = input_lengths[b]``, ``L_b = label_lengths[b]``, and
    ``log p = log_softmax(x)`` with ``from_logits=True`` or ``log p = x`` as given with
    ``from_logits=False`` (not renormalised).  Nothing is guessed from the values: the
    layout, the blank and the kind of scores are all arguments.

    ========================  ==============================================================
    peer                      equivalent call
    ========================  ==============================================================
    PyTorch ``F.ctc_loss``    ``ctc_loss(log_probs, targets, input_lengths, target_lengths,
                              from_logits=False, time_major=True, reduction="mean")``
                              (padded or concatenated targets, batched or not; also
                              :class:`probloss.torch.CTCLoss`)
    ``tf.nn.ctc_loss`` (v2)   ``ctc_loss(logits, labels, logit_length, label_length,
                              time_major=True, blank=blank_index or 0)``
    TF v1 (blank = C - 1)     ``blank=-1``
    ``optax.ctc_loss``        ``ctc_loss(logits, labels, T - logit_paddings.sum(1),
                              N - label_paddings.sum(1), blank=blank_id)``
    Keras ``ops.ctc_loss``    ``ctc_loss(output, target, output_length, target_length,
                              blank=mask_index)``
    ========================  ==============================================================

    Parameters
    ----------
    log_probs_or_logits : array_like of float, shape (B, T, C), or (T, B, C) if ``time_major``
        Per-frame class scores: logits (``from_logits=True``, the default) or
        log-probabilities (``from_logits=False``).  Shape ``(T, C)`` is one unbatched
        sequence (PyTorch's unbatched form), with 1-D ``labels`` (or ``(1, S)``) and 0-d
        or one-element lengths.
    labels : array_like of int, shape (B, S), or (sum(label_lengths),)
        Right-padded label sequences; entries at and beyond ``label_lengths[b]`` are
        ignored (any padding value).  A 1-D array with batched scores is PyTorch's
        concatenated form: the sequences one after the other, split by
        ``label_lengths`` (required, adding up to its length).
    input_lengths : array_like of int, shape (B,) or scalar, or None
        Number of valid frames per sequence, in ``[0, T]``; ``None`` means ``T``.  Like
        ``labels``, a list or an array of the scores' own library (PyTorch's CPU length
        tensors with CUDA scores are moved to the scores' device).
    label_lengths : array_like of int, shape (B,) or scalar, or None
        Number of labels per sequence, in ``[0, S]``; ``None`` means ``S``.
    blank : int, default 0
        Index of the blank class; negative values count from the end (``-1`` is
        ``C - 1``, TensorFlow v1's blank).
    from_logits : bool, default True
        Apply ``log_softmax`` over the class axis first.  PyTorch's ``ctc_loss`` takes
        log-probabilities: pass ``from_logits=False`` (feeding logits there gives silently
        wrong numbers in PyTorch; here it is an explicit choice).
    time_major : bool, default False
        ``True`` for ``(T, B, C)`` inputs (PyTorch, TensorFlow's default).
    zero_infinity : bool, default False
        Sequences with no possible alignment give 0 (and zero gradient) instead of
        ``+inf``; also lets label sequences longer than their input through eager
        validation (they are such sequences).
    reduction : {"none", "sum", "mean", "sum_over_batch_size"}, default "none"
        ``"none"``: per-sequence losses ``(B,)``; ``"sum"``: their sum; ``"mean"``:
        PyTorch's mean ``mean_b(loss_b / max(L_b, 1))``; ``"sum_over_batch_size"``: the
        plain batch mean (Keras, Optax users' usual ``mean``).  An empty batch gives 0.
    native : bool, default True
        Use the backend's own fast path where there is one (PyTorch's CTC kernel; a
        ``jax.lax.scan`` loop on JAX).  ``False`` forces the generic array-API recursion
        (same numbers): PyTorch's kernel has no double backward, and its data-dependent
        output shape makes ``torch.compile`` break the graph there (``fullgraph=True``
        fails, as it does for PyTorch's own ``F.ctc_loss``).

    Returns
    -------
    array
        Shape ``(B,)`` for ``reduction="none"`` (``()`` for an unbatched sequence, as in
        PyTorch), else a scalar; the array type, device
        and floating dtype of the input (float16/bfloat16 are computed in float32).

    Raises
    ------
    ShapeError
        Wrong ranks or batch sizes; in eager mode also lengths outside ``[0, T]`` /
        ``[0, S]`` and (unless ``zero_infinity``) a label sequence longer than its input.
    LabelValueError
        In eager mode: a label inside its length that is outside ``[0, C)`` or equal to
        the blank.
    ArgumentError
        An invalid ``blank``, ``reduction`` or flag.

    Notes
    -----
    Impossible alignments (fewer frames than labels plus the blanks needed between
    repeated labels) give ``+inf`` with zero gradient, or 0 with zero gradient under
    ``zero_infinity=True``; Optax and Keras's JAX backend return about ``1e5`` instead.
    The gradient is finite wherever the loss is.  Value checks run in eager mode only
    (not under ``jax.jit`` or ``torch.compile``, where bad labels give undefined results)
    and can be switched off with :func:`probloss.set_value_checks`.

    References
    ----------
    A. Graves, S. Fernandez, F. Gomez, J. Schmidhuber, "Connectionist Temporal
    Classification: Labelling Unsegmented Sequence Data with Recurrent Neural
    Networks", ICML 2006.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> logits = (np.arange(24, dtype=np.float32).reshape(2, 4, 3) - 12) / 100
    >>> np.round(pl.ctc_loss(logits, [[1, 2, 0, 0], [1, 0, 0, 0]], [3, 4], [2, 1]), 5)
    array([1.68047, 2.11195], dtype=float32)

    A label sequence that needs more frames than it has is infinitely unlikely:

    >>> pl.ctc_loss(logits[:1], [[1, 1, 1]], [4], [3])
    array([inf], dtype=float32)
    >>> pl.ctc_loss(logits[:1], [[1, 1, 1]], [4], [3], zero_infinity=True)
    array([0.], dtype=float32)
    """
    from_logits = C.check_bool("from_logits", from_logits)
    time_major = C.check_bool("time_major", time_major)
    zero_infinity = C.check_bool("zero_infinity", zero_infinity)
    native = C.check_bool("native", native)
    reduction = _check_reduction(reduction)
    name = "log_probs_or_logits"
    xp = namespace(log_probs_or_logits, labels, input_lengths, label_lengths, names=(name, "labels", "input_lengths", "label_lengths"))
    x, out_dtype = _prediction(xp, log_probs_or_logits, name)
    unbatched = x.ndim == 2  # PyTorch's unbatched form: one sequence (T, C)
    if x.ndim not in (2, 3):
        layout = "(time, batch, classes)" if time_major else "(batch, time, classes)"
        msg = (
            f"ctc_loss: `{name}` must have rank 3, {layout}, or rank 2, (time, classes) for one "
            f"unbatched sequence; got shape {tuple(x.shape)}. For time-major input pass `time_major=True`."
        )
        raise ShapeError(msg)
    if unbatched:
        x = xp.expand_dims(x, axis=0)
    elif time_major:
        x = xp.permute_dims(x, (1, 0, 2))
    B, T, K = x.shape
    blank = _check_blank(blank, K)
    labels = _integers(xp, labels, x, "labels", "labels")
    if labels.ndim == 1 and unbatched:
        labels = xp.expand_dims(labels, axis=0)
    elif labels.ndim == 1:
        labels, label_lengths = _pad_concatenated(xp, labels, label_lengths, x, B)
    if labels.ndim != 2 or labels.shape[0] != B:
        what = "(1, max_label_length) or (max_label_length,) for one unbatched sequence" if unbatched else (
            f"({B}, S) with right-padded label sequences, or PyTorch's 1-D concatenation with `label_lengths`"
        )
        msg = f"ctc_loss: `labels` must have shape {what}; got shape {tuple(labels.shape)}."
        raise ShapeError(msg)
    S = labels.shape[1]
    int_dtype = labels.dtype
    input_lengths = _lengths(xp, input_lengths, x, B, T, int_dtype, "input_lengths")
    label_lengths = _lengths(xp, label_lengths, x, B, S, int_dtype, "label_lengths")
    if C.eager(x, labels, input_lengths, label_lengths):
        checks = [
            _scores_check(xp, x, name),
            _range_check(xp, input_lengths, T, "input_lengths", f"the number of frames T={T} of `{name}`"),
            _range_check(xp, label_lengths, S, "label_lengths", f"the width S={S} of `labels`"),
            *_label_checks(xp, labels, label_lengths, K, blank),
        ]
        if not zero_infinity:
            checks.append(_length_check(xp, label_lengths, input_lengths, "labels", "input_lengths"))
        _run_checks(xp, checks)
    lp = log_softmax(x, xp, axis=-1) if from_logits else x
    nll = _ctc_nll(xp, lp, labels, input_lengths, label_lengths, blank, zero_infinity, not from_logits, native)
    if unbatched and reduction == "none":
        nll = nll[0]  # PyTorch: a 0-d loss for an unbatched sequence
    return _finish(xp, _reduce(xp, nll, label_lengths, reduction), out_dtype)


def _pad_concatenated(xp, flat, label_lengths, like, B):
    """PyTorch's 1-D concatenated targets ``(sum(label_lengths),)`` as right-padded rows.

    The width is the longest label sequence when the lengths have values (eagerly: one
    read of their maximum, as PyTorch's kernel makes), and the whole concatenation's
    length inside a trace (``jax.jit``), where the maximum is not known yet; the padding
    is ignored either way.  Returns ``(labels (B, S), label_lengths (B,))``.
    """
    total = flat.shape[0]
    if label_lengths is None:
        if B != 1:
            msg = (
                f"ctc_loss: `labels` is 1-D (PyTorch's concatenated targets) for a batch of {B}; pass "
                "`label_lengths` to say where each sequence ends, or pad the labels to shape (batch, S)."
            )
            raise ShapeError(msg)
        return xp.expand_dims(flat, axis=0), None
    lengths = _lengths(xp, label_lengths, like, B, total, flat.dtype, "label_lengths")
    if C.eager(lengths):
        checks = [_range_check(xp, lengths, total, "label_lengths", f"the length {total} of the concatenated `labels`")]
        _run_checks(xp, checks)
        found = xp.sum(lengths)
        if not is_traced(found) and int(_host(found)) != total:
            msg = (
                f"ctc_loss: 1-D `labels` (PyTorch's concatenated targets) hold {total} labels but "
                f"`label_lengths` add up to {int(_host(found))}; they must be equal."
            )
            raise ShapeError(msg)
    top = xp.max(lengths) if B else xp.zeros((), dtype=lengths.dtype)
    S = total if is_traced(top) else int(_host(top))
    dev = device_of(like)
    starts = xp.cumulative_sum(lengths) - lengths
    pos = xp.arange(S, dtype=lengths.dtype, device=dev)
    idx = starts[:, None] + pos[None, :]
    if total == 0 or S == 0:
        return xp.zeros((B, S), dtype=flat.dtype, device=dev), lengths
    idx = xp.where(pos[None, :] < lengths[:, None], idx, xp.zeros_like(idx))  # padding: any valid index
    padded = xp.take(flat, xp.reshape(xp.clip(idx, 0, total - 1), (-1,)), axis=0)
    return xp.reshape(padded, (B, S)), lengths


# ---------------------------------------------------------------------- the recursion


class CTCTargets(NamedTuple):
    """The label side of CTC for the dispatch table: padded labels and both lengths."""

    labels: object
    input_lengths: object
    label_lengths: object


class CTCOptions(NamedTuple):
    """CTC's options for the dispatch table.

    ``free_log_probs``: the log-probabilities are the caller's own (not a ``log_softmax``
    made here), which matters to the gradient of torch's kernel.
    """

    blank: int = 0
    zero_infinity: bool = False
    free_log_probs: bool = False


def _ctc_nll(xp, lp, labels, input_lengths, label_lengths, blank, zero_infinity, free_log_probs, native):
    """Per-sequence NLL ``(B,)`` from log-probabilities ``lp`` of shape ``(B, T, C)``, by the
    implementation the dispatch table names (``native=False``: the generic recursion)."""
    impl = implementation("ctc", xp) if native else ctc_generic
    return impl(xp, CTCTargets(labels, input_lengths, label_lengths), lp, 2, CTCOptions(blank, zero_infinity, free_log_probs))


def ctc_generic(xp, targets, lp, axis, o: CTCOptions):
    """The alpha recursion with a Python loop over time (the dispatch signature; ``axis``
    is the class axis, always the last)."""
    labels, input_lengths, label_lengths = targets
    B, T, _ = lp.shape
    if T == 0:  # no frames: probability 1 for an empty label sequence, 0 otherwise
        empty = xp.where(label_lengths == 0, xp.zeros((B,), dtype=lp.dtype, device=device_of(lp)), _full(xp, lp, (B,), LOG_ZERO))
        empty = empty + 0.0 * xp.sum(lp, axis=(1, 2))  # keep the graph connected
        return from_loglik(xp, empty, o.zero_infinity)
    return from_loglik(xp, loglik(xp, lp, labels, input_lengths, label_lengths, o.blank, None), o.zero_infinity)


def loglik(xp, lp, labels, input_lengths, label_lengths, blank, scan):
    """Log-likelihood ``(B,)`` by the alpha recursion (sentinel ``LOG_ZERO`` for log 0).

    ``scan`` is ``None`` for a Python loop over time, or ``jax.lax.scan``.
    """
    B, T, _ = lp.shape
    S = labels.shape[1]
    P = 2 * S + 1
    dev = device_of(lp)
    lp = xp.maximum(lp, _full(xp, lp, (), LOG_ZERO))  # -inf log-probabilities -> sentinel
    # Extended sequence (b, l1, b, l2, ..., lS, b); labels beyond each length become blanks.
    in_label = xp.arange(S, device=dev)[None, :] < label_lengths[:, None]
    blanks = xp.full((B, S), blank, dtype=labels.dtype, device=dev)
    lab = xp.where(in_label, labels, blanks)
    tail = xp.full((B, 1), blank, dtype=labels.dtype, device=dev)
    ext = xp.concat([xp.reshape(xp.stack([blanks, lab], axis=2), (B, 2 * S)), tail], axis=1)  # (B, P)
    emit = _gather_classes(xp, lp, ext)  # (B, T, P): log p_t(l'_s)
    emit = xp.permute_dims(emit, (1, 0, 2))  # (T, B, P)
    # The skip s-2 -> s is allowed at a label position whose label differs from l'_{s-2}.
    pos = xp.arange(P, device=dev)
    differs = xp.zeros((B, P), dtype=xp.bool, device=dev)
    if P > 2:
        differs = xp.concat([differs[:, :2], ext[:, 2:] != ext[:, :-2]], axis=1)
    skip_ok = differs & (pos % 2 == 1)[None, :]
    zero = xp.zeros((), dtype=lp.dtype, device=dev)
    log_zero = _full(xp, lp, (), LOG_ZERO)
    skip_pen = xp.where(skip_ok, zero, log_zero)  # (B, P)
    pad = _full(xp, lp, (B, 2), LOG_ZERO)
    alpha = emit[0, ...] + xp.where(pos < 2, zero, log_zero)[None, :]

    def step(alpha, emit_t):
        padded = xp.concat([pad, alpha], axis=1)
        move, skip = padded[:, 1 : P + 1], padded[:, :P] + skip_pen
        return xp.logaddexp(xp.logaddexp(alpha, move), skip) + emit_t

    # Every alpha_t is kept and the one at t = input_length - 1 is read at the end: cheaper
    # under autodiff than freezing alpha with a `where` at each step (the framework keeps
    # these arrays for the backward pass anyway).
    if T == 1:
        alphas = alpha[None, ...]
    elif scan is None:
        alphas = [alpha]
        for emit_t in xp.unstack(emit[1:, ...], axis=0):
            alpha = step(alpha, emit_t)
            alphas.append(alpha)
        alphas = xp.stack(alphas, axis=0)  # (T, B, P)
    else:
        _, rest = scan(lambda a, e_t: (step(a, e_t),) * 2, alpha, emit[1:, ...])
        alphas = xp.concat([alpha[None, ...], rest], axis=0)
    last_t = xp.maximum(input_lengths - 1, xp.zeros_like(input_lengths))
    alpha = _take_time(xp, alphas, last_t)  # (B, P)
    # Read alpha at the last blank (2L) and the last label (2L - 1).
    two_l = 2 * label_lengths
    last = _take_rows(xp, alpha, two_l)
    prev = xp.where(label_lengths > 0, _take_rows(xp, alpha, xp.maximum(two_l - 1, xp.zeros_like(two_l))), log_zero)
    loglik = xp.logaddexp(last, prev)
    # No frames at all: an empty label sequence has probability 1.
    return xp.where(input_lengths == 0, xp.where(label_lengths == 0, zero, log_zero), loglik)


def from_loglik(xp, ll, zero_infinity):
    """``-ll``; impossible rows give ``inf`` (or 0), always with zero gradient."""
    impossible = ll < IMPOSSIBLE_BELOW
    nll = 0.0 - xp.where(impossible, xp.zeros_like(ll), ll)  # 0.0 - x: no -0.0
    return xp.where(impossible, xp.zeros_like(nll) if zero_infinity else xp.full_like(nll, float("inf")), nll)


def _gather_classes(xp, lp, ext):
    """``lp[b, t, ext[b, s]]`` for all ``b, t, s``: shape ``(B, T, P)``."""
    B, T, _ = lp.shape
    idx = xp.broadcast_to(ext[:, None, :], (B, T, ext.shape[1]))
    if is_torch(xp):
        import torch

        return torch.gather(lp, 2, idx.long())
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(lp, idx, axis=2)
    onehot = xp.arange(lp.shape[2], device=device_of(lp)) == idx[..., None]  # (B, T, P, C)
    return xp.sum(xp.where(onehot, lp[:, :, None, :], xp.zeros_like(lp[:, :, None, :])), axis=3)


def _take_time(xp, alphas, t_idx):
    """``alphas[t_idx[b], b, :]`` for ``alphas`` of shape ``(T, B, P)``: shape ``(B, P)``."""
    _, B, P = alphas.shape
    idx = xp.broadcast_to(t_idx[None, :, None], (1, B, P))
    if is_torch(xp):
        import torch

        return torch.gather(alphas, 0, idx.long())[0]
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(alphas, idx, axis=0)[0, ...]
    onehot = xp.arange(alphas.shape[0], device=device_of(alphas))[:, None, None] == idx
    return xp.sum(xp.where(onehot, alphas, xp.zeros_like(alphas)), axis=0)


def _take_rows(xp, a, idx):
    """``a[b, idx[b]]`` for a 2-D ``a`` and 1-D ``idx``."""
    if is_torch(xp):
        import torch

        return torch.gather(a, 1, idx[:, None].long())[:, 0]
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(a, idx[:, None], axis=1)[:, 0]
    onehot = xp.arange(a.shape[1], device=device_of(a))[None, :] == idx[:, None]
    return xp.sum(xp.where(onehot, a, xp.zeros_like(a)), axis=1)


# ---------------------------------------------------------------------- reduction


def _check_reduction(reduction):
    if reduction is None:
        return "none"
    if reduction not in CTC_REDUCTIONS:
        msg = (
            f"`reduction` must be one of {', '.join(repr(r) for r in CTC_REDUCTIONS)}; got {reduction!r}. "
            '"mean" is PyTorch\'s mean (each loss divided by its label length, then averaged); '
            '"sum_over_batch_size" is the plain batch mean.'
        )
        raise ArgumentError(msg)
    return reduction


def _reduce(xp, nll, label_lengths, reduction):
    if reduction == "none":
        return nll
    B = nll.shape[0]
    if reduction == "sum":
        return xp.sum(nll)
    if reduction == "mean":
        ones = xp.ones_like(label_lengths)
        nll = nll / xp.astype(xp.maximum(label_lengths, ones), nll.dtype)
    return xp.sum(nll) / max(B, 1)


# ---------------------------------------------------------------------- input helpers


def _full(xp, like, shape, value):
    return xp.full(shape, value, dtype=like.dtype, device=device_of(like))


def _finish(xp, values, out_dtype):
    values = C.attach_checks(values)
    return values if values.dtype == out_dtype else xp.astype(values, out_dtype)


def _prediction(xp, y_pred, name):
    """``y_pred`` as a floating array (lists become float32); halves computed in float32."""
    from_list = not _is_array(y_pred)
    x = as_array(y_pred, xp, name=name)
    if from_list and not xp.isdtype(x.dtype, "real floating"):
        x = xp.astype(x, xp.float32)
    C.check_prediction_dtype(xp, x, name)
    out_dtype = x.dtype
    if is_half(out_dtype):
        x = xp.astype(x, xp.float32)
    return x, out_dtype


def _index_dtype(xp, dtype):
    """The integer dtype for labels and lengths: int64, or JAX's int32/int64 as given."""
    if is_jax(xp):  # int64 exists in JAX only with x64 enabled
        return dtype if dtype in (xp.int32, xp.int64) else xp.int32
    return xp.int64


def _integers(xp, values, like, name, what):
    """Integer array from ``values`` (lists are made on the device of ``like``)."""
    arr = as_array(values, xp, like=like, name=name)
    if device_of(arr) != device_of(like):
        arr = xp.asarray(arr, device=device_of(like))
    index_dtype = _index_dtype(xp, arr.dtype)
    if xp.isdtype(arr.dtype, "bool") or xp.isdtype(arr.dtype, "integral"):
        return arr if arr.dtype == index_dtype else xp.astype(arr, index_dtype)
    if not xp.isdtype(arr.dtype, "real floating"):
        msg = f"`{name}` must hold integer {what}; got dtype {arr.dtype}."
        raise ProblossTypeError(msg)
    if C.eager(arr):
        bad = ~xp.isfinite(arr) | (xp.floor(arr) != arr)
        if _any(xp, bad):
            pos = _first_bad(xp, bad)
            msg = (
                f"`{name}` holds {_value_at(arr, pos)} at index {pos}; {what} must be whole "
                "numbers (integer dtype, or floats such as 3.0)."
            )
            raise LabelFormatError(msg)
    return xp.astype(arr, index_dtype)


def _lengths(xp, lengths, like, B, limit, int_dtype, name):
    if lengths is None:
        return xp.full((B,), limit, dtype=int_dtype, device=device_of(like))
    arr = _integers(xp, lengths, like, name, "lengths")
    if arr.ndim == 0:
        arr = xp.broadcast_to(arr, (B,))
    if tuple(arr.shape) != (B,):
        msg = f"ctc_loss: `{name}` must have shape ({B},), one length per sequence; got shape {tuple(arr.shape)}."
        raise ShapeError(msg)
    return xp.astype(arr, int_dtype) if arr.dtype != int_dtype else arr


def _check_blank(blank, num_classes):
    if isinstance(blank, bool) or not isinstance(blank, numbers.Integral) or not -num_classes <= blank < num_classes:
        msg = (
            f"`blank` must be an integer class index in [{-num_classes}, {num_classes - 1}] "
            f"(negative counts from the end: -1 is the last class, TensorFlow v1's blank); got {blank!r}."
        )
        raise ArgumentError(msg)
    return int(blank) % num_classes


# ---------------------------------------------------------------------- value checks (eager)
#
# Each check is a pair (bad, action): a boolean array and what to do when it holds a True
# (raise, or warn).  All the flags of one call come to the host in one transfer, so on a
# GPU the checks cost one synchronisation, not one per check.


def _run_checks(xp, checks):
    flags = xp.stack([xp.any(bad) for bad, _ in checks])
    if is_traced(flags):  # constants staged inside jax.jit: nothing to look at
        return
    for (bad, action), flag in zip(checks, _host(flags)):
        if flag:
            action(bad)


def _any(xp, cond) -> bool:
    """``any(cond)`` as a Python bool; False when abstract (staged inside ``jax.jit``)."""
    result = xp.any(cond)
    return False if is_traced(result) else bool(result)


def _host(x):
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu()
    elif type(x).__module__.startswith("cupy"):
        x = x.get()
    return np.asarray(x)


def _first_bad(xp, bad):
    import numpy as np

    return tuple(int(i) for i in np.argwhere(_host(bad))[0])


def _value_at(x, pos):
    return _host(x)[pos].item()


def _scores_check(xp, x, name):
    top = xp.max(x) if math.prod(x.shape) else xp.zeros((), dtype=x.dtype)  # max propagates NaN

    def fail(_):
        pos = _first_bad(xp, xp.isnan(x) | (x == float("inf")))
        msg = (
            f"`{name}` holds {_value_at(x, pos)} at index {pos}; CTC needs scores without NaN "
            "or +inf (-inf log-probabilities are allowed). Find where it first appears upstream."
        )
        raise PredictionValueError(msg)

    return (top != top) | (top == float("inf")), fail


def _range_check(xp, lengths, limit, name, what):
    def fail(bad):
        pos = _first_bad(xp, bad)
        msg = (
            f"`{name}` holds {_value_at(lengths, pos)} for sequence {pos[0]}; lengths must lie in "
            f"[0, {limit}], {what}."
        )
        raise ShapeError(msg)

    return (lengths < 0) | (lengths > limit), fail


def _label_checks(xp, labels, label_lengths, num_classes, blank):
    inside = xp.arange(labels.shape[1], device=device_of(labels))[None, :] < label_lengths[:, None]

    def out_of_range(bad):
        pos = _first_bad(xp, bad)
        msg = (
            f"`labels` holds class {_value_at(labels, pos)} at index {pos}, inside label_lengths[{pos[0]}], "
            f"but the scores have {num_classes} classes: labels must lie in [0, {num_classes - 1}]. "
            "Check the label encoding or the size of the output layer."
        )
        raise LabelValueError(msg)

    def is_blank(bad):
        pos = _first_bad(xp, bad)
        msg = (
            f"`labels` holds the blank index {blank} at index {pos}, inside label_lengths[{pos[0]}]; "
            "the blank cannot be a target label. If it is your padding value, make label_lengths "
            "stop before it; if your blank is another class, pass `blank=` (e.g. blank=-1 for the "
            "last class, TensorFlow v1's convention)."
        )
        raise LabelValueError(msg)

    return [
        (inside & ((labels < 0) | (labels >= num_classes)), out_of_range),
        (inside & (labels == blank), is_blank),
    ]


def _keras_label_checks(xp, labels, num_classes):
    def out_of_range(bad):
        pos = _first_bad(xp, bad)
        msg = (
            f"ctc: `y_true` holds class {_value_at(labels, pos)} at index {pos}, but `y_pred` has "
            f"{num_classes} classes: labels must lie in [1, {num_classes - 1}] (0 is the blank and the padding)."
        )
        raise LabelValueError(msg)

    def inner_zero(bad):
        C.warn(
            f"ctc: `y_true` has a 0 at index {_first_bad(xp, bad)} followed by nonzero labels. Keras's CTC "
            "uses the first count_nonzero(row) entries of each row, so this 0 is read as a blank *label* "
            "and the last label is dropped (the numbers match Keras). Put padding zeros at the end of each row."
        )

    nonzero = labels != 0
    later = xp.flip(xp.cumulative_sum(xp.astype(xp.flip(nonzero, axis=1), xp.int32), axis=1), axis=1) > 0
    return [((labels < 0) | (labels >= num_classes), out_of_range), ((~nonzero) & later, inner_zero)]


def _length_check(xp, label_lengths, input_lengths, labels_name, inputs_name):
    def fail(bad):
        pos = _first_bad(xp, bad)
        msg = (
            f"sequence {pos[0]} has {_value_at(label_lengths, pos)} labels (`{labels_name}`) but only "
            f"{_value_at(input_lengths, pos)} frames ({inputs_name}); CTC needs at least one frame per "
            "label (plus one per repeated pair). Check the lengths (e.g. the model's downsampling), "
            "or pass `zero_infinity=True` to ctc_loss to give such sequences a loss of 0."
        )
        raise ShapeError(msg)

    return label_lengths > input_lengths, fail
