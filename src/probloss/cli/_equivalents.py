"""The same loss in probloss, Keras, PyTorch, TensorFlow and Optax: a table of data.

``EQUIVALENTS[loss][variant][library]`` is one line of code computing the mean loss over
the batch.  ``variant`` is ``"logits"`` or ``"probabilities"`` (what ``y_pred`` holds),
with ``"probabilities, one-hot labels"`` overriding some libraries' lines for one-hot
labels.  ``explain`` reads it through :func:`equivalents`.

Examples
--------
>>> equivalents("sparse_categorical_crossentropy", logits=True)["pytorch"]
'torch.nn.functional.cross_entropy(logits, y_true)  # y_true int64, class axis 1'
"""

from __future__ import annotations

LIBRARIES = ("probloss", "keras", "pytorch", "tensorflow", "optax")

EQUIVALENTS: dict[str, dict[str, dict[str, str]]] = {
    "sparse_categorical_crossentropy": {
        "probabilities": {
            "probloss": "probloss.SparseCategoricalCrossentropy()(y_true, y_pred)",
            "keras": "keras.losses.SparseCategoricalCrossentropy()(y_true, y_pred)",
            "pytorch": "torch.nn.functional.nll_loss(torch.log(y_pred), y_true)  # y_true int64, class axis 1",
            "tensorflow": "tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred))",
            "optax": "optax.softmax_cross_entropy_with_integer_labels(jnp.log(y_pred), y_true).mean()",
        },
        "logits": {
            "probloss": "probloss.SparseCategoricalCrossentropy(from_logits=True)(y_true, y_pred)",
            "keras": "keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y_true, y_pred)",
            "pytorch": "torch.nn.functional.cross_entropy(logits, y_true)  # y_true int64, class axis 1",
            "tensorflow": "tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_true, logits=logits))",
            "optax": "optax.softmax_cross_entropy_with_integer_labels(logits, y_true).mean()",
        },
    },
    "categorical_crossentropy": {
        "probabilities": {
            "probloss": "probloss.CategoricalCrossentropy()(y_true, y_pred)",
            "keras": "keras.losses.CategoricalCrossentropy()(y_true, y_pred)",
            "pytorch": "-torch.special.xlogy(y_true, y_pred).sum(dim=1).mean()",
            "tensorflow": "tf.reduce_mean(tf.keras.losses.categorical_crossentropy(y_true, y_pred))",
            "optax": "optax.safe_softmax_cross_entropy(jnp.log(y_pred), y_true).mean()",
        },
        "probabilities, one-hot labels": {
            "pytorch": "torch.nn.functional.nll_loss(torch.log(y_pred), y_true.argmax(dim=1))",
        },
        "logits": {
            "probloss": "probloss.CategoricalCrossentropy(from_logits=True)(y_true, y_pred)",
            "keras": "keras.losses.CategoricalCrossentropy(from_logits=True)(y_true, y_pred)",
            "pytorch": "torch.nn.functional.cross_entropy(logits, y_true)  # probability targets, class axis 1",
            "tensorflow": "tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_true, logits=logits))",
            "optax": "optax.softmax_cross_entropy(logits, y_true).mean()",
        },
    },
    "binary_crossentropy": {
        "probabilities": {
            "probloss": "probloss.BinaryCrossentropy()(y_true, y_pred)",
            "keras": "keras.losses.BinaryCrossentropy()(y_true, y_pred)",
            "pytorch": "torch.nn.functional.binary_cross_entropy(y_pred, y_true)  # float targets",
            "tensorflow": "tf.reduce_mean(tf.keras.losses.binary_crossentropy(y_true, y_pred))",
            "optax": "optax.sigmoid_binary_cross_entropy(jax.scipy.special.logit(y_pred), y_true).mean()",
        },
        "logits": {
            "probloss": "probloss.BinaryCrossentropy(from_logits=True)(y_true, y_pred)",
            "keras": "keras.losses.BinaryCrossentropy(from_logits=True)(y_true, y_pred)",
            "pytorch": "torch.nn.functional.binary_cross_entropy_with_logits(logits, y_true)  # float targets",
            "tensorflow": "tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits))",
            "optax": "optax.sigmoid_binary_cross_entropy(logits, y_true).mean()",
        },
    },
    "poisson": {
        "probabilities": {
            "probloss": "probloss.Poisson()(y_true, y_pred)",
            "keras": "keras.losses.Poisson()(y_true, y_pred)",
            "pytorch": "torch.nn.functional.poisson_nll_loss(y_pred, y_true, log_input=False, eps=1e-7)",
            "tensorflow": "tf.reduce_mean(tf.keras.losses.poisson(y_true, y_pred))",
            "optax": "jnp.mean(y_pred - y_true * jnp.log(y_pred + 1e-7))  # Optax has no Poisson loss",
        },
    },
    "log_poisson_loss": {
        "logits": {
            "probloss": "probloss.log_poisson_loss(targets=y_true, log_input=y_pred).mean()",
            "keras": "keras.losses.Poisson()(y_true, keras.ops.exp(y_pred))",
            "pytorch": "torch.nn.functional.poisson_nll_loss(y_pred, y_true, log_input=True)",
            "tensorflow": "tf.reduce_mean(tf.nn.log_poisson_loss(targets=y_true, log_input=y_pred))",
            "optax": "jnp.mean(jnp.exp(y_pred) - y_true * y_pred)  # Optax has no Poisson loss",
        },
    },
    "gaussian_nll": {
        "probabilities": {
            "probloss": "probloss.GaussianNLL()(y_true, y_pred, var=var)  # var=1: 0.5 * mean squared error",
            "keras": "keras.losses.MeanSquaredError()(y_true, y_pred)  # no Gaussian NLL: the fixed-variance case",
            "pytorch": "torch.nn.functional.gaussian_nll_loss(y_pred, y_true, var)",
            "tensorflow": "tf.keras.losses.MeanSquaredError()(y_true, y_pred)  # no Gaussian NLL: the fixed-variance case",
            "optax": "optax.squared_error(y_pred, y_true).mean()  # no Gaussian NLL: the fixed-variance case",
        },
    },
    "distillation_kl": {
        "logits": {
            "probloss": "probloss.DistillationKL(temperature=T)(teacher_logits, student_logits)",
            "keras": "keras.losses.KLDivergence()(keras.ops.softmax(teacher_logits / T), "
            "keras.ops.softmax(student_logits / T)) * T**2  # clips to [1e-7, 1]",
            "pytorch": "torch.nn.functional.kl_div(F.log_softmax(student_logits / T, -1), "
            "F.log_softmax(teacher_logits / T, -1), log_target=True, reduction='batchmean') * T**2",
            "tensorflow": "tf.keras.losses.KLDivergence()(tf.nn.softmax(teacher_logits / T), "
            "tf.nn.softmax(student_logits / T)) * T**2  # clips to [1e-7, 1]",
            "optax": "optax.losses.kl_divergence_with_log_targets(jax.nn.log_softmax(student_logits / T), "
            "jax.nn.log_softmax(teacher_logits / T)).mean() * T**2",
        },
    },
}


def equivalents(loss: str, *, logits: bool = False, one_hot: bool = False) -> dict[str, str]:
    """The line of code per library for ``loss`` (a key of :data:`EQUIVALENTS`)."""
    variants = EQUIVALENTS[loss]
    variant = "logits" if logits and "logits" in variants else next(iter(variants))
    out = dict(variants[variant])
    if one_hot and not logits:
        out.update(variants.get(f"{variant}, one-hot labels", {}))
    return out
