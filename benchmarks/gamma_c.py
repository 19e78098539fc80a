"""Benchmark and validation study of the Γ/C recursion (Tensor Programs VI, linear ResNets).

Records to ``benchmarks/results/gamma_c.json`` (+ ``gamma_c.png``):

1. ``cost``: wall time (compiled; compile time separately) and estimated memory of the
   finite-depth recursion versus depth L and number of steps K, and of the infinite-depth
   grid solver versus the grid N.
2. ``grid_order``: successive differences of the infinite-depth solver on N, 2N, ... and the
   observed order (the scheme is second order).
3. ``depth_convergence`` (TP VI Figure 9 protocol): f̊_t and the root-mean-square statistics
   √⟨x_t^l, x_t^l⟩ at l = 0, L/4, L/2, 3L/4, L for L = 2^4..2^9, compared with the L = ∞
   solution (Richardson extrapolation of the grid solver on N and 2N); fitted rate.
4. ``width_convergence`` (Figure 8 protocol): coupled finite linear networks of depth 64 and
   growing width, same statistics after 1, 5, 10 steps, versus the Γ/C values; fitted slope of
   the mean-square error in the width.
5. ``particles``: the NFD particle solver's exact and GIA modes versus Γ/C per step, at several
   depths (the GIA gap and its trend in L).

Run ``python benchmarks/gamma_c.py --quick`` (a few minutes on 2 CPU cores) or without
``--quick`` for the full sizes.  Data: K scalar inputs ξ_t ~ N(0, 1), targets sin(2ξ_t) (the
paper used MNIST; the recursion needs only the Gram matrix of the inputs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import nfd  # noqa: E402
from nfd.limits._gamma_c import estimate_gamma_c_memory, solve_gamma_c  # noqa: E402
from nfd.limits._gamma_c_infinite import INFINITE_ORDER, richardson, solve_gamma_c_infinite  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def machine():
    return dict(
        platform=platform.platform(), processor=platform.processor(), python=platform.python_version(),
        cpu_count=os.cpu_count(), jax=jax.__version__, backend=jax.default_backend(),
        devices=[str(d) for d in jax.devices()], load_average=os.getloadavg(),
    )


def data(K, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, 1))
    return X, np.sin(2 * X[:, 0])


def quarter_layers(L):
    return [0, L // 4, L // 2, 3 * L // 4, L]


def timed(fn, repeat=2):
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    best = math.inf
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, first, best


# ------------------------------------------------------------------------------------------
def bench_cost(quick):
    rows = []
    Ls = [16, 32, 64, 128] if quick else [16, 32, 64, 128, 256, 512]
    Ks = [2, 4, 8] if quick else [2, 4, 8, 16]
    cfgs = [("finite", 10, L) for L in Ls] + [("finite", K, 64) for K in Ks]
    cfgs += [("infinite", 10, N) for N in ([16, 32, 64] if quick else [16, 32, 64, 128, 256])]
    for kind, K, L in cfgs:
        X, Y = data(K)
        if kind == "finite":
            fn = lambda: solve_gamma_c(X, Y, depth=L, lr=1.0)  # noqa: E731
        else:
            fn = lambda: solve_gamma_c_infinite(X, Y, grid=L, lr=1.0)  # noqa: E731
        _, first, run = timed(fn)
        rows.append(dict(solver=kind, steps=K, depth_or_grid=L, first_call_s=first, run_s=run,
                         compile_s_approx=first - run, memory_estimate_bytes=estimate_gamma_c_memory(K, L)))
        print(f"[cost] {kind:8s} K={K:3d} L/N={L:4d}: run {run:.3f}s (first call {first:.2f}s), "
              f"est. memory {rows[-1]['memory_estimate_bytes'] / 2**20:.1f} MiB", flush=True)
    fin = [r for r in rows if r["solver"] == "finite" and r["steps"] == 10]
    big = [r for r in fin if r["depth_or_grid"] >= 32]
    slope_L = float(np.polyfit(np.log([r["depth_or_grid"] for r in big]), np.log([r["run_s"] for r in big]), 1)[0])
    return dict(rows=rows, fitted_time_exponent_in_L=slope_L, expected_time_exponent_in_L=2,
                note="time O(K³L²), memory O(K²L²); small sizes are dominated by per-layer overheads")


def bench_grid_order(quick, K=10):
    X, Y = data(K)
    Ns = [16, 32, 64, 128] if quick else [16, 32, 64, 128, 256]
    sols = {N: solve_gamma_c_infinite(X, Y, grid=N, lr=1.0) for N in Ns}
    diffs, kdiffs = [], []
    for a, b in zip(Ns[:-1], Ns[1:]):
        diffs.append(float(np.abs(sols[b].outputs - sols[a].outputs).max()))
        kdiffs.append(float(np.abs(sols[b].output_kernel - sols[a].output_kernel).max()))
    orders = [math.log2(x / y) for x, y in zip(diffs[:-1], diffs[1:])]
    korders = [math.log2(x / y) for x, y in zip(kdiffs[:-1], kdiffs[1:])]
    print(f"[grid] successive max|Δf̊| {diffs}; observed orders {orders}", flush=True)
    return dict(steps=K, lr=1.0, grids=Ns, max_diff_outputs=diffs, max_diff_output_kernel=kdiffs,
                observed_order_outputs=orders, observed_order_kernel=korders, declared_order=INFINITE_ORDER), sols


def bench_depth(quick, sols, K=10):
    X, Y = data(K)
    Ns = sorted(sols)
    ref_f = richardson(sols[Ns[-2]].outputs, sols[Ns[-1]].outputs)
    stat = lambda r: r.rms_features  # noqa: E731  (K, L+1)
    Nf, Nc = Ns[-1], Ns[-2]
    # fine grid restricted to the coarse grid's nodes (Nf = 2 Nc), then Richardson
    ref_rms = richardson(stat(sols[Nc]), stat(sols[Nf])[:, :: Nf // Nc])
    ref_err = float(np.abs(sols[Nf].outputs - ref_f).max())
    ref_kernel = richardson(sols[Nc].output_kernel, sols[Nf].output_kernel)
    Ls = [16, 32, 64, 128] if quick else [16, 32, 64, 128, 256, 512]
    rows = []
    for L in Ls:
        r = solve_gamma_c(X, Y, depth=L, lr=1.0)
        # the statistics at p = 0, 1/4, 1/2, 3/4, 1 (coarse-grid node index p·N)
        idx_ref = [int(round(q * Nc)) for q in (0, 0.25, 0.5, 0.75, 1.0)]
        rms = r.rms_features[:, quarter_layers(L)]
        rms_ref = ref_rms[:, idx_ref]
        rows.append(dict(
            depth=L, outputs=r.outputs.tolist(),
            max_err_outputs=float(np.abs(r.outputs - ref_f).max()),
            max_err_rms=float(np.abs(rms - rms_ref).max()),
            max_err_output_kernel=float(np.abs(r.output_kernel - ref_kernel).max()),
            rms_steps_1_5_10=rms[[0, 4, 9]].tolist() if K >= 10 else rms.tolist(),
        ))
        print(f"[depth] L={L:4d}: max|f̊ − f̊_∞| {rows[-1]['max_err_outputs']:.3e}, max|rms − rms_∞| "
              f"{rows[-1]['max_err_rms']:.3e}", flush=True)
    e = np.array([r["max_err_outputs"] for r in rows])
    er = np.array([r["max_err_rms"] for r in rows])
    rate = float(-np.polyfit(np.log(Ls), np.log(e), 1)[0])
    rate_rms = float(-np.polyfit(np.log(Ls), np.log(er), 1)[0])
    ek = np.array([r["max_err_output_kernel"] for r in rows])
    rate_kernel = float(-np.polyfit(np.log(Ls), np.log(ek), 1)[0])
    local = [math.log2(a / b) for a, b in zip(e[:-1], e[1:])]
    print(f"[depth] fitted rate outputs {rate:.3f} (local {np.round(local, 3).tolist()}), rms {rate_rms:.3f}, "
          f"output kernel {rate_kernel:.3f}", flush=True)
    return dict(steps=K, lr=1.0, reference=f"Richardson of grid {Ns[-2]} and {Ns[-1]} (order {INFINITE_ORDER})",
                reference_error_bound=ref_err, reference_outputs=ref_f.tolist(),
                reference_rms_steps_1_5_10=ref_rms[[0, 4, 9]][:, idx_ref].tolist() if K >= 10 else None,
                rows=rows, fitted_rate_outputs=rate, fitted_rate_rms=rate_rms,
                fitted_rate_output_kernel=rate_kernel, local_rates_outputs=local)


def bench_width(quick, K=10, widths=None):
    X, Y = data(K)
    L = 64
    widths = widths or ([128, 256, 512] if quick else [128, 256, 512, 1024, 2048])
    seeds = 8 if quick else 16
    lim = solve_gamma_c(X, Y, depth=L, lr=1.0)
    layers = quarter_layers(L)
    rows = []
    for n in widths:
        per = max(1, min(seeds, int(2**30 // (L * n * n * 8))))
        outs, rms = [], []
        t0 = time.perf_counter()
        for c in range(0, seeds, per):
            sim = nfd.simulate(X, Y, width=n, depth=L, activation="identity", lr=1.0, frozen=("input", "output"),
                               backward="coupled", seeds=min(per, seeds - c), seed=1000 + c, dtype=jnp.float64,
                               record=("features",), weights="dense", max_memory=3 * 2**30)
            outs.append(sim.outputs)
            rms.append(np.sqrt((sim.features[:, :, layers, :] ** 2).mean(-1)))
        outs, rms = np.concatenate(outs), np.concatenate(rms)  # (S, K), (S, K, 5)
        se = outs.std(0, ddof=1) / math.sqrt(seeds)
        rows.append(dict(
            width=n, seeds=seeds, seconds=time.perf_counter() - t0,
            mean_outputs=outs.mean(0).tolist(), stderr_outputs=se.tolist(),
            max_z_outputs=float(np.max(np.abs(outs.mean(0) - lim.outputs)[1:] / se[1:])),
            mse_outputs=float(((outs[:, 1:] - lim.outputs[1:]) ** 2).mean()),
            bias_outputs=(outs.mean(0) - lim.outputs).tolist(),
            sd_outputs_times_sqrt_n=(outs.std(0, ddof=1) * math.sqrt(n)).tolist(),
            bias_rms_output_layer_times_n=((rms.mean(0)[:, -1] - lim.rms_features[:, L]) * n).tolist(),
            rms_steps_1_5_10=rms.mean(0)[[0, 4, 9]].tolist(),
            rms_stderr_steps_1_5_10=(rms.std(0, ddof=1) / math.sqrt(seeds))[[0, 4, 9]].tolist(),
            mse_rms=float(((rms - lim.rms_features[:, layers]) ** 2).mean()),
        ))
        print(f"[width] n={n:5d}: mse(f) {rows[-1]['mse_outputs']:.3e}, mse(rms) {rows[-1]['mse_rms']:.3e}, "
              f"max z {rows[-1]['max_z_outputs']:.2f} ({rows[-1]['seconds']:.1f}s)", flush=True)
    slope = float(np.polyfit(np.log(widths), np.log([r["mse_outputs"] for r in rows]), 1)[0])
    slope_rms = float(np.polyfit(np.log(widths), np.log([r["mse_rms"] for r in rows]), 1)[0])
    print(f"[width] fitted MSE slope in n: outputs {slope:.3f}, rms {slope_rms:.3f} (Var ∝ 1/n, bias² ∝ 1/n²: "
          f"between −2 and −1)", flush=True)
    return dict(depth=L, steps=K, lr=1.0, layers=layers, limit_outputs=lim.outputs.tolist(),
                limit_rms_steps_1_5_10=lim.rms_features[[0, 4, 9]][:, layers].tolist(), rows=rows,
                fitted_mse_slope_outputs=slope, fitted_mse_slope_rms=slope_rms,
                note="MSE over seeds = Var + bias²; Var ∝ 1/n (sd·√n roughly constant), bias ∝ 1/n")


def bench_particles(quick, K=6, depths=None):
    X, Y = data(K)
    Ls = depths or ([4, 8, 16] if quick else [4, 8, 16, 32, 64])
    runs, P = (4, 2048) if quick else (8, 4096)
    rows = []
    for L in Ls:
        lim = solve_gamma_c(X, Y, depth=L, lr=1.0).outputs
        row = dict(depth=L, gamma_c=lim.tolist())
        for mode in ("exact", "gia"):
            outs = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for s in range(runs):
                    outs.append(nfd.solve(X, Y, depth=L, particles=P, activation="identity", lr=1.0, backward=mode,
                                          frozen=("input", "output"), seed=s, dtype=jnp.float64,
                                          on_singular="regularize", eigenvalues=False).outputs)
            outs = np.array(outs)
            m, se = outs.mean(0), outs.std(0, ddof=1) / math.sqrt(runs)
            row[mode] = dict(mean=m.tolist(), stderr=se.tolist(), diff=(m - lim).tolist(),
                             max_z=float(np.max(np.abs(m - lim)[1:] / se[1:])))
        rows.append(row)
        print(f"[particles] L={L:3d}: exact max z {row['exact']['max_z']:.2f}; GIA − Γ/C per step "
              f"{np.round(row['gia']['diff'], 3).tolist()}", flush=True)
    return dict(steps=K, lr=1.0, particles=P, particle_seeds=runs, rows=rows)


def plot(res: dict):
    """The figure, drawn from the results JSON alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfd.plotting import log_axis, plot_rates

    fig, ax = plt.subplots(2, 3, figsize=(16, 9))
    c = res["cost"]["rows"]
    a = ax[0, 0]
    xs_all = []
    for kind, mk, name in (("finite", "o-", "finite depth L"), ("infinite", "s--", "L = ∞, grid N")):
        r = [x for x in c if x["solver"] == kind and x["steps"] == 10]
        xs_all += [x["depth_or_grid"] for x in r]
        a.plot([x["depth_or_grid"] for x in r], [x["run_s"] for x in r], mk, label=f"{name}: time (K=10)")
    r = [x for x in c if x["solver"] == "finite" and x["steps"] == 10]
    a.set_xlabel("depth L / grid N")
    a.set_ylabel("seconds per solve (compiled)")
    a.set_title("cost of the Γ/C solvers")
    log_axis(a, "x", xs_all)
    log_axis(a, "y")
    a.legend(fontsize=7, loc="upper left")

    g = res["grid_order"]
    a = ax[0, 1]
    n = np.array(g["grids"][1:], float)
    a.plot(n, g["max_diff_outputs"], "o-", label="max |f̊(2N) − f̊(N)|")
    a.plot(n, g["max_diff_output_kernel"], "s-", label="max |K(2N) − K(N)|")
    a.plot(n, g["max_diff_outputs"][0] * (n[0] / n) ** g.get("declared_order", 2), "k:",
           label=f"declared order {g.get('declared_order', 2)} (N^-{g.get('declared_order', 2)})")
    log_axis(a, "x", n)
    log_axis(a, "y")
    a.set_xlabel("grid N")
    a.set_ylabel("difference between grids N and 2N")
    a.set_title(f"L = ∞ solver: observed order {np.mean(g['observed_order_outputs']):.2f} (deterministic)")
    a.legend(fontsize=7)

    d = res["depth_convergence"]
    a = ax[0, 2]
    Ls = np.array([r["depth"] for r in d["rows"]], float)
    a.plot(Ls, [r["max_err_outputs"] for r in d["rows"]], "o-",
           label=f"max_t |f̊_t(L) − f̊_t(∞)|: rate {d['fitted_rate_outputs']:.2f}")
    a.plot(Ls, [r["max_err_rms"] for r in d["rows"]], "s-", label=f"max |rms(L) − rms(∞)|: rate {d['fitted_rate_rms']:.2f}")
    if "max_err_output_kernel" in d["rows"][0]:
        a.plot(Ls, [r["max_err_output_kernel"] for r in d["rows"]], "^-", label="max |K(L) − K(∞)| (output kernel)")
    a.plot(Ls, d["rows"][0]["max_err_outputs"] * Ls[0] / Ls, "k:", label="expected 1/L (TP VI)")
    log_axis(a, "x", Ls)
    log_axis(a, "y")
    a.set_xlabel("depth L")
    a.set_ylabel("distance to L = ∞ (deterministic)")
    a.set_title("depth convergence (TP VI Fig. 9 protocol)")
    a.legend(fontsize=7)

    w = res["width_convergence"]
    a = ax[1, 0]
    ws = np.array([r["width"] for r in w["rows"]], float)
    for si, (step, mk) in enumerate(zip((1, 5, 10), ("o", "s", "^"))):
        for li, lay in enumerate(w["layers"]):
            m = [r["rms_steps_1_5_10"][si][li] for r in w["rows"]]
            e = [2 * r["rms_stderr_steps_1_5_10"][si][li] for r in w["rows"]]
            a.errorbar(ws, m, yerr=e, marker=mk, ms=3, lw=1, capsize=2, color=f"C{li}",
                       label=(f"layer l={lay}" if si == 0 else None))
            a.axhline(w["limit_rms_steps_1_5_10"][si][li], color=f"C{li}", ls="--", lw=0.8)
    a.plot([], [], "ko", ms=3, label="step 1")
    a.plot([], [], "ks", ms=3, label="step 5")
    a.plot([], [], "k^", ms=3, label="step 10")
    log_axis(a, "x", ws)
    a.set_xlabel("width n")
    a.set_ylabel("RMS of h_l (± 2 SE)")
    a.set_title(f"TP VI Fig. 8 protocol, L={w['depth']}: finite (points) vs Γ/C (dashed)", fontsize=9)
    a.legend(fontsize=6, ncol=2)

    a = ax[1, 1]
    plot_rates(ws, [r["mse_outputs"] for r in w["rows"]], ax=a, label="MSE of f", expected=-1.0,
               expected_label="expected 1/n (variance)")
    plot_rates(ws, [r["mse_rms"] for r in w["rows"]], ax=a, label="MSE of rms", fmt="s",
               xlabel="width n", ylabel="mean-square error over seeds",
               title="finite coupled networks → Γ/C (CI from the scatter)")

    p = res["particles"]
    a = ax[1, 2]
    K = p["steps"]
    for r in p["rows"]:
        a.errorbar(np.arange(K), r["gia"]["diff"], yerr=2 * np.asarray(r["gia"]["stderr"]), marker="o", ms=3,
                   capsize=2, label=f"GIA − Γ/C, L={r['depth']} (± 2 SE)")
        a.errorbar(np.arange(K) + 0.1, r["exact"]["diff"], yerr=2 * np.asarray(r["exact"]["stderr"]), marker="x",
                   ls=":", color="gray", capsize=2, label=f"exact − Γ/C, L={r['depth']}" if r is p["rows"][0] else None)
    a.axhline(0, color="k", lw=0.5)
    a.set_xlabel("SGD step t")
    a.set_ylabel("particle solver − Γ/C output")
    a.set_title("particle modes against the Γ/C recursion")
    a.legend(fontsize=7)
    return fig


def _save(fig, path):
    from nfd.plotting import savefig

    savefig(fig, path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "gamma_c.json"))
    ap.add_argument("--widths", type=int, nargs="*", default=None, help="widths of the Figure 8 study")
    ap.add_argument("--particle-depths", type=int, nargs="*", default=None, help="depths of the particle comparison")
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from an existing JSON")
    args = ap.parse_args()
    if args.replot:
        with open(args.out) as f:
            _save(plot(json.load(f)), os.path.splitext(args.out)[0] + ".png")
        return
    t0 = time.perf_counter()
    res = dict(benchmark="gamma_c", quick=args.quick, machine=machine())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)

    def save():  # after every section, so an interrupted run keeps what it measured
        res["total_seconds"] = time.perf_counter() - t0
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)

    res["cost"] = bench_cost(args.quick)
    save()
    res["grid_order"], sols = bench_grid_order(args.quick)
    res["depth_convergence"] = bench_depth(args.quick, sols)
    save()
    res["width_convergence"] = bench_width(args.quick, widths=args.widths)
    save()
    res["particles"] = bench_particles(args.quick, depths=args.particle_depths)
    save()
    _save(plot(res), os.path.splitext(args.out)[0] + ".png")
    print(f"wrote {args.out} ({res['total_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
