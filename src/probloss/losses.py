"""Keras-compatible loss classes, and the registry (``get``, ``serialize``, ``deserialize``).

A class stores its options, calls the matching function of :mod:`probloss.functional`
for per-sample values, and reduces them with sample weights and masks exactly as
Keras 3 does (see :mod:`probloss._reduction`).  Configs hold JSON-safe values only, and
the registry never imports or evaluates anything it is handed.
"""

from __future__ import annotations

import math
import numbers

from . import _checks as C
from ._compat import as_array, is_half, namespace
from ._errors import ArgumentError, ProblossTypeError, ShapeError
from ._reduction import reduce_values, validate_reduction
from .functional import crossentropy as _ce
from .functional import focal as _focal
from .functional.ctc import ctc
from .functional.divergence import kl_divergence
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
    "serialize",
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
        xp = namespace(y_true, y_pred, names=("y_true", "y_pred"))
        if self._dtype is not None:
            y_pred = xp.astype(as_array(y_pred, xp, name="y_pred"), getattr(xp, self._dtype))
        return self._values_and_mask(y_true, y_pred, xp)

    def _values_and_mask(self, y_true, y_pred, xp):
        """Per-sample losses and an optional boolean mask (``ignore_class``)."""
        y_pred = as_array(y_pred, xp, name="y_pred")
        if not xp.isdtype(y_pred.dtype, "real floating"):
            y_pred = xp.astype(y_pred, xp.float32)
        return self.call(as_array(y_true, xp, like=y_pred, name="y_true"), y_pred), None

    def __call__(self, y_true, y_pred, sample_weight=None):
        xp = namespace(y_true, y_pred, sample_weight, names=("y_true", "y_pred", "sample_weight"))
        values, mask = self.per_sample(y_true, y_pred)
        out_dtype = values.dtype
        if is_half(out_dtype):  # reduce half-precision losses in float32
            values = xp.astype(values, xp.float32)
        if sample_weight is not None:
            sample_weight = xp.astype(as_array(sample_weight, xp, like=values, name="sample_weight"), values.dtype)
            _check_weight_is_unambiguous(sample_weight, values)
            if C.eager(sample_weight):
                C.check_finite(xp, sample_weight, "sample_weight")
        out = reduce_values(values, xp, reduction=self.reduction, sample_weight=sample_weight, mask=mask)
        out = xp.asarray(out) if not hasattr(out, "dtype") else out
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

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> round(float(pl.BinaryCrossentropy()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])), 4)
    0.8149
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
    ):
        self._options = _ce.options(from_logits, label_smoothing, epsilon)
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


class BinaryFocalCrossentropy(LossFunctionWrapper):
    """Class form of :func:`~probloss.binary_focal_crossentropy`; see :class:`Loss`."""

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

    Examples
    --------
    >>> import probloss as pl
    >>> cce = pl.CategoricalCrossentropy()
    >>> round(float(cce([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 3)
    1.177
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
    ):
        self._options = _ce.options(from_logits, label_smoothing, epsilon)
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


class CategoricalFocalCrossentropy(LossFunctionWrapper):
    """Class form of :func:`~probloss.categorical_focal_crossentropy`; see :class:`Loss`."""

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

    Examples
    --------
    >>> import probloss as pl
    >>> scce = pl.SparseCategoricalCrossentropy()
    >>> round(float(scce([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])), 3)
    1.177
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
    ):
        self._options = _ce.options(from_logits, epsilon=epsilon, ignore_class=ignore_class)
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

    def _values_and_mask(self, y_true, y_pred, xp):
        return _ce.sparse_values(y_true, y_pred, self._fn_kwargs["axis"], self._options)


class Poisson(LossFunctionWrapper):
    """Class form of :func:`~probloss.poisson`; see :class:`Loss`."""

    def __init__(self, reduction="sum_over_batch_size", name="poisson", dtype=None, epsilon=_EPS):
        super().__init__(
            poisson, reduction=reduction, name=name, dtype=dtype, epsilon=C.check_epsilon(epsilon)
        )


class KLDivergence(LossFunctionWrapper):
    """Class form of :func:`~probloss.kl_divergence`; see :class:`Loss`."""

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
_ALIASES = {"bce": "binary_crossentropy", "BCE": "binary_crossentropy", "kld": "kl_divergence", "KLD": "kl_divergence"}


def register(obj):
    """Add a class or function to the registry under its own name (used internally)."""
    table = _CLASSES if isinstance(obj, type) else _FUNCTIONS
    table[obj.__name__] = obj
    return obj


for _cls in (
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    SparseCategoricalCrossentropy,
    Poisson,
    KLDivergence,
    CTC,
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
):
    register(_fn)


def _known_names():
    return sorted(set(_CLASSES) | set(_FUNCTIONS) | set(_ALIASES))


def _check_json_safe(value, where: str):
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, numbers.Real):
        if isinstance(value, float) and not math.isfinite(value):
            msg = f"{where} holds {value!r}; configs hold finite numbers only."
            raise ArgumentError(msg)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json_safe(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                msg = f"{where} has a non-string key {k!r}; configs are JSON objects."
                raise ProblossTypeError(msg)
            _check_json_safe(v, f"{where}[{k!r}]")
        return
    msg = f"{where} holds a {type(value).__name__}; configs may only hold JSON values (numbers, strings, lists, dicts)."
    raise ProblossTypeError(msg)


def serialize(loss):
    """A JSON-safe dict describing ``loss`` (a registered class instance or function).

    Examples
    --------
    >>> import probloss as pl
    >>> pl.serialize(pl.Poisson())["class_name"]
    'Poisson'
    """
    if isinstance(loss, Loss) and type(loss).__name__ in _CLASSES:
        return {"module": "probloss", "class_name": type(loss).__name__, "config": loss.get_config(), "registered_name": None}
    name = getattr(loss, "__name__", None)
    if callable(loss) and name in _FUNCTIONS and _FUNCTIONS[name] is loss:
        return {"module": "builtins", "class_name": "function", "config": name, "registered_name": "function"}
    msg = f"cannot serialize {loss!r}: only probloss's registered losses are serializable ({', '.join(_known_names())})."
    raise ArgumentError(msg)


_MODULES = ("probloss", "probloss.losses", "keras.losses", "keras.src.losses", "keras.src.losses.losses", "builtins", None)


def deserialize(config):
    """Rebuild a loss from :func:`serialize`'s dict, or from a registered name.

    Only names in the registry are accepted; no module is imported, nothing is
    unpickled or evaluated.
    """
    if isinstance(config, str):
        return _lookup(config)
    if not isinstance(config, dict):
        msg = f"`config` must be a dict from serialize() or a loss name; got {type(config).__name__}."
        raise ProblossTypeError(msg)
    _check_json_safe(config, "config")
    module = config.get("module")
    if module not in _MODULES:
        msg = f"`config` names module {module!r}; only probloss's own registered losses can be deserialized."
        raise ArgumentError(msg)
    class_name = config.get("class_name")
    if class_name == "function":
        name = config.get("config")
        if name not in _FUNCTIONS:
            msg = f"unknown loss function {name!r}; known: {', '.join(sorted(_FUNCTIONS))}."
            raise ArgumentError(msg)
        return _FUNCTIONS[name]
    if class_name not in _CLASSES:
        msg = f"unknown loss class {class_name!r}; known: {', '.join(sorted(_CLASSES))}."
        raise ArgumentError(msg)
    inner = config.get("config") or {}
    return _CLASSES[class_name].from_config(dict(inner))


def _lookup(name: str):
    key = _ALIASES.get(name, name)
    if key in _CLASSES:
        return _CLASSES[key]()
    if key in _FUNCTIONS:
        return _FUNCTIONS[key]
    import difflib

    close = difflib.get_close_matches(name, _known_names(), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    msg = f"Could not interpret loss `identifier` {name!r}.{hint} Known names: {', '.join(_known_names())}."
    raise ArgumentError(msg)


def get(identifier):
    """Resolve a loss identifier as Keras does.

    ``None`` gives ``None``; a class name gives an instance with default options; a
    function name or alias (``"bce"``, ``"kld"``) gives the function; a dict is
    deserialized; a :class:`Loss` instance or other callable is returned as is; a
    :class:`Loss` subclass is instantiated.

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
