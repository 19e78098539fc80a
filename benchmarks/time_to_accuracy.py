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
  (for Sobol with the sd·√P measured at P₀, conservative where Sobol improves with P); time(P)
  MEASURED: interleaved best-of-N calls of ``nfd.solve`` on a ladder P = 4096·2^j per (dtype,
  sampling), up to the largest P(ε) that variant needs (rounded up to a power of two) but at most
  ``P_CAP`` = 2²¹ (float64 iid at 2²¹ holds ≈ 5.8 GiB and takes ≈ 20 s a call on 2 loaded cores;
  2²² would need ≈ 12 GiB), read off by log-log interpolation between ladder points.  Beyond the
  top of the ladder (iid at ε = 0.005: P ≈ 3·10⁶ … 7.6·10⁶) it is extrapolated with the last two
  points' log-log slope and marked ``time_extrapolated``, as for the finite networks.  Calls with
  P ≥ 2²⁰ get ``reps_large`` = 3 timed calls per round instead of ``reps`` = 5 (run length).  The
  earlier model — linear in P through the two sizes ``P_time`` = 4096, 16384 — is kept beside it
  (``solver_linear_model``, ``ratio_linear_model``, ``headline_linear_model``, and
  ``solver_measured_over_linear``: measured ÷ linear-model time at every ladder P) to show what the
  direct timing changed.  Compile time (first call) reported separately.
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

    python benchmarks/time_to_accuracy.py    # ≈ 25 min on 2 loaded cores
    python benchmarks/time_to_accuracy.py --plot-only    # redraw from the JSON
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
P_CAP = 2**21  # largest timed particle count (memory: float64 iid ≈ 5.8 GiB at 2²¹; time ≈ 20 s a call)
P_LARGE, REPS_LARGE = 2**20, 3  # calls with P ≥ P_LARGE are timed REPS_LARGE times per round


def p_ladder(res, P_start=4096):
    """{variant: [P_start·2^j …]} up to the largest P(ε) the variant needs (next power of two), capped."""
    out = {}
    for var, r in res["solver"].items():
        need = max((4 * r[f"sd_sqrtP_{q}"] / e) ** 2 for q in ("last", "rms") for e in EPS)
        top = min(max(2 ** math.ceil(math.log2(need)), P_start), P_CAP)
        out[var] = [P_start * 2**j for j in range(int(math.log2(top // P_start)) + 1)]
    return out


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
    ladder = p_ladder(res, P_time[0])
    res["config"].update(P_ladder=ladder, P_cap=P_CAP, reps_large=REPS_LARGE, reps_large_from_P=P_LARGE)
    print("P ladders", {v: (lp[0], lp[-1], len(lp)) for v, lp in ladder.items()}, flush=True)
    solver_calls = {}
    for dt_name, dt in (("float32", jnp.float32), ("float64", jnp.float64)):
        for sm in ("iid", "sobol"):
            for P in sorted(set(ladder[f"{dt_name}/{sm}"]) | set(P_time)):
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
        for i_pass in range(reps):  # interleaved: every call once per pass (large P: the first REPS_LARGE passes)
            for key, fn in list(solver_calls.items()) + list(finite_calls.items()):
                if isinstance(key, tuple) and key[2] >= P_LARGE and i_pass >= REPS_LARGE:
                    continue
                t = time.perf_counter()
                fn()
                times.setdefault(str(key), []).append(time.perf_counter() - t)
        best = {k: min(v) for k, v in times.items()}
        print("round", rnd, "solver best_s", {k: round(v, 3) for k, v in best.items() if k.startswith("(")}, flush=True)
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


def _solver_time(best, var, ladder):
    """P ↦ (time, extrapolated): the solver variant ``var``'s measured best time, interpolated log-log
    between the ladder points; outside the ladder extrapolated with the nearest two points' log-log
    slope (``extrapolated`` True there).  Vectorised over P."""
    dt_name, sm = var.split("/")
    lp = np.log(np.array(ladder, float))
    lt = np.log(np.array([best[str((dt_name, sm, P))] for P in ladder]))

    def t_of(P):
        x = np.log(np.asarray(P, float))
        y = np.interp(x, lp, lt)
        hi, lo = x > lp[-1], x < lp[0]
        y = np.where(hi, lt[-1] + (lt[-1] - lt[-2]) / (lp[-1] - lp[-2]) * (x - lp[-1]), y)
        y = np.where(lo, lt[0] + (lt[1] - lt[0]) / (lp[1] - lp[0]) * (x - lp[0]), y)
        return np.exp(y), hi | lo

    return t_of


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
    ladder = cfg.get("P_ladder")  # absent in documents written before the direct timing: linear model
    for var, r in res["solver"].items():
        t1, slope = _solver_time_line(best, var, P1, P2)
        t_of = _solver_time(best, var, ladder[var]) if ladder else (lambda P: (t1 + slope * (P - P1), None))
        out["solver"][var] = {}
        for q in ("last", "rms"):
            c = r[f"sd_sqrtP_{q}"] * (1 + rng.normal(size=draws) / math.sqrt(2 * (S - 1)))
            for eps in eps_l:
                t = t_of(np.maximum((4 * c / eps) ** 2, 2.0))[0]
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

    Solver: the measured time, log-log interpolated between the ``P_ladder`` points (beyond them
    extrapolated, ``time_extrapolated``); beside it the old two-point linear model (``P_time``).

    Finite networks: the smallest width n (any real n ≥ 16) whose fitted bias a/n + b/n² is ≤ ε/2,
    its per-seed sd from the power-law fit, its per-seed time interpolated log-log between the
    timed widths (32…2048; beyond them extrapolated with the last two points' slope)."""
    out = {"solver": {}, "finite": {}, "ratio": {}, "solver_linear_model": {}, "ratio_linear_model": {},
           "solver_measured_over_linear": {}}
    P1, P2 = P_time
    ladder = res["config"]["P_ladder"]
    for var, r in res["solver"].items():
        t1, slope = _solver_time_line(best, var, P1, P2)
        t_of = _solver_time(best, var, ladder[var])
        out["solver"][var], out["solver_linear_model"][var] = {}, {}
        for q in ("last", "rms"):
            c = r[f"sd_sqrtP_{q}"]
            for eps in EPS:
                P = max((4 * c / eps) ** 2, 2.0)
                t, ext = t_of(P)
                t_lin = t1 + slope * (P - P1)
                out["solver"][var][f"{q}/{eps}"] = dict(particles=P, time_s=float(t), time_extrapolated=bool(ext),
                                                        time_s_linear_model=t_lin)
                out["solver_linear_model"][var][f"{q}/{eps}"] = t_lin
        dt_name, sm = var.split("/")
        out["solver_measured_over_linear"][var] = {
            str(P): best[str((dt_name, sm, P))] / (t1 + slope * (P - P1)) for P in ladder[var]}
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
                out["ratio_linear_model"][f"{var}/{q}/{eps}"] = (out["finite"][f"{q}/{eps}"]["time_s"]
                                                                 / out["solver_linear_model"][var][f"{q}/{eps}"])
    out["headline"] = {k: round(v, 1) for k, v in out["ratio"].items() if k.endswith("/0.01")}
    out["headline_linear_model"] = {k: round(v, 1) for k, v in out["ratio_linear_model"].items() if k.endswith("/0.01")}
    return out


def plot(res, path):
    import matplotlib.pyplot as plt

    from nfd.plotting import log_log, savefig

    cfg = res["config"]
    ladder = cfg.get("P_ladder")
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
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
                ext = np.array([tab["solver"][var][f"{q}/{e}"].get("time_extrapolated", False) for e in EPS])
                if ext.any():  # time beyond the timed ladder: open marker around the point
                    ax.plot(x[ext], y[ext], "o", ms=12, mfc="none", color=f"C{j}")
                if i == 0 and var == "float32/iid" and "solver_linear_model" in tab:
                    ax.plot(x, [tab["solver_linear_model"][var][f"{q}/{e}"] for e in EPS], "x", color="C0", ms=8,
                            label="solver float32/iid, old 2-point linear model (round 0)")
            y = np.array([tab["finite"][f"{q}/{e}"]["time_s"] for e in EPS])
            ax.errorbar(x, y, yerr=yerr(y, [ci["finite"][f"{q}/{e}"] for e in EPS]), fmt="s" + ls, color="k",
                        capsize=2, label="finite networks (width bias counted)" if i == 0 else None)
        e = np.array(EPS)
        t_ref = res["rounds"][0]["table"]["solver"]["float32/iid"][f"{q}/0.01"]["time_s"]
        ax.plot(e, t_ref * (0.01 / e) ** 2, "--", color="gray", lw=0.8, label="expected rate ε⁻² (Monte Carlo)")
        log_log(ax, list(EPS))
        ax.set_xlabel("target total error ε (|bias| ≤ ε/2, 2·SE ≤ ε/2)")
        ax.set_ylabel("time to reach ε [s] (best of N, after compilation)")
        ax.set_title(f"f̂: {'last step' if q == 'last' else 'RMS over steps'}; two timing rounds (solid, dotted)\n"
                     "error bars: 68 % bootstrap over the estimated sd, bias fit and sd fit;\n"
                     "large open circle: solver time extrapolated beyond the timed P", fontsize=9)
    # solver time against P: the measured ladder, the old linear model, the P(ε) needed
    ax = axes[2]
    P1, P2 = cfg["P_time"]
    allP = []
    for j, var in enumerate(res["solver"]):
        dt_name, sm = var.split("/")
        Ps = ladder[var] if ladder else [P1, P2]
        allP += Ps
        for i, rnd in enumerate(res["rounds"]):
            t = [rnd["best_s"][str((dt_name, sm, P))] for P in Ps]
            ax.plot(Ps, t, ("o-" if i == 0 else "s:"), color=f"C{j}", ms=4,
                    label=f"{var} measured" if i == 0 else None)
        rnd = res["rounds"][0]
        t1, slope = _solver_time_line(rnd["best_s"], var, P1, P2)
        Pl = np.geomspace(P1, max(Ps[-1], rnd["table"]["solver"][var]["last/0.005"]["particles"]), 50)
        ax.plot(Pl, t1 + slope * (Pl - P1), "--", color=f"C{j}", lw=0.8,
                label="old linear model (4096, 16384; round 0)" if j == 0 else None)
        P_eps = rnd["table"]["solver"][var]["last/0.01"]["particles"]
        ax.axvline(P_eps, color=f"C{j}", lw=0.6, alpha=0.5)
    Pg = np.array([P1, max(allP)], float)
    t0 = res["rounds"][0]["best_s"][str(("float32", "iid", P2))]
    ax.plot(Pg, t0 * Pg / P2, "-", color="gray", lw=2, alpha=0.4, label="expected rate ∝ P (through float32/iid at 16384)")
    log_log(ax, sorted(set(allP))[::2])
    ax.set_xlabel("particles P")
    ax.set_ylabel("nfd.solve time [s] (best of N per round, after compilation)")
    ax.set_title("solver time against P: rounds 0 (o, solid) and 1 (s, dotted); thin vertical lines:\n"
                 f"P(ε = 0.01, last step) per variant; N = {cfg['reps']}"
                 + (f", {cfg['reps_large']} for P ≥ {cfg['reps_large_from_P']}" if "reps_large" in cfg else ""),
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    h, lb = axes[0].get_legend_handles_labels()
    fig.legend(h, lb, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.33, 0.0))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    savefig(fig, path, dpi=110, tight=False)


if __name__ == "__main__":
    main()
