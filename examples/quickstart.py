"""Quickstart: the infinite-width limit of an SGD run, and finite networks approaching it.

Solves the NFD particle recursion of a depth-μP ResNet in both modes (exact = the limit of
ordinary backprop networks; GIA = the published NFD, the limit of networks whose backward pass
uses an independent copy of the weights), trains finite networks of growing width on the same
data stream, and writes a two-panel figure:

* left: the network output at every SGD step: finite networks (mean ± 2 standard errors over
  seeds) beside the two limits;
* right: the mean-square distance E|f_n − f̂|² of a width-n network to the exact limit
  (mean over steps k ≥ 1, ± 2 standard errors over seeds) against width, its fitted log-log
  slope with a 95% interval, and the expected rate 1/n (NFD Theorem 1: mean-square error
  O(1/n); its fluctuation part is the n^-1/2 of one network's output, squared).

    python examples/quickstart.py            # writes examples/out/quickstart.png

About a minute on 2 CPU cores (mostly compilation: one program per width).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "quickstart.png"))
    ap.add_argument("--depth", type=int, default=8, help="depth L")
    ap.add_argument("--steps", type=int, default=8, help="online SGD steps (one sample each)")
    ap.add_argument("--seeds", type=int, default=16, help="finite networks per width")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256, 512], help="finite widths n")
    ap.add_argument("--particles", type=int, default=8192, help="particles of the limit solver")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import nfd
    from nfd.plotting import plot_rates, savefig

    rng = np.random.default_rng(0)
    d, K, L = 4, args.steps, args.depth
    X = rng.normal(size=(K, d))
    Y = np.tanh(X @ np.array([1.0, -0.5, 0.25, 0.0]))
    common = dict(depth=L, activation="tanh", lr=0.5, T=1.0)

    exact = nfd.solve(X, Y, particles=args.particles, backward="exact", seed=0, **common)
    gia = nfd.solve(X, Y, particles=args.particles, backward="gia", seed=0, **common)
    fhat = np.asarray(exact.outputs, np.float64)

    widths = sorted(args.widths)
    finite = {n: nfd.simulate(X, Y, width=n, seeds=args.seeds, seed=1, backward="coupled", **common) for n in widths}

    # per seed: mean over steps k ≥ 1 of (f_n − f̂)² (step 0 is before any training); then the
    # mean over seeds and its standard error (seed-to-seed spread / √seeds)
    mse, mse_se = [], []
    for n in widths:
        per_seed = np.mean((np.asarray(finite[n].outputs, np.float64)[:, 1:] - fhat[None, 1:]) ** 2, axis=1)
        mse.append(float(per_seed.mean()))
        mse_se.append(float(per_seed.std(ddof=1) / np.sqrt(per_seed.size)) if per_seed.size > 1 else float("nan"))
    mse, mse_se = np.asarray(mse), np.asarray(mse_se)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    k = np.arange(K)
    shown = widths if len(widths) <= 3 else [widths[0], widths[len(widths) // 2], widths[-1]]
    for i, n in enumerate(shown):
        r = finite[n]
        ax1.errorbar(k + 0.08 * (i - 1), r.mean, yerr=2 * r.stderr, fmt="o", ms=4, capsize=2,
                     label=f"finite n={n} (mean ± 2 SE, {args.seeds} seeds)")
    ax1.plot(k, fhat, "k-", lw=2, label="limit, exact mode")
    ax1.plot(k, gia.outputs, "r--", lw=1.5, label="limit, GIA mode (published NFD)")
    ax1.plot(k, Y, "x", color="gray", label="target y^(k)")
    ax1.set_xlabel("SGD step k")
    ax1.set_ylabel("output f^(k) before update k")
    ax1.set_title(f"depth-μP ResNet, L={L}, tanh, online SGD")
    ax1.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax1.legend(fontsize=7)

    se = mse_se if np.all(np.isfinite(mse_se)) else None
    _, fit = plot_rates(widths, mse, se, ax=ax2, label="E|f_n − f̂|²", xlabel="width n",
                        ylabel="mean-square distance to the exact limit", expected=-1.0,
                        expected_label="expected rate 1/n (NFD Thm 1)",
                        title="finite networks approach the limit")
    savefig(fig, args.out)

    slope = None if fit is None else fit.slope
    ci = None if fit is None else fit.slope_ci95
    print(f"limit (exact) f̂ per step: {np.array2string(fhat, precision=3)}")
    print(f"limit (GIA)   f̂ per step: {np.array2string(np.asarray(gia.outputs), precision=3)}")
    for n, m, s in zip(widths, mse, mse_se):
        print(f"width {n:5d}: mean-square distance to the exact limit {m:.2e} ± {s:.1e} (SE over {args.seeds} seeds)")
    print()
    print("What the figure shows:")
    gap = float(np.sqrt(np.mean((np.asarray(gia.outputs)[1:] - fhat[1:]) ** 2)))
    print(f"  left:  the finite networks' average output follows the limit step by step; the two limit modes "
          f"differ by {gap:.3f} (RMS over steps) at depth {L}.")
    if slope is not None:
        ci_txt = f" (95% interval {ci[0]:.2f} to {ci[1]:.2f})" if ci is not None else ""
        verdict = ("consistent with" if ci is not None and ci[0] <= -1.0 <= ci[1] else "to be compared with")
        print(f"  right: the mean-square distance to the limit falls like n^{slope:.2f}{ci_txt} as the width grows, "
              f"{verdict} the expected 1/n.")
    print(f"  figure: {args.out}")
    return {"widths": widths, "mse": mse.tolist(), "mse_se": mse_se.tolist(), "slope": slope,
            "slope_ci95": None if ci is None else list(ci)}


if __name__ == "__main__":
    main()
