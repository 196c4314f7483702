"""probloss's losses as Keras 3 loss classes, for ``model.compile(loss=...)``.

Importing this module imports Keras (and so its backend: JAX, torch or TensorFlow);
``import probloss`` never does.

Each class here is a real :class:`keras.losses.Loss` whose ``call(y_true, y_pred)``
returns probloss's per-sample values.  Keras's own ``Loss.__call__`` then applies
``sample_weight``, ``fit(class_weight=...)`` (which Keras turns into sample weights),
masks (``Embedding(mask_zero=True)``, ``Masking``, and ``ignore_class``) and the
reduction, exactly as for the classes of ``keras.losses``.  The constructors take
Keras's arguments (plus probloss's ``epsilon`` where it has one), ``dtype`` takes a
Keras dtype policy, and the classes are registered with
``keras.saving.register_keras_serializable(package="probloss")``: a model saved with one
loads with ``keras.models.load_model(path)`` after ``import probloss.keras``, with no
``custom_objects``.

The plain classes (``probloss.SparseCategoricalCrossentropy``, ...) reduce the batch
themselves, so Keras cannot weight or mask their result: give ``compile`` these ones,
or convert one with :func:`from_probloss`.

Examples
--------
>>> import numpy as np
>>> import keras
>>> import probloss.keras as plk
>>> loss = plk.SparseCategoricalCrossentropy()
>>> isinstance(loss, keras.losses.Loss)
True
>>> y_pred = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], dtype="float32")
>>> round(float(loss(np.array([1, 2]), y_pred, sample_weight=np.array([1.0, 3.0]))), 4)
3.4795
>>> round(float(keras.losses.SparseCategoricalCrossentropy()(np.array([1, 2]), y_pred, sample_weight=np.array([1.0, 3.0]))), 4)
3.4795
"""

from ._losses import (
    CTC,
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    KLDivergence,
    Loss,
    Poisson,
    SparseCategoricalCrossentropy,
    from_probloss,
)

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
