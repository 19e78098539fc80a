"""NNGP kernel regression on handwritten digits with the infinite-depth ResNet kernel.

The infinite-width-and-depth ResNet at initialisation is a Gaussian process whose kernel C_T
solves the matrix ODE dC/dt = E[φ(h)φ(h̄)] (NFD paper, Prop. 3; ``nfd.nngp_kernel``).  This
script does kernel (ridge) regression of one-hot labels on scikit-learn's digits for several
horizons T, reports the test accuracy, checks the kernel against the empirical kernel
h_L·h_L'/n of finite random ResNets of growing width (fitted slope of the relative error), and
draws the kernel as a heat map (samples sorted by class).

    python examples/nngp_digits.py               # writes examples/out/nngp_digits.png
    python examples/nngp_digits.py --train 100 --test 100 --widths 32 128 --seeds 2   # tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _ci(fit) -> str:
    ci = fit.slope_ci95
    return f" (95% interval {ci[0]:.2f} to {ci[1]:.2f})" if ci is not None else " (two points, no interval)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "nngp_digits.png"))
    ap.add_argument("--train", type=int, default=500, help="training digits")
    ap.add_argument("--test", type=int, default=500, help="test digits")
    ap.add_argument("--Ts", type=float, nargs="+", default=[0.25, 1.0, 4.0], help="depth horizons T")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 128, 512], help="widths for the empirical check")
    ap.add_argument("--depth", type=int, default=8, help="depth L of the finite networks in the check")
    ap.add_argument("--seeds", type=int, default=4, help="random networks per width in the check")
    ap.add_argument("--noise", type=float, default=1e-3, help="ridge (observation noise variance)")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        raise SystemExit("examples/nngp_digits.py needs scikit-learn for the digits data set: "
                         "pip install -e \".[examples]\"  (or: pip install scikit-learn)") from None

    import nfd
    from nfd.plotting import log_axis, plot_kernel, plot_rates, savefig

    dg = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(dg.target))[: args.train + args.test]
    X = dg.data[idx].astype(np.float64)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)  # standardised pixels, ‖x‖²/d ≈ 1
    lab = dg.target[idx]
    Yh = np.eye(10)[lab] - 0.1
    ntr = args.train
    acc = {}
    for T in args.Ts:
        C = nfd.nngp_kernel(X, activation="relu", T=T)
        Ktr = C[:ntr, :ntr] + args.noise * np.mean(np.diag(C)) * np.eye(ntr)
        pred = C[ntr:, :ntr] @ np.linalg.solve(Ktr, Yh[:ntr])
        acc[T] = float(np.mean(pred.argmax(1) == lab[ntr:]))
        print(f"T={T:5.2f}: NNGP kernel regression test accuracy {acc[T]:.3f} ({args.test} test digits)")

    # empirical check: finite random ResNets (lr = 0: no training) on 16 digits
    m = 16
    Xs, Ys = X[:m], Yh[:m, 0]
    Cd = nfd.nngp_kernel(Xs, activation="relu", T=1.0, depth=args.depth)  # exact infinite-width kernel at depth L
    rel, rel_se = [], []
    for n in args.widths:
        r = nfd.simulate(Xs, Ys, width=n, depth=args.depth, activation="relu", lr=0.0, seeds=args.seeds,
                         record=("features",), dtype=np.float64)
        H = r.features[:, :, -1, :]  # (seeds, m, n): h_L on each digit, untrained network
        Ke = np.einsum("sin,sjn->sij", H, H) / n
        e = np.sqrt(np.mean((Ke - Cd) ** 2, axis=(1, 2))) / np.sqrt(np.mean(Cd**2))  # per seed
        rel.append(float(e.mean()))
        rel_se.append(float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0)
        print(f"width {n:5d}: relative RMS error of the empirical kernel {rel[-1]:.4f} ± {rel_se[-1]:.4f}")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    Tm = args.Ts[int(np.argmax([acc[T] for T in args.Ts]))]
    order = np.argsort(lab[:ntr], kind="stable")
    C = nfd.nngp_kernel(X[:ntr][order], activation="relu", T=Tm)
    plot_kernel(C, ax=axes[0], title=f"NNGP kernel C_T, T={Tm:g}", label="C_T(x_i, x_j)",
                xlabel="training digit j (sorted by class)", ylabel="training digit i (sorted by class)")
    a = axes[1]
    Ts = np.asarray(args.Ts, float)
    accs = np.asarray([acc[T] for T in args.Ts])
    acc_se = np.sqrt(accs * (1 - accs) / args.test)  # binomial standard error over the test digits
    a.errorbar(Ts, 100 * accs, 200 * acc_se, fmt="o-", capsize=3, label=f"test accuracy (± 2 SE, {args.test} digits)")
    log_axis(a, "x", Ts)
    mid = 100 * accs.mean()
    half = max(100 * (accs.max() - accs.min()) / 2 + 250 * acc_se.max(), 2.5)  # at least ±2.5 points
    a.set_ylim(max(0.0, mid - half), min(100.0, mid + half))
    a.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.0f%%"))
    a.set_xlabel("horizon T")
    a.set_ylabel("test accuracy")
    a.set_title("NNGP kernel regression on digits")
    a.legend(fontsize=7)
    _, fit = plot_rates(args.widths, rel, np.asarray(rel_se) if args.seeds > 1 else None, ax=axes[2],
                        label="finite / NNGP kernel", xlabel="width n", ylabel="relative RMS error of the kernel",
                        expected=-0.5, expected_label="expected n^-1/2 (central limit theorem)")
    axes[2].set_title(f"finite random ResNets, L={args.depth}")
    if fit is not None:
        print(f"fitted slope of the kernel error against width: {fit.slope:.2f}{_ci(fit)} (CLT: −1/2)")
    savefig(fig, args.out)
    print(f"figure: {args.out}")
    return {"accuracy": acc, "kernel_error": rel, "slope": None if fit is None else fit.slope}


if __name__ == "__main__":
    main()
