"""The losses the command knows, found through probloss's public API, and how to build them.

Examples
--------
>>> name, loss = build_loss("scce", from_logits=True)
>>> name, type(loss).__name__, loss.get_config()["from_logits"]
('sparse_categorical_crossentropy', 'SparseCategoricalCrossentropy', True)
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Sequence
from typing import Any

import probloss as pl
from probloss.losses import LossFunctionWrapper

from ._output import CliError

TF_NN = {
    "softmax_cross_entropy_with_logits": ("labels", "logits"),
    "sparse_softmax_cross_entropy_with_logits": ("labels", "logits"),
    "sigmoid_cross_entropy_with_logits": ("labels", "logits"),
    "weighted_cross_entropy_with_logits": ("labels", "logits"),
    "log_poisson_loss": ("targets", "log_input"),
}
"""The ``tf.nn``-style primitives: name -> (keyword taking --y-true, keyword taking --y-pred)."""

CLI_ALIASES = {"cce": "categorical_crossentropy", "scce": "sparse_categorical_crossentropy"}
"""Short names accepted by the command line only (probloss.get knows bce and kld itself)."""
LIBRARY_ALIASES = ("bce", "kld")


def keras_losses() -> dict[str, type | None]:
    """Every Keras-style loss function name -> its class (or None), from ``probloss.__all__``."""
    classes: dict[str, type] = {}
    for attr in pl.__all__:
        obj = getattr(pl, attr)
        if isinstance(obj, type) and issubclass(obj, pl.Loss) and obj is not pl.Loss:
            classes[obj().name] = obj
    functions: dict[str, type | None] = {}
    for attr in pl.__all__:
        obj = getattr(pl, attr)
        if attr in TF_NN or isinstance(obj, type) or not callable(obj) or not attr.islower():
            continue
        try:
            registered = pl.get(attr) is obj
        except pl.ProblossError:
            registered = False
        if registered:
            functions[attr] = classes.get(attr)
    return dict(sorted(functions.items()))


def aliases() -> dict[str, str]:
    """Alias -> loss name, the library's and the command line's."""
    out = {}
    for alias in LIBRARY_ALIASES:
        try:
            out[alias] = pl.get(alias).__name__
        except (pl.ProblossError, AttributeError):
            continue
    return {**out, **CLI_ALIASES}


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items to a dict, VALUE read as JSON (else kept as a string)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CliError(f"`--set` expects KEY=VALUE (e.g. --set gamma=2); got {item!r}")
        if key in ("reduction", "from_logits", "var"):
            raise CliError(f"`--set {key}`: use the --{key.replace('_', '-')} option instead")
        try:
            options[key] = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            options[key] = raw
    return options


def build_loss(name: str, *, from_logits: bool = False, reduction: str = "sum_over_batch_size", options=None):
    """``(canonical name, loss object)`` for the loss called ``name`` on the command line.

    ``name`` may be a Keras function name, a class name, an alias (``bce``, ``scce``) or a
    ``tf.nn``-style primitive; hyphens count as underscores.
    """
    options = dict(options or {})
    key = name.strip().replace("-", "_")
    key = CLI_ALIASES.get(key.lower(), key)
    if key in TF_NN:
        return key, _tf_nn_loss(key, from_logits, reduction, options)
    functions = keras_losses()
    try:
        found = pl.get(key)
    except pl.ProblossError:
        known = sorted(set(functions) | set(TF_NN) | {c.__name__ for c in functions.values() if c})
        close = difflib.get_close_matches(key, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CliError(f"unknown loss {name!r}{hint} (`probloss list` shows them all)") from None
    canonical = getattr(found, "name", None) if isinstance(found, pl.Loss) else getattr(found, "__name__", key)
    cls = type(found) if isinstance(found, pl.Loss) else functions.get(canonical)
    if cls is None:
        raise CliError(f"loss {name!r} cannot be computed from the command line")
    params = inspect.signature(cls).parameters
    allowed = [p for p in params if p not in ("name", "reduction", "from_logits")]
    _check_options(canonical, options, allowed)
    if from_logits:
        if "from_logits" not in params:
            raise CliError(f"`--from-logits` does not apply to {canonical}: it takes probabilities or rates, not logits")
        options["from_logits"] = True
    return canonical, _construct(cls, reduction=reduction, **options)


def _tf_nn_loss(key: str, from_logits: bool, reduction: str, options: dict) -> pl.Loss:
    fn = getattr(pl, key)
    true_kw, pred_kw = TF_NN[key]
    params = inspect.signature(fn).parameters
    allowed = [p for p in params if p not in (true_kw, pred_kw)]
    _check_options(key, options, allowed)
    for p in allowed:
        if params[p].default is inspect.Parameter.empty and p not in options:
            raise CliError(f"{key} needs `--set {p}=VALUE` (e.g. --set {p}=2)")
    if from_logits and key == "log_poisson_loss":
        raise CliError("`--from-logits` does not apply to log_poisson_loss: it takes log-rates (`--y-pred`)")

    def call(y_true, y_pred, **kwargs):
        return fn(**{true_kw: y_true, pred_kw: y_pred}, **kwargs)

    call.__name__ = key
    return _construct(LossFunctionWrapper, call, reduction=reduction, name=key, **options)


def _construct(cls, *args, **kwargs):
    try:
        return cls(*args, **kwargs)
    except pl.ProblossError:
        raise
    except (TypeError, ValueError) as exc:
        raise CliError(f"`--set`: {exc}") from None


def _check_options(name: str, options: dict, allowed: list[str]) -> None:
    for key in options:
        if key not in allowed:
            shown = ", ".join(allowed) or "none"
            raise CliError(f"`--set {key}`: {name} has no option {key!r}; its options are: {shown}")
