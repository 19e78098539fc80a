"""Benchmark: finite hidden-width ResNets versus the Neural Mean ODE (Chizat 2025).

Sections (all in the §2.4 setting unless stated: n = 10 points, D = 10, x_i, y_i ~ N(0, I_D),
MLP units v·tanh(uᵀx/D), σ_u = σ_v = √D, η_u = η_v = D, α = 1, K GD steps, loss ½‖h − y‖²/D):

A. Monte-Carlo error of the limit solver: replicate spread of the output after K steps versus the
   number of particles P, for each sampler (iid / antithetic / sobol / sobol_antithetic) and each
   depth coupling (common / independent).  This is what fixed the solver's defaults.
B. Ground truth: the limit solver at a large grid, its Monte-Carlo error bar (replicates) and its
   discretisation error (grid N versus N/2), and the wall time of the solver versus one finite
   ResNet of the paper's ground-truth size M = L = 1000.
C. Rate study (Theorem 1 / Fig. 2): RMS output error after K steps versus L (M fixed) and versus M
   (L fixed), fitted to a/L + b·√D/√(LM) (fixed exponents) and to a·L^-p + b·√D·(LM)^-q (free
   exponents, bootstrap confidence intervals over seeds); plus the split into bias (mean over
   seeds, ∝ 1/L) and fluctuation (std over seeds, ∝ 1/√(LM)).
D. Lazy ODE regime (Theorem 2): finite ResNets at residual multiplier α versus the Neural Tangent ODE.
E. Phase diagram (§4.2, Theorem 3, Fig. 4/5b): balanced parameterisation σ_v = a√D,
   η_u = D·min(1, a⁻²), η_v = D; distance travelled by the input weights ‖U_K − U_0‖ and distance to
   the σ_v = 0 dynamics, versus a and D; classification into semi-complete / complete / lazy.
F. Weight-tied initialisation: a ResNet with the same M units at every layer versus the Mean ODE
   solver on those M particles: O(1/L) apart (no Monte-Carlo term), identical at grid = L.

Usage: python benchmarks/mean_ode.py [--quick]   (writes benchmarks/results/mean_ode.{json,png})
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import nfd  # noqa: E402
from nfd.meanode import simulate_resnet, simulate_resnet_network, solve_mean_ode  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def log(*a):
    print(*a, flush=True)


def rms(a, axis=None):
    return float(np.sqrt(np.mean(np.square(a), axis=axis))) if axis is None else np.sqrt(np.mean(np.square(a), axis=axis))


def data(n, D, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)), rng.normal(size=(n, D))


# ---- A: Monte-Carlo error of the limit solver ------------------------------------------------------

def section_mc(cfg, X, Y):
    out = []
    for coupling in ("common", "independent"):
        for sampler in ("iid", "antithetic", "sobol", "sobol_antithetic"):
            for P in cfg["mc_particles"]:
                t = time.perf_counter()
                r = solve_mean_ode(X, Y, steps=cfg["mc_steps"], grid=cfg["mc_grid"], particles=P, sampler=sampler,
                                   coupling=coupling, replicates=cfg["mc_replicates"], forward_steps=(0,))
                sd = r.replicate_outputs.std(0, ddof=1)  # (K+1, n, D): one replicate's MC error
                row = dict(coupling=coupling, sampler=sampler, particles=P, replicate_std_final=rms(sd[-1]),
                           replicate_std_step1=rms(sd[1]), wall_s=time.perf_counter() - t)
                out.append(row)
                log("A", row)
    # slopes of log std vs log P
    slopes = {}
    for coupling in ("common", "independent"):
        for sampler in ("iid", "antithetic", "sobol", "sobol_antithetic"):
            rows = [o for o in out if o["coupling"] == coupling and o["sampler"] == sampler]
            x = np.log([o["particles"] for o in rows])
            y = np.log([o["replicate_std_final"] for o in rows])
            slopes[f"{coupling}/{sampler}"] = float(np.polyfit(x, y, 1)[0])
    return dict(rows=out, slope_vs_P=slopes,
                setting=dict(steps=cfg["mc_steps"], grid=cfg["mc_grid"], replicates=cfg["mc_replicates"]))


# ---- B: ground truth and wall times -----------------------------------------------------------------

def section_truth(cfg, X, Y):
    K = cfg["steps"]
    kw = dict(steps=K, particles=cfg["gt_particles"], sampler="sobol_antithetic", coupling="independent",
              replicates=cfg["gt_replicates"], forward_steps=(0, K), richardson=True)
    t = time.perf_counter()
    gt = solve_mean_ode(X, Y, grid=cfg["gt_grid"], **kw)
    t_gt = time.perf_counter() - t
    half = solve_mean_ode(X, Y, grid=cfg["gt_grid"] // 2, seed=1, **kw)
    mc_err = rms(gt.outputs_stderr[-1])
    # After Richardson the grid error is O(1/N²); o_{N/2} − o_N estimates it (plus both MC errors,
    # reported alongside: if the difference is at the MC level, the grid error is not resolved).
    disc = rms(half.outputs[-1] - gt.outputs[-1])
    log(f"B ground truth: grid={cfg['gt_grid']} P={cfg['gt_particles']} R={cfg['gt_replicates']}  "
        f"MC s.e. {mc_err:.2e}, |o(N/2)-o(N)| {disc:.2e}, wall {t_gt:.1f}s, loss {gt.losses[-1]:.4f}")
    res = dict(grid=cfg["gt_grid"], particles=cfg["gt_particles"], replicates=cfg["gt_replicates"],
               sampler="sobol_antithetic", coupling="independent", richardson=True, steps=K, wall_s=t_gt,
               mc_stderr_final=mc_err, half_grid_difference_final=disc,
               half_grid_mc_stderr_final=rms(half.outputs_stderr[-1]),
               losses=gt.losses.tolist())
    if cfg["big_resnet"]:
        L = M = cfg["big_resnet"]
        t = time.perf_counter()
        big = simulate_resnet(X, Y, depth=L, hidden=M, steps=K, seeds=1, dtype=jnp.float32)
        t_big = time.perf_counter() - t
        res.update(big_resnet=dict(L=L, M=M, seeds=1, dtype="float32", wall_s=t_big,
                                   rms_diff_to_limit_final=rms(big.outputs[0, -1] - gt.outputs[-1]),
                                   loss_final=float(big.losses[0, -1])))
        log(f"B ResNet M=L={L}: wall {t_big:.1f}s, RMS diff to limit {res['big_resnet']['rms_diff_to_limit_final']:.2e}")
    return gt, res


# ---- C: rate study -----------------------------------------------------------------------------------

def run_finite(X, Y, L, M, K, seeds, **kw):
    return simulate_resnet(X, Y, depth=L, hidden=M, steps=K, seeds=seeds, dtype=jnp.float64,
                           forward_steps=(K,), **kw)


def errors_from(d, gt_var=0.0):
    """d: (seeds, n, D) differences finite − limit.  RMS error, bias and fluctuation parts.

    ``gt_var``: the limit's own Monte-Carlo variance per entry (its outputs_stderr²), independent of
    the finite nets, so it adds to both the mean square error and the squared bias; we subtract it.
    """
    S = d.shape[0]
    mse = np.mean(d**2) - gt_var
    var = d.var(0, ddof=1)
    bias2 = np.mean(d.mean(0) ** 2 - var / S) - gt_var  # unbiased estimate of the squared bias
    return float(np.sqrt(max(mse, 0.0))), float(np.sqrt(max(bias2, 0.0))), float(np.sqrt(np.mean(var)))


def fit_fixed(Ls, Ms, e, D):
    # log-space least squares of e ≈ a/L + b√D/√(LM), a, b ≥ 0
    Ls, Ms, e = map(np.asarray, (Ls, Ms, e))

    def res(p):
        a, b = np.exp(p)
        return np.log(a / Ls + b * np.sqrt(D) / np.sqrt(Ls * Ms)) - np.log(e)

    sol = least_squares(res, np.log([0.1, 0.1]))
    return [float(v) for v in np.exp(sol.x)], float(np.sqrt(np.mean(sol.fun**2)))


def fit_quadrature(Ls, Ms, e, D):
    # e² ≈ (a/L)² + b² D/(LM): a deterministic discretisation bias and an independent fluctuation
    Ls, Ms, e = map(np.asarray, (Ls, Ms, e))

    def res(p):
        a, b = np.exp(p)
        return 0.5 * np.log((a / Ls) ** 2 + b**2 * D / (Ls * Ms)) - np.log(e)

    sol = least_squares(res, np.log([0.1, 0.1]))
    return [float(v) for v in np.exp(sol.x)]


def fit_free(Ls, Ms, e, D):
    # e² ≈ a² L^-2p + b² D (LM)^-2q, free exponents p, q
    Ls, Ms, e = map(np.asarray, (Ls, Ms, e))

    def res(p):
        a, b = np.exp(p[:2])
        return 0.5 * np.log(a**2 * Ls ** (-2 * p[2]) + b**2 * D * (Ls * Ms) ** (-2 * p[3])) - np.log(e)

    sol = least_squares(res, [np.log(0.1), np.log(0.1), 1.0, 0.5], bounds=([-20, -20, 0, 0], [5, 5, 3, 2]))
    return dict(a=float(np.exp(sol.x[0])), b=float(np.exp(sol.x[1])), p=float(sol.x[2]), q=float(sol.x[3]))


def section_rates(cfg, X, Y, gt):
    K, S, D = cfg["steps"], cfg["seeds"], X.shape[1]
    target = gt.outputs[-1]
    gt_var = float(np.mean(gt.outputs_stderr[-1] ** 2))
    configs = [(L, cfg["M_fixed"]) for L in cfg["L_sweep"]] + [(cfg["L_fixed"], M) for M in cfg["M_sweep"]]
    configs = list(dict.fromkeys(configs))
    diffs, rows = {}, []
    for L, M in configs:
        t = time.perf_counter()
        r = run_finite(X, Y, L, M, K, S)
        d = r.outputs[:, -1] - target
        diffs[(L, M)] = d
        e, b, f = errors_from(d, gt_var)
        rows.append(dict(L=L, M=M, rms_error=e, rms_error_raw=errors_from(d)[0], bias=b, fluctuation=f, seeds=S,
                         wall_s=time.perf_counter() - t,
                         final_loss_mean=float(r.losses[:, -1].mean())))
        log("C", rows[-1])
    Ls = [r["L"] for r in rows]
    Ms = [r["M"] for r in rows]
    es = [r["rms_error"] for r in rows]
    (a, b), resid = fit_fixed(Ls, Ms, es, D)
    aq, bq = fit_quadrature(Ls, Ms, es, D)
    free = fit_free(Ls, Ms, es, D)
    # bias ∝ L^-p (L sweep) and fluctuation ∝ (LM)^-q (all configs)
    Lsw = [r for r in rows if r["M"] == cfg["M_fixed"] and r["bias"] > 0]
    p_bias = float(np.polyfit(np.log([r["L"] for r in Lsw]), np.log([r["bias"] for r in Lsw]), 1)[0])
    q_fluct = float(np.polyfit(np.log([r["L"] * r["M"] for r in rows]), np.log([r["fluctuation"] for r in rows]), 1)[0])
    # bootstrap over seeds (resample seeds per config independently)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(cfg["bootstrap"]):
        eb = []
        bb, fb = [], []
        for L, M in configs:
            d = diffs[(L, M)]
            idx = rng.integers(0, S, S)
            e_, b_, f_ = errors_from(d[idx], gt_var)
            eb.append(e_)
            bb.append(b_)
            fb.append(f_)
        fr = fit_free(Ls, Ms, eb, D)
        (ab, bbf), _ = fit_fixed(Ls, Ms, eb, D)
        aqb, bqb = fit_quadrature(Ls, Ms, eb, D)
        lm = [(L, bx) for (L, M), bx in zip(configs, bb) if M == cfg["M_fixed"] and bx > 0]
        pb = np.polyfit(np.log([x[0] for x in lm]), np.log([x[1] for x in lm]), 1)[0] if len(lm) > 2 else np.nan
        qf = np.polyfit(np.log([L * M for L, M in configs]), np.log(fb), 1)[0]
        boots.append([fr["p"], fr["q"], ab, bbf, pb, qf, aqb, bqb])
    boots = np.array(boots)
    ci = lambda j: [float(np.nanpercentile(boots[:, j], 2.5)), float(np.nanpercentile(boots[:, j], 97.5))]  # noqa: E731
    fits = dict(fixed_exponents=dict(a=a, b=b, model="a/L + b*sqrt(D)/sqrt(L*M)", rms_log_residual=resid,
                                     a_ci95=ci(2), b_ci95=ci(3)),
                quadrature=dict(a=aq, b=bq, model="sqrt((a/L)^2 + b^2 D/(L M))", a_ci95=ci(6), b_ci95=ci(7)),
                free_exponents=dict(free, model="sqrt(a^2 L^-2p + b^2 D (L M)^-2q)", p_ci95=ci(0), q_ci95=ci(1),
                                    expected=dict(p=1.0, q=0.5)),
                bias_exponent_vs_L=dict(value=p_bias, ci95=ci(4), expected=-1.0),
                fluctuation_exponent_vs_LM=dict(value=q_fluct, ci95=ci(5), expected=-0.5))
    log("C fits", json.dumps(fits, indent=1))
    return dict(rows=rows, fits=fits, M_fixed=cfg["M_fixed"], L_fixed=cfg["L_fixed"], seeds=S,
                ground_truth_variance_subtracted=gt_var,
                bootstrap=cfg["bootstrap"])


# ---- D: lazy regime --------------------------------------------------------------------------------

def section_lazy(cfg, X, Y):
    K = cfg["lazy_steps"]
    t = time.perf_counter()
    tan = solve_mean_ode(X, Y, steps=K, lazy=True, grid=cfg["gt_grid"] // 2, particles=cfg["gt_particles"],
                         sampler="sobol_antithetic", coupling="independent", replicates=2, forward_steps=(K,),
                         richardson=True)
    t_tan = time.perf_counter() - t
    log(f"D tangent ODE: wall {t_tan:.1f}s, MC s.e. {rms(tan.outputs_stderr[-1]):.2e}, loss {tan.losses[-1]:.4f}")
    rows = []
    for L, M in cfg["lazy_LM"]:
        for a in cfg["lazy_alphas"]:
            r = run_finite(X, Y, L, M, K, cfg["lazy_seeds"], alpha=a)
            d = r.outputs[:, -1] - tan.outputs[-1]
            e, b, f = errors_from(d)
            rows.append(dict(L=L, M=M, alpha=a, rms_error=e, bias=b, fluctuation=f,
                             final_loss_mean=float(r.losses[:, -1].mean()),
                             u_displacement=float(r.u_displacement[:, -1].mean())))
            log("D", rows[-1])
    fits = {}
    for L, M in cfg["lazy_LM"]:
        rr = [r for r in rows if r["L"] == L and r["M"] == M]
        lo = [r for r in rr if r["alpha"] <= 4]
        fits[f"L={L},M={M}"] = dict(
            bias_exponent_alpha_le_4=float(np.polyfit(np.log([r["alpha"] for r in lo]),
                                                       np.log([max(r["bias"], 1e-12) for r in lo]), 1)[0]),
            fluctuation_exponent_in_alpha=float(np.polyfit(np.log([r["alpha"] for r in rr]),
                                                           np.log([r["fluctuation"] for r in rr]), 1)[0]),
            best_alpha=float(min(rr, key=lambda r: r["rms_error"])["alpha"]),
            min_rms_error=float(min(r["rms_error"] for r in rr)))
    (L1, M1), (L2, M2) = cfg["lazy_LM"][:2]
    fits["fluctuation_ratio_small_over_large_M"] = {
        str(a): float([r for r in rows if r["alpha"] == a and r["M"] == M1][0]["fluctuation"]
                      / [r for r in rows if r["alpha"] == a and r["M"] == M2][0]["fluctuation"])
        for a in cfg["lazy_alphas"]}
    fits["fluctuation_ratio_expected"] = float(np.sqrt(L2 * M2 / (L1 * M1)))
    log("D fits", fits)
    return dict(rows=rows, fits=fits, tangent=dict(wall_s=t_tan, mc_stderr_final=rms(tan.outputs_stderr[-1]),
                                        losses=tan.losses.tolist()), steps=K, seeds=cfg["lazy_seeds"])


# ---- E: phase diagram ------------------------------------------------------------------------------

def section_phase(cfg):
    K, L, M, S = cfg["phase_steps"], cfg["phase_L"], cfg["phase_M"], cfg["phase_seeds"]
    rows = []
    for D in cfg["phase_D"]:
        X, Y = data(10, D, seed=1)
        ref = simulate_resnet_network(nfd.MeanODEResNet.balanced(D, 0.0, depth=L, hidden=M), X, Y, steps=K,
                                      seeds=S, keep_weights=True, dtype=jnp.float64)
        for a in cfg["phase_scales"]:
            net = nfd.MeanODEResNet.balanced(D, a, depth=L, hidden=M)
            try:
                r = simulate_resnet_network(net, X, Y, steps=K, seeds=S, keep_weights=True, dtype=jnp.float64)
            except nfd.DivergenceError as err:
                rows.append(dict(D=D, scale=a, diverged_at_step=err.step))
                log("E", rows[-1])
                continue
            du = r.u_displacement[:, -1]
            dist_u = rms(r.weights[0] - ref.weights[0], axis=(1, 2, 3))
            dist_out = rms(r.outputs[:, -1] - ref.outputs[:, -1], axis=(1, 2))
            rows.append(dict(D=D, scale=a, sigma_v=a * np.sqrt(D), residual_scale=a * np.sqrt(D) / (L * M),
                             outside_theory=bool(a > np.sqrt(L * M / D)),
                             u_movement=float(du.mean()), u_movement_se=float(du.std(ddof=1) / np.sqrt(S)),
                             u_movement_step1=float(r.u_displacement[:, 1].mean()),
                             dist_u_to_sigma_v0=float(dist_u.mean()), dist_out_to_sigma_v0=float(dist_out.mean()),
                             final_loss=float(r.losses[:, -1].mean()),
                             output_std_step10=float(rms(r.outputs[:, min(10, K)].std(0, ddof=1)))))
            log("E", rows[-1])
    # classification (thresholds stated in the JSON)
    for row in rows:
        if "u_movement" not in row:
            row["phase"] = "diverged"
            continue
        if row["outside_theory"]:
            row["phase"] = "outside theory (a > √(LM/D))"
            continue
        peers = [r for r in rows if r["D"] == row["D"] and "u_movement" in r and not r["outside_theory"]]
        peak = max(r["u_movement"] for r in peers)
        if row["u_movement"] < 0.5 * peak:
            row["phase"] = "lazy"
        elif row["dist_u_to_sigma_v0"] < 0.2 * row["u_movement"]:
            row["phase"] = "semi-complete"
        else:
            row["phase"] = "complete"
    return dict(rows=rows, L=L, M=M, steps=K, seeds=S,
                rule="lazy: ‖U_K−U_0‖ < ½ of its max over scales at that D; semi-complete: ‖U_K − Ũ_K‖ < 0.2‖U_K−U_0‖ "
                     "(Ũ: the σ_v = 0 dynamics from the same U_0, Theorem 3-iv); else complete")


# ---- F: weight-tied initialisation ----------------------------------------------------------------

def section_tied(cfg, X, Y):
    """A ResNet whose M initial units are the same at every layer is the Euler scheme of the Mean ODE
    whose μ_0 is the empirical measure of those units: it must match the solver run on those M
    particles to discretisation error only (O(1/L); no Monte-Carlo term)."""
    from nfd.meanode import sample_particles

    K, M = cfg["steps"], cfg["tied_M"]
    net = nfd.MeanODEResNet(dim=X.shape[1])
    U, V = sample_particles(net, M, sampler="iid", seed=123)
    t = time.perf_counter()
    ref = solve_mean_ode(X, Y, steps=K, grid=cfg["tied_ref_grid"], particles_init=(U, V), richardson=True)
    t_ref = time.perf_counter() - t
    rows = []
    for L in cfg["tied_L"]:
        init = (np.broadcast_to(U, (L,) + U.shape), np.broadcast_to(V, (L,) + V.shape))
        fin = simulate_resnet(X, Y, depth=L, hidden=M, steps=K, init=init, dtype=jnp.float64)
        same = solve_mean_ode(X, Y, steps=K, grid=L, particles_init=(U, V))
        rich = solve_mean_ode(X, Y, steps=K, grid=L, particles_init=(U, V), richardson=True)
        rows.append(dict(L=L, rms_error_vs_limit=rms(fin.outputs[0, -1] - ref.outputs[-1]),
                         max_abs_diff_resnet_vs_solver_same_grid=float(np.abs(fin.outputs[0] - same.outputs).max()),
                         richardson_solver_rms_error=rms(rich.outputs[-1] - ref.outputs[-1])))
        log("F", rows[-1])
    sl = float(np.polyfit(np.log([r["L"] for r in rows]), np.log([r["rms_error_vs_limit"] for r in rows]), 1)[0])
    sr = float(np.polyfit(np.log([r["L"] for r in rows]), np.log([r["richardson_solver_rms_error"] for r in rows]), 1)[0])
    log(f"F slopes: tied ResNet {sl:.3f} (expected -1), Richardson solver {sr:.3f} (expected -2)")
    return dict(rows=rows, M=M, steps=K, ref_grid=cfg["tied_ref_grid"], ref_wall_s=t_ref,
                slope_tied_resnet=sl, slope_richardson=sr)


# ---- plot ------------------------------------------------------------------------------------------

def plot(res, path=None):
    """The figure, drawn from the results JSON alone; saved to ``path`` when given. Returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfd.plotting import log_axis, log_log, savefig

    fig, ax = plt.subplots(2, 4, figsize=(21, 9.5))
    # A
    a = ax[0, 0]
    for key, style in (("common", "--"), ("independent", "-")):
        for s, c in zip(("iid", "antithetic", "sobol", "sobol_antithetic"), ("C0", "C1", "C2", "C3")):
            rows = [r for r in res["A_mc"]["rows"] if r["coupling"] == key and r["sampler"] == s]
            a.plot([r["particles"] for r in rows], [r["replicate_std_final"] for r in rows], style, color=c,
                     marker="o", label=f"{key}/{s}")
    a.set(xlabel="particles P", ylabel="replicate std of output (RMS)", title="A. Mean ODE solver: Monte-Carlo error")
    log_log(a)
    a.legend(fontsize=6, ncol=2)
    # C: vs L and vs M
    C = res["C_rates"]
    fx = C["fits"]["fixed_exponents"]
    D = res["config"]["D"]
    for j, (key, fixed, var) in enumerate((("L", C["M_fixed"], "M"), ("M", C["L_fixed"], "L"))):
        a = ax[0, 1 + j]
        rows = [r for r in C["rows"] if r[var] == fixed]
        xs = np.array([r[key] for r in rows], float)
        a.plot(xs, [r["rms_error"] for r in rows], "o", color="k", label="RMS error")
        a.plot(xs, [max(r["bias"], 1e-8) for r in rows], "s", color="C1", mfc="none", label="bias (mean over seeds)")
        a.plot(xs, [r["fluctuation"] for r in rows], "^", color="C2", mfc="none", label="fluctuation (std)")
        Ls = xs if key == "L" else np.full_like(xs, fixed)
        Ms = xs if key == "M" else np.full_like(xs, fixed)
        a.plot(xs, fx["a"] / Ls + fx["b"] * np.sqrt(D) / np.sqrt(Ls * Ms), "-", color="k",
                 label=f"a/L + b√D/√(LM), a={fx['a']:.3f}, b={fx['b']:.3f}")
        fq = C["fits"]["quadrature"]
        a.plot(xs, np.sqrt((fq["a"] / Ls) ** 2 + fq["b"] ** 2 * D / (Ls * Ms)), ":", color="k",
                 label=f"√((a/L)² + b²D/(LM)), a={fq['a']:.3f}, b={fq['b']:.3f}")
        a.set(xlabel=key, ylabel="error after K steps", title=f"C. ResNet → Mean ODE, {var} = {fixed}")
        log_log(a, xs)
        a.legend(fontsize=7)
    # D
    a = ax[1, 0]
    for (L, M) in sorted({(r["L"], r["M"]) for r in res["D_lazy"]["rows"]}):
        rows = [r for r in res["D_lazy"]["rows"] if r["L"] == L and r["M"] == M]
        a.plot([r["alpha"] for r in rows], [r["rms_error"] for r in rows], "o-", label=f"L={L}, M={M}")
    a.set(xlabel="α", ylabel="RMS error vs Neural Tangent ODE", title="D. lazy-ODE regime (Theorem 2)")
    log_log(a)
    a.legend(fontsize=7)
    # E
    E = res["E_phase"]["rows"]
    Ds = sorted({r["D"] for r in E})
    a = ax[1, 1]
    for D_ in Ds:
        rows = [r for r in E if r["D"] == D_ and "u_movement" in r]
        a.errorbar([r["scale"] for r in rows], [r["u_movement"] for r in rows],
                   [2 * (r.get("u_movement_se") or 0.0) for r in rows], fmt="o-", capsize=2,
                   label=f"‖U_K−U_0‖, D={D_} (± 2 SE)")
        a.plot([r["scale"] for r in rows], [r["dist_u_to_sigma_v0"] for r in rows], "x--", label=f"‖U_K−Ũ_K‖ (σ_v=0), D={D_}")
    sc = np.array(sorted({r["scale"] for r in E}))
    a.plot(sc, 3 * np.minimum(1, 1 / sc), "k:", label="3·min(1, 1/a)")
    a.set(xlabel="a = σ_v/√D  (residual scale = a√D/(LM))", ylabel="RMS distance", title="E. feature movement")
    log_log(a, sc)
    a.legend(fontsize=6)
    a = ax[1, 2]
    colors = {"semi-complete": "#6baed6", "complete": "#31a354", "lazy": "#fd8d3c"}
    for r in E:
        if "u_movement" not in r:
            continue
        c = colors.get(r["phase"], "#999999")
        a.scatter(r["sigma_v"], r["D"], s=90, color=c, marker="o" if c != "#999999" else "x")
    Dg = np.array([min(Ds) / 1.5, max(Ds) * 1.5])
    a.plot(np.sqrt(Dg), Dg, "k--", lw=1, label="σ_v = √D (complete)")
    Lp, Mp = res["E_phase"]["L"], res["E_phase"]["M"]
    a.plot(np.sqrt(Lp * Mp) * np.ones(2), Dg, "k:", lw=1, label="σ_v = √(LM): theory's edge")
    for name, c in colors.items():
        a.scatter([], [], color=c, label=name)
    a.scatter([], [], color="#999999", marker="x", label="a > √(LM/D) (outside theory)")
    a.set(xlabel="σ_v  (residual scale σ_v/(LM))", ylabel="D", title="E. measured phase diagram")
    log_axis(a, "x")
    log_axis(a, "y", Ds)
    a.legend(fontsize=6)
    # F
    a = ax[0, 3]
    if "F_weight_tied" in res:
        Fr = res["F_weight_tied"]
        Ls = np.array([r["L"] for r in Fr["rows"]], float)
        a.plot(Ls, [r["rms_error_vs_limit"] for r in Fr["rows"]], "o-", label=f"weight-tied ResNet (slope {Fr['slope_tied_resnet']:.2f})")
        a.plot(Ls, [r["richardson_solver_rms_error"] for r in Fr["rows"]], "s-",
                 label=f"solver, Richardson grid L (slope {Fr['slope_richardson']:.2f})")
        a.plot(Ls, [max(r["max_abs_diff_resnet_vs_solver_same_grid"], 1e-17) for r in Fr["rows"]], "x:",
                 label="|ResNet − solver on grid L| (round-off)")
        a.set(xlabel="L", ylabel="RMS error vs Mean ODE of the M units", title=f"F. weight-tied init, M = {Fr['M']}")
        log_log(a, Ls)
        a.legend(fontsize=7)
    # summary text
    a = ax[1, 3]
    a.axis("off")
    C = res["C_rates"]["fits"]
    lines = ["C. rate fits (bootstrap 95% CI over seeds):",
             f"  a/L + b√D/√(LM):  a={C['fixed_exponents']['a']:.3f}, b={C['fixed_exponents']['b']:.3f}",
             f"  √((a/L)²+b²D/(LM)):  a={C['quadrature']['a']:.3f} {np.round(C['quadrature']['a_ci95'], 3).tolist()},",
             f"        b={C['quadrature']['b']:.3f} {np.round(C['quadrature']['b_ci95'], 3).tolist()}",
             f"  free exponents: p={C['free_exponents']['p']:.3f} {np.round(C['free_exponents']['p_ci95'], 3).tolist()} (1),",
             f"        q={C['free_exponents']['q']:.3f} {np.round(C['free_exponents']['q_ci95'], 3).tolist()} (0.5)",
             f"  bias ∝ L^{C['bias_exponent_vs_L']['value']:.3f} {np.round(C['bias_exponent_vs_L']['ci95'], 3).tolist()}",
             f"  fluctuation ∝ (LM)^{C['fluctuation_exponent_vs_LM']['value']:.3f} "
             f"{np.round(C['fluctuation_exponent_vs_LM']['ci95'], 3).tolist()}",
             "",
             "B. ground truth (solver): "
             f"{res['B_ground_truth']['wall_s']:.0f} s, MC s.e. {res['B_ground_truth']['mc_stderr_final']:.1e}"]
    if "big_resnet" in res["B_ground_truth"]:
        bg = res["B_ground_truth"]["big_resnet"]
        lines.append(f"   ResNet M=L={bg['L']} (1 seed, f32): {bg['wall_s']:.0f} s, |diff| {bg['rms_diff_to_limit_final']:.1e}")
    a.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=8)
    fig.suptitle(f"nfd Neural Mean ODE benchmark ({'quick' if res['config']['quick'] else 'full'})")
    if path is not None:
        savefig(fig, path, dpi=110)
    return fig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON")
    ap.add_argument("--paper-sweep", action="store_true",
                    help="with --sections BC: the paper's Fig. 2 sweeps (L ≤ 1000 at M = 10, M ≤ 1000 at L = 100, "
                         "10 seeds) against the quick ground truth, stored as C_rates_paper_sweep")
    ap.add_argument("--sections", default="ABCDEF",
                    help="subset of sections to (re)run, merged into the existing JSON (B is needed by C)")
    args = ap.parse_args()
    name = "mean_ode" if args.quick else "mean_ode_full"
    jpath = os.path.join(HERE, "results", f"{name}.json")
    if args.replot:
        with open(jpath) as f:
            plot(json.load(f), os.path.join(HERE, "results", f"{name}.png"))
        return
    if args.quick:
        cfg = dict(quick=True, n=10, D=10, steps=100, seeds=16, bootstrap=200,
                   mc_particles=[64, 256, 1024], mc_grid=32, mc_steps=30, mc_replicates=6,
                   gt_grid=256, gt_particles=1024, gt_replicates=4, big_resnet=1000,
                   L_sweep=[2, 4, 8, 16, 32, 64], M_fixed=256, M_sweep=[1, 4, 16, 64, 256, 1024], L_fixed=16,
                   lazy_steps=30, lazy_LM=[(64, 16), (64, 256)], lazy_alphas=[1, 2, 4, 8, 16, 32], lazy_seeds=4,
                   phase_D=[4, 16, 64], phase_scales=[0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30], phase_L=200,
                   phase_M=10, phase_steps=50, phase_seeds=3,
                   tied_M=16, tied_L=[4, 8, 16, 32, 64, 128], tied_ref_grid=512)
    else:
        cfg = dict(quick=False, n=10, D=10, steps=100, seeds=10, bootstrap=500,
                   mc_particles=[64, 256, 1024, 4096], mc_grid=100, mc_steps=100, mc_replicates=8,
                   gt_grid=1000, gt_particles=1024, gt_replicates=4, big_resnet=1000,
                   L_sweep=[5, 10, 20, 50, 100, 200, 500, 1000], M_fixed=10, M_sweep=[1, 3, 10, 30, 100, 300, 1000],
                   L_fixed=100, lazy_steps=100, lazy_LM=[(200, 50), (200, 1000)], lazy_alphas=[1, 2, 4, 8, 16, 32, 64],
                   lazy_seeds=6, phase_D=[4, 16, 64, 256], phase_scales=[0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100],
                   phase_L=1000, phase_M=10, phase_steps=50, phase_seeds=10,
                   tied_M=16, tied_L=[4, 8, 16, 32, 64, 128, 256, 512], tied_ref_grid=2048)
    X, Y = data(cfg["n"], cfg["D"])
    t0 = time.perf_counter()
    machine = dict(platform=platform.platform(), processor=platform.processor(), cpu_count=os.cpu_count(),
                   jax=jax.__version__, devices=[str(d) for d in jax.devices()],
                   load_average_at_start=list(os.getloadavg()))
    sec = args.sections.upper()
    if sec != "ABCDEF" and os.path.exists(jpath):
        with open(jpath) as f:
            res = json.load(f)
        res.setdefault("machine_of_partial_reruns", []).append(dict(machine, sections=sec))
        res["config"].update(cfg)
    else:
        res = dict(config=cfg, machine=machine)
    if "A" in sec:
        res["A_mc"] = section_mc(cfg, X, Y)
    if "B" in sec or "C" in sec:
        gt, res["B_ground_truth"] = section_truth(cfg, X, Y)
    if "C" in sec and args.paper_sweep:
        pcfg = dict(cfg, L_sweep=[10, 20, 50, 100, 200, 500, 1000], M_fixed=10,
                    M_sweep=[1, 3, 10, 30, 100, 300, 1000], L_fixed=100, seeds=10)
        res["C_rates_paper_sweep"] = section_rates(pcfg, X, Y, gt)
    elif "C" in sec:
        res["C_rates"] = section_rates(cfg, X, Y, gt)
    if "D" in sec:
        res["D_lazy"] = section_lazy(cfg, X, Y)
    if "E" in sec:
        res["E_phase"] = section_phase(cfg)
    if "F" in sec:
        res["F_weight_tied"] = section_tied(cfg, X, Y)
    res["total_wall_s" if sec == "ABCDEF" else f"wall_s_sections_{sec}"] = time.perf_counter() - t0
    with open(jpath, "w") as f:
        json.dump(res, f, indent=1, default=float)
    plot(res, os.path.join(HERE, "results", f"{name}.png"))
    log(f"sections {sec}: {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
