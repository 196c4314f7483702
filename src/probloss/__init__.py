"""probloss: probabilistic losses written once over the Python array API.

Keras 3's probabilistic losses (functions and classes, same names and numbers), the
``tf.nn`` "with logits" primitives, and :mod:`probloss.info`, on NumPy, PyTorch, JAX and
CuPy arrays.  ``import probloss`` imports no array framework besides NumPy.
"""

from . import info as info
from ._checks import set_value_checks as set_value_checks
from ._checks import value_checks_enabled as value_checks_enabled
from ._errors import ArgumentError as ArgumentError
from ._errors import LabelFormatError as LabelFormatError
from ._errors import LabelValueError as LabelValueError
from ._errors import PredictionValueError as PredictionValueError
from ._errors import ProblossError as ProblossError
from ._errors import ProblossTypeError as ProblossTypeError
from ._errors import ProblossWarning as ProblossWarning
from ._errors import ShapeError as ShapeError
from .functional import binary_crossentropy as binary_crossentropy
from .functional import binary_focal_crossentropy as binary_focal_crossentropy
from .functional import categorical_crossentropy as categorical_crossentropy
from .functional import categorical_focal_crossentropy as categorical_focal_crossentropy
from .functional import ctc as ctc
from .functional import ctc_loss as ctc_loss
from .functional import distillation_cross_entropy as distillation_cross_entropy
from .functional import distillation_kl as distillation_kl
from .functional import gaussian_nll as gaussian_nll
from .functional import js_divergence_loss as js_divergence_loss
from .functional import kl_divergence as kl_divergence
from .functional import log_poisson_loss as log_poisson_loss
from .functional import poisson as poisson
from .functional import sigmoid_cross_entropy_with_logits as sigmoid_cross_entropy_with_logits
from .functional import softmax_cross_entropy_with_logits as softmax_cross_entropy_with_logits
from .functional import sparse_categorical_crossentropy as sparse_categorical_crossentropy
from .functional import sparse_softmax_cross_entropy_with_logits as sparse_softmax_cross_entropy_with_logits
from .functional import weighted_cross_entropy_with_logits as weighted_cross_entropy_with_logits
from .losses import CTC as CTC
from .losses import BinaryCrossentropy as BinaryCrossentropy
from .losses import BinaryFocalCrossentropy as BinaryFocalCrossentropy
from .losses import CategoricalCrossentropy as CategoricalCrossentropy
from .losses import CategoricalFocalCrossentropy as CategoricalFocalCrossentropy
from .losses import DistillationCrossEntropy as DistillationCrossEntropy
from .losses import DistillationKL as DistillationKL
from .losses import GaussianNLL as GaussianNLL
from .losses import JSDivergence as JSDivergence
from .losses import KLDivergence as KLDivergence
from .losses import Loss as Loss
from .losses import Poisson as Poisson
from .losses import SparseCategoricalCrossentropy as SparseCategoricalCrossentropy
from .losses import deserialize as deserialize
from .losses import get as get
from .losses import serialize as serialize

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CTC",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "DistillationCrossEntropy",
    "DistillationKL",
    "GaussianNLL",
    "JSDivergence",
    "KLDivergence",
    "LabelFormatError",
    "LabelValueError",
    "Loss",
    "Poisson",
    "PredictionValueError",
    "ProblossError",
    "ProblossTypeError",
    "ProblossWarning",
    "ShapeError",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "ctc",
    "ctc_loss",
    "deserialize",
    "distillation_cross_entropy",
    "distillation_kl",
    "gaussian_nll",
    "get",
    "info",
    "js_divergence_loss",
    "kl_divergence",
    "log_poisson_loss",
    "poisson",
    "serialize",
    "set_value_checks",
    "sigmoid_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits",
    "sparse_categorical_crossentropy",
    "sparse_softmax_cross_entropy_with_logits",
    "value_checks_enabled",
    "weighted_cross_entropy_with_logits",
]
