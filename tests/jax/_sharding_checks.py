"""Vocabulary-sharded JAX checks, run with four host devices by ``tests/jax/test_sharding.py``.

``python -m tests.jax._sharding_checks`` must start with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (JAX fixes the device count when
it starts, and the test run imports JAX early), so the test runs it in a subprocess.
It prints ``RESULT {name: "ok" or the failure}``.

Each check compares, under ``jit``, values and gradients with the same loss of the whole
arrays on one device, and reads the compiled program (``lower(...).compile().as_text()``):
no collective may move ``N x V / 4`` elements (a device's share of the logits) or more,
except inside the failing branch of a value check (a ``conditional`` whose branch gathers
the array for the host callback that names the bad element; it runs only when the check
fails).
"""

from __future__ import annotations

import json
import os
import re
import traceback

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import probloss as pl  # noqa: E402
from probloss.jax import linear_cross_entropy, vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy  # noqa: E402

N, V, D = 32, 256, 16  # D < V / 4: the hidden gradient's all-reduce is smaller than a logits shard
MESH = Mesh(np.array(jax.devices()), ("vocab",))
COLUMNS = NamedSharding(MESH, P(None, "vocab"))
ROWS = NamedSharding(MESH, P("vocab", None))
RTOL, ATOL = 2e-5, 2e-6

_COLLECTIVE = re.compile(r"= (.*?) (all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(-start)?\(")
_HEADER = re.compile(r"^(ENTRY )?%?([\w.\-]+) ")
_BRANCHES = re.compile(r"(?:true_computation|false_computation)=%?([\w.\-]+)|branch_computations=\{([^}]*)\}")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition|computation)=%?([\w.\-]+)")


def big_collectives(hlo: str, limit: int):
    """Collectives moving ``limit`` elements or more, outside the branches of conditionals."""
    comps, current = {}, None
    for line in hlo.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            m = _HEADER.match(line)
            current = m.group(2) if m else None
            comps[current] = []
        elif current is not None:
            comps[current].append(line)
    branch = set()
    for body in comps.values():
        for line in body:
            for a, b in _BRANCHES.findall(line):
                branch.update([a] if a else [n.strip().lstrip("%") for n in b.split(",")])
    todo = list(branch)
    while todo:  # computations called from a branch belong to it
        name = todo.pop()
        for line in comps.get(name, []):
            for callee in _CALLS.findall(line):
                if callee not in branch:
                    branch.add(callee)
                    todo.append(callee)
    found = []
    for name, body in comps.items():
        if name in branch:
            continue
        for line in body:
            m = _COLLECTIVE.search(line)
            if m:
                sizes = [int(np.prod([int(d) for d in dims.split(",") if d])) for dims in re.findall(r"\[([\d,]*)\]", m.group(1))]
                if max(sizes, default=0) >= limit:
                    found.append(line.strip()[:160])
    return found


def count_collectives(hlo: str) -> int:
    return sum(1 for line in hlo.splitlines() if _COLLECTIVE.search(line))


def close(name, got, want, rtol=RTOL, atol=ATOL):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol):
        diff = np.max(np.abs(got - want)) if got.shape == want.shape else "shape"
        raise AssertionError(f"{name}: max difference {diff}")


def compare(name, loss, args, sharded_args, argnums=0, limit=N * V // 4):
    """``jit(value_and_grad(loss))`` on sharded and on single-device arrays; no big collective."""
    vg = jax.value_and_grad(loss, argnums=argnums)
    compiled = jax.jit(vg).lower(*sharded_args).compile()
    got, want = compiled(*sharded_args), vg(*args)  # the reference unjitted, on one device
    close(f"{name} value", got[0], want[0])
    for i, (g, w) in enumerate(zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]))):
        close(f"{name} grad {i}", g, w)
    found = big_collectives(compiled.as_text(), limit)
    if found:
        raise AssertionError(f"{name}: the compiled program moves a logits-sized array:\n" + "\n".join(found))


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, V)).astype(np.float32) * 2
    y = rng.integers(0, V, N)
    y[::5] = -1
    p = rng.dirichlet(np.ones(V), N).astype(np.float32)
    t = rng.dirichlet(np.ones(V) * 0.3, N).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y), jnp.asarray(p), jnp.asarray(t)


# ------------------------------------------------------------------------------ checks


def check_jit_losses_on_sharded_logits():
    """Every softmax loss under jit on logits / probabilities sharded on the classes."""
    x, y, p, t = data()
    cases = {
        "sparse logits ignore_class": (lambda x: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)(y, x), x),
        "sparse probabilities": (lambda p: pl.SparseCategoricalCrossentropy(ignore_class=-1)(y, p), p),
        "categorical logits smoothing": (lambda x: pl.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(t, x), x),
        "categorical probabilities": (lambda p: pl.CategoricalCrossentropy(label_smoothing=0.1, reduction="sum")(t, p), p),
        "focal logits": (lambda x: pl.CategoricalFocalCrossentropy(from_logits=True)(t, x), x),
        "focal probabilities": (lambda p: pl.CategoricalFocalCrossentropy(gamma=0.5)(t, p), p),
    }
    failures = []
    for name, (loss, arr) in cases.items():
        try:
            compare(name, loss, (arr,), (jax.device_put(arr, COLUMNS),))
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        raise AssertionError("\n".join(failures))


def check_jit_probabilities_without_value_checks():
    """With the value checks off, no conditional is left: no collective of that size at all."""
    _, y, p, t = data(1)
    with pl.set_value_checks(False):
        fn = jax.jit(jax.value_and_grad(lambda p: pl.CategoricalCrossentropy()(t, p) + pl.SparseCategoricalCrossentropy()(y % V, p)))
        hlo = fn.lower(jax.device_put(p, COLUMNS)).compile().as_text()
    if "conditional" in hlo or big_collectives(hlo, N * V // 4):
        raise AssertionError("a conditional or a logits-sized collective is left with the value checks off")


def check_jit_linear_on_sharded_weight():
    """probloss.jax.linear_cross_entropy under jit with the weight sharded on the vocabulary."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((N, D)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((V, D)).astype(np.float32) * 0.5)
    b = jnp.asarray(rng.standard_normal(V).astype(np.float32))
    y = jnp.asarray(rng.integers(0, V, N)).at[::7].set(-100)
    weights = jnp.arange(1.0, N + 1)
    cases = {
        "mean": {},
        "smoothing, z-loss, softcap, bias": {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 5.0, "bias": True},
        "none": {"reduction": "none"},
        "recompute": {"recompute": True},
    }
    for name, opts in cases.items():
        opts = dict(opts)
        use_bias = opts.pop("bias", False)

        def loss(x, w, b, opts=opts, use_bias=use_bias):
            out = linear_cross_entropy(x, w, y, b if use_bias else None, chunk_size=8, **opts)
            return (out * weights).sum() if out.ndim else out

        compare(name, loss, (x, w, b), (x, jax.device_put(w, ROWS), jax.device_put(b, NamedSharding(MESH, P("vocab")))),
                argnums=(0, 1, 2))


def check_shard_map_cross_entropy():
    """vocab_parallel_cross_entropy inside shard_map against probloss on the whole arrays."""
    x, y, p, t = data(3)
    onehot = jax.nn.one_hot(jnp.where(y < 0, 0, y), V)
    valid = y != -1

    def sharded(labels_spec, **kw):
        return jax.shard_map(lambda z, lab: vocab_parallel_cross_entropy(z, lab, axis_name="vocab", **kw),
                             mesh=MESH, in_specs=(P(None, "vocab"), labels_spec), out_specs=P())

    for a in (0.0, 0.1):
        for from_logits, pred in ((True, x), (False, p)):
            name = f"sparse from_logits={from_logits} a={a}"
            f = sharded(P(), from_logits=from_logits, label_smoothing=a, ignore_class=-1, reduction="mean")

            def ref(z, from_logits=from_logits, a=a):
                per = pl.categorical_crossentropy(onehot, z, from_logits=from_logits, label_smoothing=a)
                return jnp.sum(jnp.where(valid, per, 0.0)) / jnp.sum(valid)

            got = jax.jit(jax.value_and_grad(lambda z, f=f: f(z, y)))(pred)
            want = jax.value_and_grad(ref)(pred)
            close(f"{name} value", got[0], want[0])
            close(f"{name} grad", got[1], want[1])
            f = sharded(P(None, "vocab"), from_logits=from_logits, label_smoothing=a, reduction="sum")
            got = jax.jit(jax.value_and_grad(lambda z, f=f: f(z, t)))(pred)
            want = jax.value_and_grad(lambda z, fl=from_logits, a=a: pl.CategoricalCrossentropy(
                from_logits=fl, label_smoothing=a, reduction="sum")(t, z))(pred)
            close(f"dense {name} value", got[0], want[0])
            close(f"dense {name} grad", got[1], want[1])
    # the backward of the logits adds no collective: the same count as the forward alone
    f = sharded(P(), ignore_class=-1, label_smoothing=0.1, reduction="mean")
    forward = count_collectives(jax.jit(lambda z: f(z, y)).lower(x).compile().as_text())
    both = count_collectives(jax.jit(jax.grad(lambda z: f(z, y))).lower(x).compile().as_text())
    if both != forward or forward > 2:
        raise AssertionError(f"{forward} collectives in the forward, {both} with the gradient; expected at most 2 and equal")


def check_shard_map_padded_vocabulary():
    """38 real classes padded to 40 = 4 x 10: the padding classes are left out."""
    rng = np.random.default_rng(4)
    real = 38
    x = jnp.asarray(rng.standard_normal((N, real)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, real, N))
    xp = jnp.pad(x, ((0, 0), (0, 2)), constant_values=7.0)  # whatever the padding holds
    f = jax.shard_map(lambda z, lab: vocab_parallel_cross_entropy(z, lab, axis_name="vocab", label_smoothing=0.2,
                                                                  vocab_size=real),
                      mesh=MESH, in_specs=(P(None, "vocab"), P()), out_specs=P())
    got = jax.value_and_grad(lambda z: f(z, y).sum())(xp)
    want = jax.value_and_grad(lambda z: pl.categorical_crossentropy(jax.nn.one_hot(y, real), z, from_logits=True,
                                                                    label_smoothing=0.2).sum())(x)
    close("value", got[0], want[0])
    close("grad", got[1][:, :real], want[1])
    close("padding grad", got[1][:, real:], np.zeros((N, 2)))


def check_shard_map_linear():
    """vocab_parallel_linear_cross_entropy inside shard_map against probloss.jax.linear_cross_entropy."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((N, D)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((V, D)).astype(np.float32) * 0.5)
    b = jnp.asarray(rng.standard_normal(V).astype(np.float32))
    y = jnp.asarray(rng.integers(0, V, N)).at[::6].set(-100)
    weights = jnp.arange(1.0, N + 1)
    for name, opts in {"mean": {}, "sum, smoothing, z-loss, softcap": {"reduction": "sum", "label_smoothing": 0.1,
                                                                        "z_loss": 1e-3, "softcap": 4.0},
                       "none": {"reduction": "none"}}.items():
        f = jax.shard_map(lambda x, w, b, y, opts=opts: vocab_parallel_linear_cross_entropy(x, w, y, b, axis_name="vocab",
                                                                                            chunk_size=8, **opts),
                          mesh=MESH, in_specs=(P(), P("vocab"), P("vocab"), P()), out_specs=P())

        def ours(x, w, b, f=f):
            out = f(x, w, b, y)
            return (out * weights).sum() if out.ndim else out

        def ref(x, w, b, opts=opts):
            out = linear_cross_entropy(x, w, y, b, **opts)
            return (out * weights).sum() if out.ndim else out

        fn = jax.jit(jax.value_and_grad(ours, argnums=(0, 1, 2))).lower(x, w, b).compile()
        got, want = fn(x, w, b), jax.value_and_grad(ref, argnums=(0, 1, 2))(x, w, b)
        close(f"{name} value", got[0], want[0])
        for i in range(3):
            close(f"{name} grad {i}", got[1][i], want[1][i])
        found = big_collectives(fn.as_text(), N * V // 4)
        if found:
            raise AssertionError(f"{name}: " + "\n".join(found))


CHECKS = {name[len("check_"):]: f for name, f in sorted(globals().items()) if name.startswith("check_")}


def main():
    assert len(jax.devices()) == 4, jax.devices()
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception:
            results[name] = traceback.format_exc()[-3000:]
    print("RESULT " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
