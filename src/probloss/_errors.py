"""The exceptions and warnings that probloss raises on bad input.

Every error is a :class:`ProblossError`, itself a :class:`ValueError`, so code that
already catches ``ValueError`` around a Keras loss keeps working.  Wrong *types* raise
:class:`ProblossTypeError`, which is also a :class:`TypeError`.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "LabelFormatError",
    "LabelValueError",
    "PredictionValueError",
    "ProblossError",
    "ProblossTypeError",
    "ProblossWarning",
    "ShapeError",
]


class ProblossError(ValueError):
    """Base class of every error raised by probloss for bad input."""


class ArgumentError(ProblossError):
    """A keyword argument (reduction, label_smoothing, gamma, ...) is out of its domain."""


class ShapeError(ProblossError):
    """Shapes of ``y_true``, ``y_pred`` or ``sample_weight`` do not fit together."""


class LabelFormatError(ProblossError):
    """Labels are in the wrong format for this loss (e.g. one-hot given to a sparse loss)."""


class LabelValueError(ProblossError):
    """Label values are out of range (class index >= num_classes, NaN, ...)."""


class PredictionValueError(ProblossError):
    """Prediction values are out of range (logits given as probabilities, NaN, ...)."""


class ProblossTypeError(ProblossError, TypeError):
    """An input has the wrong type (a string, an object, mixed array libraries, ...)."""


class ProblossWarning(UserWarning):
    """Valid but suspicious input, e.g. probability rows that do not sum to one."""
