"""JAX arrays sharded over a batch axis of four host devices, given to every Loss class
eagerly: the same numbers as the same arrays on one device (each in a subprocess, since
the device count is fixed when JAX starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import probloss as pl

    assert len(jax.devices()) == 4
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), P("batch"))
    rng = np.random.default_rng(0)
    host = {
        "x": rng.standard_normal((8, 5)).astype(np.float32),
        "p": rng.dirichlet(np.ones(5), 8).astype(np.float32),
        "y": rng.integers(0, 5, 8),
        "tb": (rng.random((8, 5)) < 0.5).astype(np.float32),
        "w": np.arange(8.0, dtype=np.float32),
    }
    host["t"] = np.eye(5, dtype=np.float32)[host["y"]]
    cases = {
        "sparse": lambda a: pl.SparseCategoricalCrossentropy(from_logits=True)(a["y"], a["x"]),
        "sparse ignore_class": lambda a: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1)(a["y"], a["x"]),
        "sparse weights": lambda a: pl.SparseCategoricalCrossentropy(from_logits=True)(a["y"], a["x"], sample_weight=a["w"]),
        "sparse mean_with_sample_weight": lambda a: pl.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight")(a["y"], a["x"], sample_weight=a["w"]),
        "categorical": lambda a: pl.CategoricalCrossentropy()(a["t"], a["p"]),
        "binary": lambda a: pl.BinaryCrossentropy()(a["tb"], a["p"]),
        "binary focal": lambda a: pl.BinaryFocalCrossentropy()(a["tb"], a["p"]),
        "categorical focal": lambda a: pl.CategoricalFocalCrossentropy()(a["t"], a["p"]),
        "kl": lambda a: pl.KLDivergence()(a["t"], a["p"]),
        "poisson": lambda a: pl.Poisson()(a["t"], a["p"]),
    }
    one = {k: jnp.asarray(v) for k, v in host.items()}
    sharded = {k: jax.device_put(jnp.asarray(v), sharding) for k, v in host.items()}
    out = {}
    for name, f in cases.items():
        try:
            out[name] = [float(f(one)), float(f(sharded))]
        except Exception as exc:  # reported to the parent, which fails the test
            out[name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
    """
)


def test_every_loss_class_takes_batch_sharded_arrays():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, got in results.items():
        assert isinstance(got, list), f"{name}: {got}"
        single, sharded = got
        assert abs(single - sharded) <= 1e-6 * max(1.0, abs(single)), (name, single, sharded)
