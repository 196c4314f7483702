"""Draw the figures of docs/guide.md with matplotlib (Agg) into docs/figures/.

Usage::

    python docs/make_figures.py [--out DIR]

Every curve is computed with probloss itself (the losses and :mod:`probloss.info`), in
float64, so the pictures show what the library computes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import probloss as pl  # noqa: E402
from probloss import info  # noqa: E402

HERE = Path(__file__).resolve().parent
DPI = 100
GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


def _save(fig, out: Path, name: str) -> Path:
    path = out / name
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def cross_entropy_and_focal(out: Path) -> Path:
    """Loss against the predicted probability of the true class: cross-entropy and focal."""
    p = np.linspace(0.005, 1.0, 400)
    y = np.zeros((p.size, 2))
    y[:, 1] = 1.0
    probs = np.stack([1.0 - p, p], axis=-1)  # two classes, the true one gets p
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for gamma in GAMMAS:
        loss = pl.categorical_focal_crossentropy(y, probs, alpha=1.0, gamma=gamma)
        label = "cross-entropy  −log p  (γ = 0)" if gamma == 0 else f"focal, γ = {gamma:g}"
        ax.plot(p, np.asarray(loss), lw=2.2 if gamma == 0 else 1.6, label=label, color="black" if gamma == 0 else None)
    ax.axvspan(0.6, 1.0, color="tab:green", alpha=0.08)
    ax.text(0.8, 2.55, "well classified\n(p > 0.6)", ha="center", va="center", fontsize=9, color="tab:green")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 3.2)
    ax.set_xlabel("predicted probability of the true class, p")
    ax.set_ylabel("loss (nats)")
    ax.set_title(r"Focal loss $-(1-p)^{\gamma}\,\log p$ shrinks the loss of easy examples")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    return _save(fig, out, "ce_focal.png")


def binary_entropy(out: Path) -> Path:
    """The binary entropy H(p) in bits."""
    p = np.linspace(0.0, 1.0, 401)
    h = np.asarray(info.entropy(np.stack([p, 1.0 - p], axis=-1), base=2))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(p, h, lw=2.2, color="tab:blue")
    ax.plot([0.5], [1.0], "o", color="tab:blue")
    ax.annotate("1 bit at p = 0.5\n(a fair coin)", (0.5, 1.0), (0.5, 0.62), fontsize=9, ha="center",
                arrowprops={"arrowstyle": "->", "lw": 0.8})
    for q in (0.1, 0.9):
        hq = float(info.entropy(np.array([q, 1 - q]), base=2))
        ax.plot([q], [hq], "o", color="tab:orange")
        ax.annotate(f"{hq:.2f} bits\nat p = {q:g}", (q, hq), (q + 0.12 if q < 0.5 else q - 0.12, 0.2), fontsize=9,
                    ha="center", arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("probability of the event, p")
    ax.set_ylabel("H(p) in bits")
    ax.set_title(r"Binary entropy  $H(p) = -p\,\log_2 p - (1-p)\,\log_2 (1-p)$")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out, "binary_entropy.png")


def kl_asymmetry(out: Path) -> Path:
    """KL(p || q) is not KL(q || p): Bernoulli curves and a bimodal/unimodal pair."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    p0 = 0.2
    q = np.linspace(0.005, 0.995, 400)
    P = np.stack([np.full_like(q, p0), np.full_like(q, 1 - p0)], axis=-1)
    Q = np.stack([q, 1 - q], axis=-1)
    left.plot(q, np.asarray(info.kl_divergence(P, Q, base=2)), lw=2, label="KL(p ‖ q)")
    left.plot(q, np.asarray(info.kl_divergence(Q, P, base=2)), lw=2, label="KL(q ‖ p)")
    left.plot(q, np.asarray(info.js_divergence(P, Q, base=2)), lw=1.5, ls="--", color="gray", label="JS(p, q), symmetric")
    left.axvline(p0, color="black", lw=0.8, ls=":")
    left.set_ylim(0, 3)
    left.set_xlim(0, 1)
    left.set_xlabel("q = model's probability of the event")
    left.set_ylabel("bits")
    left.set_title(f"Bernoulli, true p = {p0:g}")
    left.grid(alpha=0.3)
    left.legend(frameon=False, loc="upper center")

    # The best single-mode model q (a discretised bell curve) under each direction, found
    # by a grid search over its centre and width: KL(p || q) spreads q over both modes of
    # p, KL(q || p) puts q on one of them.
    x = np.arange(16)
    bimodal = np.exp(-0.5 * ((x - 3.0) / 1.0) ** 2) + np.exp(-0.5 * ((x - 12.0) / 1.0) ** 2)
    bimodal /= bimodal.sum()
    centres, widths = np.linspace(0.0, 15.0, 151), np.linspace(0.4, 12.0, 117)
    bells = np.exp(-0.5 * ((x - centres[:, None, None]) / widths[None, :, None]) ** 2)
    bells /= bells.sum(axis=-1, keepdims=True)  # (centre, width, outcome)
    forward = np.asarray(info.kl_divergence(np.broadcast_to(bimodal, bells.shape), bells, base=2))
    reverse = np.asarray(info.kl_divergence(bells, np.broadcast_to(bimodal, bells.shape), base=2))
    q_forward = bells[np.unravel_index(np.argmin(forward), forward.shape)]
    q_reverse = bells[np.unravel_index(np.argmin(reverse), reverse.shape)]
    right.bar(x, bimodal, 0.6, color="lightgray", label="p (data, two modes)")
    right.plot(x, q_forward, "o-", lw=2, label=f"q minimising KL(p ‖ q) = {forward.min():.2f} bits: covers both")
    right.plot(x, q_reverse, "s-", lw=2, label=f"q minimising KL(q ‖ p) = {reverse.min():.2f} bits: locks onto one")
    right.set_xticks(x)
    right.set_xlabel("outcome")
    right.set_ylabel("probability")
    right.set_title("best one-mode model q under each direction")
    right.set_ylim(0, 0.5)
    right.legend(frameon=False, loc="upper center", fontsize=8)
    right.grid(alpha=0.3, axis="y")
    fig.suptitle("KL divergence is not symmetric", fontsize=12)
    fig.tight_layout()
    return _save(fig, out, "kl_asymmetry.png")


FIGURES = (cross_entropy_and_focal, binary_entropy, kl_asymmetry)


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "figures"), help="output folder (default: docs/figures)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    os.makedirs(out, exist_ok=True)
    paths = [make(out) for make in FIGURES]
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
