"""The Keras loss classes: ``call`` gives probloss's per-sample values, Keras reduces them."""

from __future__ import annotations

try:
    import keras
    from keras import ops
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    if exc.name != "keras":
        raise
    msg = "probloss.keras needs Keras 3: pip install keras (and its JAX or torch backend: pip install 'probloss[jax]' or 'probloss[torch]')."
    raise ModuleNotFoundError(msg, name="keras") from exc

from .. import losses as _pl
from .._compat import namespace
from .._errors import ArgumentError, ProblossTypeError
from .._reduction import reduce_values

try:  # what Keras's own SparseCategoricalCrossentropy uses to hand its ignore_class mask on
    from keras.src.backend import get_keras_mask as _get_keras_mask
    from keras.src.backend import set_keras_mask as _set_keras_mask
except ImportError:  # pragma: no cover - older layouts: the attribute Keras reads

    def _set_keras_mask(x, mask):
        x._keras_mask = mask

    def _get_keras_mask(x):
        return getattr(x, "_keras_mask", None)


__all__ = [
    "CTC",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "KLDivergence",
    "Loss",
    "Poisson",
    "SparseCategoricalCrossentropy",
    "from_probloss",
]

_BACKENDS = ("jax", "torch", "numpy")
_EPS = 1e-7


def _register(cls):
    return keras.saving.register_keras_serializable(package="probloss")(cls)


def _same_rank(y_true, y_pred):
    """Keras's rank alignment of ``(y_true, y_pred)`` (what its loss wrappers do before the loss)."""
    r_true, r_pred = len(y_true.shape), len(y_pred.shape)
    if r_true == r_pred + 1 and y_true.shape[-1] == 1:
        if r_pred == 1:
            y_pred = ops.expand_dims(y_pred, axis=-1)
        else:
            y_true = ops.squeeze(y_true, axis=-1)
    elif r_pred == r_true + 1 and y_pred.shape[-1] == 1:
        if r_true == 1:
            y_true = ops.expand_dims(y_true, axis=-1)
        else:
            y_pred = ops.squeeze(y_pred, axis=-1)
    return y_true, y_pred


class Loss(keras.losses.Loss):
    """Base class: a :class:`keras.losses.Loss` computed by a probloss loss.

    Subclasses name the probloss class (``_probloss_class``) and the constructor
    options that ``get_config`` returns (``_options``).  ``call`` returns the per-sample
    values of ``probloss.<Class>(reduction=None, **options).per_sample`` and hands its
    mask (``ignore_class``) to Keras as the loss's output mask; everything else
    (casting to ``dtype``, sample and class weights, input masks, the reduction) is
    Keras's own ``Loss.__call__``.
    """

    _probloss_class: type[_pl.Loss] = _pl.Loss
    _options: tuple[str, ...] = ()

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None, **options):
        backend = keras.backend.backend()
        if backend not in _BACKENDS:
            msg = (
                f"probloss.keras.{type(self).__name__} needs the JAX, torch or NumPy Keras backend "
                f"(KERAS_BACKEND=jax or torch); this Keras runs on {backend!r}, whose tensors probloss "
                f"does not take. Use keras.losses.{type(self).__name__} there."
            )
            raise ProblossTypeError(msg)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._dtype_arg = dtype
        self._probloss = self._probloss_class(reduction=None, **options)  # checks the options
        config = self._probloss.get_config()
        for key in self._options:  # (probloss's own options are in a config only when set)
            setattr(self, key, config.get(key, _pl._EXTENSION_DEFAULTS.get(key)))

    @property
    def probloss_loss(self):
        """The plain probloss loss (``reduction=None``) that computes the per-sample values."""
        return self._probloss

    def call(self, y_true, y_pred):
        # Keras casts leaf by leaf, so a nested Python list arrives as a list of scalars
        y_true = y_true if hasattr(y_true, "shape") else ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_pred = y_pred if hasattr(y_pred, "shape") else ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true, y_pred = _same_rank(y_true, y_pred)
        values, mask = self._probloss.per_sample(y_true, y_pred)
        if mask is not None:
            _set_keras_mask(values, mask)
        return values

    def __call__(self, y_true, y_pred, sample_weight=None):
        if not self._probloss._class_weighted:
            return super().__call__(y_true, y_pred, sample_weight)
        # With class weights the means divide by the targets' weights (torch's weighted
        # mean, as probloss's class computes it), which Keras's reduction cannot: this is
        # Keras's Loss.__call__ with probloss's reduction.
        in_mask = _get_keras_mask(y_pred)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        y_true, y_pred = _same_rank(y_true, y_pred)
        values, mask, target_weight = self._probloss._per_sample_weighted(y_true, y_pred)
        if in_mask is not None:
            in_mask = ops.cast(in_mask, "bool")
            mask = in_mask if mask is None else ops.logical_and(in_mask, mask)
        if sample_weight is not None:
            sample_weight = ops.convert_to_tensor(sample_weight, dtype=values.dtype)
        xp = namespace(values)
        out = reduce_values(
            values, xp, reduction=self.reduction, sample_weight=sample_weight, mask=mask, target_weight=target_weight
        )
        return ops.cast(out, self.dtype)

    def get_config(self):
        config = super().get_config()
        own = self._probloss.get_config()  # (probloss's own options only when set)
        config.update({key: own[key] for key in self._options if key in own})
        if self._dtype_arg is not None:
            config["dtype"] = self._dtype_policy.name
        return config


@_register
class BinaryCrossentropy(Loss):
    """:class:`keras.losses.BinaryCrossentropy` computed by :func:`probloss.binary_crossentropy`."""

    _probloss_class = _pl.BinaryCrossentropy
    _options = ("from_logits", "label_smoothing", "axis", "epsilon", "pos_weight")

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_crossentropy",
        dtype=None,
        epsilon=_EPS,
        pos_weight=None,
    ):
        super().__init__(
            name=name,
            reduction=reduction,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            epsilon=epsilon,
            pos_weight=pos_weight,
        )


@_register
class BinaryFocalCrossentropy(Loss):
    """:class:`keras.losses.BinaryFocalCrossentropy` computed by :func:`probloss.binary_focal_crossentropy`."""

    _probloss_class = _pl.BinaryFocalCrossentropy
    _options = ("from_logits", "label_smoothing", "axis", "apply_class_balancing", "alpha", "gamma", "epsilon")

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
        epsilon=_EPS,
    ):
        super().__init__(
            name=name,
            reduction=reduction,
            dtype=dtype,
            apply_class_balancing=apply_class_balancing,
            alpha=alpha,
            gamma=gamma,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            epsilon=epsilon,
        )


@_register
class CategoricalCrossentropy(Loss):
    """:class:`keras.losses.CategoricalCrossentropy` computed by :func:`probloss.categorical_crossentropy`."""

    _probloss_class = _pl.CategoricalCrossentropy
    _options = ("from_logits", "label_smoothing", "axis", "epsilon", "class_weight", "ruled_out_target")

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="categorical_crossentropy",
        dtype=None,
        epsilon=_EPS,
        class_weight=None,
        ruled_out_target="raise",
    ):
        super().__init__(
            name=name,
            reduction=reduction,
            dtype=dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            epsilon=epsilon,
            class_weight=class_weight,
            ruled_out_target=ruled_out_target,
        )


@_register
class CategoricalFocalCrossentropy(Loss):
    """:class:`keras.losses.CategoricalFocalCrossentropy` computed by :func:`probloss.categorical_focal_crossentropy`."""

    _probloss_class = _pl.CategoricalFocalCrossentropy
    _options = ("from_logits", "label_smoothing", "axis", "alpha", "gamma", "epsilon")

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
        epsilon=_EPS,
    ):
        super().__init__(
            name=name,
            reduction=reduction,
            dtype=dtype,
            alpha=alpha,
            gamma=gamma,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            epsilon=epsilon,
        )


@_register
class SparseCategoricalCrossentropy(Loss):
    """:class:`keras.losses.SparseCategoricalCrossentropy` computed by :func:`probloss.sparse_categorical_crossentropy`.

    Positions whose label is ``ignore_class`` are masked as Keras masks them: the default
    reduction divides by the number of valid positions (combined with any input mask).
    The config keeps ``axis`` (Keras 3.15's own drops it).  ``label_smoothing``,
    ``class_weight`` and ``ruled_out_target`` are probloss's (see
    :class:`probloss.SparseCategoricalCrossentropy`); with ``class_weight`` the means
    divide by the targets' weights as there, with Keras's masks and sample weights.
    """

    _probloss_class = _pl.SparseCategoricalCrossentropy
    _options = ("from_logits", "ignore_class", "axis", "epsilon", "label_smoothing", "class_weight", "ruled_out_target")

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="sparse_categorical_crossentropy",
        dtype=None,
        epsilon=_EPS,
        label_smoothing=0.0,
        class_weight=None,
        ruled_out_target="raise",
    ):
        super().__init__(
            name=name,
            reduction=reduction,
            dtype=dtype,
            from_logits=from_logits,
            ignore_class=ignore_class,
            axis=axis,
            epsilon=epsilon,
            label_smoothing=label_smoothing,
            class_weight=class_weight,
            ruled_out_target=ruled_out_target,
        )


@_register
class Poisson(Loss):
    """:class:`keras.losses.Poisson` computed by :func:`probloss.poisson`."""

    _probloss_class = _pl.Poisson
    _options = ("epsilon",)

    def __init__(self, reduction="sum_over_batch_size", name="poisson", dtype=None, epsilon=_EPS):
        super().__init__(name=name, reduction=reduction, dtype=dtype, epsilon=epsilon)


@_register
class KLDivergence(Loss):
    """:class:`keras.losses.KLDivergence` computed by :func:`probloss.kl_divergence`."""

    _probloss_class = _pl.KLDivergence
    _options = ("epsilon",)

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence", dtype=None, epsilon=_EPS):
        super().__init__(name=name, reduction=reduction, dtype=dtype, epsilon=epsilon)


@_register
class CTC(Loss):
    """:class:`keras.losses.CTC` computed by :func:`probloss.ctc`: labels ``(B, S)`` padded with 0, logits ``(B, T, C)``."""

    _probloss_class = _pl.CTC

    def __init__(self, reduction="sum_over_batch_size", name="ctc", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


_BY_PROBLOSS = {
    cls._probloss_class: cls
    for cls in (
        BinaryCrossentropy,
        BinaryFocalCrossentropy,
        CategoricalCrossentropy,
        CategoricalFocalCrossentropy,
        SparseCategoricalCrossentropy,
        Poisson,
        KLDivergence,
        CTC,
    )
}


def from_probloss(loss):
    """The Keras loss of a plain probloss loss, with the same options.

    Parameters
    ----------
    loss : probloss.Loss
        An instance of one of probloss's own classes (``probloss.SparseCategoricalCrossentropy(...)``, ...).

    Returns
    -------
    Loss
        The matching :mod:`probloss.keras` class, a :class:`keras.losses.Loss`, built from
        ``loss.get_config()`` and ``loss.dtype``.

    Raises
    ------
    ProblossTypeError
        ``loss`` is not an instance of one of probloss's eight loss classes (a subclass of
        your own has no Keras counterpart: subclass :class:`probloss.keras.Loss` instead).

    Examples
    --------
    >>> import probloss as pl
    >>> import probloss.keras as plk
    >>> plk.from_probloss(pl.SparseCategoricalCrossentropy(from_logits=True)).get_config()["from_logits"]
    True
    """
    if isinstance(loss, Loss):
        return loss
    cls = _BY_PROBLOSS.get(type(loss))
    if cls is None:
        what = type(loss).__qualname__ if isinstance(loss, _pl.Loss) else repr(loss)[:80]
        msg = (
            f"from_probloss() takes an instance of one of probloss's loss classes "
            f"({', '.join(sorted(c.__name__ for c in _BY_PROBLOSS))}); got {what}."
        )
        raise ProblossTypeError(msg)
    config = loss.get_config()
    if loss.dtype is not None:
        config["dtype"] = loss.dtype
    try:
        return cls(**config)
    except TypeError as exc:  # pragma: no cover - the two classes' options are the same
        msg = f"from_probloss(): {type(loss).__name__}'s config {config!r} does not fit probloss.keras.{cls.__name__}: {exc}."
        raise ArgumentError(msg) from None
