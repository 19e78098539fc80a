"""Kernel-regime benchmark: infinite-depth NNGP kernel (ODE) vs the layer-by-layer recursion
and neural-tangents, O(1/L) convergence, lazy NTK, and the Appendix-I error decomposition.

    python benchmarks/kernels.py --quick      # a few minutes on 2 CPU cores
    python benchmarks/kernels.py              # N up to 2000, more seeds

Writes benchmarks/results/kernels.json (every number with its configuration and machine) and
benchmarks/results/kernels.png.  neural-tangents is optional: it runs in a separate virtualenv
(jax==0.4.30, tf2jax==0.3.6, neural-tangents==0.6.5; default path /tmp/nt-venv, override with
--nt-python or NFD_NT_PYTHON) and is skipped, with the reason recorded, when that is absent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import nfd  # noqa: E402
from nfd.kernels import lazy_kernels  # noqa: E402
from nfd.kernels._error_decomposition import error_decomposition, fit_power_law  # noqa: E402
from nfd.kernels._linear_one_step import linear_one_step, paper_eq93  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

NT_SCRIPT = r"""
import json, sys, time
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
from neural_tangents import stax
cfg = json.load(open(sys.argv[1]))
X = np.load(cfg["X"])
T, reps = cfg["T"], cfg.get("reps", 1)
rows = []
for L in cfg["depths"]:
    branch = stax.serial(stax.Relu(), stax.Dense(1, W_std=float(np.sqrt(T / L)), parameterization="standard"))
    block = stax.serial(stax.FanOut(2), stax.parallel(branch, stax.Identity()), stax.FanInSum())
    _, _, kernel_fn = stax.serial(stax.Dense(1, W_std=1.0, parameterization="standard"), *([block] * L))
    kf = jax.jit(kernel_fn, static_argnames="get")
    t0 = time.perf_counter(); K = np.asarray(kf(X, None, "nngp")); t1 = time.perf_counter()
    runs = []
    for _ in range(reps):
        t2 = time.perf_counter(); K = np.asarray(kf(X, None, "nngp")); runs.append(time.perf_counter() - t2)
    np.save(cfg["out"] + f"_{L}.npy", K)
    rows.append({"depth": L, "first_call_s": t1 - t0, "run_s": min(runs), "runs_s": runs})
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
print(json.dumps({"rows": rows, "nt_version": __import__("neural_tangents").__version__, "jax": jax.__version__,
                  "device_kind": jax.devices()[0].device_kind}))
"""


def machine():
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "nfd": nfd.__version__,
        "note": "CPU shared with other jobs; timings are wall-clock medians of repeated calls",
    }


def sphere(N, d, seed):
    Z = np.random.default_rng(seed).normal(size=(N, d))
    return np.sqrt(d) * Z / np.linalg.norm(Z, axis=1, keepdims=True)


def timed(fn, repeats=3):
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return out, first, float(np.median(runs))


def nt_python(arg):
    cand = arg or os.environ.get("NFD_NT_PYTHON")
    if not cand:  # the CI's venv, then the historical default
        cand = next((c for c in (os.path.join(HERE, "..", ".ci", ".nt-venv", "bin", "python"), "/tmp/nt-venv/bin/python")
                     if os.path.exists(c)), "/tmp/nt-venv/bin/python")
    if not os.path.exists(cand):
        return None, f"no neural-tangents virtualenv at {cand} (see docs/kernels.md to create one)"
    r = subprocess.run([cand, "-c", "import neural_tangents"], capture_output=True, text=True)
    if r.returncode:
        return None, f"neural_tangents does not import in {cand}: {r.stderr.strip().splitlines()[-1:]}"
    return cand, None


def run_nt_depths(py, X, depths, T, reps=1):
    """neural-tangents' stax kernel at several depths in one process: (Ks, info) or (None, error)."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "X.npy"), X)
        cfg = {"X": os.path.join(tmp, "X.npy"), "out": os.path.join(tmp, "K"), "depths": list(depths), "T": T,
               "reps": reps}
        json.dump(cfg, open(os.path.join(tmp, "cfg.json"), "w"))
        script = os.path.join(tmp, "nfd_nt_kernel.py")  # not "nt.py": that shadows a stdlib module
        open(script, "w").write(NT_SCRIPT)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
        r = subprocess.run([py, script, os.path.join(tmp, "cfg.json")], capture_output=True, text=True, timeout=3600,
                           env=env)
        if r.returncode:
            return None, r.stderr.strip()[-500:]
        info = json.loads(r.stdout.strip().splitlines()[-1])
        return ([np.load(cfg["out"] + f"_{L}.npy") for L in depths], info), None


def run_nt(py, X, depth, T):
    out, err = run_nt_depths(py, X, [depth], T)
    if out is None:
        return None, err
    Ks, info = out
    return (Ks[0], dict(info["rows"][0], nt_version=info["nt_version"], jax=info["jax"])), None


def bench_timing(Ns, depths, nt_py, nt_depths, d=16, T=1.0):
    rows = []
    for N in Ns:
        X = sphere(N, d, N)
        row = {"N": N, "d": d, "T": T, "activation": "relu", "dtype": "float64"}
        C_ode, first, run = timed(lambda: nfd.nngp_kernel(X, activation="relu", T=T))
        row["ode"] = {"first_call_s": first, "run_s": run, "solver": "diffrax Tsit5, PID rtol=1e-9 atol=1e-11"}
        C_loose, first, run = timed(lambda: nfd.nngp_kernel(X, activation="relu", T=T, rtol=1e-6, atol=1e-8))
        row["ode_rtol_1e-6"] = {"first_call_s": first, "run_s": run, "max_abs_diff_to_ode": float(np.abs(C_loose - C_ode).max())}
        row["recursion"] = []
        for L in depths:
            C_L, first, run = timed(lambda: nfd.nngp_kernel(X, activation="relu", T=T, depth=L), repeats=1)
            row["recursion"].append(
                {"depth": L, "first_call_s": first, "run_s": run, "max_abs_diff_to_ode": float(np.abs(C_L - C_ode).max())}
            )
        row["neural_tangents"] = []
        if nt_py is not None:
            for L in nt_depths:
                out, err = run_nt(nt_py, X, L, T)
                if out is None:
                    row["neural_tangents"].append({"depth": L, "error": err})
                    continue
                K, info = out
                C_L = nfd.nngp_kernel(X, activation="relu", T=T, depth=L)
                row["neural_tangents"].append(
                    dict(depth=L, **info, max_abs_diff_to_nfd_recursion=float(np.abs(K - C_L).max()),
                         max_abs_diff_to_ode=float(np.abs(K - C_ode).max()))
                )
        print(f"[timing] N={N}: ode {row['ode']['run_s']:.3f}s "
              + " ".join(f"L={r['depth']}: {r['run_s']:.3f}s" for r in row["recursion"])
              + " " + " ".join(f"NT L={r['depth']}: {r.get('run_s', float('nan')):.3f}s" for r in row["neural_tangents"]),
              flush=True)
        rows.append(row)
    return rows


def _load():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _best_interleaved(calls, rounds):
    """calls: {name: fn}.  One compile/first call each (timed), then ``rounds`` rounds calling every
    fn once per round in turn; returns {name: (first_s, best_s, all_s)}."""
    first = {}
    for k, fn in calls.items():
        t0 = time.perf_counter()
        fn()
        first[k] = time.perf_counter() - t0
    runs = {k: [] for k in calls}
    for _ in range(rounds):
        for k, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t0)
    return {k: (first[k], min(runs[k]), runs[k]) for k in calls}


def _cheapest(points, eps, key):
    """The point with error ≤ eps and the smallest ``key`` time, or None."""
    ok = [p for p in points if p["max_abs_err"] <= eps]
    return min(ok, key=lambda p: p[key]) if ok else None


def _extrapolate_depth(points, eps):
    """Depth methods: error ≈ c/L (O(1/L), fitted on the two deepest points' c), warm time and compile
    time linear in L (least squares over all points).  Returns the predicted depth and times."""
    pts = sorted(points, key=lambda p: p["depth"])
    c = float(np.mean([p["max_abs_err"] * p["depth"] for p in pts[-2:]]))
    L = int(math.ceil(c / eps))
    Ls = np.array([p["depth"] for p in pts], float)
    fit = lambda y: np.polyfit(Ls, np.asarray(y, float), 1) if len(Ls) >= 2 else np.array([y[0] / Ls[0], 0.0])
    a_run = fit([p["run_s"] for p in pts])
    a_comp = fit([p["compile_s"] for p in pts])
    run = float(max(np.polyval(a_run, L), pts[-1]["run_s"]))
    comp = float(max(np.polyval(a_comp, L), 0.0))
    return dict(depth=L, max_abs_err=c / L, run_s=run, compile_s=comp, total_s=run + comp, extrapolated=True)


def bench_time_to_error(N, d, depths, ode_rtols, nt_py, nt_depths, targets, rounds=3, repeats=2, T=1.0):
    """Time for each method to reach max |K − K_∞| ≤ ε (ReLU NNGP Gram matrix of N inputs).

    K_∞ is the L = ∞ kernel from the ODE at rtol 1e-12 (float64; checked against the closed-form
    ReLU Gram map through the recursion's O(1/L) fit).  Methods: nfd's matrix ODE at several
    tolerances, nfd's depth-L recursion and neural-tangents' stax residual network (the same K_L;
    their error against K_∞ is the depth error c/L).  Timing: compile (first call − best warm call)
    and the best of ``rounds`` warm calls; nfd's calls are interleaved round by round; the
    neural-tangents process runs between the ``repeats`` nfd measurement blocks, and the headline
    ratio (neural-tangents' / nfd's time to ε) is computed per repeat.
    """
    X = sphere(N, d, 7)
    Kinf = nfd.nngp_kernel(X, activation="relu", T=T, rtol=1e-12, atol=1e-14)
    scale = float(np.abs(Kinf).max())
    blocks = []
    for rep in range(repeats):
        jax.clear_caches()  # each repeat compiles afresh (the persistent cache is off: see main)
        load0 = _load()
        calls = {}
        for rt in ode_rtols:
            calls[f"ode:{rt:g}"] = (lambda rt=rt: nfd.nngp_kernel(X, activation="relu", T=T, rtol=rt, atol=rt * 1e-2))
        for L in depths:
            calls[f"rec:{L}"] = (lambda L=L: nfd.nngp_kernel(X, activation="relu", T=T, depth=L))
        tm = _best_interleaved(calls, rounds)
        ode, rec = [], []
        # the ODE compiles once for all tolerances (rtol, atol are traced), the recursion once for all
        # depths (depth is traced): the compile cost is the first call's excess over its warm time,
        # charged to every tolerance / depth
        comp_ode = max(tm[f"ode:{ode_rtols[0]:g}"][0] - tm[f"ode:{ode_rtols[0]:g}"][1], 0.0)
        for rt in ode_rtols:
            f, b, a = tm[f"ode:{rt:g}"]
            err = float(np.abs(calls[f"ode:{rt:g}"]() - Kinf).max())
            ode.append(dict(rtol=rt, atol=rt * 1e-2, max_abs_err=err, run_s=b, runs_s=a, first_call_s=f,
                            compile_s=comp_ode))
        comp_rec = max(tm[f"rec:{depths[0]}"][0] - tm[f"rec:{depths[0]}"][1], 0.0)
        for L in depths:
            f, b, a = tm[f"rec:{L}"]
            err = float(np.abs(calls[f"rec:{L}"]() - Kinf).max())
            rec.append(dict(depth=L, max_abs_err=err, run_s=b, runs_s=a, first_call_s=f, compile_s=comp_rec))
        block = dict(repeat=rep, load_avg_before=load0, ode=ode, recursion=rec)
        print(f"[tte] repeat {rep}: ODE " + ", ".join(f"rtol {p['rtol']:g}: err {p['max_abs_err']:.1e} "
                                                       f"{p['run_s'] * 1e3:.1f} ms" for p in ode), flush=True)
        print(f"[tte] repeat {rep}: recursion " + ", ".join(f"L={p['depth']}: err {p['max_abs_err']:.1e} "
                                                             f"{p['run_s'] * 1e3:.1f} ms" for p in rec), flush=True)
        if nt_py is not None and nt_depths:
            load1 = _load()
            out, why = run_nt_depths(nt_py, X, nt_depths, T, reps=rounds)
            if out is None:
                block["neural_tangents"] = dict(error=why)
            else:
                Ks, info = out
                pts = []
                for K, row in zip(Ks, info["rows"]):
                    Krec = nfd.nngp_kernel(X, activation="relu", T=T, depth=row["depth"])
                    pts.append(dict(row, max_abs_err=float(np.abs(K - Kinf).max()),
                                    max_abs_diff_to_nfd_recursion=float(np.abs(K - Krec).max()),
                                    compile_s=max(row["first_call_s"] - row["run_s"], 0.0)))
                block["neural_tangents"] = dict(points=pts, load_avg_before=load1, nt_version=info["nt_version"],
                                                jax=info["jax"], device_kind=info["device_kind"])
                print(f"[tte] repeat {rep}: neural-tangents " + ", ".join(
                    f"L={p['depth']}: err {p['max_abs_err']:.1e} compile {p['compile_s']:.1f} s warm "
                    f"{p['run_s'] * 1e3:.1f} ms (vs nfd recursion {p['max_abs_diff_to_nfd_recursion']:.0e})"
                    for p in pts), flush=True)
        # time to each target error
        tte = []
        for eps in targets:
            row = dict(eps=eps)
            b = _cheapest(ode, eps, "run_s")
            row["ode"] = None if b is None else dict(rtol=b["rtol"], max_abs_err=b["max_abs_err"], run_s=b["run_s"],
                                                     compile_s=b["compile_s"], total_s=b["run_s"] + b["compile_s"],
                                                     extrapolated=False)
            b = _cheapest(rec, eps, "run_s")
            row["recursion"] = (dict(depth=b["depth"], max_abs_err=b["max_abs_err"], run_s=b["run_s"],
                                     compile_s=b["compile_s"], total_s=b["run_s"] + b["compile_s"], extrapolated=False)
                                if b is not None else _extrapolate_depth(rec, eps))
            nt = block.get("neural_tangents", {}).get("points")
            if nt:
                b = _cheapest(nt, eps, "run_s")
                row["neural_tangents"] = (dict(depth=b["depth"], max_abs_err=b["max_abs_err"], run_s=b["run_s"],
                                               compile_s=b["compile_s"], total_s=b["run_s"] + b["compile_s"],
                                               extrapolated=False) if b is not None else _extrapolate_depth(nt, eps))
                if row["ode"]:
                    row["nt_over_ode_warm"] = row["neural_tangents"]["run_s"] / row["ode"]["run_s"]
                    row["nt_over_ode_total"] = row["neural_tangents"]["total_s"] / row["ode"]["total_s"]
            tte.append(row)
            print(f"[tte] repeat {rep}: ε={eps:g}: " + "; ".join(
                f"{m} {row[m]['total_s']:.2f} s total / {row[m]['run_s'] * 1e3:.1f} ms warm"
                + (" (extrapolated)" if row[m]["extrapolated"] else "")
                for m in ("ode", "recursion", "neural_tangents") if row.get(m)), flush=True)
        block["time_to_error"] = tte
        blocks.append(block)
    return dict(N=N, d=d, T=T, activation="relu", dtype="float64", targets=list(targets), rounds=rounds,
                reference="nngp_kernel(depth=None, rtol=1e-12, atol=1e-14)", K_inf_max_abs=scale,
                ode_rtols=list(ode_rtols), depths=list(depths), nt_depths=list(nt_depths) if nt_py else [],
                error="max over entries of |K − K_∞| (absolute; K_∞ entries are ≤ %.3g)" % scale,
                extrapolation="depth methods not reaching ε at the deepest measured L: error c/L with c from the two "
                              "deepest points, warm and compile time linear in L (least squares); marked "
                              "extrapolated", repeats=blocks)


def plot_time_to_error(tte, path):
    """Error against time for each method (warm and with compilation) from ``results['time_to_error']``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    blk = tte["repeats"][-1]
    series = [("nfd ODE (rtol sweep)", blk["ode"], "o-"), ("nfd recursion (depth sweep)", blk["recursion"], "s--")]
    if blk.get("neural_tangents", {}).get("points"):
        series.append(("neural-tangents stax (depth sweep)", blk["neural_tangents"]["points"], "^:"))
    for ax, key, title in ((axes[0], "run_s", "warm (best of %d)" % tte["rounds"]),
                           (axes[1], "total", "compile + one warm call")):
        for label, pts, fmt in series:
            x = [p["run_s"] + (p["compile_s"] if key == "total" else 0.0) for p in pts]
            ax.loglog(x, [max(p["max_abs_err"], 1e-17) for p in pts], fmt, label=label)
        for eps in tte["targets"]:
            ax.axhline(eps, color="gray", lw=0.6, ls=":")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("seconds")
        ax.set_ylabel("max |K − K_∞|")
        ax.set_title(f"ReLU NNGP, N={tte['N']}, d={tte['d']}: {title}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bench_convergence(Ls, N=32, d=8):
    X = sphere(N, d, 0)
    out = {}
    for act in ("relu", "erf", "tanh"):
        C = nfd.nngp_kernel(X, activation=act)
        K = lazy_kernels(X, activation=act).ntk()
        eC = [float(np.abs(nfd.nngp_kernel(X, activation=act, depth=L) - C).max()) for L in Ls]
        eK = [float(np.abs(lazy_kernels(X, activation=act, depth=L).ntk() - K).max()) for L in Ls]
        fC, fK = fit_power_law(Ls, eC), fit_power_law(Ls, eK)
        out[act] = {
            "depths": list(Ls), "nngp_max_abs_err": eC, "ntk_max_abs_err": eK,
            "nngp_slope": fC.slope, "nngp_slope_se": fC.slope_se, "ntk_slope": fK.slope, "ntk_slope_se": fK.slope_se,
        }
        print(f"[convergence] {act}: NNGP slope {fC.slope:.3f}±{fC.slope_se:.3f}, NTK slope {fK.slope:.3f}±{fK.slope_se:.3f}", flush=True)
    return {"N": N, "d": d, "T": 1.0, "results": out}


def bench_error_decomposition(widths, seeds, L=4, lr=1.0, ensembles=(1, 4, 16, 64)):
    rng = np.random.default_rng(3)
    z = rng.normal(size=3)
    x0 = np.sqrt(3) * z / np.linalg.norm(z)
    Z = rng.normal(size=(3, 3))
    Xe = np.concatenate([x0[None], np.sqrt(3) * Z / np.linalg.norm(Z, axis=1, keepdims=True)])
    fL = linear_one_step(x0, 1.0, Xe, lr=lr, depth=L).f1
    fI = linear_one_step(x0, 1.0, Xe, lr=lr, ts=[1.0]).f1
    rows = []
    for n in widths:
        t0 = time.perf_counter()
        outs = []
        chunk = max(1, min(seeds, int(2**30 // (4 * L * n * n * 4))))  # ≤ 1 GiB of dense weights per call
        for c0 in range(0, seeds, chunk):
            res = nfd.simulate(
                np.stack([x0, x0]), np.ones(2), width=n, depth=L, activation="identity", lr=lr,
                seeds=min(chunk, seeds - c0), seed=1000 * n + c0, record=(), X_test=Xe, dtype=jnp.float32,
            )
            outs.append(res.test_outputs[:, 1, :])
        f = np.concatenate(outs)
        e = error_decomposition(f, fL, fI, width=n, depth=L)
        ens = {}
        for E in ensembles:
            G = (f.shape[0] // E) * E
            g = f[:G].reshape(-1, E, f.shape[1]).mean(1)
            ens[str(E)] = {
                "formula_vs_inf_inf": e.ensemble_error_sq(E),
                "empirical_vs_inf_inf": float(((g - fI) ** 2).mean()),
                "empirical_vs_inf_L": float(((g - fL) ** 2).mean()),
                "groups": int(g.shape[0]),
            }
        rows.append(dict(dataclass_dict(e), seconds=time.perf_counter() - t0, ensembles=ens))
        print(f"[error] n={n}: var {e.variance:.3e}±{e.variance_se:.1e}, mean-bias² {e.mean_bias_sq:.3e}±{e.mean_bias_sq_se:.1e}", flush=True)
    v = fit_power_law(widths, [r["variance"] for r in rows], [r["variance_se"] for r in rows])
    pos = [r for r in rows if r["mean_bias_sq"] > 0]
    b = fit_power_law([r["width"] for r in pos], [r["mean_bias_sq"] for r in pos], [r["mean_bias_sq_se"] for r in pos]) if len(pos) >= 2 else None
    Ls = [4, 8, 16, 32, 64, 128]
    dep = [float(((linear_one_step(x0, 1.0, Xe, lr=lr, depth=Lx).f1 - fI) ** 2).mean()) for Lx in Ls]
    dfit = fit_power_law(Ls, dep)
    print(f"[error] slopes: variance {v.slope:.3f}±{v.slope_se:.3f}, bias² "
          f"{(b.slope if b else float('nan')):.3f}±{(b.slope_se if b else float('nan')):.3f}, depth² {dfit.slope:.3f}", flush=True)
    return {
        "setting": {"network": "linear depth-μP ResNet, one SGD step on (x0, y=1), outputs at x0 and 3 more inputs, |x|²/d = 1",
                    "depth": L, "lr": lr, "T": 1.0, "seeds": seeds, "dtype": "float32",
                    "f_inf_L": "linear_one_step(depth=L)", "f_inf_inf": "linear_one_step(depth=None)"},
        "rows": rows,
        "variance_slope": {"slope": v.slope, "se": v.slope_se, "predicted": -1},
        "mean_bias_sq_slope": None if b is None else {"slope": b.slope, "se": b.slope_se, "predicted": -2,
                                                       "widths_used": [r["width"] for r in pos]},
        "depth_error_sq": {"depths": Ls, "values": dep, "slope": dfit.slope, "predicted": -2},
    }


def dataclass_dict(e):
    import dataclasses

    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in dataclasses.asdict(e).items()}


def bench_linear_profiles(lr=0.5, T=1.0):
    x = np.ones(2)
    t = np.linspace(0, T, 51)
    out = {"t": t.tolist(), "lr": lr, "setting": "hidden weights trained, x0 = x, |x|²/d = 1"}
    for bw in ("coupled", "decoupled"):
        r = linear_one_step(x, 1.0, lr=lr, frozen=("input", "output"), backward=bw, ts=t)
        out[bw] = (r.H1[:, 0, 0] - r.H0[:, 0, 0]).tolist()
        out[bw + "_depth64"] = (
            lambda q: {"t": q.t.tolist(), "dH": (q.H1[:, 0, 0] - q.H0[:, 0, 0]).tolist()}
        )(linear_one_step(x, 1.0, lr=lr, frozen=("input", "output"), backward=bw, depth=64))
    out["paper_eq93"] = (paper_eq93(t, eta_gamma=lr) - np.exp(t)).tolist()
    return out


def _fit_dict(x, y, yerr, slope, se, used=None):
    """A plot_slope_fit entry from a recorded slope and its standard error (95%: ± 1.96 SE); the
    intercept is the mean of log y − slope · log x over the points used in the fit."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    m = np.isin(x, used) if used is not None else np.ones_like(x, bool)
    m &= y > 0
    icpt = float(np.mean(np.log(y[m]) - slope * np.log(x[m]))) if m.any() else 0.0
    return dict(x=x.tolist(), y=y.tolist(), yerr=None if yerr is None else list(yerr), slope=slope,
                slope_ci95=[slope - 1.96 * se, slope + 1.96 * se], intercept=icpt)


def plot(res, path=None):
    """The figure, drawn from the results JSON alone; saved to ``path`` when given. Returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfd.plotting import log_axis, plot_slope_fit, savefig

    fig, ax = plt.subplots(2, 2, figsize=(12, 9))
    a = ax[0, 0]
    rows = res["timing"]["rows"]
    Ns = [r["N"] for r in rows]
    a.plot(Ns, [r["ode"]["run_s"] for r in rows], "o-", label="nfd ODE (L=∞), rtol 1e-9")
    a.plot(Ns, [r["ode_rtol_1e-6"]["run_s"] for r in rows], "o:", label="nfd ODE (L=∞), rtol 1e-6")
    for i, L in enumerate(res["timing"]["recursion_depths"]):
        a.plot(Ns, [r["recursion"][i]["run_s"] for r in rows], "s--", label=f"nfd recursion L={L}")
    for L in res["timing"]["nt_depths"]:
        pts = [(r["N"], x["run_s"]) for r in rows for x in r["neural_tangents"] if x.get("depth") == L and "run_s" in x]
        if pts:
            a.plot(*zip(*pts), "^:", label=f"neural-tangents L={L}")
    log_axis(a, "x", Ns)
    log_axis(a, "y")
    a.set_xlabel("N inputs")
    a.set_ylabel("seconds (best of repeats, compiled)")
    a.set_title("NNGP Gram matrix, ReLU, d=16")
    a.legend(fontsize=7)
    a = ax[0, 1]
    for i, (act, r) in enumerate(res["convergence"]["results"].items()):
        for kind, fmt in (("nngp", "o"), ("ntk", "x")):
            fit = _fit_dict(r["depths"], r[f"{kind}_max_abs_err"], None, r[f"{kind}_slope"], r[f"{kind}_slope_se"])
            plot_slope_fit(a, fit, f"{kind.upper()} {act}", fmt=fmt, color=f"C{i}", expected=-1.0,
                           expected_label="expected 1/L (Euler step in depth)")
    a.set_xlabel("depth L")
    a.set_ylabel("max |K_L − K_∞| (deterministic)")
    a.set_title("depth-L recursion → L = ∞ ODE")
    a = ax[1, 0]
    er = res["error_decomposition"]
    W = [r["width"] for r in er["rows"]]
    vs, bs = er["variance_slope"], er["mean_bias_sq_slope"]
    plot_slope_fit(a, _fit_dict(W, [r["variance"] for r in er["rows"]], [r["variance_se"] for r in er["rows"]],
                                vs["slope"], vs["se"]), "variance", expected=vs.get("predicted", -1),
                   expected_label=f"App. I: variance ∝ n^{vs.get('predicted', -1)}")
    if bs:
        plot_slope_fit(a, _fit_dict(W, [r["mean_bias_sq"] for r in er["rows"]],
                                    [r["mean_bias_sq_se"] for r in er["rows"]], bs["slope"], bs["se"],
                                    used=bs.get("widths_used")), "mean-predictor bias²", fmt="s",
                       expected=bs.get("predicted", -2), expected_label=f"App. I: bias² ∝ n^{bs.get('predicted', -2)}")
    for E in ("1", "16", "64"):
        ys = [r["ensembles"][E]["empirical_vs_inf_L"] for r in er["rows"]]
        a.plot(W, ys, "-.", marker=".", lw=0.9, label=f"ensemble of E={E}: ‖f̄ − f_∞,L‖² (one draw)")
    a.axhline(er["rows"][0]["depth_error_sq"], color="k", lw=0.8, label=f"depth error² (L={er['setting']['depth']})")
    log_axis(a, "x", W)
    log_axis(a, "y")
    a.set_ylim(None, None)
    a.autoscale(axis="y")
    a.set_xlabel("width n")
    a.set_ylabel("squared error of the NNGP predictor")
    a.set_title("Appendix I error terms against width", fontsize=10)
    a.legend(fontsize=6)
    a = ax[1, 1]
    lp = res["linear_one_step"]
    a.plot(lp["t"], lp["coupled"], label="coupled (corrected G.2.2)")
    a.plot(lp["t"], lp["decoupled"], label="decoupled / GIA")
    a.plot(lp["t"], lp["paper_eq93"], "--", label="paper Eq. 93 as printed")
    a.plot(lp["coupled_depth64"]["t"][::4], lp["coupled_depth64"]["dH"][::4], "k.", label="coupled, L=64 recursion")
    a.set_xlabel("layer time t")
    a.set_ylabel("H¹(t) − H⁰(t)")
    a.set_title(f"linear network after one step (η_c={lp['lr']})")
    a.legend(fontsize=7)
    if path is not None:
        savefig(fig, path, dpi=110)
    return fig


SIZES = {
    # timing: N values, recursion depths, neural-tangents depths; tte: time-to-error; conv: depths;
    # err: widths and seeds of the error decomposition
    "tiny": dict(Ns=[10], depths=[4], nt_depths=[4], Ls=[4, 8, 16], widths=[8, 16], seeds=64,
                 tte=dict(N=8, d=4, depths=[4, 16], ode_rtols=[1e-3, 1e-6], nt_depths=[4, 16], targets=[1e-2, 1e-3],
                          rounds=2, repeats=1)),
    "quick": dict(Ns=[10, 100, 1000], depths=[10, 100], nt_depths=[10, 100], Ls=[4, 8, 16, 32, 64, 128, 256],
                  widths=[16, 32, 64, 128], seeds=4096,
                  tte=dict(N=100, d=16, depths=[4, 16, 64, 256, 1024], ode_rtols=[1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7,
                                                                                  1e-8, 1e-9],
                           nt_depths=[4, 16, 64], targets=[1e-2, 1e-3, 1e-4], rounds=3, repeats=2)),
    "full": dict(Ns=[10, 30, 100, 300, 1000, 2000], depths=[10, 100, 1000], nt_depths=[10, 100, 1000],
                 Ls=[4, 8, 16, 32, 64, 128, 256, 512, 1024], widths=[16, 32, 64, 128, 256], seeds=16384,
                 tte=dict(N=1000, d=16, depths=[4, 16, 64, 256, 1024, 4096],
                          ode_rtols=[1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9],
                          nt_depths=[4, 16, 64, 256, 1024], targets=[1e-2, 1e-3, 1e-4], rounds=3, repeats=2)),
    "gpu": dict(Ns=[1000, 4000], depths=[10, 100, 1000], nt_depths=[], Ls=[4, 8, 16, 32, 64, 128, 256, 512, 1024],
                widths=[16, 32, 64, 128, 256], seeds=16384,
                tte=dict(N=1000, d=16, depths=[4, 16, 64, 256, 1024, 4096],
                         ode_rtols=[1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9],
                         nt_depths=[], targets=[1e-2, 1e-3, 1e-4], rounds=3, repeats=2)),
}
SECTIONS = ("time_to_error", "timing", "convergence", "linear_one_step", "error_decomposition")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small sizes (a few minutes on 2 CPU cores)")
    g.add_argument("--tiny", action="store_true", help="seconds (smoke test)")
    g.add_argument("--gpu", action="store_true", help="sizes for about a minute on one GPU (benchmarks/gpu.sh)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--nt-python", default=None, help="python of a virtualenv with neural-tangents")
    p.add_argument("--no-nt", action="store_true", help="skip neural-tangents")
    p.add_argument("--out", default=RESULTS, help="directory for kernels.json (sections not run are kept from an "
                                                   "existing kernels.json there) and the figures")
    a = p.parse_args(argv)
    size = "tiny" if a.tiny else "quick" if a.quick else "gpu" if a.gpu else "full"
    S = SIZES[size]
    sections = [x for x in a.sections.split(",") if x]
    bad = [x for x in sections if x not in SECTIONS]
    if bad:
        p.error(f"--sections: unknown {bad}; choose from {SECTIONS}")
    os.makedirs(a.out, exist_ok=True)
    nfd.disable_compilation_cache()  # compile times here are real compilations, not loads from disk
    py, why = (None, "--no-nt given") if a.no_nt else nt_python(a.nt_python)
    if py is None:
        print(f"[neural-tangents] skipped: {why}", flush=True)
    t0 = time.perf_counter()
    path = os.path.join(a.out, "kernels.json")
    res = json.load(open(path)) if os.path.exists(path) else {}
    res.update({
        "benchmark": "kernels",
        "neural_tangents": {"python": py, "skipped_reason": why},
        "sections_last_run": sections,
    })
    if set(sections) >= {"timing", "convergence", "linear_one_step", "error_decomposition"} or "mode" not in res:
        res["mode"], res["machine"] = size, machine()  # the classic sections' size and machine
    res.setdefault("section_modes", {}).update({s_: size for s_ in sections})
    nt_depths = S["nt_depths"] if py else []
    if "time_to_error" in sections:
        c = dict(S["tte"])
        tte_nt = c.pop("nt_depths") if py else []
        c.pop("nt_depths", None)
        res["time_to_error"] = bench_time_to_error(c.pop("N"), c.pop("d"), c.pop("depths"), c.pop("ode_rtols"), py,
                                                   tte_nt, c.pop("targets"), **c)
        res["time_to_error"]["machine"] = machine()
    if "timing" in sections:
        res["timing"] = {"recursion_depths": S["depths"], "nt_depths": nt_depths,
                         "rows": bench_timing(S["Ns"], S["depths"], py, nt_depths)}
    if "convergence" in sections:
        res["convergence"] = bench_convergence(np.array(S["Ls"]))
    if "linear_one_step" in sections:
        res["linear_one_step"] = bench_linear_profiles()
    if "error_decomposition" in sections:
        res["error_decomposition"] = bench_error_decomposition(S["widths"], S["seeds"])
    res["total_seconds"] = time.perf_counter() - t0
    with open(path, "w") as fh:
        json.dump(res, fh, indent=1, default=float)
    figs = []
    if all(k in res for k in ("timing", "convergence", "linear_one_step", "error_decomposition")):
        plot(res, os.path.join(a.out, "kernels.png"))
        figs.append("kernels.png")
    if "time_to_error" in res:
        plot_time_to_error(res["time_to_error"], os.path.join(a.out, "kernels_tte.png"))
        figs.append("kernels_tte.png")
    print(f"wrote {path} and {', '.join(figs) or 'no figure'} in {res['total_seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
