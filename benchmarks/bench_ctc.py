"""CTC forward + backward: probloss.ctc_loss against PyTorch's native CPU kernel (and Optax).

The case of the CTC issue: a batch of (B, T, C) = (32, 200, 60) float32 logits, label
length 40, every frame used, ``reduction="mean"`` (PyTorch's: divided by label length).
One timed run is the loss plus the backward pass down to the logits:

* ``torch``: ``F.ctc_loss(x.log_softmax(-1).transpose(0, 1), ...)`` then ``.backward()``;
* ``probloss native``: ``ctc_loss(x, ...)`` (PyTorch's kernel under the hood);
* ``probloss generic``: ``ctc_loss(x, ..., native=False)``, the array-API recursion with
  one Python loop over time and autograd through it;
* with ``--backends torch,jax`` also ``jax.jit(jax.value_and_grad(...))`` of the
  ``lax.scan`` path against ``optax.ctc_loss`` (same reduction).

The implementations are timed in interleaved rounds (the machine may be shared), and the
ratio ``probloss / peer`` of the medians is printed.  Target: at most 3x PyTorch.

    python benchmarks/bench_ctc.py [--quick] [--threads N] [--backends torch,jax]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import measure_time, ratio, write_results  # noqa: E402

import probloss as pl  # noqa: E402


def _data(B, T, C, L, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((B, T, C), dtype=np.float32)
    labels = rng.integers(1, C, size=(B, L))
    return logits, labels, np.full(B, T), np.full(B, L)


def _torch_impls(logits, labels, il, ll):
    import torch

    x = torch.tensor(logits, requires_grad=True)
    y, i, n = torch.tensor(labels), torch.tensor(il), torch.tensor(ll)

    def peer():
        x.grad = None
        torch.nn.functional.ctc_loss(x.log_softmax(-1).transpose(0, 1), y, i, n, reduction="mean").backward()

    def ours(native, checks=True):
        def run():
            x.grad = None
            with pl.set_value_checks(checks):
                loss = pl.ctc_loss(x, y, i, n, reduction="mean", native=native)
            loss.backward()

        return run

    return "torch", peer, {
        "probloss native": ours(True),
        "probloss native, checks off": ours(True, False),
        "probloss generic": ours(False),
        "probloss generic, checks off": ours(False, False),
    }


def _jax_impls(logits, labels, il, ll):
    import jax
    import jax.numpy as jnp
    import optax

    x = jnp.asarray(logits)
    B, T, _ = logits.shape
    y, i, n = jnp.asarray(labels), jnp.asarray(il), jnp.asarray(ll)
    logit_pad = (jnp.arange(T)[None, :] >= i[:, None]).astype(jnp.float32)
    label_pad = (jnp.arange(labels.shape[1])[None, :] >= n[:, None]).astype(jnp.float32)

    def peer_loss(a):
        return jnp.mean(optax.ctc_loss(a, logit_pad, y, label_pad) / jnp.maximum(n, 1))

    def our_loss(a):
        return pl.ctc_loss(a, y, i, n, reduction="mean")

    peer_fn = jax.jit(jax.value_and_grad(peer_loss))
    our_fn = jax.jit(jax.value_and_grad(our_loss))

    def block(fn):
        return lambda: jax.block_until_ready(fn(x))

    return "optax (jit)", block(peer_fn), {"probloss lax.scan (jit)": block(our_fn)}


def _interleaved(impls: dict, rounds: int, repeats: int) -> dict:
    """Median over ``rounds`` interleaved blocks of ``repeats`` runs for each implementation."""
    runs = {name: [] for name in impls}
    for r in range(rounds):
        for name, fn in impls.items():
            runs[name] += measure_time(fn, warmup=2 if r == 0 else 1, repeats=repeats)["runs"]
    return {name: {"median": statistics.median(v), "min": min(v), "runs": v} for name, v in runs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="(8, 50, 20, 10) instead of (32, 200, 60, 40)")
    parser.add_argument("--backends", default="torch")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)
    B, T, C, L = (8, 50, 20, 10) if args.quick else (32, 200, 60, 40)
    data = _data(B, T, C, L)
    cases = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CTC forward+backward, (B, T, C) = ({B}, {T}, {C}), label length {L}, float32, CPU")
    print(f"load average at start: {load:.2f} on {os.cpu_count()} CPUs; {args.rounds} rounds x {args.repeats} runs, interleaved")
    for backend in args.backends.split(","):
        if backend == "torch":
            import torch

            if args.threads:
                torch.set_num_threads(args.threads)
            peer_name, peer, ours = _torch_impls(*data)
            print(f"torch threads: {torch.get_num_threads()}")
        elif backend == "jax":
            peer_name, peer, ours = _jax_impls(*data)
        else:
            raise SystemExit(f"unknown backend {backend!r}; use torch and/or jax")
        timed = _interleaved({peer_name: peer, **ours}, args.rounds, args.repeats)
        base = timed[peer_name]["median"]
        print(f"  {peer_name:30s} {base * 1e3:8.2f} ms")
        for name in ours:
            r = ratio(timed[name]["median"], base)
            print(f"  {name:30s} {timed[name]['median'] * 1e3:8.2f} ms   probloss/{peer_name.split()[0]} = {r:.2f}x", flush=True)
            cases.append({"backend": backend, "case": name, "peer": peer_name, "shape": [B, T, C, L], "ratio": r,
                          "probloss": timed[name], "peer_time": timed[peer_name]})
    path = write_results("ctc" + ("_quick" if args.quick else ""), cases)
    print(f"results: {path.relative_to(Path(__file__).resolve().parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
