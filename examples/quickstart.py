"""Quickstart: the infinite-width limit of an SGD run, and finite networks approaching it.

Solves the NFD particle recursion of a depth-μP ResNet (exact mode = the limit of ordinary
backprop networks; GIA mode = the published NFD, the limit of decoupled networks), trains
finite networks of growing width on the same data stream, and writes a figure:

    python examples/quickstart.py            # writes examples/out/quickstart.png

Runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "quickstart.png"))
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=16)
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import nfd

    rng = np.random.default_rng(0)
    d, K, L = 4, args.steps, args.depth
    X = rng.normal(size=(K, d))
    Y = np.tanh(X @ np.array([1.0, -0.5, 0.25, 0.0]))
    common = dict(depth=L, activation="tanh", lr=0.5, T=1.0)

    exact = nfd.solve(X, Y, particles=8192, backward="exact", seed=0, **common)
    gia = nfd.solve(X, Y, particles=8192, backward="gia", seed=0, **common)

    widths = [32, 128, 512]
    finite = {n: nfd.simulate(X, Y, width=n, seeds=args.seeds, seed=1, **common) for n in widths}

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    k = np.arange(K)
    for n, r in finite.items():
        ax1.errorbar(k, r.mean, yerr=2 * r.stderr, fmt="o", ms=4, capsize=2, label=f"finite n={n} (mean ± 2 SE)")
    ax1.plot(k, exact.outputs, "k-", lw=2, label="limit, exact (coupled)")
    ax1.plot(k, gia.outputs, "r--", lw=1.5, label="limit, GIA (decoupled)")
    ax1.plot(k, Y, "x", color="gray", label="target y^(k)")
    ax1.set_xlabel("SGD step k")
    ax1.set_ylabel("f^(k) before update k")
    ax1.set_title(f"depth-μP ResNet, L={L}, tanh, online SGD")
    ax1.legend(fontsize=7)

    err = [float(np.sqrt(np.mean((r.mean[1:] - exact.outputs[1:]) ** 2))) for r in finite.values()]
    slope = np.polyfit(np.log(widths), np.log(err), 1)[0]
    ax2.loglog(widths, err, "o-", label=f"fitted slope {slope:.2f}")
    ax2.set_xlabel("width n")
    ax2.set_ylabel("RMS |mean f_n − f̂| over steps ≥ 1")
    ax2.set_title("finite networks approach the exact limit")
    ax2.set_xticks(widths, [str(w) for w in widths])
    ax2.minorticks_off()
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)

    print(f"limit (exact) f̂: {np.array2string(np.asarray(exact.outputs), precision=4)}")
    print(f"limit (GIA)   f̂: {np.array2string(np.asarray(gia.outputs), precision=4)}")
    for n, e in zip(widths, err):
        print(f"width {n:5d}: RMS distance of the {args.seeds}-seed mean to the exact limit = {e:.4f}")
    print(f"fitted slope of that distance versus width: {slope:.2f}  (figure: {args.out})")
    return {"widths": widths, "errors": err, "slope": slope}


if __name__ == "__main__":
    main()
