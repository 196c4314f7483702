"""Keras-compatible loss classes, and the registry (``get``, ``serialize``, ``deserialize``).

A class stores its options, calls the matching function of :mod:`probloss.functional`
for per-sample values, and reduces them with sample weights and masks exactly as
Keras 3 does (see :mod:`probloss._reduction`).  Configs hold JSON-safe values only, and
the registry never imports or evaluates anything it is handed.
"""

from __future__ import annotations

import math
import numbers
import sys

from . import _checks as C
from ._compat import as_array, is_half, namespace
from ._errors import ArgumentError, ProblossTypeError, ShapeError
from ._reduction import reduce_values, validate_reduction
from .functional import crossentropy as _ce
from .functional import distillation as _distill
from .functional import focal as _focal
from .functional.ctc import ctc
from .functional.divergence import kl_divergence
from .functional.gaussian import gaussian_nll
from .functional.poisson import poisson

_EPS = _ce.EPSILON

__all__ = [
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CTC",
    "KLDivergence",
    "Loss",
    "LossFunctionWrapper",
    "Poisson",
    "SparseCategoricalCrossentropy",
    "deserialize",
    "get",
    "register",
    "serialize",
    "unregister",
]

_DTYPES = ("float16", "bfloat16", "float32", "float64")


class Loss:
    """Base class of the loss objects: options in, a reduced loss out.

    Parameters
    ----------
    name : str, optional
        Defaults to the snake-case loss name (e.g. ``"binary_crossentropy"``).
    reduction : str or None, default "sum_over_batch_size"
        ``"sum_over_batch_size"`` (= ``"mean"``): the sum of weighted losses divided by
        their number (masked positions excluded); ``"sum"``; ``"mean_with_sample_weight"``:
        divided by the sum of the weights; ``"none"`` / ``None``: unreduced.
    dtype : str, optional
        Compute and output dtype (``"float32"``, ``"float64"``, ``"float16"``,
        ``"bfloat16"``).  ``None`` keeps the prediction's floating dtype (Python lists
        become float32, as Keras's ``floatx``).

    Notes
    -----
    Call as ``loss(y_true, y_pred, sample_weight=None)``.  ``sample_weight`` may be a
    scalar, one weight per sample, or one per element; it is rank-aligned and broadcast
    like Keras (an ``(N,)`` weight against ``(N, T)`` losses broadcasts on the *last*
    axis, so pass ``(N, 1)`` to weight samples).
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.reduction = validate_reduction(reduction)
        if name is not None and not isinstance(name, str):
            msg = f"`name` must be a string or None; got {name!r}."
            raise ArgumentError(msg)
        self.name = name if name is not None else _snake_name(type(self).__name__)
        if dtype is not None and str(dtype) not in _DTYPES:
            msg = f"`dtype` must be one of {', '.join(_DTYPES)} or None; got {dtype!r}."
            raise ArgumentError(msg)
        self._dtype = None if dtype is None else str(dtype)

    @property
    def dtype(self):
        """The compute dtype name, or ``None`` to follow ``y_pred``."""
        return self._dtype

    def call(self, y_true, y_pred):
        """Per-sample losses, as in Keras: override this in a subclass.

        ``y_true`` and ``y_pred`` arrive as arrays of one namespace (``y_pred`` floating
        point); return an array of per-sample losses, which ``__call__`` reduces.
        """
        msg = f"{type(self).__name__} must implement call(y_true, y_pred) returning per-sample losses."
        raise NotImplementedError(msg)

    def per_sample(self, y_true, y_pred):
        """Per-sample losses and the mask of valid positions, before any reduction.

        Returns ``(values, mask)``: ``values`` are the losses reduced over the class axis
        only (in the loss's ``dtype`` when one was given), ``mask`` is a boolean array of
        their shape marking the positions that count (``ignore_class``), or ``None``.
        ``__call__`` reduces exactly these, with Keras's rules for weights and masks.

        Examples
        --------
        >>> import probloss as pl
        >>> values, mask = pl.SparseCategoricalCrossentropy(ignore_class=-1).per_sample(
        ...     [1, -1], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
        >>> [round(float(v), 4) for v in values], mask.tolist()
        ([0.0513, 0.0], [True, False])
        """
        if self._class_weighted:
            return self._per_sample_weighted(y_true, y_pred)[:2]
        xp = namespace(y_true, y_pred, names=("y_true", "y_pred"))
        if self._dtype is not None:
            y_pred = xp.astype(as_array(y_pred, xp, name="y_pred"), self._compute_dtype(xp))
        return self._values_and_mask(y_true, y_pred, xp)

    _class_weighted = False
    """True for a loss with ``class_weight``: its mean divides by the targets' weights."""

    def _per_sample_weighted(self, y_true, y_pred):
        """``(values, mask, target_weights)`` of a loss with ``class_weight`` (see :meth:`per_sample`)."""
        xp = namespace(y_true, y_pred, names=("y_true", "y_pred"))
        if self._dtype is not None:
            y_pred = xp.astype(as_array(y_pred, xp, name="y_pred"), self._compute_dtype(xp))
        return self._values_mask_weights(y_true, y_pred, xp)

    def _values_mask_weights(self, y_true, y_pred, xp):
        """Per-sample losses, mask and target weights; classes that take ``class_weight`` implement it."""
        raise NotImplementedError

    def _compute_dtype(self, xp):
        dtype = getattr(xp, self._dtype, None)
        if dtype is None:  # NumPy has no bfloat16
            msg = (
                f"{type(self).__name__}(dtype={self._dtype!r}): this array library has no {self._dtype}. "
                "Use dtype='float32' (or 'float16'), or give torch or JAX arrays, which have bfloat16."
            )
            raise ProblossTypeError(msg)
        return dtype

    def _values_and_mask(self, y_true, y_pred, xp):
        """Per-sample losses and an optional boolean mask, for a subclass's :meth:`call`.

        As Keras does, both inputs reach ``call`` in one floating dtype: the loss's
        ``dtype`` if given, else ``y_pred``'s (float32 for lists and integers).
        """
        y_pred = as_array(y_pred, xp, name="y_pred")
        if not xp.isdtype(y_pred.dtype, "real floating"):
            y_pred = xp.astype(y_pred, xp.float32)
        y_true = as_array(y_true, xp, like=y_pred, name="y_true")
        if y_true.dtype != y_pred.dtype:
            y_true = xp.astype(y_true, y_pred.dtype)
        return self.call(y_true, y_pred), None

    def __call__(self, y_true, y_pred, sample_weight=None):
        _refuse_keras_wrapper(self)
        xp = namespace(y_true, y_pred, sample_weight, names=("y_true", "y_pred", "sample_weight"))
        if self._class_weighted:
            values, mask, target_weight = self._per_sample_weighted(y_true, y_pred)
        else:
            (values, mask), target_weight = self.per_sample(y_true, y_pred), None
        out_dtype = values.dtype
        if is_half(out_dtype):  # reduce half-precision losses in float32
            values = xp.astype(values, xp.float32)
            target_weight = None if target_weight is None else xp.astype(target_weight, xp.float32)
        if sample_weight is not None:
            sample_weight = xp.astype(as_array(sample_weight, xp, like=values, name="sample_weight"), values.dtype)
            _check_weight_is_unambiguous(sample_weight, values)
            if C.eager(sample_weight):
                C.check_finite(xp, sample_weight, "sample_weight")
        out = reduce_values(
            values, xp, reduction=self.reduction, sample_weight=sample_weight, mask=mask, target_weight=target_weight
        )
        out = C.attach_checks(xp.asarray(out) if not hasattr(out, "dtype") else out)  # (sample_weight's test)
        return out if out.dtype == out_dtype else xp.astype(out, out_dtype)

    def get_config(self):
        """The constructor arguments, JSON-safe."""
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        """Rebuild a loss from :meth:`get_config`'s dict (unknown keys are refused)."""
        if not isinstance(config, dict):
            msg = f"`config` must be a dict as returned by get_config(); got {type(config).__name__}."
            raise ProblossTypeError(msg)
        _check_json_safe(config, "config")
        try:
            return cls(**config)
        except TypeError as exc:
            msg = f"{cls.__name__}.from_config: {exc}. Valid keys are those of {cls.__name__}().get_config()."
            raise ArgumentError(msg) from None

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class LossFunctionWrapper(Loss):
    """A :class:`Loss` around a per-sample function ``fn(y_true, y_pred, **kwargs)``."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None), reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def _values_and_mask(self, y_true, y_pred, xp):
        return self.call(y_true, y_pred), None  # the function converts its own inputs

    def get_config(self):
        config = super().get_config()
        config.update(self._fn_kwargs)
        return config


class BinaryCrossentropy(LossFunctionWrapper):
    """Class form of :func:`~probloss.binary_crossentropy`; see :class:`Loss` for the rest.

    ``pos_weight`` (not in Keras) weights the positive term, as
    ``tf.nn.weighted_cross_entropy_with_logits`` and
    ``torch.nn.functional.binary_cross_entropy_with_logits(pos_weight=)`` do:

    .. math:: \\ell = \\operatorname{mean}_{axis}\\big[-q\\,t\\log p - (1-t)\\log(1-p)\\big]

    with ``q`` a number, or one weight per entry of ``axis`` (per class); ``q > 1``
    counts missed positives more (recall), ``q < 1`` false alarms.  From probabilities
    ``p`` is clipped as in Keras; label smoothing applies to ``t`` first.  The
    reduction is Keras's (sample weights, then the mean over samples).

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> round(float(pl.BinaryCrossentropy()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])), 4)
    0.8149
    >>> round(float(pl.BinaryCrossentropy(pos_weight=3.0)([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])), 4)
    1.2731
    """

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_crossentropy",
        dtype=None,
        epsilon=_ce.EPSILON,
        pos_weight=None,
    ):
        self._options = _ce.options(from_logits, label_smoothing, epsilon, pos_weight=pos_weight)
        super().__init__(
            _ce.binary_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=self._options.from_logits,
            label_smoothing=self._options.label_smoothing,
            axis=_check_axis_arg(axis),
            epsilon=self._options.epsilon,
        )

    def _values_and_mask(self, y_true, y_pred, xp):
        return _ce.binary_values(y_true, y_pred, self._fn_kwargs["axis"], self._options), None

    def get_config(self):
        return _with_extensions(super().get_config(), pos_weight=_as_list(self._options.pos_weight))


class BinaryFocalCrossentropy(LossFunctionWrapper):
    """Class form of :func:`~probloss.binary_focal_crossentropy`; see :class:`Loss`.

    Examples
    --------
    >>> import probloss as pl
    >>> round(float(pl.BinaryFocalCrossentropy(gamma=2.0)([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])), 4)
    0.2678
    """

    def __init__(
        self,
        apply_class_balancing=False,
        alpha=0.25,
        gamma=2.0,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_focal_crossentropy",
        dtype=None,
        epsilon=_ce.EPSILON,
    ):
        super().__init__(
            _focal.binary_focal_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            apply_class_balancing=C.check_bool("apply_class_balancing", apply_class_balancing),
            alpha=C.check_float_in("alpha", alpha, 0.0, 1.0),
            gamma=C.check_nonnegative("gamma", gamma),
            from_logits=C.check_bool("from_logits", from_logits),
            label_smoothing=C.check_float_in("label_smoothing", label_smoothing, 0.0, 1.0),
            axis=_check_axis_arg(axis),
            epsilon=C.check_epsilon(epsilon),
        )


class CategoricalCrossentropy(LossFunctionWrapper):
    """Class form of :func:`~probloss.categorical_crossentropy`; see :class:`Loss`.

    ``class_weight`` (not in Keras): one weight ``w_c`` per class, with the semantics of
    ``torch.nn.functional.cross_entropy(weight=w)``.  Each sample's loss is
    ``-sum_c w_c q_c log p_c`` (``q`` the smoothed labels), and the mean reductions
    divide by the targets' weights instead of the number of samples:

    .. math::

        \\frac{\\sum_n s_n \\ell_n}{\\sum_n W_n}, \\qquad W_n = \\sum_c w_c y_{n,c}

    (``W_n = w[y_n]`` for one-hot labels, as torch with class indices; torch divides by
    the number of samples for probability targets).  Sample weights ``s`` scale the sum
    as in Keras; ``"mean_with_sample_weight"`` divides by ``sum_n s_n W_n``; ``"sum"`` and
    ``"none"`` apply no divisor.  ``ruled_out_target`` as in
    :func:`~probloss.categorical_crossentropy`.

    Examples
    --------
    >>> import probloss as pl
    >>> cce = pl.CategoricalCrossentropy()
    >>> round(float(cce([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 3)
    1.177
    >>> weighted = pl.CategoricalCrossentropy(class_weight=[1.0, 1.0, 3.0])
    >>> round(float(weighted([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 3)
    1.74
    """

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="categorical_crossentropy",
        dtype=None,
        epsilon=_ce.EPSILON,
        class_weight=None,
        ruled_out_target="raise",
    ):
        self._options = _ce.options(
            from_logits, label_smoothing, epsilon, ruled_out_target=ruled_out_target, class_weight=class_weight
        )
        self._class_weighted = self._options.class_weight is not None
        super().__init__(
            _ce.categorical_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=self._options.from_logits,
            label_smoothing=self._options.label_smoothing,
            axis=_check_axis_arg(axis),
            epsilon=self._options.epsilon,
        )

    def _values_and_mask(self, y_true, y_pred, xp):
        return _ce.categorical_values(y_true, y_pred, self._fn_kwargs["axis"], self._options), None

    def _values_mask_weights(self, y_true, y_pred, xp):
        values, weights = _ce.categorical_values_and_weights(y_true, y_pred, self._fn_kwargs["axis"], self._options)
        return values, None, weights

    def get_config(self):
        o = self._options
        return _with_extensions(super().get_config(), class_weight=_as_list(o.class_weight), ruled_out_target=o.ruled_out_target)


class CategoricalFocalCrossentropy(LossFunctionWrapper):
    """Class form of :func:`~probloss.categorical_focal_crossentropy`; see :class:`Loss`.

    Examples
    --------
    >>> import probloss as pl
    >>> cfce = pl.CategoricalFocalCrossentropy()
    >>> round(float(cfce([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 4)
    0.2332
    """

    def __init__(
        self,
        alpha=0.25,
        gamma=2.0,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="categorical_focal_crossentropy",
        dtype=None,
        epsilon=_ce.EPSILON,
    ):
        if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
            alpha = C.check_float_in("alpha", alpha, 0.0, 1.0)
        elif isinstance(alpha, (list, tuple)):
            alpha = [C.check_float_in("alpha", a, 0.0, 1.0) for a in alpha]
        else:
            msg = f"`alpha` must be a number in [0, 1] or a list of them (one per class); got {alpha!r}."
            raise ArgumentError(msg)
        super().__init__(
            _focal.categorical_focal_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            alpha=alpha,
            gamma=C.check_nonnegative("gamma", gamma),
            from_logits=C.check_bool("from_logits", from_logits),
            label_smoothing=C.check_float_in("label_smoothing", label_smoothing, 0.0, 1.0),
            axis=_check_axis_arg(axis),
            epsilon=C.check_epsilon(epsilon),
        )


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    """Class form of :func:`~probloss.sparse_categorical_crossentropy`; see :class:`Loss`.

    Positions whose label equals ``ignore_class`` are masked: the default reduction
    divides by the number of valid positions, and an all-masked batch gives 0.
    Note that, as in Keras, ``reduction`` comes before ``axis`` positionally.

    Three options Keras's class does not have (keyword arguments; a config holds them
    only when they differ from their default, so other configs stay readable by Keras):

    * ``label_smoothing``: as ``torch.nn.functional.cross_entropy(label_smoothing=a)``,
      ``(1 - a) (-log p_y) + (a / K) sum_c (-log p_c)``, without a one-hot matrix (see
      :func:`~probloss.sparse_categorical_crossentropy`).
    * ``class_weight``: one weight ``w_c`` per class, as ``F.cross_entropy(weight=w)``:
      each sample's loss is scaled by ``w[y]`` (the smoothing term by each ``w_c``) and the
      means divide by ``sum_n w[y_n]`` over the positions that count (not ``ignore_class``)
      instead of their number.  Sample weights scale the sum only, as in Keras;
      ``"mean_with_sample_weight"`` divides by ``sum_n s_n w[y_n]``.  Keras's
      ``fit(class_weight=)`` differs: it multiplies the sample weights by ``w[y]`` and
      divides by the number of samples (see docs/semantics.md).
    * ``ruled_out_target``: as in :func:`~probloss.sparse_categorical_crossentropy`.

    Examples
    --------
    >>> import probloss as pl
    >>> scce = pl.SparseCategoricalCrossentropy()
    >>> round(float(scce([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 3)
    1.177
    >>> weighted = pl.SparseCategoricalCrossentropy(class_weight=[1.0, 1.0, 3.0])
    >>> round(float(weighted([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 3)
    1.74
    """

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="sparse_categorical_crossentropy",
        dtype=None,
        epsilon=_ce.EPSILON,
        label_smoothing=0.0,
        class_weight=None,
        ruled_out_target="raise",
    ):
        self._options = _ce.options(
            from_logits, label_smoothing, epsilon, ignore_class, ruled_out_target=ruled_out_target, class_weight=class_weight
        )
        self._class_weighted = self._options.class_weight is not None
        super().__init__(
            _ce.sparse_categorical_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=self._options.from_logits,
            ignore_class=self._options.ignore_class,
            axis=_check_axis_arg(axis),
            epsilon=self._options.epsilon,
        )
        # Without weights, a mask or a dtype, Keras's mean is the mean of every position.
        mean = self.reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight")
        self._plain_mean = mean and self._options.ignore_class is None and self._dtype is None and not self._class_weighted

    def _values_and_mask(self, y_true, y_pred, xp):
        return _ce.sparse_values(y_true, y_pred, self._fn_kwargs["axis"], self._options)[:2]

    def _values_mask_weights(self, y_true, y_pred, xp):
        return _ce.sparse_values_and_weights(y_true, y_pred, self._fn_kwargs["axis"], self._options)

    def get_config(self):
        o = self._options
        return _with_extensions(
            super().get_config(),
            label_smoothing=o.label_smoothing,
            class_weight=_as_list(o.class_weight),
            ruled_out_target=o.ruled_out_target,
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is None and self._plain_mean:  # the usual training call: one fused loss
            _refuse_keras_wrapper(self)
            return _ce.sparse_mean(y_true, y_pred, self._fn_kwargs["axis"], self._options)
        return super().__call__(y_true, y_pred, sample_weight)


class Poisson(LossFunctionWrapper):
    """Class form of :func:`~probloss.poisson`; see :class:`Loss`.

    The constant ``log(y!)`` is left out, as in Keras, so the value can be negative.

    Examples
    --------
    >>> import probloss as pl
    >>> round(float(pl.Poisson()([[4, 8, 12], [8, 1, 3]], [[1, 9, 2], [5, 2, 6]])), 4)
    -3.3066
    """

    def __init__(self, reduction="sum_over_batch_size", name="poisson", dtype=None, epsilon=_EPS):
        super().__init__(
            poisson, reduction=reduction, name=name, dtype=dtype, epsilon=C.check_epsilon(epsilon)
        )


class GaussianNLL(Loss):
    """Class form of :func:`~probloss.gaussian_nll`, the Gaussian negative log-likelihood.

    The variance is a third input, given at call time in one of two ways:

    * ``loss(y_true, mean, var=var, sample_weight=None)``: ``var`` as a keyword, in any
      shape :func:`~probloss.gaussian_nll` accepts (PyTorch's: the shape of ``mean``,
      one axis short, an axis of size 1, or a number);
    * ``loss(y_true, (mean, var))``: ``y_pred`` a Python ``tuple`` of the two, for
      callers that pass a single prediction (a model with two heads,
      :class:`probloss.torch.LossModule`).

    Calling without a variance raises :class:`~probloss.ArgumentError` (there is no
    default: at a fixed variance use the mean squared error).  The per-sample values
    (the mean over the last axis) are reduced as in :class:`Loss`; with equally sized
    samples the default reduction equals PyTorch's
    ``GaussianNLLLoss(full, eps)(mean, y_true, var)``.

    Examples
    --------
    >>> import probloss as pl
    >>> loss = pl.GaussianNLL()
    >>> round(float(loss([[1.0, 2.0], [0.0, 0.5]], [[1.5, 2.0], [0.0, -0.5]], var=[[1.0, 4.0], [0.5, 0.5]])), 5)
    0.28125
    >>> round(float(loss([[1.0, 2.0]], ([[1.5, 2.0]], [1.0]))), 5)
    0.0625
    """

    _var = None  # the variance of the current call, on the per-call copy made by _bound

    def __init__(self, full=False, eps=1e-6, reduction="sum_over_batch_size", name="gaussian_nll", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.full = C.check_bool("full", full)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < float(eps) < math.inf:
            msg = f"`eps` must be a finite number > 0 (the variance's lower clamp); got {eps!r}."
            raise ArgumentError(msg)
        self.eps = float(eps)

    def __call__(self, y_true, y_pred, sample_weight=None, *, var=None):
        mean, var = self._mean_and_var(y_pred, var)
        return Loss.__call__(self._bound(var), y_true, mean, sample_weight)

    def per_sample(self, y_true, y_pred, *, var=None):
        """Per-sample losses and ``None`` (no mask); the variance as in ``__call__``."""
        mean, var = self._mean_and_var(y_pred, var)
        return Loss.per_sample(self._bound(var), y_true, mean)

    def call(self, y_true, y_pred):
        return gaussian_nll(y_true, y_pred, self._var, full=self.full, eps=self.eps)

    def _mean_and_var(self, y_pred, var):
        if var is None:
            var = self._var
        if var is None and isinstance(y_pred, tuple) and len(y_pred) == 2:
            return y_pred
        if var is None:
            msg = (
                f"{type(self).__name__} needs the predicted variance: call loss(y_true, mean, var=var) "
                "or loss(y_true, (mean, var))."
            )
            raise ArgumentError(msg)
        return y_pred, var

    def _bound(self, var):
        """A shallow copy carrying ``var``: one call's state never lives on ``self``."""
        bound = object.__new__(type(self))
        bound.__dict__.update(self.__dict__)
        bound._var = var
        return bound

    def get_config(self):
        config = super().get_config()
        config.update(full=self.full, eps=self.eps)
        return config


class _Distillation(LossFunctionWrapper):
    """The three distillation classes: one signature, their options validated once."""

    _function = None  # the per-sample function (set by each subclass)

    def __init__(
        self,
        temperature=1.0,
        teacher_from="logits",
        student_from="logits",
        scale_by_temperature_squared=True,
        axis=-1,
        reduction="sum_over_batch_size",
        name=None,
        dtype=None,
    ):
        options = {
            "temperature": _distill._check_temperature(temperature),
            "teacher_from": _distill._check_form("teacher_from", teacher_from, _distill.TEACHER_FORMS),
            "student_from": _distill._check_form("student_from", student_from, _distill.STUDENT_FORMS),
            "scale_by_temperature_squared": C.check_bool("scale_by_temperature_squared", scale_by_temperature_squared),
            "axis": _check_axis_arg(axis),
        }
        fn = type(self)._function
        super().__init__(fn, reduction=reduction, name=name or fn.__name__, dtype=dtype, **options)


class DistillationKL(_Distillation):
    """Class form of :func:`~probloss.distillation_kl`; see :class:`Loss`.

    Call as ``loss(teacher, student, sample_weight=None)``: the teacher's outputs take the
    place of ``y_true``.

    Examples
    --------
    >>> import probloss as pl
    >>> round(float(pl.DistillationKL(temperature=2.0)([[2.0, 1.0, 0.1]], [[1.5, 1.2, 0.3]])), 5)
    0.06096
    """

    _function = staticmethod(_distill.distillation_kl)


class DistillationCrossEntropy(_Distillation):
    """Class form of :func:`~probloss.distillation_cross_entropy`; see :class:`DistillationKL`.

    Examples
    --------
    >>> import probloss as pl
    >>> round(float(pl.DistillationCrossEntropy()([[2.0, 1.0, 0.1]], [[1.5, 1.2, 0.3]])), 5)
    0.90494
    """

    _function = staticmethod(_distill.distillation_cross_entropy)


class JSDivergence(_Distillation):
    """Class form of :func:`~probloss.js_divergence_loss`; see :class:`DistillationKL`.

    Examples
    --------
    >>> import probloss as pl
    >>> round(float(pl.JSDivergence()([[2.0, 1.0, 0.1]], [[1.5, 1.2, 0.3]])), 5)
    0.01473
    """

    _function = staticmethod(_distill.js_divergence_loss)


class KLDivergence(LossFunctionWrapper):
    """Class form of :func:`~probloss.kl_divergence`; see :class:`Loss`.

    Examples
    --------
    >>> import probloss as pl
    >>> kld = pl.KLDivergence()
    >>> round(float(kld([[0.5, 0.8, 0.12], [0.7, 0.43, 0.8]], [[0.4, 0.9, 0.12], [0.36, 0.3, 0.4]])), 4)
    0.5961
    """

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence", dtype=None, epsilon=_EPS):
        super().__init__(
            kl_divergence, reduction=reduction, name=name, dtype=dtype, epsilon=C.check_epsilon(epsilon)
        )


class CTC(LossFunctionWrapper):
    """Class form of :func:`~probloss.ctc` (Keras 3's CTC); see :class:`Loss`.

    ``y_true`` ``(B, S)`` holds labels right-padded with 0 (0 is also the blank),
    ``y_pred`` ``(B, T, C)`` logits.  The default reduction is the batch mean of the
    per-sequence negative log-likelihoods, not divided by label length; for lengths,
    other blanks or PyTorch's mean use :func:`~probloss.ctc_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> logits = (np.arange(24, dtype=np.float32).reshape(2, 4, 3) - 12) / 100
    >>> round(float(pl.CTC()([[1, 2, 1, 0], [1, 2, 2, 0]], logits)), 4)
    3.4138
    """

    def __init__(self, reduction="sum_over_batch_size", name="ctc", dtype=None):
        super().__init__(ctc, reduction=reduction, name=name, dtype=dtype)


def _refuse_keras_wrapper(loss):
    """Refuse a call from Keras's ``LossFunctionWrapper``: ``model.compile(loss=probloss.X())``.

    Keras wraps any callable that is not a ``keras.losses.Loss`` and calls it without
    ``sample_weight`` or masks; it gets back a value this class has already reduced, and
    scales that by the weights: a plausible, wrong number.  The wrapper's ``call`` is the
    first frame outside this module; looking is one dictionary lookup while Keras is not
    imported.
    """
    if "keras" not in sys.modules:
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.compiler.is_compiling():
        return  # Dynamo cannot trace frame lookups (only Keras's torch backend with jit_compile=True gets here)
    frame = sys._getframe(2)  # 0: here, 1: __call__, 2: its caller
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # a subclass's __call__ calling Loss.__call__
    if frame is not None and frame.f_code.co_name == "call" and frame.f_globals.get("__name__", "").startswith("keras."):
        name = type(loss).__name__
        msg = (
            f"{name} was given to Keras's compile(), which calls it without sample_weight and cannot "
            "mask a loss that is already reduced, so sample weights, class weights and masks would be "
            f"lost. Use probloss.keras.{name}(...) (after `import probloss.keras`), or "
            "probloss.keras.from_probloss(loss)."
        )
        raise ArgumentError(msg)


def _check_weight_is_unambiguous(sample_weight, values):
    """Refuse an ``(N,)`` weight on ``(N, ..., N)`` losses: Keras reads it per *last* axis.

    Keras aligns a rank-1 weight with the last axis of the per-sample losses, which is
    right for per-timestep weights ``(T,)`` but silently wrong when ``N == T`` and the
    caller meant one weight per sample.  Both readings fit, so we ask.
    """
    if sample_weight.ndim == 1 and values.ndim >= 2 and values.shape[0] == values.shape[-1] == sample_weight.shape[0]:
        n = values.shape[0]
        msg = (
            f"`sample_weight` of shape ({n},) is ambiguous for per-sample losses of shape "
            f"{tuple(values.shape)}: Keras would apply it along the last axis (one weight per "
            f"timestep), not one per sample. Pass shape ({n}, 1) for one weight per sample, "
            f"or shape (1, {n}) for one per timestep."
        )
        raise ShapeError(msg)


_EXTENSION_DEFAULTS = {"label_smoothing": 0.0, "class_weight": None, "pos_weight": None, "ruled_out_target": "raise"}
"""Options of probloss's classes that Keras's do not have, and their defaults."""


def _with_extensions(config, **options):
    """``config`` with those ``options`` that differ from their default: a config of a loss
    without them stays one that Keras's own class reads (``keras.losses.X.from_config``)."""
    config.update({k: v for k, v in options.items() if v != _EXTENSION_DEFAULTS[k]})
    return config


def _as_list(weights):
    """A tuple of weights as a JSON list (a number or ``None`` as it is)."""
    return list(weights) if isinstance(weights, tuple) else weights


def _check_axis_arg(axis):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        msg = f"`axis` must be an integer; got {axis!r}."
        raise ArgumentError(msg)
    return int(axis)


def _snake_name(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


# ------------------------------------------------------------------------------ registry

_CLASSES: dict[str, type[Loss]] = {}
_FUNCTIONS: dict[str, object] = {}
_KEYS: dict[int, str] = {}  # id() of a registered class or function -> its name (identity, not __name__)
_ALIASES = {"bce": "binary_crossentropy", "BCE": "binary_crossentropy", "kld": "kl_divergence", "KLD": "kl_divergence"}
_BUILTIN_NAMES: frozenset[str] = frozenset()  # probloss's own names, filled in below; never replaced
_MAX_DEPTH = 100
"""Deepest nesting of lists and dicts a config may have (loss configs are two levels deep)."""

_REPR = []  # the reprlib.Repr behind _brief, made on first use


def _brief(value) -> str:
    """A short repr of anything handed to the registry, for messages (bounded in depth and length)."""
    if not _REPR:
        import reprlib

        r = reprlib.Repr()
        r.maxlevel, r.maxstring, r.maxother, r.maxlist, r.maxtuple, r.maxdict = 3, 80, 80, 6, 6, 6
        _REPR.append(r)
    return _REPR[0].repr(value)


def register(obj=None, *, name=None, package=None):
    """Register a loss class (or function) so that :func:`serialize`, :func:`deserialize`
    and :func:`get` know it by name.

    Only registered losses can be serialized, and a config is only ever turned back into
    a registered class: :func:`deserialize` never imports a module.  A class is found by
    identity, not by its ``__name__``, so your own ``Poisson`` is never written out as
    probloss's :class:`Poisson`.

    Parameters
    ----------
    obj : type or callable, optional
        A subclass of :class:`Loss` (whose ``get_config()`` returns the keyword arguments
        of its constructor, JSON-safe), or a loss function ``fn(y_true, y_pred)``.
        Omitted, ``register`` returns a decorator: ``@register(package="my_package")``.
    name : str, optional
        The registry name; defaults to ``obj.__name__``.
    package : str, optional
        Prefix the name Keras-style: ``package="my_package"`` registers
        ``"my_package>Poisson"``.

    Returns
    -------
    obj
        Unchanged, so ``register`` works as a class decorator.

    Raises
    ------
    ArgumentError
        The name is one of probloss's own (class names, function names, aliases such as
        ``"bce"``): pass a distinct ``name=`` or a ``package=``.  Or the name is taken by
        another registered object (a class redefined under the same module and
        qualified name, as when a notebook cell runs again, replaces the old one), or
        ``obj`` is registered already under another name.
    ProblossTypeError
        ``obj`` is a class that is not a :class:`Loss`, or not callable, or ``name`` /
        ``package`` is not a non-empty string.

    See Also
    --------
    unregister : remove a name again.

    Examples
    --------
    A class of your own, even one named like a built-in, registered under a package:

    >>> import numpy as np
    >>> import probloss as pl
    >>> @pl.losses.register(package="my_package")
    ... class Poisson(pl.Loss):
    ...     def __init__(self, scale=1.0, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.scale = scale
    ...     def call(self, y_true, y_pred):
    ...         return self.scale * (y_pred - y_true * np.log(y_pred)).mean(axis=-1)
    ...     def get_config(self):
    ...         return {**super().get_config(), "scale": self.scale}
    >>> config = pl.serialize(Poisson(scale=2.0))
    >>> config["registered_name"], config["config"]["scale"]
    ('my_package>Poisson', 2.0)
    >>> clone = pl.deserialize(config)
    >>> type(clone) is Poisson, clone.scale
    (True, 2.0)
    >>> round(float(clone([[1.0, 2.0]], [[1.0, 2.0]])), 4)
    1.6137
    >>> type(pl.get("Poisson")) is pl.Poisson  # the built-in name still means probloss's
    True
    >>> pl.losses.unregister("my_package>Poisson")
    """
    if obj is None:
        return lambda target: register(target, name=name, package=package)
    if isinstance(obj, type):
        if not issubclass(obj, Loss):
            msg = f"register() takes a subclass of probloss.Loss or a loss function; got the class {obj.__qualname__}."
            raise ProblossTypeError(msg)
        table = _CLASSES
    elif callable(obj):
        table = _FUNCTIONS
    else:
        msg = f"register() takes a subclass of probloss.Loss or a loss function; got {_brief(obj)}."
        raise ProblossTypeError(msg)
    key = _registry_key(obj, name, package)
    if key in _BUILTIN_NAMES or key == "function":
        msg = (
            f"{key!r} is the name of a probloss loss; register {_qualname(obj)} under a name of its own, "
            f"e.g. register({getattr(obj, '__name__', 'obj')}, package='my_package') for "
            f"'my_package>{getattr(obj, '__name__', key)}', or name='...'."
        )
        raise ArgumentError(msg)
    old_key = _KEYS.get(id(obj))
    if old_key is not None and old_key != key:
        msg = f"{_qualname(obj)} is registered already as {old_key!r}; unregister({old_key!r}) first to rename it."
        raise ArgumentError(msg)
    current = _CLASSES.get(key, _FUNCTIONS.get(key))
    if current is not None and current is not obj:
        if _qualname(current) != _qualname(obj):
            msg = (
                f"the loss name {key!r} is registered already, for {_qualname(current)}; "
                f"register {_qualname(obj)} under another name (name= or package=)."
            )
            raise ArgumentError(msg)
        unregister(key)  # the same class defined again (a re-run notebook cell): the new one wins
    table[key] = obj
    _KEYS[id(obj)] = key
    return obj


def unregister(name):
    """Remove a name added by :func:`register` (probloss's own names cannot be removed).

    Parameters
    ----------
    name : str
        The registry name, e.g. ``"my_package>Poisson"``.

    Raises
    ------
    ArgumentError
        ``name`` is not registered, or is one of probloss's own.
    """
    if not isinstance(name, str) or name in _BUILTIN_NAMES or (name not in _CLASSES and name not in _FUNCTIONS):
        what = "is one of probloss's own losses" if isinstance(name, str) and name in _BUILTIN_NAMES else "is not registered"
        msg = f"cannot unregister {_brief(name)}: it {what}."
        raise ArgumentError(msg)
    obj = _CLASSES.pop(name, None) or _FUNCTIONS.pop(name)
    _KEYS.pop(id(obj), None)


def _registry_key(obj, name, package) -> str:
    for arg, value in (("name", name), ("package", package)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            msg = f"register(): `{arg}` must be a non-empty string or None; got {_brief(value)}."
            raise ProblossTypeError(msg)
    if name is None:
        name = getattr(obj, "__name__", None)
        if not isinstance(name, str) or not name.isidentifier():
            msg = f"register(): {_brief(obj)} has no usable __name__; pass name='...'."
            raise ProblossTypeError(msg)
    return f"{package}>{name}" if package is not None else name


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


for _cls in (
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalCrossentropy,
    Poisson,
    KLDivergence,
    CTC,
    GaussianNLL, DistillationKL, DistillationCrossEntropy, JSDivergence,
):
    register(_cls)
for _fn in (
    _ce.binary_crossentropy,
    _focal.binary_focal_crossentropy,
    _ce.categorical_crossentropy,
    _focal.categorical_focal_crossentropy,
    _ce.sparse_categorical_crossentropy,
    poisson,
    kl_divergence,
    ctc,
    gaussian_nll, _distill.distillation_kl, _distill.distillation_cross_entropy, _distill.js_divergence_loss,
):
    register(_fn)
_BUILTIN_NAMES = frozenset(_CLASSES) | frozenset(_FUNCTIONS) | frozenset(_ALIASES)
_BUILTIN_CLASSES = frozenset(_CLASSES)


def _known_names():
    return sorted(set(_CLASSES) | set(_FUNCTIONS) | set(_ALIASES))


def _check_json_safe(value, where: str):
    """Raise unless ``value`` is JSON data (None, bool, str, finite numbers, lists, str-keyed
    dicts) nested at most :data:`_MAX_DEPTH` deep.  Iterative: no recursion, no repr of
    the whole value, so neither a deep nor a self-referencing config can exhaust the stack."""
    stack = [(value, where, 0)]
    while stack:
        v, at, depth = stack.pop()
        if v is None or isinstance(v, (bool, str)):
            continue
        if isinstance(v, numbers.Real):
            if not isinstance(v, numbers.Integral) and not math.isfinite(v):
                msg = f"{at} holds {v!r}; configs hold finite numbers only."
                raise ArgumentError(msg)
            continue
        if not isinstance(v, (list, tuple, dict)):
            msg = f"{at} holds a {type(v).__name__}; configs may only hold JSON values (numbers, strings, lists, dicts)."
            raise ProblossTypeError(msg)
        if depth >= _MAX_DEPTH:
            msg = (
                f"{where} is nested more than {_MAX_DEPTH} levels deep (lists and dicts within each other); "
                "a loss config is a flat dict of constructor arguments."
            )
            raise ArgumentError(msg)
        if isinstance(v, dict):
            children = []
            for k, item in v.items():
                if not isinstance(k, str):
                    msg = f"{at} has a non-string key {_brief(k)}; configs are JSON objects."
                    raise ProblossTypeError(msg)
                children.append((item, f"{at}[{_brief(k)}]", depth + 1))
        else:
            children = [(item, f"{at}[{i}]", depth + 1) for i, item in enumerate(v)]
        stack.extend(reversed(children))  # report the first bad entry first


def serialize(loss):
    """A JSON-safe dict describing ``loss``, a registered loss class's instance or function.

    probloss's own losses serialize as Keras writes its own; a class registered with
    :func:`register` carries its registry name in ``"registered_name"``, as Keras writes
    a class registered with ``register_keras_serializable``.

    Raises
    ------
    ArgumentError
        ``loss``'s class (or the function) is not registered: register it with
        :func:`probloss.losses.register`.  A class is matched by identity, so a
        subclass, or a class of your own named like one of probloss's, needs its own
        registration.
    ProblossTypeError
        ``get_config()`` returned something that is not JSON data.

    Examples
    --------
    >>> import probloss as pl
    >>> pl.serialize(pl.Poisson())["class_name"]
    'Poisson'
    """
    if isinstance(loss, Loss):
        cls = type(loss)
        key = _KEYS.get(id(cls))
        if key is None or _CLASSES.get(key) is not cls:
            msg = (
                f"cannot serialize {cls.__qualname__}: its class is not registered. Register it with "
                f"probloss.losses.register({cls.__name__}, package='my_package') (it is then known as "
                f"'my_package>{cls.__name__}'), or with name='...'; deserialize() will then rebuild it "
                "from its get_config()."
            )
            raise ArgumentError(msg)
        config = loss.get_config()
        if not isinstance(config, dict):
            msg = f"{cls.__qualname__}.get_config() must return a dict; got {type(config).__name__}."
            raise ProblossTypeError(msg)
        _check_json_safe(config, f"{cls.__qualname__}.get_config()")
        if key in _BUILTIN_CLASSES:
            return {"module": "probloss", "class_name": key, "config": config, "registered_name": None}
        return {"module": cls.__module__, "class_name": cls.__name__, "config": config, "registered_name": key}
    key = _KEYS.get(id(loss)) if callable(loss) and not isinstance(loss, type) else None
    if key is not None and _FUNCTIONS.get(key) is loss:
        return {"module": "builtins", "class_name": "function", "config": key, "registered_name": "function"}
    msg = (
        f"cannot serialize {_brief(loss)}: only registered losses are serializable ({', '.join(_known_names())}); "
        "register your own with probloss.losses.register()."
    )
    raise ArgumentError(msg)


_MODULES = ("probloss", "probloss.losses", "keras.losses", "keras.src.losses", "keras.src.losses.losses", "builtins", None)


def deserialize(config):
    """Rebuild a loss from :func:`serialize`'s dict, or from a registered name.

    Only names in the registry are accepted (probloss's own, Keras's aliases, and those
    added with :func:`register`); no module is imported, nothing is unpickled or
    evaluated.  ``"registered_name"``, when present, names the class; else
    ``"class_name"`` does.  ``"config"`` (the constructor arguments) must be a dict of
    JSON data at most 100 levels deep.

    Raises
    ------
    ProblossError
        For any malformed or unknown config: :class:`ProblossTypeError` for wrong types
        (a list as a class name, a string as ``"config"``, non-string keys),
        :class:`ArgumentError` for unknown names and modules, too deep nesting, and
        constructor arguments the class refuses.

    Examples
    --------
    >>> import probloss as pl
    >>> pl.deserialize({"module": "probloss", "class_name": "Poisson", "config": {"reduction": "sum"}}).reduction
    'sum'
    """
    if isinstance(config, str):
        return _lookup(config)
    if not isinstance(config, dict):
        msg = f"`config` must be a dict from serialize() or a loss name; got {type(config).__name__}."
        raise ProblossTypeError(msg)
    _check_json_safe(config, "config")
    module = config.get("module")
    class_name = config.get("class_name")
    if class_name == "function":
        if module not in _MODULES:
            msg = f"`config` names module {_brief(module)}; only probloss's own registered losses can be deserialized."
            raise ArgumentError(msg)
        name = config.get("config")
        if not isinstance(name, str) or name not in _FUNCTIONS:
            msg = f"unknown loss function {_brief(name)}; known: {', '.join(sorted(_FUNCTIONS))}."
            raise ArgumentError(msg)
        return _FUNCTIONS[name]
    registered = config.get("registered_name")
    key = class_name if registered is None else registered
    for field, value in (("class_name", class_name), ("registered_name", registered)):
        if value is not None and not isinstance(value, str):
            msg = f"`config[{field!r}]` must be a string; got {type(value).__name__} {_brief(value)}."
            raise ProblossTypeError(msg)
    cls = _CLASSES.get(key) if isinstance(key, str) else None
    own_module = cls is not None and key not in _BUILTIN_CLASSES and module == cls.__module__
    if module not in _MODULES and not own_module:
        msg = f"`config` names module {_brief(module)}; only probloss's own registered losses can be deserialized."
        raise ArgumentError(msg)
    if cls is None:
        msg = f"unknown loss class {_brief(key)}; known: {', '.join(sorted(_CLASSES))}."
        raise ArgumentError(msg)
    inner = config.get("config")
    if inner is None:
        inner = {}
    if not isinstance(inner, dict):
        msg = f"`config['config']` must be a dict of constructor arguments (from get_config()); got {type(inner).__name__}."
        raise ProblossTypeError(msg)
    return cls.from_config(dict(inner))


def _lookup(name: str):
    key = _ALIASES.get(name, name)
    if key in _CLASSES:
        return _CLASSES[key]()
    if key in _FUNCTIONS:
        return _FUNCTIONS[key]
    import difflib

    close = difflib.get_close_matches(name, _known_names(), n=3) if len(name) <= 200 else []
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    msg = f"Could not interpret loss `identifier` {_brief(name)}.{hint} Known names: {', '.join(_known_names())}."
    raise ArgumentError(msg)


def get(identifier):
    """Resolve a loss identifier as Keras does.

    ``None`` gives ``None``; a class name gives an instance with default options; a
    function name or alias (``"bce"``, ``"kld"``) gives the function; a dict is
    deserialized; a :class:`Loss` instance or other callable is returned as is; a
    :class:`Loss` subclass is instantiated.  Names added with :func:`register` resolve
    like probloss's own.

    Examples
    --------
    >>> import probloss as pl
    >>> pl.get("bce").__name__
    'binary_crossentropy'
    >>> pl.get("SparseCategoricalCrossentropy").name
    'sparse_categorical_crossentropy'
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        return _lookup(identifier)
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return identifier
    msg = f"Could not interpret loss identifier {identifier!r}: pass a name, a config dict or a callable."
    raise ProblossTypeError(msg)
