"""Gradient accumulation over unevenly padded micro-batches: per-micro-batch means against
the global token normalisation.

A batch of 8 sequences of a tiny language model (an embedding and an LM head over 50
tokens) is split into 4 micro-batches whose numbers of real tokens differ a lot (the rest
is padding, label -100).  The gradient of the whole batch's mean loss is the reference;
two ways of accumulating it over the micro-batches are compared with it:

* ``per-micro-batch mean``: ``loss_k = mean over micro-batch k``, gradients of
  ``loss_k / 4`` summed.  A token of a short micro-batch weighs more than one of a long
  one: the accumulated gradient is not the batch's.
* ``global normalisation``: ``n = count_valid_tokens(all micro-batches)`` first, then
  ``loss_k = sum over micro-batch k / n``: the accumulated gradient is the batch's.

With ``--processes 2`` the micro-batches are also split over two gloo processes (data
parallelism on this CPU): ``n`` is counted over both ranks, and the ranks' gradients are
summed (``DistributedDataParallel`` averages instead: multiply each rank's loss by the
number of ranks).

    python examples/grad_accumulation.py [--processes 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile

import torch
import torch.nn.functional as F

import probloss as pl
from probloss.torch.distributed import count_valid_tokens

VOCAB, DIM, SEQ = 50, 16, 12
LENGTHS = [12, 11, 2, 1, 12, 3, 10, 12]  # real tokens of each sequence: the rest is padding
MICRO = 2  # sequences per micro-batch: 4 micro-batches of 23, 3, 15 and 22 real tokens


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (len(LENGTHS), SEQ + 1), generator=g)
    inputs, labels = tokens[:, :-1].clone(), tokens[:, 1:].clone()
    for i, length in enumerate(LENGTHS):
        labels[i, length:] = -100
    return inputs, labels


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Embedding(VOCAB, DIM), torch.nn.Linear(DIM, VOCAB))


def grads(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def reference(inputs, labels):
    """The gradient of the whole batch's mean over its real tokens (torch's own loss)."""
    model = make_model()
    F.cross_entropy(model(inputs).flatten(0, 1), labels.flatten(), ignore_index=-100).backward()
    return grads(model)


SCCE_SUM = pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100, reduction="sum")
SCCE_MEAN = pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100)


def accumulate(micro_batches, normalisation, group_size=1):
    """Accumulate the gradients of the micro-batches' losses; return (the summed losses, the gradient)."""
    model = make_model()
    total = 0.0
    n = count_valid_tokens([y for _, y in micro_batches]) if normalisation == "global" else None
    for x, y in micro_batches:
        if normalisation == "global":
            loss = SCCE_SUM(y, model(x)) / n  # sum over the micro-batch / valid tokens of the whole step
        else:
            loss = SCCE_MEAN(y, model(x)) / (len(micro_batches) * group_size)  # mean of the micro-batch
        loss.backward()
        total += float(loss.detach())
    return total, grads(model)


def split(inputs, labels):
    return [(inputs[i:i + MICRO], labels[i:i + MICRO]) for i in range(0, len(LENGTHS), MICRO)]


def _rank(rank, world, port, out_dir):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    inputs, labels = make_batch()
    mine = split(inputs, labels)[rank::world]  # this rank's micro-batches
    out = {}
    for normalisation in ("per-micro-batch mean", "global"):
        # count_valid_tokens all-reduces the count over the ranks here
        loss, g = accumulate(mine, normalisation, group_size=world)
        dist.all_reduce(g)  # the ranks' gradients summed
        total = torch.tensor(loss)
        dist.all_reduce(total)
        out[normalisation] = (float(total), g)
    if rank == 0:
        torch.save(out, os.path.join(out_dir, "ranks.pt"))
    dist.destroy_process_group()


def run_ranks(world):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_rank, args=(world, port, out_dir), nprocs=world, join=True)
        return torch.load(os.path.join(out_dir, "ranks.pt"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1, help="also split the micro-batches over this many gloo processes")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)

    inputs, labels = make_batch()
    want = reference(inputs, labels)
    micro = split(inputs, labels)
    counts = [int((y != -100).sum()) for _, y in micro]
    model = make_model()
    with torch.no_grad():
        batch_loss = float(SCCE_MEAN(labels, model(inputs)))
    result = {"real tokens per micro-batch": counts, "batch mean loss": batch_loss}
    for normalisation in ("per-micro-batch mean", "global"):
        loss, g = accumulate(micro, normalisation)
        result[normalisation] = {"loss": loss, "gradient relative error": rel_err(g, want)}
    if args.processes > 1:
        for normalisation, (loss, g) in run_ranks(args.processes).items():
            result[f"{normalisation}, {args.processes} processes"] = {"loss": loss, "gradient relative error": rel_err(g, want)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"real tokens per micro-batch: {counts} (of {MICRO * SEQ} each); whole-batch mean loss {batch_loss:.6f}")
    for name, r in result.items():
        if isinstance(r, dict):
            print(f"{name:36s} accumulated loss {r['loss']:.6f}   gradient vs the whole batch's: "
                  f"relative error {r['gradient relative error']:.2e}")


if __name__ == "__main__":
    main()
