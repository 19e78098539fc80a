"""Learning-rate transfer across depth, and the optimal η_c found by differentiating the limit.

Under depth-μP the learning-rate constant η_c of a ResNet with one-layer blocks should transfer
across depth: the best η_c at depth 4 is the best at depth 64.  This script

1. finds the η_c minimising the online loss of the *limit* (NFD particle solver, exact mode):
   a coarse scan of the loss, then bisection on ∂ℒ/∂η_c, which JAX computes through the whole
   training run
   (``nfd.optimal_lr``, ``nfd.limit_loss_fn``);
2. draws the limit's loss against η_c at several depths;
3. trains finite networks at those depths on a fixed grid of η_c (by default the 8 round rates
   0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10: more than two decades, chosen before the limit's optimum is
   known, so the grid does not presuppose the answer) and marks each depth's best η_c — if the rate transfers, the
   finite networks' optima line up across depth and with the limit's optimum.

The loss is the online (prequential) loss (1/K) Σ_k ℓ(f^(k), y^(k)), each sample seen before
it is trained on.

    python examples/lr_transfer.py               # writes examples/out/lr_transfer.png
    python examples/lr_transfer.py --depths 2 4 --width 32 --seeds 2 --particles 256 --steps 6 --grid 7 --iterations 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "lr_transfer.png"))
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 16, 64], help="depths L")
    ap.add_argument("--steps", type=int, default=16, help="online SGD steps")
    ap.add_argument("--width", type=int, default=128, help="width of the finite networks")
    ap.add_argument("--seeds", type=int, default=8, help="finite networks per (depth, η_c)")
    ap.add_argument("--particles", type=int, default=2048, help="particles of the limit")
    ap.add_argument("--grid", type=int, default=None,
                    help="η_c values per depth for the finite networks, log-spaced over --lr-range "
                         "(default: the round numbers 1, 2, 5 × 10^k inside --lr-range: 8 values over 0.05–10)")
    ap.add_argument("--lr-range", type=float, nargs=2, default=[0.05, 10.0], metavar=("LO", "HI"),
                    help="the η_c range of the finite networks' grid and of the limit's curve (default 0.05 10)")
    ap.add_argument("--scan", type=int, default=16, help="coarse log-spaced scan of the limit loss before bisection")
    ap.add_argument("--iterations", type=int, default=10, help="bisection steps for the optimal η_c")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import nfd
    from nfd.plotting import log_axis, savefig

    rng = np.random.default_rng(0)
    K, d = args.steps, 4
    X = rng.normal(size=(K, d))
    Y = np.tanh(X @ np.array([1.5, -1.0, 0.5, 0.0]))
    lim_kw = dict(particles=args.particles, activation="tanh", backward="exact", seed=0)
    L0 = args.depths[0]
    lo_lr, hi_lr = sorted(args.lr_range)
    if lo_lr <= 0:
        raise SystemExit("--lr-range must be positive")
    opt = nfd.optimal_lr(X, Y, bracket=(lo_lr, hi_lr), depth=L0, grid=args.scan, iterations=args.iterations, **lim_kw)
    print(f"limit (L={L0}, P={args.particles}): optimal η_c = {opt.lr:.3f}, loss {opt.loss:.4f}, "
          f"∂ℒ/∂η_c there = {opt.d_lr:+.2e} (interior: {opt.interior}, {len(opt.history)} evaluations)")

    # the finite networks' grid is fixed before (and independently of) the limit's optimum
    if args.grid is None:
        lrs = np.array([m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5)])
        lrs = lrs[(lrs >= lo_lr * (1 - 1e-9)) & (lrs <= hi_lr * (1 + 1e-9))]
    else:
        lrs = np.geomspace(lo_lr, hi_lr, args.grid)
    curve_lrs = np.geomspace(lo_lr, hi_lr, 33)
    fig, ax = plt.subplots(figsize=(8, 5))
    best = {}
    curves, finite_means = [], []
    for i, L in enumerate(args.depths):
        c = f"C{i}"
        fn = nfd.limit_loss_fn(X, Y, depth=L, **lim_kw)
        lim_curve = np.array([float(fn(a, 1.0)) for a in curve_lrs])
        lim_curve[~np.isfinite(lim_curve)] = np.nan  # diverged
        curves.append(lim_curve)
        okc = np.isfinite(lim_curve)
        ax.plot(curve_lrs[okc], lim_curve[okc], "-", color=c, alpha=0.8, label=f"limit, L={L}")
        means, ses = [], []
        for a in lrs:
            try:
                r = nfd.simulate(X, Y, width=args.width, depth=L, activation="tanh", lr=float(a), seeds=args.seeds,
                                 seed=1)
                per_seed = r.losses.mean(axis=1)
                means.append(float(per_seed.mean()))
                ses.append(float(per_seed.std(ddof=1) / np.sqrt(args.seeds)) if args.seeds > 1 else 0.0)
            except nfd.DivergenceError:
                means.append(np.nan)
                ses.append(np.nan)
        means, ses = np.array(means), np.array(ses)
        bad = ~np.isfinite(means)  # an overflowing loss counts as diverged
        means[bad], ses[bad] = np.nan, np.nan
        finite_means.append(means)
        ok = np.isfinite(means)  # diverged rates are left out
        ax.errorbar(lrs[ok], means[ok], 2 * np.nan_to_num(ses[ok]), fmt="o", color=c, capsize=3,
                    label=f"finite n={args.width}, L={L} (± 2 SE)")
        j = int(np.nanargmin(means))
        best[L] = float(lrs[j])
        ax.plot([lrs[j]], [means[j]], "*", ms=14, mfc="none", mec=c, mew=1.5,
                label=f"finite best η_c={lrs[j]:.2g}, L={L}")
        print(f"L={L:4d}: finite best η_c on the grid = {lrs[j]:.3f} (loss {means[j]:.4f}); "
              f"limit argmin on the curve = {curve_lrs[int(np.nanargmin(lim_curve))]:.3f}")
    diverged = sorted({float(lrs[j]) for m in finite_means for j in np.nonzero(~np.isfinite(m))[0]})
    if diverged:
        ax.text(0.99, 0.02, "finite networks diverged at η_c = " + ", ".join(f"{v:g}" for v in diverged),
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7)
    ax.axvline(opt.lr, color="k", ls=":", label=f"limit optimum η_c* = {opt.lr:.2f} (via ∂ℒ/∂η_c)")
    # the limit's loss grows without bound near its divergence: show the range the finite networks span
    lo = np.nanmin([np.nanmin(c) for c in curves] + [np.nanmin(m) for m in finite_means])
    hi = 1.2 * np.nanmax([np.nanmax(m) for m in finite_means])
    ax.set_ylim(0.9 * lo, hi if hi > lo else 2 * lo)
    log_axis(ax, "x", lrs)
    log_axis(ax, "y")
    ax.set_xlabel("learning-rate constant η_c (finite networks at the labelled values)")
    ax.set_ylabel("online loss (1/K) Σ ℓ(f^(k), y^(k))")
    ax.set_title("learning-rate transfer across depth (depth-μP, one-layer blocks)")
    ax.legend(fontsize=6, ncol=2)
    savefig(fig, args.out)
    spread = max(best.values()) / min(best.values())
    print(f"the finite networks' best η_c on a {len(lrs)}-point grid over [{lo_lr:g}, {hi_lr:g}]: "
          + ", ".join(f"L={L}: {b:.3g}" for L, b in best.items())
          + f" (largest/smallest = {spread:.2g}; grid steps are factors {(lrs[1] / lrs[0]) if len(lrs) > 1 else float('nan'):.2g}–{(lrs[-1] / lrs[-2]) if len(lrs) > 1 else float('nan'):.2g})")
    print(f"figure: {args.out}")
    return {"optimal_lr": opt.lr, "finite_best": best}


if __name__ == "__main__":
    main()
