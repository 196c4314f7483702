"""``where=``: the elements a loss function includes, as Optax's ``where`` argument.

A mask is a boolean array of one of two shapes:

* the shape of ``y_pred``: one flag per entry.  For the softmax cross-entropies (logits
  only) an entry outside the mask leaves the softmax: it is not in the normaliser, its
  target weight is dropped, and label smoothing spreads over the entries inside; for
  the binary cross-entropy and KL divergence it leaves the mean or sum over the class
  axis (a mean divides by the number of entries inside the mask);
* the shape of ``y_pred`` without the class axis: one flag per sample.  A sample outside
  the mask gives 0.

Outside the mask nothing counts, whatever the inputs hold there (NaN included): the
inputs are replaced by harmless values before the loss is computed (the "double where"
that keeps NaN and inf out of the gradients), so those positions contribute 0 to the
value and get a zero gradient, eagerly and under ``jax.jit`` / ``torch.compile``.
"""

from __future__ import annotations

from .._compat import _is_array, as_array, dtype_kind, namespace
from .._errors import ArgumentError, ProblossTypeError, ShapeError

__all__ = ["where_mask"]


def where_mask(xp, where, p, axis: int, loss: str, *, entries: bool = True):
    """``(mask, per_entry)``: ``where`` as a boolean array of ``xp``, and whether it flags
    entries (the shape of ``p``) rather than samples (``p``'s shape without ``axis``).

    ``entries=False`` refuses entry masks (with a message saying why: ``loss`` computes
    from probabilities).
    """
    if _is_array(where) and namespace(where, p, names=("where", "y_pred")) is not xp:
        msg = f"{loss}: `where` must be an array of the same library as `y_pred`; got {type(where).__name__}."
        raise ProblossTypeError(msg)
    m = as_array(where, xp, like=p, name="where")
    if dtype_kind(xp, m.dtype) != "bool":
        msg = (
            f"{loss}: `where` must be a boolean mask (True: include); got dtype {m.dtype}. "
            "Convert it, e.g. `mask == 1` or `mask.astype(bool)`."
        )
        raise ProblossTypeError(msg)
    full = tuple(p.shape)
    rows = full[:axis] + full[axis + 1 :]
    shape = tuple(m.shape)
    if shape == full:
        if not entries:
            msg = (
                f"{loss}: `where` of the shape of `y_pred`, {full}, masks single classes, which takes "
                "`from_logits=True` (a masked class leaves the softmax). From probabilities, pass one flag per "
                f"sample, shape {rows}, or set the masked probabilities to 0 and renormalise the rows."
            )
            raise ArgumentError(msg)
        return m, True
    if shape == rows:
        return m, False
    msg = (
        f"{loss}: `where` of shape {shape} fits neither `y_pred` of shape {full} (one flag per entry) "
        f"nor its samples, shape {rows} (one flag per sample, `y_pred` without its class axis {axis})."
    )
    raise ShapeError(msg)
