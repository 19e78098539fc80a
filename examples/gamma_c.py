"""The Γ/C recursion of Tensor Programs VI: a deterministic limit for linear ResNets.

For a *linear* depth-μP ResNet (φ = identity, U and v frozen as in TP VI §4) the infinite-width
limit of SGD training is a finite set of deterministic matrices (the Γ coefficients and the C
covariances).  This script solves it at several depths L (Lemma C.1) and at L = ∞
(Proposition C.2, with Richardson extrapolation), checks it against the exact-mode particle
solver (a second, Monte-Carlo formulation of the same limit), trains finite linear networks
on the same stream, and plots the outputs and the convergence |f̊_L − f̊_∞| against L with its
fitted slope.

    python examples/gamma_c.py                   # writes examples/out/gamma_c.png
    python examples/gamma_c.py --depths 2 4 8 --width 64 --seeds 4 --particles 1024   # tiny
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
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "gamma_c.png"))
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8, 16, 32], help="finite depths L")
    ap.add_argument("--steps", type=int, default=6, help="SGD steps")
    ap.add_argument("--width", type=int, default=256, help="width of the finite networks")
    ap.add_argument("--seeds", type=int, default=16, help="finite networks")
    ap.add_argument("--particles", type=int, default=8192, help="particles of the exact-mode solver")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)  # the Γ/C solvers run in float64
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import nfd
    from nfd.limits import solve_gamma_c_infinite
    from nfd.limits._gamma_c_infinite import richardson
    from nfd.plotting import plot_rates, savefig

    rng = np.random.default_rng(0)
    K = args.steps
    X = rng.normal(size=(K, 1))
    Y = 0.5 * X[:, 0] + 0.3
    lin = dict(activation="identity", lr=1.0, T=1.0, frozen=("input", "output"))
    per_L = {L: nfd.solve(X, Y, method="gamma_c", depth=L, **lin) for L in args.depths}
    N = 64
    inf = richardson(solve_gamma_c_infinite(X, Y, grid=N, **lin).outputs,
                     solve_gamma_c_infinite(X, Y, grid=2 * N, **lin).outputs)
    Lm = max(args.depths)
    # d = 1 with U frozen: every h_0 is a multiple of U, so Σ_0 is singular by construction
    part = nfd.solve(X, Y, depth=Lm, particles=args.particles, backward="exact", seed=0, on_singular="regularize", **lin)
    fin = nfd.simulate(X, Y, width=args.width, depth=Lm, seeds=args.seeds, seed=0, **lin)
    gc = per_L[Lm].outputs
    dist = [float(np.max(np.abs(per_L[L].outputs - inf))) for L in args.depths]
    print(f"Γ/C at L={Lm}:             {np.round(gc, 4)}")
    print(f"exact particles (P={args.particles}): {np.round(part.outputs, 4)}  max diff {np.max(np.abs(part.outputs - gc)):.4f}")
    print(f"finite n={args.width} ({args.seeds} seeds):  {np.round(fin.mean, 4)}  max |diff|/SE "
          f"{np.max(np.abs(fin.mean - gc)[1:] / fin.stderr[1:]):.2f}")
    for L, e in zip(args.depths, dist):
        print(f"L={L:4d}: max_k |f̊_L − f̊_∞| = {e:.2e}")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    k = np.arange(K)
    a1.errorbar(k, fin.mean, 2 * fin.stderr, fmt="o", capsize=2, label=f"finite n={args.width} (± 2 SE)")
    a1.plot(k, gc, "k-", lw=2, label=f"Γ/C recursion, L={Lm}")
    a1.plot(k, part.outputs, "r--", label=f"exact particle solver, P={args.particles}")
    a1.plot(k, inf, "g:", lw=2, label="Γ/C at L = ∞")
    a1.plot(k, Y, "x", color="gray", label="target")
    a1.set_xlabel("SGD step k")
    a1.set_ylabel("output f^(k) before update k")
    a1.set_title("linear ResNet, U and v frozen (TP VI §4)")
    a1.legend(fontsize=7)
    pos = [(L, e) for L, e in zip(args.depths, dist) if e > 0]
    fit = None
    if len(pos) >= 2:
        _, fit = plot_rates([p[0] for p in pos], [p[1] for p in pos], ax=a2, label="max_k |f̊_L − f̊_∞|",
                            xlabel="depth L", ylabel="distance to the infinite-depth limit (deterministic)",
                            expected=-1.0, expected_label="expected 1/L (TP VI, Euler in depth)")
        print(f"fitted slope of the depth error: {fit.slope:.2f}{_ci(fit)}")
    if fit is None:
        a2.text(0.5, 0.5, "needs two depths with a non-zero error", ha="center", va="center", transform=a2.transAxes)
        a2.set(xlabel="depth L", ylabel="distance to the infinite-depth limit")
    a2.set_title("depth convergence of the Γ/C limit")
    savefig(fig, args.out)
    print(f"figure: {args.out}")
    return {"depths": list(args.depths), "depth_error": dist, "slope": None if fit is None else fit.slope}


if __name__ == "__main__":
    main()
