"""Global token normalisation: the valid tokens of a whole optimizer step, over every rank.

A step whose batch is split over ``R`` data-parallel ranks and ``M`` micro-batches
(gradient accumulation) should minimise the mean over *all* its valid tokens::

    L = (sum over ranks r, micro-batches k, valid tokens i of l_rki) / n,
    n = sum_r sum_k n_rk                 (n_rk: valid tokens of micro-batch k on rank r)

Averaging per micro-batch and per rank instead, ``(1 / RM) sum_rk (sum_i l_rki / n_rk)``,
gives each micro-batch the same weight whatever its number of valid tokens, so a token
of a heavily padded micro-batch counts more than one of a full one.  The fix: count
``n`` first (:func:`count_valid_tokens`, one all-reduce of one integer), then give each
micro-batch the loss ``sum_i l_rki / n`` (``reduction="global_mean"`` with
``num_tokens=n``, or ``reduction="sum"`` divided by ``n``).  See ``docs/distributed.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from ..._errors import ArgumentError, ProblossTypeError
from ._group import is_dtensor

__all__ = ["count_valid_tokens"]


def count_valid_tokens(labels, *, ignore_index: int | None = -100, group=None) -> torch.Tensor:
    """The number of labels that are not ``ignore_index``, over every tensor and every rank.

    ``labels`` is one tensor or a sequence of them (the micro-batches of one optimizer
    step).  When torch.distributed is initialised, the local count is summed over the
    ranks of ``group`` (the data-parallel group; default: the world) with one all-reduce
    of one ``int64``; otherwise it is the local count.

    Parameters
    ----------
    labels : Tensor or sequence of Tensor
        Integer labels (any shape).
    ignore_index : int or None, default -100
        The label of padding (torch's and Hugging Face's -100; Keras's ``ignore_class``).
        ``None`` counts every label.
    group : ProcessGroup, optional
        The ranks whose tokens share the normalisation.  With tensor parallelism, pass
        the data-parallel group: the ranks of a tensor-parallel group hold the same tokens.

    Returns
    -------
    Tensor
        A 0-d ``int64`` tensor on the labels' device, the same on every rank of ``group``.

    Examples
    --------
    >>> import torch
    >>> from probloss.torch.distributed import count_valid_tokens
    >>> micro_batches = [torch.tensor([[5, 2, -100, -100]]), torch.tensor([[7, 1, 4, 3]])]
    >>> int(count_valid_tokens(micro_batches))
    6
    """
    fn = "count_valid_tokens"
    tensors = [labels] if isinstance(labels, torch.Tensor) else labels
    if not isinstance(tensors, Sequence) or not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ProblossTypeError(f"{fn}: `labels` must be a tensor or a non-empty sequence of tensors (the micro-batches); "
                                f"got {type(labels).__name__}.")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise ArgumentError(f"{fn}: `ignore_index` must be an integer or None; got {ignore_index!r}.")
    tensors = [t.to_local() if is_dtensor(t) else t for t in tensors]
    device = tensors[0].device
    count = torch.zeros((), dtype=torch.int64, device=device)
    for t in tensors:
        count += t.numel() if ignore_index is None else (t != ignore_index).sum().to(device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count, group=group)
    elif group is not None:
        raise ArgumentError(f"{fn}: a `group` was given but torch.distributed is not initialised; call "
                            "`torch.distributed.init_process_group(...)` first, or leave `group` out to count locally.")
    return count
