"""Time to a total error ε of f̂^(k): particle solver against finite networks, width bias counted (issue 18 item 2).

Problem: tanh, d = 3, K = 8 samples (one per step), L = 8, η_c = 0.5; the solver in exact mode
against ordinary (coupled) finite depth-μP networks, which it is the n → ∞ limit of.  Quantities:
f̂^(K−1) ("last") and every step k ("RMS": the criterion must hold for the RMS over steps of the
errors below).

Accuracy criterion (both methods): |bias| ≤ ε/2 and 2·SE ≤ ε/2.

* Reference f*: the mean of ``ref_seeds`` solver systems (float32, ``sampling="sobol"``, P = 2¹⁴),
  cross-checked against float64 iid solves.
* Solver: bias O(1/P) (checked: the mean at the smallest P agrees with f* within SE); the spread
  sd(P)·√P is measured over S systems at P₀ for each (dtype, sampling); P(ε) = (4·sd√P/ε)²
  (for Sobol with the sd·√P measured at P₀, conservative where Sobol improves with P); time(P) from
  interleaved best-of-N calls of ``nfd.solve`` at two P, linear in P (the solver's cost is linear
  in P: benchmarks/nfd_solver.py scaling); compile time (first call) reported separately.
* Finite networks at widths n = 32…512: seed means m(n) and per-seed sd over 1024 seeds; the width
  bias m(n) − f* is fitted as a/n + b/n² per step (weighted least squares, χ² reported); the width
  used for ε is the smallest n with fitted |bias| ≤ ε/2 (for all larger n), its per-seed sd from a
  power-law fit sd ∝ n^β, seeds S(ε) = (4·sd/ε)², time = per-seed time × S(ε), the per-seed time
  (best-of-N calls of ``nfd.simulate`` with 8 seeds) interpolated log-log between widths 32…2048.
* Ratio = finite time / solver time; computed in two independent timing rounds (headline reproduced).
* Error bars (``intervals``, 68 % = 16th–84th percentiles of a parametric bootstrap, 2000 draws, from
  the JSON alone): the statistical uncertainty of each time from the quantities it was estimated
  from — the solver's sd·√P (S systems: relative s.e. 1/√(2(S−1))), the finite networks' bias fit
  (a, b drawn from their joint normal with the weighted-least-squares covariance, recomputed from
  the stored seed means) and their per-seed sd (relative s.e. 1/√(2(seeds−1)) per width, power law
  refitted per draw).  The timings themselves are best-of-N; their spread is shown by the two rounds.

    python benchmarks/time_to_accuracy.py    # ≈ 10 min on 2 loaded cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "studies"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import nfd  # noqa: E402

from _common import machine  # noqa: E402
from rates_training import data  # noqa: E402
import variance_reduction as vr  # noqa: E402

RESULTS = os.path.join(HERE, "results")
K, L, D_IN, LR = 8, 8, 3, 0.5
EPS = (0.02, 0.01, 0.005)
N_BATCH = 8  # seeds per timed nfd.simulate call (per-seed time = best / N_BATCH)


def solver_spread(P, sampling, dtype, seeds):
    X, Y = data(K, D_IN, 0)
    net = nfd.ResNet(depth=L, input_dim=D_IN, width=None, activation="tanh", lr=LR)
    prob = vr._nfd.particle_problem(net, X, Y, particles=P, backward="exact", sampling=sampling, eigenvalues=False, replicates=1,
                                    dtype=dtype)
    st, args = prob.static, prob.args
    keys = jnp.stack([vr.seed_key(s) for s in seeds])
    fn = jax.jit(jax.vmap(lambda k: vr._nfd._run(st, k, *args[1:])["outs"]["f"].reshape(-1)))
    return np.asarray(fn(keys), np.float64)


def _best(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def finite_outputs(n, seeds, seed0, chunk=256):
    X, Y = data(K, D_IN, 0)
    outs = []
    for c in range(0, seeds, chunk):
        r = nfd.simulate(X, Y, width=n, depth=L, activation="tanh", lr=LR, seeds=min(chunk, seeds - c),
                         seed=seed0 + c, record=())
        outs.append(np.asarray(r.outputs, np.float64))
    return np.concatenate(outs)


def rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(RESULTS, "time_to_accuracy.json"))
    p.add_argument("--plot-only", action="store_true")
    a = p.parse_args(argv)
    if a.plot_only:
        res = json.load(open(a.out))
        for i, rnd in enumerate(res["rounds"]):  # documents written before the intervals existed
            rnd.setdefault("interval68", intervals(res, i))
        json.dump(res, open(a.out, "w"), indent=1)
        return plot(res, os.path.splitext(a.out)[0] + ".png")
    t0 = time.perf_counter()
    X, Y = data(K, D_IN, 0)
    widths, n_seeds, P0, S, P_time, reps = [32, 64, 128, 256, 512], 1024, 4096, 64, (4096, 16384), 5
    time_widths = widths + [1024, 2048]
    res = dict(config=dict(K=K, L=L, d=D_IN, lr=LR, activation="tanh", solver="exact", finite="coupled",
                           eps=EPS, widths=widths, time_widths=time_widths, finite_seeds=n_seeds, P0=P0, solver_systems=S, P_time=P_time,
                           reps=reps, criterion="|bias| ≤ ε/2 and 2·SE ≤ ε/2"),
               load=[os.getloadavg()])
    # ---- reference ----------------------------------------------------------------------------
    ref = solver_spread(16384, "sobol", jnp.float32, range(50_000, 50_016))
    f_star, f_star_se = ref.mean(0), ref.std(0, ddof=1) / math.sqrt(len(ref))
    with jax.enable_x64(True):
        chk = solver_spread(16384, "iid", jnp.float64, range(60_000, 60_008))
    z = (chk.mean(0) - f_star) / np.hypot(chk.std(0, ddof=1) / math.sqrt(len(chk)), f_star_se)
    res["reference"] = dict(f=f_star.tolist(), se=f_star_se.tolist(), float64_iid_check_z=z.tolist(),
                            how="mean of 16 float32 sobol solves at P = 16384; check: 8 float64 iid solves")
    print("reference", np.round(f_star, 4), "±", np.round(f_star_se, 4), "check z", np.round(z, 2), flush=True)
    # ---- solver spread -------------------------------------------------------------------------
    res["solver"] = {}
    for dt_name, dt in (("float32", jnp.float32), ("float64", jnp.float64)):
        for sm in ("iid", "sobol"):
            with jax.enable_x64(dt_name == "float64"):
                f = solver_spread(P0, sm, dt, range(70_000, 70_000 + S))
            sd = f.std(0, ddof=1) * math.sqrt(P0)
            bias_z = (f.mean(0) - f_star) / np.hypot(f.std(0, ddof=1) / math.sqrt(S), f_star_se)
            res["solver"][f"{dt_name}/{sm}"] = dict(sd_sqrtP=sd.tolist(), sd_sqrtP_last=float(sd[-1]),
                                                   sd_sqrtP_rms=rms(sd), bias_z_vs_reference=bias_z.tolist())
            print(dt_name, sm, "sd√P last %.3f rms %.3f" % (sd[-1], rms(sd)), "max|z| %.2f" % np.abs(bias_z).max(),
                  flush=True)
    # ---- finite networks ----------------------------------------------------------------------
    res["finite"] = {}
    for n in widths:
        f = finite_outputs(n, n_seeds, 1_000_000 + 10_000 * n)
        m, se, sd = f.mean(0), f.std(0, ddof=1) / math.sqrt(len(f)), f.std(0, ddof=1)
        res["finite"][str(n)] = dict(mean=m.tolist(), se=se.tolist(), sd=sd.tolist(), seeds=len(f),
                                     diff_vs_reference=(m - f_star).tolist())
        print("width", n, "bias last %.4f ± %.4f" % (m[-1] - f_star[-1], se[-1]), "sd last %.3f" % sd[-1], flush=True)
    # bias fit: m(n) − f* = a_k / n + b_k / n², weighted least squares per step
    inv = np.array([1.0 / n for n in widths])
    D = np.array([res["finite"][str(n)]["diff_vs_reference"] for n in widths])  # (W, K)
    SE = np.hypot(np.array([res["finite"][str(n)]["se"] for n in widths]), f_star_se)
    A = np.stack([inv, inv**2], axis=1)
    coef, coef_se, chi2 = np.zeros((2, K)), np.zeros((2, K)), 0.0
    for k in range(K):
        Aw = A / SE[:, k:k + 1]
        c, *_ = np.linalg.lstsq(Aw, D[:, k] / SE[:, k], rcond=None)
        coef[:, k] = c
        coef_se[:, k] = np.sqrt(np.diag(np.linalg.inv(Aw.T @ Aw)))
        chi2 += float(((Aw @ c - D[:, k] / SE[:, k]) ** 2).sum())
    res["bias_fit"] = dict(a=coef[0].tolist(), a_se=coef_se[0].tolist(), b=coef[1].tolist(), b_se=coef_se[1].tolist(),
                           chi2=chi2, dof=int(D.size - 2 * K), model="mean(n) − f* = a/n + b/n² per step")
    print("bias a, b (last)", coef[:, -1], "±", coef_se[:, -1], "chi2/dof", chi2, D.size - 2 * K, flush=True)
    # per-seed spread against width: power law fit
    sds = np.array([res["finite"][str(n)]["sd"] for n in widths])
    res["sd_fit"] = {}
    for q, y in (("last", sds[:, -1]), ("rms", np.sqrt(np.mean(sds**2, axis=1)))):
        beta, logc = np.polyfit(np.log(widths), np.log(y), 1)
        res["sd_fit"][q] = dict(exponent=float(beta), log_prefactor=float(logc), sd=y.tolist())
    # ---- timing: two interleaved rounds -------------------------------------------------------
    kw = dict(depth=L, activation="tanh", lr=LR, backward="exact", eigenvalues=False, replicates=1)
    solver_calls = {}
    for dt_name, dt in (("float32", jnp.float32), ("float64", jnp.float64)):
        for sm in ("iid", "sobol"):
            for P in P_time:
                solver_calls[(dt_name, sm, P)] = (lambda P=P, sm=sm, dt=dt, x64=dt_name == "float64":
                                                  _solve(X, Y, P, sm, dt, x64, kw))
    n_batch = N_BATCH
    finite_calls = {n: (lambda n=n: nfd.simulate(X, Y, width=n, depth=L, activation="tanh", lr=LR, seeds=n_batch,
                                                  seed=5, record=()))
                    for n in time_widths}
    compile_s = {}
    for key, fn in list(solver_calls.items()) + list(finite_calls.items()):
        t = time.perf_counter()
        fn()
        compile_s[str(key)] = time.perf_counter() - t
    res["first_call_s"] = compile_s
    rounds = []
    for rnd in range(2):
        times = {}
        for _ in range(reps):  # interleaved: every call once per pass
            for key, fn in list(solver_calls.items()) + list(finite_calls.items()):
                t = time.perf_counter()
                fn()
                times.setdefault(str(key), []).append(time.perf_counter() - t)
        best = {k: min(v) for k, v in times.items()}
        rounds.append(dict(best_s=best, load=os.getloadavg(), table=table(res, best, widths, time_widths, n_batch,
                                                                           P_time, coef)))
        res["rounds"] = rounds
        rounds[-1]["interval68"] = intervals(res, rnd)
        res["load"].append(os.getloadavg())
        print("round", rnd, json.dumps(rounds[-1]["table"]["headline"]), flush=True)
    res["rounds"] = rounds
    res["machine"] = machine()
    res["wall_s"] = time.perf_counter() - t0
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(res, open(a.out, "w"), indent=1)
    plot(res, os.path.splitext(a.out)[0] + ".png")
    print("wrote", a.out, f"({res['wall_s']:.0f} s)")


def _solve(X, Y, P, sm, dt, x64, kw):
    with jax.enable_x64(x64):
        return nfd.solve(X, Y, particles=P, sampling=sm, dtype=dt, seed=1, **kw)


def _solver_time_line(best, var, P1, P2):
    """(time at P1, seconds per particle): the solver variant ``var``'s time, linear in P between
    the two timed particle counts (never decreasing)."""
    dt_name, sm = var.split("/")
    t1, t2 = best[str((dt_name, sm, P1))], best[str((dt_name, sm, P2))]
    return t1, max((t2 - t1) / (P2 - P1), 0.0)


def _per_seed_time(tw, time_widths):
    """n ↦ per-seed time, interpolated log-log between the timed widths; beyond the widest,
    extrapolated with the last two points' slope."""
    lt, ln = np.log(tw), np.log(np.array(time_widths, float))

    def t_seed(n):
        x = math.log(n)
        if x <= ln[-1]:
            return float(np.exp(np.interp(x, ln, lt)))
        return float(np.exp(lt[-1] + (lt[-1] - lt[-2]) / (ln[-1] - ln[-2]) * (x - ln[-1])))

    return t_seed


def intervals(res, rnd, draws=2000, seed=0):
    """68 % bootstrap intervals {"solver": {var: {q/ε: (lo, hi)}}, "finite": {q/ε: (lo, hi)}, "ratio": …} of the
    times of round ``rnd`` (see the module docstring); uses only the JSON document ``res``."""
    rng = np.random.default_rng(seed)
    cfg = res["config"]
    widths, time_widths, best = cfg["widths"], cfg["time_widths"], res["rounds"][rnd]["best_s"]
    S, n_seeds, P1, P2 = cfg["solver_systems"], cfg["finite_seeds"], *cfg["P_time"]
    eps_l = [float(e) for e in cfg["eps"]]
    Kk = len(res["reference"]["f"])
    out = {"solver": {}, "finite": {}, "ratio": {}}
    solver_draws = {}
    for var, r in res["solver"].items():
        t1, slope = _solver_time_line(best, var, P1, P2)
        out["solver"][var] = {}
        for q in ("last", "rms"):
            c = r[f"sd_sqrtP_{q}"] * (1 + rng.normal(size=draws) / math.sqrt(2 * (S - 1)))
            for eps in eps_l:
                t = t1 + slope * (np.maximum((4 * c / eps) ** 2, 2.0) - P1)
                solver_draws[(var, q, eps)] = t
                out["solver"][var][f"{q}/{eps}"] = np.percentile(t, [16, 84]).tolist()
    # finite networks: refit the bias a/n + b/n² with its covariance, per step
    inv = np.array([1.0 / n for n in widths])
    f_se = np.array(res["reference"]["se"])
    D = np.array([res["finite"][str(n)]["diff_vs_reference"] for n in widths])
    SE = np.hypot(np.array([res["finite"][str(n)]["se"] for n in widths]), f_se)
    A = np.stack([inv, inv**2], axis=1)
    coefs = np.zeros((draws, 2, Kk))
    for k in range(Kk):
        Aw = A / SE[:, k:k + 1]
        cov = np.linalg.inv(Aw.T @ Aw)
        c = cov @ Aw.T @ (D[:, k] / SE[:, k])
        coefs[:, :, k] = rng.multivariate_normal(c, cov, size=draws)
    sds = np.array([res["finite"][str(n)]["sd"] for n in widths])  # (W, K)
    t_seed = _per_seed_time(np.array([best[str(n)] / N_BATCH for n in time_widths]), time_widths)
    grid = np.exp(np.linspace(math.log(16), math.log(1e6), 800))
    fin = {(q, e): np.zeros(draws) for q in ("last", "rms") for e in eps_l}
    for i in range(draws):
        sd_i = sds * (1 + rng.normal(size=sds.shape) / math.sqrt(2 * (n_seeds - 1)))
        bk = coefs[i, 0][None] / grid[:, None] + coefs[i, 1][None] / grid[:, None] ** 2  # (G, K)
        for q, y, bq in (("last", sd_i[:, -1], np.abs(bk[:, -1])),
                         ("rms", np.sqrt(np.mean(sd_i**2, axis=1)), np.sqrt(np.mean(bk**2, axis=1)))):
            beta, logc = np.polyfit(np.log(widths), np.log(y), 1)
            for eps in eps_l:
                bad = np.nonzero(bq > eps / 2)[0]
                n_min = float(grid[0] if len(bad) == 0 else grid[min(bad[-1] + 1, len(grid) - 1)])
                sd = math.exp(logc) * n_min**beta
                fin[(q, eps)][i] = t_seed(n_min) * (4 * sd / eps) ** 2
    for (q, eps), t in fin.items():
        out["finite"][f"{q}/{eps}"] = np.percentile(t, [16, 84]).tolist()
        for var in res["solver"]:
            out["ratio"][f"{var}/{q}/{eps}"] = np.percentile(t / solver_draws[(var, q, eps)], [16, 84]).tolist()
    return out


def _bias(coef, n, q):
    bk = coef[0] / n + coef[1] / n**2
    return abs(bk[-1]) if q == "last" else rms(bk)


def table(res, best, widths, time_widths, n_batch, P_time, coef):
    """Times to each ε (last step and RMS over steps) for every solver variant and the finite nets.

    Finite networks: the smallest width n (any real n ≥ 16) whose fitted bias a/n + b/n² is ≤ ε/2,
    its per-seed sd from the power-law fit, its per-seed time interpolated log-log between the
    timed widths (32…2048; beyond them extrapolated with the last two points' slope)."""
    out = {"solver": {}, "finite": {}, "ratio": {}}
    P1, P2 = P_time
    for var, r in res["solver"].items():
        t1, slope = _solver_time_line(best, var, P1, P2)
        out["solver"][var] = {}
        for q in ("last", "rms"):
            c = r[f"sd_sqrtP_{q}"]
            for eps in EPS:
                P = max((4 * c / eps) ** 2, 2.0)
                out["solver"][var][f"{q}/{eps}"] = dict(particles=P, time_s=t1 + slope * (P - P1))
    tw = np.array([best[str(n)] / n_batch for n in time_widths])
    out["finite_time_per_seed_s"] = dict(zip(map(str, time_widths), tw.tolist()))
    t_seed = _per_seed_time(tw, time_widths)
    grid = np.exp(np.linspace(math.log(16), math.log(1e6), 4000))
    for q in ("last", "rms"):
        sf = res["sd_fit"][q]
        for eps in EPS:
            bad = np.nonzero([_bias(coef, m, q) > eps / 2 for m in grid])[0]  # bias ≤ ε/2 for all widths ≥ n_min
            n_min = float(grid[0] if len(bad) == 0 else grid[min(bad[-1] + 1, len(grid) - 1)])
            sd = math.exp(sf["log_prefactor"]) * n_min ** sf["exponent"]
            Sx = (4 * sd / eps) ** 2
            out["finite"][f"{q}/{eps}"] = dict(width=n_min, sd=sd, seeds=Sx, time_s=t_seed(n_min) * Sx,
                                               width_extrapolated=n_min > max(widths),
                                               time_extrapolated=n_min > max(time_widths))
            for var in out["solver"]:
                out["ratio"][f"{var}/{q}/{eps}"] = (out["finite"][f"{q}/{eps}"]["time_s"]
                                                    / out["solver"][var][f"{q}/{eps}"]["time_s"])
    out["headline"] = {k: round(v, 1) for k, v in out["ratio"].items() if k.endswith("/0.01")}
    return out


def plot(res, path):
    import matplotlib.pyplot as plt

    from nfd.plotting import log_log, savefig

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, q in zip(axes, ("last", "rms")):
        for i, rnd in enumerate(res["rounds"]):
            tab = rnd["table"]
            ci = rnd.get("interval68") or intervals(res, i)
            ls = "-" if i == 0 else ":"
            x = np.array(EPS) * (1.0 if i == 0 else 1.04)  # the second round drawn slightly right

            def yerr(y, lohi):
                lo, hi = np.array(lohi).T
                return [np.maximum(y - lo, 0), np.maximum(hi - y, 0)]

            for j, var in enumerate(tab["solver"]):
                y = np.array([tab["solver"][var][f"{q}/{e}"]["time_s"] for e in EPS])
                ax.errorbar(x, y, yerr=yerr(y, [ci["solver"][var][f"{q}/{e}"] for e in EPS]), fmt="o" + ls,
                            color=f"C{j}", capsize=2, label=f"solver {var}" if i == 0 else None)
            y = np.array([tab["finite"][f"{q}/{e}"]["time_s"] for e in EPS])
            ax.errorbar(x, y, yerr=yerr(y, [ci["finite"][f"{q}/{e}"] for e in EPS]), fmt="s" + ls, color="k",
                        capsize=2, label="finite networks (width bias counted)" if i == 0 else None)
        e = np.array(EPS)
        t_ref = res["rounds"][0]["table"]["solver"]["float32/iid"][f"{q}/0.01"]["time_s"]
        ax.plot(e, t_ref * (0.01 / e) ** 2, "--", color="gray", lw=0.8, label="expected rate ε⁻² (Monte Carlo)")
        log_log(ax, list(EPS))
        ax.set_xlabel("target total error ε (|bias| ≤ ε/2, 2·SE ≤ ε/2)")
        ax.set_ylabel("time to reach ε [s] (best of 5, after compilation)")
        ax.set_title(f"f̂: {'last step' if q == 'last' else 'RMS over steps'}; two timing rounds (solid, dotted)\n"
                     "error bars: 68 % bootstrap over the estimated sd, bias fit and sd fit", fontsize=9)
    h, lb = axes[0].get_legend_handles_labels()
    fig.legend(h, lb, loc="lower center", ncol=6, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    savefig(fig, path, dpi=110, tight=False)


if __name__ == "__main__":
    main()
