"""Cost of error bars (issue #14, item 1): R replicate systems of P/R particles vs one system of P.

Both are ``nfd.particle_problem`` runs through the driver (what ``nfd.solve`` does: the compiled
solve plus the host-side solution with its means, standard errors and eigenvalues), the same P,
depth, data and dtype.  ``replicates=R`` vmaps R systems of P/R particles; ``replicates=1`` is the
single system of earlier versions.  Target (issue #14): R systems cost ≤ 1.2× one system.

Timing: each method compiled first (its first call timed; compile ≈ first − best), then ``rounds``
rounds calling each method once in a random order (interleaved), best of the rounds; the block
repeated ``repeats`` times so the headline ratio is reproduced; the 1-minute load average is
recorded per round.

    python benchmarks/replicates.py           # P = 16384, L = 16, K = 8 (2 CPU cores: ~2 min)
    python benchmarks/replicates.py --tiny    # seconds

Bias (``bias()``, in the same JSON): a mean over R systems of P/R particles has the O(R/P)
particle bias of one system of P/R, not the O(1/P) of one system of P.  Measured on a case with
a closed form at the same depth (linear network, one SGD step, exact mode, output on x1,
depth 4; ``nfd.kernels._linear_one_step``): many systems of p particles (one solve with
``replicates`` = 2^18/p), bias(p) = mean − closed form with its standard error, for p = 16 … 1024,
and b in bias ≈ b/p by weighted least squares.

Writes benchmarks/results/replicates.json and replicates.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, os.path.dirname(HERE))

SIZES = {
    "tiny": dict(P=1024, L=4, K=4, R=(1, 4), rounds=3, repeats=2),
    "default": dict(P=16384, L=16, K=8, R=(1, 2, 4, 8), rounds=5, repeats=2),
}


def make(P, L, K, R):
    import nfd
    from nfd import _driver

    X = np.random.default_rng(0).normal(size=(K, 3))
    Y = np.tanh(X[:, 0])
    net = nfd.ResNet(depth=L, input_dim=3, activation="tanh", lr=0.5)
    prob = nfd.particle_problem(net, X, Y, particles=P, replicates=R, backward="exact")

    def call():
        return _driver.run(prob).outputs

    return call


def bench(P, L, K, R, rounds, repeats):
    fns = {f"R={r}": make(P, L, K, r) for r in R}
    first = {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        first[k] = time.perf_counter() - t0
    reps, rng, names = [], np.random.default_rng(0), list(fns)
    for rep in range(repeats):
        runs, loads = {k: [] for k in fns}, []
        for _ in range(rounds):
            loads.append(os.getloadavg()[0])
            for i in rng.permutation(len(names)):
                t0 = time.perf_counter()
                fns[names[i]]()
                runs[names[i]].append(time.perf_counter() - t0)
        best = {k: min(v) for k, v in runs.items()}
        ratios = {k: best[k] / best["R=1"] for k in fns}
        reps.append(dict(repeat=rep, best_s=best, runs_s=runs, load_avg_per_round=loads, ratio_over_one_system=ratios))
        print(f"repeat {rep}: " + ", ".join(f"{k} {v * 1e3:.0f} ms ({ratios[k]:.2f}x)" for k, v in best.items())
              + f"; load {np.mean(loads):.1f}", flush=True)
    compile_s = {k: max(first[k] - min(r["best_s"][k] for r in reps), 0.0) for k in fns}
    return dict(P=P, L=L, K=K, replicates=list(R), rounds=rounds, first_call_s=first, compile_s=compile_s, repeats=reps)


def bias(total=2**18, sizes=(16, 64, 256, 1024)):
    import jax.numpy as jnp

    from nfd.kernels._linear_one_step import linear_one_step
    from nfd.limits._nfd import solve_particles

    rng = np.random.default_rng(0)
    X = np.stack([rng.normal(size=3), rng.normal(size=3)])
    Y = np.array([1.0, 0.0])
    L = 4
    ref = float(linear_one_step(X[0], 1.0, X, lr=0.5, depth=L, backward="coupled").f1[1])
    rows = []
    for p in sizes:
        R = total // p
        sol = solve_particles(X, Y, depth=L, particles=total, replicates=R, activation="identity", lr=0.5,
                              backward="exact", seed=1, dtype=jnp.float32, eigenvalues=False)
        r = sol.replicate_outputs[:, 1].astype(np.float64)
        rows.append(dict(particles_per_system=p, systems=R, bias=float(r.mean() - ref),
                         bias_se=float(r.std(ddof=1) / np.sqrt(R))))
        print(f"systems of {p}: bias {rows[-1]['bias']:.2e} ± {rows[-1]['bias_se']:.1e}", flush=True)
    x = np.array([1.0 / r_["particles_per_system"] for r_ in rows])
    y = np.array([r_["bias"] for r_ in rows])
    w = 1.0 / np.array([r_["bias_se"] for r_ in rows]) ** 2
    b = float(np.sum(w * x * y) / np.sum(w * x * x))  # bias = b/p through the origin
    b_se = float(1.0 / np.sqrt(np.sum(w * x * x)))
    return dict(case="linear one-step, exact, depth 4, lr 0.5, output on x1 (float32)", reference=ref, rows=rows,
                b=b, b_se=b_se, note="bias(p) ≈ b/p: R systems of P/R particles have bias R·b/P")


def plot(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfd.plotting import savefig

    res = doc["results"]
    names = list(res["first_call_s"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    w = 0.8 / len(res["repeats"])
    for i, r in enumerate(res["repeats"]):
        x = np.arange(len(names)) + (i - (len(res["repeats"]) - 1) / 2) * w
        best = np.array([r["best_s"][k] for k in names])
        med = np.array([np.median(r["runs_s"][k]) for k in names])
        # bar: best of the rounds; error bar up to the median round (the spread from load)
        ax.bar(x, best * 1e3, w * 0.9, yerr=[np.zeros_like(best), (med - best) * 1e3], capsize=3,
               label=f"repeat {i} (load {np.mean(r['load_avg_per_round']):.1f})")
        for xi, k in zip(x, names):
            ax.text(xi, r["best_s"][k] * 1e3, f"{r['ratio_over_one_system'][k]:.2f}x", ha="center", va="bottom",
                    fontsize=8)
    one = min(r["best_s"]["R=1"] for r in res["repeats"])
    ax.axhline(1.2 * one * 1e3, color="k", ls="--", lw=1, label="target: 1.2 × one system")
    ax.set_xticks(np.arange(len(names)), [f"{k}\n(P/R = {res['P'] // int(k[2:])})" for k in names])
    ax.set_ylabel("solve time, best of rounds (ms)")
    ax.set_title(f"R systems of P/R vs one of P (P = {res['P']}, L = {res['L']}, K = {res['K']}, exact)", fontsize=9)
    ax.set_ylim(0, 1.5 * max(max(r["best_s"].values()) for r in res["repeats"]) * 1e3)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    savefig(fig, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--out", default=os.path.join(RESULTS, "replicates.json"))
    a = p.parse_args(argv)
    size = "tiny" if a.tiny else "default"
    t0 = time.time()
    res = bench(**SIZES[size])
    bias_res = bias(total=2**14 if a.tiny else 2**18)
    doc = dict(benchmark="replicates", size=size, results=res, bias=bias_res, wall_s=time.time() - t0,
               created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               machine=dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version()),
               target="R systems of P/R particles cost ≤ 1.2× one system of P (issue #14)")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(doc, open(a.out, "w"), indent=1)
    plot(doc, os.path.splitext(a.out)[0] + ".png")
    print("wrote", a.out)
    return doc


if __name__ == "__main__":
    main()
