"""The Neural Mean ODE: ResNets with M units per block as depth L → ∞ (Chizat 2025).

Trains finite ResNets h^ℓ = h^{ℓ-1} + 1/(LM) Σ_j v_j tanh(u_jᵀ h^{ℓ-1}/D) of growing depth by
full-batch gradient descent, solves their large-depth limit (the Neural Mean ODE, a particle
method over the depth interval [0, 1]) on the same data, and plots the training losses and the
distance of the finite networks' outputs to the limit against depth, with its fitted slope.

    python examples/mean_ode.py                # writes examples/out/mean_ode.png
    python examples/mean_ode.py --depths 2 8 --seeds 2 --steps 5 --grid 16 --particles 64   # tiny
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
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "mean_ode.png"))
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 16, 64], help="depths L of the finite ResNets")
    ap.add_argument("--hidden", type=int, default=4, help="units per block M")
    ap.add_argument("--seeds", type=int, default=8, help="finite networks per depth")
    ap.add_argument("--steps", type=int, default=30, help="full-batch GD steps")
    ap.add_argument("--grid", type=int, default=64, help="Euler steps of the limit in depth")
    ap.add_argument("--particles", type=int, default=512, help="particles of the limit per replicate")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)  # the Mean-ODE solver works in float64 by default
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import nfd
    from nfd.plotting import log_axis, plot_rates, savefig

    rng = np.random.default_rng(0)
    n, D = 8, 3
    X = rng.normal(size=(n, D))
    Y = np.tanh(X @ rng.normal(size=(D, D)) / np.sqrt(D))
    lim = nfd.solve(X, Y, method="mean_ode", steps=args.steps, grid=args.grid, particles=args.particles,
                    replicates=4, richardson=True, seed=0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    a1.plot(lim.losses, "k-", lw=2, label="Neural Mean ODE (L = ∞)")
    dist, dist_se = [], []
    for L in args.depths:
        r = nfd.simulate_resnet(X, Y, depth=L, hidden=args.hidden, steps=args.steps, seeds=args.seeds, seed=1)
        lm = r.losses.mean(0)
        (ln,) = a1.plot(lm, "--", label=f"finite L={L}, M={args.hidden} (seed mean ± 2 SE band)")
        if args.seeds > 1:
            band = 2 * r.losses.std(0, ddof=1) / np.sqrt(args.seeds)
            a1.fill_between(np.arange(lm.shape[0]), np.maximum(lm - band, lm * 1e-3), lm + band, color=ln.get_color(),
                            alpha=0.2, lw=0)
        # RMS distance of the seed-mean final outputs to the limit
        e = r.outputs[:, -1] - lim.final  # (seeds, n, D)
        dist.append(float(np.sqrt(np.mean(e.mean(0) ** 2))))
        dist_se.append(float(np.sqrt(np.mean(e.var(0, ddof=1) / args.seeds))) if args.seeds > 1 else 0.0)
        print(f"L={L:4d}: final loss {r.losses[:, -1].mean():.4f} (limit {lim.losses[-1]:.4f}); "
              f"RMS |mean h^L − h(1)| = {dist[-1]:.4f} ± {dist_se[-1]:.4f}")
    log_axis(a1, "y")
    a1.set_xlabel("full-batch GD step")
    a1.set_ylabel("training loss")
    a1.set_title("finite ResNets and their Neural Mean ODE")
    a1.legend(fontsize=7)
    _, fit = plot_rates(args.depths, dist, np.asarray(dist_se) if args.seeds > 1 else None, ax=a2,
                        label="RMS distance to the limit", xlabel="depth L", ylabel="final outputs, RMS distance",
                        expected=-1.0, expected_label="expected 1/L (bias term a/L, Chizat 2025)")
    print(f"limit Monte-Carlo error (RMS stderr of the outputs): {np.sqrt(np.mean(lim.outputs_stderr[-1] ** 2)):.4f}")
    print(f"fitted slope of the distance against depth: {fit.slope:.2f}{_ci(fit)}")
    a2.set_title("convergence in depth")
    savefig(fig, args.out)
    print(f"figure: {args.out}")
    return {"depths": list(args.depths), "distance": dist, "slope": fit.slope}


if __name__ == "__main__":
    main()
