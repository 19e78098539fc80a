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
L, T = cfg["depth"], cfg["T"]
branch = stax.serial(stax.Relu(), stax.Dense(1, W_std=float(np.sqrt(T / L)), parameterization="standard"))
block = stax.serial(stax.FanOut(2), stax.parallel(branch, stax.Identity()), stax.FanInSum())
_, _, kernel_fn = stax.serial(stax.Dense(1, W_std=1.0, parameterization="standard"), *([block] * L))
kf = jax.jit(kernel_fn, static_argnames="get")
t0 = time.perf_counter(); K = np.asarray(kf(X, None, "nngp")); t1 = time.perf_counter()
K = np.asarray(kf(X, None, "nngp")); t2 = time.perf_counter()
np.save(cfg["out"], K)
print(json.dumps({"first_call_s": t1 - t0, "run_s": t2 - t1, "nt_version": __import__("neural_tangents").__version__, "jax": jax.__version__}))
"""


def machine():
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
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
    cand = arg or os.environ.get("NFD_NT_PYTHON") or "/tmp/nt-venv/bin/python"
    if not os.path.exists(cand):
        return None, f"no neural-tangents virtualenv at {cand} (see docs/kernels.md to create one)"
    r = subprocess.run([cand, "-c", "import neural_tangents"], capture_output=True, text=True)
    if r.returncode:
        return None, f"neural_tangents does not import in {cand}: {r.stderr.strip().splitlines()[-1:]}"
    return cand, None


def run_nt(py, X, depth, T):
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "X.npy"), X)
        cfg = {"X": os.path.join(tmp, "X.npy"), "out": os.path.join(tmp, "K.npy"), "depth": depth, "T": T}
        json.dump(cfg, open(os.path.join(tmp, "cfg.json"), "w"))
        script = os.path.join(tmp, "nfd_nt_kernel.py")  # not "nt.py": that shadows a stdlib module
        open(script, "w").write(NT_SCRIPT)
        r = subprocess.run([py, script, os.path.join(tmp, "cfg.json")], capture_output=True, text=True, timeout=1800)
        if r.returncode:
            return None, r.stderr.strip()[-500:]
        info = json.loads(r.stdout.strip().splitlines()[-1])
        return (np.load(cfg["out"]), info), None


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes on 2 CPU cores)")
    p.add_argument("--nt-python", default=None, help="python of a virtualenv with neural-tangents")
    p.add_argument("--out", default=RESULTS)
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    if a.quick:
        Ns, depths, nt_depths = [10, 100, 1000], [10, 100], [10, 100]
        Ls, widths, seeds = [4, 8, 16, 32, 64, 128, 256], [16, 32, 64, 128], 4096
    else:
        Ns, depths, nt_depths = [10, 30, 100, 300, 1000, 2000], [10, 100, 1000], [10, 100, 1000]
        Ls, widths, seeds = [4, 8, 16, 32, 64, 128, 256, 512, 1024], [16, 32, 64, 128, 256], 16384
    py, why = nt_python(a.nt_python)
    if py is None:
        print(f"[neural-tangents] skipped: {why}", flush=True)
    t0 = time.perf_counter()
    res = {
        "benchmark": "kernels",
        "mode": "quick" if a.quick else "full",
        "machine": machine(),
        "neural_tangents": {"python": py, "skipped_reason": why},
    }
    res["timing"] = {"recursion_depths": depths, "nt_depths": nt_depths if py else [],
                     "rows": bench_timing(Ns, depths, py, nt_depths if py else [])}
    res["convergence"] = bench_convergence(np.array(Ls))
    res["linear_one_step"] = bench_linear_profiles()
    res["error_decomposition"] = bench_error_decomposition(widths, seeds)
    res["total_seconds"] = time.perf_counter() - t0
    with open(os.path.join(a.out, "kernels.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=float)
    plot(res, os.path.join(a.out, "kernels.png"))
    print(f"wrote {a.out}/kernels.json and kernels.png in {res['total_seconds']:.0f}s")


if __name__ == "__main__":
    main()
