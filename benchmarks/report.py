"""Write ``docs/benchmarks.md`` and ``docs/figures/benchmarks.png`` from ``benchmarks/results/``.

    python benchmarks/report.py [--results DIR] [--out docs/benchmarks.md]

Reads the JSON files written by ``bench_torch.py``, ``bench_jax.py``, ``bench_numpy.py``
(and ``torch_cuda.json`` when a GPU run was made), and renders: the issue's targets with
their measured ratios, one table per suite, the cost of the value checks, and a plot.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUITES = [
    ("torch", "probloss on torch tensors vs `torch.nn.functional` (CPU)"),
    ("torch_cuda", "probloss on torch tensors vs `torch.nn.functional` (CUDA)"),
    ("jax", "probloss on JAX arrays vs Optax (jitted `value_and_grad`, CPU)"),
    ("numpy", "probloss on NumPy arrays vs Keras 3 (NumPy backend) and a plain NumPy formula (forward)"),
]
LOSS_NAMES = {
    "sparse_logits": "sparse CE, logits",
    "cat_logits": "categorical CE, logits",
    "sparse_probs": "sparse CE, probabilities",
    "cat_probs": "categorical CE, probabilities",
    "bce": "binary CE, probabilities",
    "bce_logits": "binary CE, logits",
    "kl": "KL divergence",
    "poisson": "Poisson",
}


def load(results: Path, name: str):
    path = results / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def mib(b):
    return "-" if b is None or b != b else f"{b / 2**20:,.0f}"


def extra(r):
    """Peak memory beyond the inputs (bytes), or NaN."""
    b = r.get("peak_bytes")
    return float("nan") if b is None or b != b else b - r["input_bytes"]


def peak_cell(r):
    b = r.get("peak_bytes")
    return "-" if b is None or b != b else f"{mib(b)} ({mib(extra(r))})"


def ms(t):
    return f"{t * 1e3:,.1f}" if t >= 0.01 else f"{t * 1e3:,.2f}"


def rat(a, b):
    if a is None or b is None or a != a or b != b or not b:
        return float("nan")
    return a / b


def fr(x):
    return "-" if x != x else f"{x:.2f}"


def group_cases(rows):
    """``{case key: [rows]}`` in file order; the key is (loss, shape, dtype, mode)."""
    out = {}
    for r in rows:
        out.setdefault((r["loss"], r["shape_key"], r["dtype"], r["mode"]), []).append(r)
    return out


def peers_of(case_rows):
    return [r for r in case_rows if r["role"] == "peer"]


def find(case_rows, impl):
    return next((r for r in case_rows if r["impl"] == impl), None)


def suite_table(data) -> list[str]:
    lines = [
        "| loss | shape | dtype | mode | implementation | time ms, median [p20-p80] | peak MiB (beyond inputs) | time / peer | memory / peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (loss, shape, dtype, mode), rows in group_cases(data["cases"]).items():
        peers = peers_of(rows)
        for r in rows:
            t = r["time"]
            if r["role"] == "peer":
                tr = mr = "1" if r is peers[0] else (
                    f"{fr(rat(t['median'], peers[0]['time']['median']))}")
                if r is not peers[0]:
                    mr = fr(rat(r["peak_bytes"], peers[0]["peak_bytes"]))
            else:
                trs = [fr(rat(t["median"], p["time"]["median"])) for p in peers]
                mrs = [fr(rat(r["peak_bytes"], p["peak_bytes"])) for p in peers]
                tr, mr = " / ".join(trs), " / ".join(mrs)
            name = r["impl"].replace("peer: ", "*peer:* ")
            lines.append(
                f"| {LOSS_NAMES.get(loss, loss)} | {shape} | {dtype} | {mode} | {name} | "
                f"{ms(t['median'])} [{ms(t['p20'])}-{ms(t['p80'])}] | {peak_cell(r)} | {tr} | {mr} |"
            )
    return lines


def targets(results) -> list[str]:
    """The issue's targets, each with the measured ratio and whether it is met."""
    lines = ["| target | case | measured | met |", "|---|---|---|---|"]

    def row(target, case, value, ok):
        lines.append(f"| {target} | {case} | {value} | {'yes' if ok else '**no**'} |")

    torch = results.get("torch")
    if torch:
        cases = group_cases(torch["cases"])
        for loss in ("sparse_logits", "cat_logits"):
            rows = cases.get((loss, "8192x32000", "float32", "fwd+bwd"))
            if not rows:
                continue
            peer = peers_of(rows)[0]
            for impl, tmax, mmax in (("probloss.torch", 1.0, 0.55), ("probloss", 1.0, 0.55), ("probloss.torch inplace", 1.0, 0.35)):
                r = find(rows, impl)
                if r is None:
                    continue
                tr, mr = rat(r["time"]["median"], peer["time"]["median"]), rat(r["peak_bytes"], peer["peak_bytes"])
                xr = rat(extra(r), extra(peer))
                row(f"torch fwd+bwd time <= {tmax}x, memory <= {mmax}x `F.cross_entropy`"
                    + (" (in-place: about 0.3x)" if "inplace" in impl else ""),
                    f"{LOSS_NAMES[loss]}, 8192x32000 f32, `{impl}`",
                    f"time {fr(tr)}x, memory {fr(mr)}x (beyond the inputs: {fr(xr)}x)",
                    tr <= tmax and (mr <= mmax if mr == mr else False))
        for loss in ("bce", "bce_logits", "kl", "poisson"):
            for (l_, shape, dtype, mode), rows in cases.items():
                if l_ != loss:
                    continue
                peer, r = peers_of(rows)[0], find(rows, "probloss")
                tr = rat(r["time"]["median"], peer["time"]["median"])
                row("torch: no slower than the `torch.nn.functional` equivalent",
                    f"{LOSS_NAMES[loss]}, {shape} {dtype} {mode}", f"time {fr(tr)}x", tr <= 1.0)
    jx = results.get("jax")
    if jx:
        for (loss, shape, dtype, _mode), rows in group_cases(jx["cases"]).items():
            if loss not in ("sparse_logits", "cat_logits"):
                continue
            peer, r = peers_of(rows)[0], find(rows, "probloss")
            tr = rat(r["time"]["median"], peer["time"]["median"])
            row("JAX jitted value_and_grad <= 1.0x Optax", f"{LOSS_NAMES[loss]}, {shape} {dtype}", f"time {fr(tr)}x", tr <= 1.0)
    npy = results.get("numpy")
    if npy:
        for (loss, shape, dtype, _mode), rows in group_cases(npy["cases"]).items():
            if loss not in ("sparse_logits", "cat_logits"):
                continue
            r = find(rows, "probloss")
            ratios = [(p["impl"].replace("peer: ", ""), rat(r["time"]["median"], p["time"]["median"])) for p in peers_of(rows)]
            row("NumPy forward at least as fast as Keras 3 (NumPy) and the plain formula",
                f"{LOSS_NAMES[loss]}, {shape} {dtype}", ", ".join(f"{fr(v)}x {n.split(' (')[0].split(' ')[0]}" for n, v in ratios),
                all(v <= 1.0 for _, v in ratios))
    return lines


CUDA_NAMES = {"sparse": "sparse CE, logits", "soft": "categorical CE, logits (soft targets)"}


def cuda_section(data) -> list[str]:
    """The CUDA suite (``bench_cuda.py``): the Triton kernels against ``F.cross_entropy``
    and Liger-Kernel, and a training step; or a line saying it has not been run."""
    out = ["## CUDA: the Triton kernels", ""]
    if not data:
        return out + [
            "Not measured yet: no run of the CUDA suite exists. On a machine with an NVIDIA GPU, "
            "`benchmarks/gpu_check.sh` runs the CUDA tests and `benchmarks/bench_cuda.py`, whose results "
            "(`results/cuda.json`) fill this section. Targets: forward + backward time at most 0.9x and memory "
            "beyond the inputs at most 0.55x `F.cross_entropy` (drop-in and Keras-style class), time at most 1.0x "
            "Liger-Kernel's cross-entropy, and a small training step with value checks on at most 1.1x the step "
            "with `F.cross_entropy`.",
            "",
        ]
    t = data.get("targets", {"time": 0.9, "memory": 0.55, "liger": 1.0, "step": 1.1})
    out += [
        f"From `{data.get('command', 'python benchmarks/bench_cuda.py')}` ({machine_line(data)}). Forward + backward "
        "of the mean loss, interleaved run by run; memory is `torch.cuda.max_memory_allocated` during one call "
        "minus what was allocated before it (the inputs), so it counts the gradient. `liger` is Liger-Kernel's "
        "`LigerCrossEntropyLoss`" + ("" if data.get("liger") else " (not installed in this run)") + ".",
        "",
        "| case | implementation | time ms, median [p20-p80] | time / peer | beyond inputs MiB | memory / peer | time / liger | target met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (loss, shape, dtype, _mode), rows in group_cases(data["cases"]).items():
        peer = peers_of(rows)[0]
        liger = find(rows, "liger")
        for r in rows:
            tm = r["time"]
            tr = rat(tm["median"], peer["time"]["median"])
            mr = rat(r["extra_bytes"], peer["extra_bytes"])
            lr = rat(tm["median"], liger["time"]["median"]) if liger and r is not liger else float("nan")
            met = ""
            if r["impl"] in ("probloss.torch", "probloss"):
                ok = tr <= t["time"] and mr <= t["memory"] and (lr <= t["liger"] if lr == lr else True)
                met = "yes" if ok else "**no**"
            out.append(
                f"| {CUDA_NAMES.get(loss, loss)}, {shape} {dtype} | {r['impl'].replace('peer: ', '*peer:* ')} | "
                f"{ms(tm['median'])} [{ms(tm['p20'])}-{ms(tm['p80'])}] | {fr(tr)} | {mib(r['extra_bytes'])} | {fr(mr)} | {fr(lr)} | {met} |"
            )
    step = data.get("train_step") or []
    if step:
        out += [
            "",
            "A training step on the GPU: an MLP (64 -> 128 -> 10), batch 32, SGD with momentum, many steps per run "
            "with no synchronisation between them; the variants differ only in the loss. `torch column` is the "
            "Keras-style class with the Triton backend off, whose value checks read their result on the host at "
            "every call.",
            "",
            "| implementation | us per step [p20-p80] | ratio | target |",
            "|---|---|---|---|",
        ]
        for c in step:
            target = "" if c.get("target") is None else f"<= {c['target']}x " + ("met" if c["ratio"] <= c["target"] else "**missed**")
            out.append(f"| {c['impl']} | {c['us_per_step']:.1f} [{c['p20_us']:.1f}-{c['p80_us']:.1f}] | {c['ratio']:.2f} | {target} |")
    if data.get("skipped"):
        out += ["", "Not run (time limit): " + "; ".join(data["skipped"]) + "."]
    return out + [""]


def checks_section(results) -> list[str]:
    lines = ["| suite | case | checks on ms [p20-p80] | checks off ms [p20-p80] | on / off (medians) |", "|---|---|---|---|---|"]
    found = False
    for name in ("torch", "numpy"):
        data = results.get(name)
        if not data:
            continue
        for (loss, shape, dtype, mode), rows in group_cases(data["cases"]).items():
            on, off = find(rows, "probloss"), find(rows, "probloss checks off")
            if on and off:
                found = True
                a, b = on["time"], off["time"]
                lines.append(
                    f"| {name} | {LOSS_NAMES[loss]}, {shape} {dtype} {mode} | {ms(a['median'])} [{ms(a['p20'])}-{ms(a['p80'])}] | "
                    f"{ms(b['median'])} [{ms(b['p20'])}-{ms(b['p80'])}] | {fr(rat(a['median'], b['median']))} |"
                )
    return lines if found else []


def plot(results, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = []
    for suite, title in SUITES:
        data = results.get(suite)
        if not data:
            continue
        labels, tvals, mvals = [], [], []
        for (loss, shape, dtype, mode), rows in group_cases(data["cases"]).items():
            peer = peers_of(rows)[-1] if suite == "numpy" else peers_of(rows)[0]
            r = find(rows, "probloss.torch") or find(rows, "probloss")
            if r is None:
                continue
            labels.append(f"{LOSS_NAMES.get(loss, loss)}\n{shape} {dtype if dtype != 'float32' else ''} {mode}".strip())
            tvals.append(rat(r["time"]["median"], peer["time"]["median"]))
            mvals.append(rat(r["peak_bytes"], peer["peak_bytes"]))
        if labels:
            peer_name = "plain NumPy formula" if suite == "numpy" else ("Optax" if suite == "jax" else "torch.nn.functional")
            panels.append((title.split(" (")[0] + f" ({suite})", peer_name, labels, tvals, mvals))
    if not panels:
        return False
    height = sum(max(2.0, 0.32 * len(p[2])) for p in panels) + 1.0
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, height), squeeze=False,
                             gridspec_kw={"height_ratios": [max(2.0, 0.32 * len(p[2])) for p in panels]})
    for ax, (title, peer_name, labels, tvals, mvals) in zip(axes[:, 0], panels):
        y = list(range(len(labels)))
        ax.barh([v - 0.2 for v in y], [0 if v != v else v for v in tvals], height=0.4, label="time", color="#3b75af")
        ax.barh([v + 0.2 for v in y], [0 if v != v else v for v in mvals], height=0.4, label="peak memory", color="#ef8636")
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=6)
        ax.invert_yaxis()
        ax.set_title(f"{title}: probloss / {peer_name} (below 1 is better)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def machine_line(data) -> str:
    m = data.get("machine", {})
    keys = ["python", "numpy", "torch", "jax", "optax", "keras", "probloss", "cpus", "torch_threads", "gpu", "time"]
    return ", ".join(f"{k} {m[k]}" for k in keys if k in m)


def overhead_section(data) -> list[str]:
    """The fixed cost per call (``bench_overhead.py``): a table of per-call times and ratios."""
    if not data:
        return []
    out = [
        "## Fixed cost per call (small batches)",
        "",
        "From `" + data.get("command", "python benchmarks/bench_overhead.py") + "`: sparse cross-entropy from "
        "logits, float32, torch on one thread, interleaved; each run times many calls and the table gives the "
        "median time per call. Ratios are against the first row of each group.",
        "",
        "| mode | shape | implementation | us per call [p20-p80] | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for c in data["cases"]:
        target = "" if c.get("target") is None else f"<= {c['target']}x " + ("met" if c["ratio"] <= c["target"] else "**missed**")
        out.append(
            f"| {c['mode']} | {c['shape'][0]}x{c['shape'][1]} | {c['impl']} | "
            f"{c['us_per_call']:.1f} [{c['p20_us']:.1f}-{c['p80_us']:.1f}] | {c['ratio']:.2f} | {target} |"
        )
    return out + [""]


def train_step_section(data) -> list[str]:
    """A whole small training step (``bench_train_step.py``)."""
    if not data:
        return []
    out = [
        "## A training step with a small batch",
        "",
        "From `" + data.get("command", "python benchmarks/bench_train_step.py") + "`: an MLP (64 -> 128 -> 10) "
        "on 8x8 images of ten classes, batch 32, SGD with momentum, torch on one thread; forward, loss, backward "
        "and the update, interleaved, the variants differing only in the loss.",
        "",
        "| implementation | us per step [p20-p80] | ratio | target |",
        "|---|---|---|---|",
    ]
    for c in data["cases"]:
        target = "" if c.get("target") is None else f"<= {c['target']}x " + ("met" if c["ratio"] <= c["target"] else "**missed**")
        out.append(f"| {c['impl']} | {c['us_per_step']:.1f} [{c['p20_us']:.1f}-{c['p80_us']:.1f}] | {c['ratio']:.2f} | {target} |")
    return out + [""]


def jit_checks_section(data) -> list[str]:
    """The cost of the value checks inside a jitted JAX step (``bench_jit_checks.py``)."""
    if not data:
        return []
    out = [
        "## Value checks inside a jitted JAX step",
        "",
        "From `" + data.get("command", "python benchmarks/bench_jit_checks.py") + "`: `jit(value_and_grad)` of "
        "`SparseCategoricalCrossentropy`, the checks compiled in against the same step compiled with "
        "`set_value_checks(False)`, interleaved, each step waiting for its result (target: at most 1.10x). A clean "
        "step runs the tests and never calls back to the host, so at 32 x 10 they cost less than the differences "
        "between XLA's two compiled programs (in some runs the unchecked one is the slower); the probabilities form "
        "reads its whole input once more for the range test, which at 8192 x 32000 costs from a few percent to a "
        "third of a step with the machine's state (1.04x to 1.37x over runs on this CPU).",
        "",
        "| case | shape | checks on ms | checks off ms | on / off (fastest runs) |",
        "|---|---|---|---|---|",
    ]
    for c in data["cases"]:
        out.append(f"| {c['case']} | {c['shape'][0]}x{c['shape'][1]} | {c['on_ms']:.4f} | {c['off_ms']:.4f} | "
                   f"{c['ratio']:.2f} ({c['ratio_fastest']:.2f}) |")
    return out + [""]


def compile_checks_section(data) -> list[str]:
    """The cost of the value checks inside a torch.compile'd step (``bench_compile_checks.py``)."""
    if not data:
        return []
    out = [
        "## Value checks inside a `torch.compile`d step",
        "",
        "From `" + data.get("command", "python benchmarks/bench_compile_checks.py") + "`: forward (compiled, default "
        "mode) + backward of `SparseCategoricalCrossentropy`, torch on one thread: the checks staged into the graph "
        "(one operator per test, which raises only when it fails) against the same step with "
        "`set_value_checks(False)` and against a compiled `F.cross_entropy`, interleaved. Each operator call costs "
        "a fixed few microseconds, which shows on the smallest batches.",
        "",
        "| case | shape | checks on us | checks off us | F.cross_entropy us | on / off (fastest runs) | on / F.cross_entropy |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in data["cases"]:
        out.append(f"| {c['case']} | {c['shape'][0]}x{c['shape'][1]} | {c['on_us']:.1f} | {c['off_us']:.1f} | "
                   f"{c['native_us']:.1f} | {c['ratio']:.2f} ({c['ratio_fastest']:.2f}) | {c['ratio_native']:.2f} |")
    return out + [""]


def distributed_section(data) -> list[str]:
    """The vocabulary-parallel loss on gloo processes (``bench_distributed.py``, run on its own)."""
    if not data:
        return []
    out = [
        "## Vocabulary-parallel cross-entropy (gloo processes)",
        "",
        "From `" + data.get("command", "python benchmarks/bench_distributed.py") + "` (not part of `make bench`: "
        "about 8 minutes): each rank holds its slice of the classes; one step is the loss and its backward. "
        "Bytes are the results of the collectives per rank; the peak is the largest rank's, each implementation "
        "in its own fresh processes; see `docs/distributed.md` for the method.",
        "",
        "| implementation | N | s / step | forward bytes / rank | backward bytes / rank | peak / rank |",
        "|---|---|---|---|---|---|",
    ]
    for c in data["cases"]:
        peak = mib(c["peak_bytes_per_rank"]) + " MiB" if c.get("peak_bytes_per_rank") else "-"
        out.append(f"| {c['impl']} | {c['n']} | {c['time']['median']:.2f} | {c['forward_bytes']:,} | "
                   f"{c['backward_bytes']:,} | {peak} |")
    out += [""] + [f"- {k}: {v:.2f}" for k, v in data.get("summary", {}).items()]
    return out + [""]


def render(results, meta, figure: str | None) -> str:
    out = ["# Benchmarks", ""]
    out += [
        "Generated by `benchmarks/report.py` from the JSON files in `benchmarks/results/`; "
        f"the command that made them: `{meta.get('command', 'make bench')}`"
        + (f" ({meta['wall_s'] / 60:.1f} minutes)" if meta.get("wall_s") else "") + ".",
        "",
        "**Method.** For each case, probloss and its peer(s) run in the same process, interleaved run by run "
        "(so a change of load on this shared machine hits all of them alike); the time is the median of "
        f"{meta.get('repeats', 5)} runs after one warm-up (JAX: the warm-up compiles), with the 20th-80th "
        "percentile range. Peak memory is measured separately for each implementation in a fresh process "
        "forked from a server that has imported the same libraries and loaded probloss's compiled numba "
        "kernels (an idle interpreter, as a training process is after its first step): its resident set "
        "before the inputs are built is the baseline, the peak is reset after they are built "
        "(`/proc/self/clear_refs`), one call runs, and the table gives *peak minus baseline*, so **it counts "
        "the inputs** (logits, labels or targets), every temporary and the outputs, e.g. the gradient. "
        "Ratios are probloss / peer: below 1 is faster or leaner. `-` means not measured (memory is "
        "measured for inputs of 32 MiB or more, and for torch's forward-only cases at (8192, 32000) only).",
        "",
        "Implementations: `probloss` is the Keras-style class (`SparseCategoricalCrossentropy(from_logits=True)` "
        "etc., default reduction) on the backend's own arrays; `probloss.torch` is the `F.cross_entropy` "
        "drop-in `probloss.torch.cross_entropy`; `inplace` adds `inplace_backward=True` (the logits buffer "
        "receives the gradient); `checks off` runs under `probloss.set_value_checks(False)`.",
        "",
    ]
    for suite in ("torch", "jax", "numpy", "torch_cuda"):
        if results.get(suite):
            out.append(f"- `{suite}`: {machine_line(results[suite])}")
    out.append("")
    if meta.get("skipped"):
        out += ["**Not run** (time budget of `make bench`): " + "; ".join(meta["skipped"]) + ".", ""]
    out += ["## Targets", ""] + targets(results) + [""]
    out += cuda_section(load(Path(HERE / "results"), "cuda"))
    out += overhead_section(load(Path(HERE / "results"), "overhead"))
    out += train_step_section(load(Path(HERE / "results"), "train_step"))
    out += jit_checks_section(load(Path(HERE / "results"), "jit_checks"))
    out += distributed_section(load(Path(HERE / "results"), "distributed"))
    out += compile_checks_section(load(Path(HERE / "results"), "compile_checks"))
    if figure:
        out += ["## Overview", "", f"![probloss / peer ratios]({figure})", "",
                "Time and peak-memory ratios of `probloss.torch` (torch) or `probloss` (others) against the first "
                "peer (NumPy: the plain formula).", ""]
    checks = checks_section(results)
    if checks:
        out += ["## Cost of the value checks", "",
                "The eager value checks (label range, probability range, and the finiteness of the result) are on "
                "by default; this is the same probloss call with them off, timed in the suites above, one "
                "variant after the other. Where the two ranges overlap the difference is within the noise of "
                "this shared machine, and a variant timed during a slow spell looks slower: the measurement "
                "of record is `benchmarks/bench_checks.py`, which interleaves checks on and off run by run "
                "(its figures are in [errors.md](errors.md)).", ""] + checks + [""]
    for suite, title in SUITES:
        data = results.get(suite)
        if not data:
            continue
        out += [f"## {title}", ""]
        if suite == "numpy":
            out += ["Ratios are given against each peer in turn: Keras / plain formula.", ""]
        out += suite_table(data) + [""]
    out += ["## Notes", ""] + [f"- {n}" for n in NOTES + list(meta.get("notes", []))] + [""]
    return "\n".join(out)


NOTES = [
    "**Using it.** Torch users get the memory saving with one import change: "
    "`from probloss.torch import cross_entropy` (or `CrossEntropyLoss`) instead of `F.cross_entropy`; same "
    "arguments and numbers (class weights, `ignore_index`, label smoothing, probability targets, "
    "class axis 1). The Keras-style functions and classes use the same kernels for torch tensors "
    "(`from_logits=True`).",
    "**The memory floor.** With the inputs counted, sparse cross-entropy needs the logits and their "
    "gradient: 2 buffers of N x K against `F.cross_entropy`'s 4 (logits, saved log-softmax, two gradient "
    "buffers), so 0.5x is the floor, and 0.25x when the gradient overwrites the logits "
    "(`inplace_backward=True`). With soft targets the targets are a third N x K input: the floor is 3 "
    "buffers against the peer's 5, 0.6x (0.4x in place), so the issue's 0.55x cannot be reached for "
    "categorical targets while the inputs are counted; beyond the inputs it is about 0.33x.",
    "**Keras-style API vs the drop-in.** The rows `probloss` (Keras-style classes) differ from "
    "`probloss.torch` by what happens before the kernel, in the shared input preparation: dense targets "
    "are converted with an array-API `astype`, which copies them (one more N x K for categorical, binary, "
    "KL and Poisson), and float16/bfloat16 predictions are converted to float32 as a whole (one float32 "
    "N x K, and its gradient), where the drop-in converts one chunk at a time. `copy=False` in that "
    "conversion, and leaving half-precision logits to the kernels, would bring the Keras-style numbers to "
    "the drop-in's.",
    "**CUDA.** The `torch_cuda` table (one H100, PyTorch 2.11, made with `python "
    "benchmarks/bench_torch.py --device cuda --shapes 8192x32000,1024x128256 --only sparse_logits,cat_logits "
    "--repeats 10 --warmup 3`; memory there is `torch.cuda.max_memory_allocated` during one call plus the "
    "inputs) measured the chunked torch kernels, before the Triton backend: they kept the memory ratios "
    "(about 0.5x) but were slower than `F.cross_entropy`, being sequences of eager PyTorch operations that "
    "make more passes over device memory. CUDA tensors now take the Triton kernels (one pass over the logits "
    "in the forward, one writing the gradient in the backward, value checks read without a synchronisation); "
    "their figures are in the CUDA section above, from `benchmarks/bench_cuda.py`.",
    "**JAX.** probloss's generic JAX code traces to the same operations as Optax's (the same "
    "`jax.nn.log_softmax` / log-sum-exp and gather), so after XLA compiles both they run within about 10% "
    "of each other, either way, inside the run-to-run spread; the strict <= 1.0x target is therefore met in "
    "some cases and missed by small margins in others. Hand-written `jax.custom_vjp` kernels did not win "
    "consistently and would give up forward-mode differentiation (`jax.jvp`, `jax.hessian`), so there are none.",
    "**Other losses on JAX and NumPy.** Cross-entropy from probabilities, binary cross-entropy, KL and "
    "Poisson have native kernels on torch and, for big float32 arrays with numba, on NumPy. On JAX they run the generic array-API code, "
    "which follows Keras's definitions (clipping, renormalising rows) and so makes more passes than the "
    "textbook formulas of the peer rows: there they are mostly faster than Keras's own NumPy backend but "
    "slower than the plain formulas (most for categorical cross-entropy from probabilities). Those "
    "comparisons are not targets here; chunked NumPy kernels like the cross-entropy one would close "
    "the gap.",
    "**This machine.** The CPU runs are on a shared 2-vCPU virtual machine. Touching freshly allocated "
    "memory is expensive and variable there (about 0.4 s per GiB, sometimes much more), so implementations "
    "that allocate fewer N x K buffers also win time; the interleaved runs keep the ratios fair, and the "
    "20th-80th percentile ranges show the spread.",
    "**Scope of the run.** `make bench` must finish in about 20 minutes on this machine, so each script's `PLAN` "
    "is a selection: the losses other than cross-entropy from logits run on (256, 8, 4096) only (at "
    "(8192, 32000) their peers take seconds per call); JAX leaves out categorical targets at (8192, 32000) "
    "(Optax's `value_and_grad` peaks at 12.7 GiB there, over the 10 GB a benchmark may take on this "
    "shared machine) and bfloat16 (emulated by XLA on CPU); NumPy leaves out Keras's categorical "
    "cross-entropy at (8192, 32000) (it peaks near 10 GiB). Each script's `--only` and `--shapes` select "
    "from its plan; `bench_torch.py --extra` adds the naive `logsumexp - gather` formula.",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args(argv)
    results_dir = Path(args.results)
    results = {name: load(results_dir, name) for name, _ in SUITES}
    meta = load(results_dir, "run_all") or {}
    out = Path(args.out)
    fig_path = out.parent / "figures" / "benchmarks.png"
    has_fig = plot(results, fig_path)
    text = render(results, meta, "figures/benchmarks.png" if has_fig else None)
    out.write_text(text + "\n")
    print(f"wrote {out}" + (f" and {fig_path}" if has_fig else ""))


if __name__ == "__main__":
    main()
