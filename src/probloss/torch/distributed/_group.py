"""Process groups, vocabulary shards and DTensor inputs of the vocabulary-parallel losses.

Every collective of :mod:`probloss.torch.distributed` goes through ``dist.all_reduce`` /
``dist.all_gather`` called as attributes of ``torch.distributed`` (never a local alias),
so that a benchmark or a test can wrap them to count what is sent.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist

from ..._errors import ArgumentError, ProblossTypeError, ShapeError

__all__ = ["Shard", "local_of", "resolve_group", "shard_of", "vocab_shard"]


def _fail(cls, fn, msg):
    raise cls(f"{fn}: {msg}")


def resolve_group(fn, group):
    """``group``, or the default (world) group; raises when torch.distributed is not running."""
    if not (dist.is_available() and dist.is_initialized()):
        _fail(ArgumentError, fn, "torch.distributed is not initialised: call `torch.distributed.init_process_group(...)` "
                                 "on every rank first (the vocabulary is split over the ranks of `group`). For logits "
                                 "that are not sharded use the functions of `probloss` or `probloss.torch`.")
    return dist.group.WORLD if group is None else group


class Shard(NamedTuple):
    """This rank's slice of the vocabulary: classes ``[start, start + size)`` of ``vocab_size``."""

    start: int
    size: int
    vocab_size: int
    world_size: int


def even_split(vocab_size: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(start, size)`` of ``rank`` under ``torch.chunk``'s rule (DTensor's ``Shard``):
    ``ceil(V / P)`` classes per rank, the last ranks smaller or empty."""
    full = -(-vocab_size // world_size)
    start = min(rank * full, vocab_size)
    return start, max(0, min(vocab_size - start, full))


def vocab_shard(vocab_size: int, group=None) -> slice:
    """The classes this rank holds when ``vocab_size`` classes are split evenly over ``group``.

    The split is ``torch.chunk``'s (and DTensor ``Shard``'s): ``ceil(V / P)`` classes per
    rank, the last ranks smaller (or empty).  Slice a full classifier with it,
    ``weight[vocab_shard(V)]``, and pass ``vocab_start=s.start, vocab_size=V`` to the
    losses to spare them the all-gather of the shard sizes.

    Examples
    --------
    >>> import torch.distributed as dist
    >>> from probloss.torch.distributed import vocab_shard
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> vocab_shard(10)
    slice(0, 10, None)
    >>> dist.destroy_process_group()
    """
    fn = "vocab_shard"
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        _fail(ArgumentError, fn, f"`vocab_size` must be an integer >= 1 (the number of classes); got {vocab_size!r}.")
    group = resolve_group(fn, group)
    start, size = even_split(vocab_size, dist.get_world_size(group), dist.get_rank(group))
    return slice(start, start + size)


def shard_of(fn, local_size: int, group, vocab_start, vocab_size, device) -> Shard:
    """This rank's :class:`Shard`: from ``vocab_start`` and ``vocab_size`` when both are
    given (no communication), else from an all-gather of every rank's ``local_size``
    (one collective of ``P`` integers)."""
    world = dist.get_world_size(group)
    if (vocab_start is None) != (vocab_size is None):
        _fail(ArgumentError, fn, "give both `vocab_start` and `vocab_size` (this rank's first class and the whole "
                                 "vocabulary), or neither (then the shard sizes are all-gathered).")
    if vocab_start is not None:
        for name, value in (("vocab_start", vocab_start), ("vocab_size", vocab_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                _fail(ArgumentError, fn, f"`{name}` must be an integer >= 0; got {value!r}.")
        if vocab_start + local_size > vocab_size:
            _fail(ShapeError, fn, f"this rank holds {local_size} classes from `vocab_start`={vocab_start}, past "
                                  f"`vocab_size`={vocab_size}; check the offsets (`vocab_shard(vocab_size)` gives the even split).")
        return Shard(vocab_start, local_size, vocab_size, world)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([local_size], dtype=torch.int64, device=device), group=group)
    sizes = [int(s) for s in sizes]
    rank = dist.get_rank(group)
    return Shard(sum(sizes[:rank]), local_size, sum(sizes), world)


# ---------------------------------------------------------------------------- DTensor


def _dtensor_type():
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without the public DTensor
        return None
    return DTensor


def is_dtensor(x) -> bool:
    cls = _dtensor_type()
    return cls is not None and isinstance(x, cls)


class Local(NamedTuple):
    """A DTensor's local tensor, the group of its sharded mesh dimension and its mesh."""

    tensor: torch.Tensor
    group: object
    shard: Shard
    mesh: object


def local_of(fn, name, x, dim) -> Local:
    """The local shard of ``x``, a DTensor sharded on ``dim`` over one mesh dimension
    (``Shard(dim)``; every other mesh dimension ``Replicate()``), with its offsets."""
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor import Shard as ShardPlacement

    dim = dim % x.ndim
    mesh = x.device_mesh
    sharded = [i for i, p in enumerate(x.placements) if not isinstance(p, Replicate)]
    if len(sharded) != 1 or not isinstance(x.placements[sharded[0]], ShardPlacement) or x.placements[sharded[0]].dim % x.ndim != dim:
        _fail(ShapeError, fn, f"`{name}` is a DTensor with placements {tuple(x.placements)}; the vocabulary-parallel losses take "
                              f"`Shard({dim})` (the class axis) on one mesh dimension and `Replicate()` on the others. "
                              f"Redistribute it, e.g. `{name}.redistribute(mesh, [Shard({dim})])`.")
    mesh_dim = sharded[0]
    group = mesh.get_group(mesh_dim)
    world, rank = mesh.size(mesh_dim), mesh.get_local_rank(mesh_dim)
    vocab = x.shape[dim]
    local = x.to_local()
    start, size = even_split(vocab, world, rank)
    if local.shape[dim] != size:
        _fail(ShapeError, fn, f"`{name}`'s local shard has {local.shape[dim]} classes where the even split of {vocab} over "
                              f"{world} ranks gives rank {rank} {size}; redistribute it with `Shard({dim})`.")
    return Local(local, group, Shard(start, size, vocab, world), mesh)


def replicated_local(fn, name, x):
    """``x`` itself, or the local tensor of a DTensor replicated on every mesh dimension."""
    if not is_dtensor(x):
        return x
    from torch.distributed.tensor import Replicate

    if not all(isinstance(p, Replicate) for p in x.placements):
        _fail(ShapeError, fn, f"`{name}` is a DTensor with placements {tuple(x.placements)}; it must be replicated "
                              f"(`Replicate()`): every rank needs all of its values.")
    return x.to_local()


def as_replicated(out, mesh):
    """``out`` (the same on every rank) as a DTensor replicated over ``mesh``."""
    from torch.distributed.tensor import DTensor, Replicate

    return DTensor.from_local(out, mesh, [Replicate()] * mesh.ndim, run_check=False)


def check_tensor(fn, name, x):
    if not isinstance(x, torch.Tensor):
        _fail(ProblossTypeError, fn, f"`{name}` must be a torch tensor (or a DTensor); got {type(x).__name__}.")
    if x.layout is not torch.strided:
        _fail(ProblossTypeError, fn, f"`{name}` is a {x.layout} tensor; pass `{name}.to_dense()`.")
