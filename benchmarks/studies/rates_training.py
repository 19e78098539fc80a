"""Study 2: rates during training [NFD Thm 1, Fig 3; DMFT paper Appendix I, Fig C.8].

Errors of the limit and of finite networks after several SGD steps (online SGD, one sample per
step, outputs f^(k) at the sample of step k; errors summarised by their mean over steps k ≥ 1).

(a) **Depth error of the limit** |f̂_L − f̂_∞| for L = 1 … 64, both backward modes.  PAIRED: every
    depth is solved with the same ``seed``, the same ``replicates`` and one Brownian path
    (``noise_depth`` = the finest depth), so replicate r of every depth shares its particles and
    path.  f̂_∞ is the Richardson extrapolation (``richardson_depths``, the finest depths of the
    sweep) formed per replicate, so e_{L,r} = f_{L,r} − f_{∞,r} are per-replicate paired errors.
    The error at L is the mean over steps k ≥ 1 of |mean_r e_{L,r,k}|; its exponent is the
    least-squares slope of log error against log L, with a 95 % interval from the JACKKNIFE over
    the R replicates (leave one replicate out, recompute every depth's error and the slope;
    t-quantile with R − 1 degrees of freedom).  The jackknife keeps the correlation between
    depths (they share the replicates and f̂_∞), which a weighted fit would ignore.
(b) **Width error of finite networks** at fixed L: decoupled networks against
    ``backward="gia"``, coupled against ``backward="exact"`` (the depth-L solves of part (a)).
    ``bias`` = |E f_n − f̂_L| (seed-averaged, predicted O(1/n)), estimated with the control
    variate f^(0)(x_1…x_K) (the initial outputs at the training inputs, from ``X_test=X``), whose
    mean is exactly 0: the readout v is drawn from a symmetric law independently of the hidden
    weights, and f^(0)(x) is linear in v, so f^(0) and −f^(0) have the same law.  The CV estimate
    is mean(f_k − β_k·f^(0)) with β_k the least-squares coefficient (its O(1/S) bias is far below
    the standard error).  ``rms`` = sqrt(mean over seeds of (f_n − f̂_L)²) (one network's error,
    predicted O(1/√n)).  Slopes: least squares on log-log with the wider of the t-interval and a
    parametric bootstrap over the standard errors (``_common.fit_loglog``).
    Variance-reduction options measured on the same runs (factor = variance without / with, SE by
    a bootstrap over seeds): the control variate; common random numbers across widths (same seed
    index at widths n and 2n: the factor for the difference E f_n − E f_2n); many vmapped seeds
    (cost per seed); antithetic seeds are not available in ``nfd.simulate`` (no hook to negate a
    seed's readout) — the control variate removes the same linear-in-v part exactly.
"""

from __future__ import annotations

import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

STUDY = "rates_training"


def data(K, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, d))
    Y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    return X, Y


def richardson(levels):
    """Per-replicate Richardson extrapolation of the level values [(R, K), …] (depths L, 2L[, 4L])."""
    from nfd.limits._richardson import richardson_weights

    w = richardson_weights(len(levels))
    return sum(wi * np.asarray(a, np.float64) for wi, a in zip(w, levels))


def depth_errors(E):
    """E: (R, nL, K) paired per-replicate errors f_{L,r} − f_{∞,r}. Returns (nL,) mean over steps k ≥ 1
    of |mean over replicates|."""
    return np.abs(E.mean(axis=0))[:, 1:].mean(axis=-1)


def _slope(x, y):
    ok = y > 0
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")


def jackknife_fit(depths, E, min_depth=1):
    """Log-log slope of ``depth_errors(E)`` against depth (L ≥ min_depth) with a jackknife 95 % interval
    over the replicate axis of E; also each depth's jackknife standard error."""
    from scipy import stats

    x = np.asarray(depths, float)
    R = E.shape[0]
    y = depth_errors(E)
    sel = x >= min_depth
    loo = np.stack([depth_errors(np.delete(E, i, axis=0)) for i in range(R)])  # (R, nL)
    y_se = np.sqrt((R - 1) / R * ((loo - loo.mean(0)) ** 2).sum(0))
    s = _slope(x[sel], y[sel])
    s_loo = np.array([_slope(x[sel], l[sel]) for l in loo])
    s_se = math.sqrt((R - 1) / R * ((s_loo - s_loo.mean()) ** 2).sum())
    t = stats.t.ppf(0.975, R - 1)
    c = float(np.polyfit(np.log(x[sel]), np.log(y[sel]), 1)[1])
    return dict(slope=s, slope_se=s_se, slope_ci95=[s - t * s_se, s + t * s_se], intercept=c,
                x=x[sel].tolist(), y=y[sel].tolist(), yerr=y_se[sel].tolist(), n_points=int(sel.sum()),
                ci_method=f"jackknife over the R = {R} replicates (t, {R - 1} d.o.f.)",
                half_width=t * s_se, all_x=x.tolist(), all_y=y.tolist(), all_yerr=y_se.tolist())


def _boot(fn, arrays, n=200, seed=0):
    """Bootstrap over seeds (axis 0 of each array): standard error of fn(*arrays)."""
    rng = np.random.default_rng(seed)
    S = arrays[0].shape[0]
    vals = [fn(*[a[i] for a in arrays]) for i in (rng.integers(0, S, S) for _ in range(n))]
    return float(np.std(vals, ddof=1))


def control_variate(F, C0):
    """F: (S, K) outputs, C0: (S, K) initial outputs f^(0)(x_j) (mean 0). Returns per step the CV-adjusted
    values (S, K) (f_k − C0·β_k, β_k by least squares, mean of C0 known = 0)."""
    S = F.shape[0]
    A = np.c_[np.ones(S), C0]
    beta = np.linalg.lstsq(A, F, rcond=None)[0][1:]  # (K_cv, K)
    return F - C0 @ beta


def cv_factor(F, C0):
    """Variance-reduction factor of the control variate, mean over steps k ≥ 1."""
    G = control_variate(F, C0)
    return float(np.mean(F[:, 1:].var(0) / G[:, 1:].var(0)))


def _gls(ns, Y, W, powers, solver=True):
    """Generalised least squares of the stacked data y = (vec Y, f̂) under the model
    E f_{n,k} = a_k + Σ_p c_{k,p} n^(−p) (finite networks) and E f̂_k = a_k (the solver).

    Y: (B, nW + 1, K): per resample b, the seed means of the nW widths (rows 0…nW−1) and the solver's
    f̂ (row nW), steps k ≥ 1; W: (m, m) inverse covariance of the stacked vector (m = (nW + 1)·K).
    Returns (params (B, K·(1 + len(powers))), ordered a_k, c_{k,p} per step; χ² (B,)).
    ``solver=False``: the finite networks alone (Y: (B, nW, K), W: (nW·K, nW·K); a_k free).
    """
    ns = np.asarray(ns, float)
    nW, K = len(ns), Y.shape[-1]
    q = 1 + len(powers)
    X = np.zeros(((nW + int(solver)) * K, K * q))
    for i, n in enumerate(ns):
        for k in range(K):
            X[i * K + k, k * q] = 1.0
            for j, p in enumerate(powers):
                X[i * K + k, k * q + 1 + j] = n ** (-p)
    for k in range(K * int(solver)):
        X[nW * K + k, k * q] = 1.0
    y = Y.reshape(Y.shape[0], -1)  # (B, m)
    A = X.T @ W @ X
    beta = np.linalg.solve(A, (X.T @ W @ y.T)).T  # (B, K·q)
    r = y - beta @ X.T
    chi2 = np.einsum("bi,ij,bj->b", r, W, r)
    return beta, chi2


def width_bias_fit(ns, G, fr, *, grid=None, n_boot=300, seed=0):
    """The seed-averaged width bias, fitted on the SIGNED means jointly over widths and steps.

    G: list over widths of (S, K) control-variate-adjusted outputs (steps k ≥ 1), the same seed
    index s at every width (common random numbers, so widths are correlated); fr: (R, K) the
    solver's replicate outputs at the same depth (its limit f̂_L).  Data: the seed means
    E f_{n,k} (nW·K numbers) and f̂_k (K numbers), covariance estimated from the seeds (full,
    across widths and steps) and the replicates (diagonal).  Models, each a GLS fit:
    ``power``: a_k + c_k n^(−α) with a common exponent α profiled over ``grid``; ``1/n``;
    ``1/n+1/n^2``.  α's 95 % interval: the wider of the profile-likelihood interval (Δχ² ≤ 3.84)
    and the percentile interval of a bootstrap over seeds (resampled jointly across widths, which
    keeps their correlation, the control-variate coefficient re-estimated) and replicates
    (``n_boot`` resamples, covariance held at the full-data estimate).  Why signed and joint: the
    solver's error is common to every width (a per-width |E f_n − f̂| treats it as independent) and
    |·| of a mean within a few s.e. of zero is biased upward, which flattens a log-log slope.
    """
    from scipy import stats

    ns = np.asarray(ns, float)
    grid = np.linspace(0.05, 2.5, 246) if grid is None else np.asarray(grid, float)
    G = [np.asarray(g, float) for g in G]
    S, K = G[0].shape
    R = fr.shape[0]
    stack = np.concatenate(G, axis=1)  # (S, nW·K), width-major
    cov = np.cov(stack, rowvar=False) / S
    fv = fr.var(0, ddof=1) / R
    m = (len(ns) + 1) * K
    Cfull = np.zeros((m, m))
    Cfull[: len(ns) * K, : len(ns) * K] = cov
    Cfull[len(ns) * K :, len(ns) * K :] = np.diag(fv)
    W = np.linalg.inv(Cfull)

    def data(gs, f):
        return np.concatenate([np.stack([g.mean(0) for g in gs]), f.mean(0)[None]])[None]  # (1, nW+1, K)

    def profile(Y):
        chis = np.stack([_gls(ns, Y, W, (a,))[1] for a in grid], axis=1)  # (B, nA)
        return chis

    Y0 = data(G, fr)
    chis = profile(Y0)[0]
    i = int(np.argmin(chis))
    alpha = float(grid[i])
    inside = grid[chis - chis[i] <= stats.chi2.ppf(0.95, 1)]
    prof = [float(inside.min()), float(inside.max())]
    dof_power = m - K * 2 - 1
    beta, _ = _gls(ns, Y0, W, (alpha,))
    a_hat = beta[0, 0::2]
    c_hat = beta[0, 1::2]
    models = {"power": dict(alpha=alpha, chi2=float(chis[i]), dof=dof_power, p=float(stats.chi2.sf(chis[i], dof_power)))}
    for name, pw in (("1/n", (1.0,)), ("1/n+1/n^2", (1.0, 2.0))):
        b, c2 = _gls(ns, Y0, W, pw)
        dof = m - K * (1 + len(pw))
        models[name] = dict(chi2=float(c2[0]), dof=dof, p=float(stats.chi2.sf(c2[0], dof)),
                            params=b[0].reshape(K, 1 + len(pw)).tolist())
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        si = rng.integers(0, S, S)
        ri = rng.integers(0, R, R)
        boots.append(grid[int(np.argmin(profile(data([g[si] for g in G], fr[ri]))[0]))])
    boots = np.array(boots)
    bq = np.percentile(boots, [2.5, 97.5]).tolist() if n_boot else list(prof)  # n_boot = 0: profile only
    lo, hi = min(prof[0], bq[0]), max(prof[1], bq[1])
    at_edge = bool(lo <= grid[0] or hi >= grid[-1])
    Wf = np.linalg.inv(cov)
    # finite networks alone (a_k free): the rate of E f_n towards its own limit
    chis_f = [float(_gls(ns, Y0[:, :-1], Wf, (a,), solver=False)[1][0]) for a in grid]
    chis_f = np.array(chis_f)
    j = int(np.argmin(chis_f))
    inside_f = grid[chis_f - chis_f[j] <= stats.chi2.ppf(0.95, 1)]
    y_pts, y_err = _joint_points(Y0[0, :-1], np.sqrt(np.diag(cov)).reshape(len(ns), K), a_hat, c_hat)
    return dict(
        x=ns.tolist(), y=y_pts, yerr=y_err, intercept=float(np.log(np.mean(np.abs(c_hat)))),
        slope=-alpha, slope_ci95=[-hi, -lo], alpha=alpha, alpha_ci95=[lo, hi], alpha_se_bootstrap=float(boots.std(ddof=1)) if n_boot > 1 else None,
        alpha_ci95_profile=prof, alpha_ci95_bootstrap=bq, interval_at_grid_edge=at_edge, half_width=(hi - lo) / 2,
        limit_fitted=a_hat.tolist(), limit_solver=fr.mean(0).tolist(), limit_solver_se=np.sqrt(fv).tolist(),
        coef=c_hat.tolist(), models=models,
        finite_only=dict(alpha=float(grid[j]), alpha_ci95_profile=[float(inside_f.min()), float(inside_f.max())],
                         chi2=float(chis_f[j]), dof=len(ns) * K - 2 * K - 1),
        widths=ns.tolist(), steps=list(range(1, K + 1)), n_boot=n_boot,
        ci_method="wider of profile likelihood (Δχ² ≤ 3.84, GLS, covariance from seeds and replicates) and "
                  f"bootstrap percentile over seeds (jointly across widths) and replicates ({n_boot} resamples)",
        n_points=len(ns),
    )


def _joint_points(M, E, a_hat, c_hat):
    """Points for a log-log view of the joint fit: per width, the mean over steps of sign(c_k)(E f_{n,k} − â_k)
    (the fitted curve there is mean_k |c_k| n^−α) and its s.e. from the per-step seed s.e. (steps taken
    independent, a display value only; the fit uses the full covariance)."""
    sg = np.where(c_hat >= 0, 1.0, -1.0)
    y = (sg[None] * (np.asarray(M) - a_hat[None])).mean(1)
    e = np.sqrt((np.asarray(E) ** 2).sum(1)) / np.asarray(M).shape[1]
    return y.tolist(), e.tolist()


def antithetic_factor(F, Fm, C0=None):
    """Variance reduction per unit cost of antithetic seed pairs, mean over steps k ≥ 1.

    F: (S, K) outputs of seeds s; Fm: (S, K) outputs of their partners (the same weights with the readout
    v negated).  A pair costs two networks, so the factor is var(f) / (2 var((f + f⁻)/2)); > 1 means the
    pairs beat independent seeds at equal cost.  With C0 (S, K) the control variate on the same seeds is
    reported alongside (cost one network each)."""
    A = 0.5 * (F + Fm)
    out = dict(antithetic=float(np.mean(F[:, 1:].var(0) / (2 * A[:, 1:].var(0)))),
               antithetic_step_sum=float(F[:, 1:].var(0).sum() / (2 * A[:, 1:].var(0).sum())),
               antithetic_per_step=[None if a == 0 else float(f / (2 * a)) for f, a in zip(F.var(0), A.var(0))])
    if C0 is not None:
        out["control_variate_same_seeds"] = cv_factor(F, C0)
    return out


def _plot_depth(a, fit, label, fmt):
    C.plot_fit(a, fit, label, fmt=fmt, expected=-1.0, expected_label="NFD Thm 1: ∝ 1/L")


def plot(doc: dict):
    """The figure of this study, drawn from its JSON document alone."""
    cfg, fits, res = doc["config"], doc["fits"], doc["results"]
    fb_all = [fb for fb in ("decoupled", "coupled") if f"rms_vs_width_{fb}" in fits]
    modes = [lb for lb in ("gia", "exact") if f"depth_error_{lb}" in fits]
    fig, ax = C.figure(2, 3, w=5.6, h=4.3)
    a = ax[0, 0]
    for i, lb in enumerate(modes):
        _plot_depth(a, fits[f"depth_error_{lb}"], f"{lb} (paired, jackknife CI)", "os"[i % 2])
    a.set(xlabel="depth L", ylabel="|f̂_L − f̂_∞|, mean over steps k ≥ 1",
          title=f"(a) depth error of the limit, f̂_∞: Richardson {tuple(cfg['richardson_depths'])}")
    a = ax[0, 1]
    for i, fb in enumerate(fb_all):
        C.plot_fit(a, fits[f"rms_vs_width_{fb}"], f"rms {fb}", fmt="os"[i % 2], expected=-0.5,
                   expected_label="DMFT App. I: rms ∝ n^-1/2")
        C.plot_fit(a, fits[f"bias_vs_width_{fb}"], f"bias {fb} (CV, per-width |·|)", fmt="^v"[i % 2], expected=-1.0,
                   expected_label="NFD Thm 1: bias ∝ 1/n")
    a.set(xlabel="width n", ylabel="|f_n − f̂_L|, mean over steps k ≥ 1",
          title=f"(b) width error, L = {cfg['width_depth']}, {cfg['seeds']} seeds")
    a = ax[0, 2]
    _plot_joint(a, doc, fb_all)
    a = ax[1, 0]
    vr = res.get("variance_reduction", {})
    for i, fb in enumerate(fb_all):
        rows = vr.get(fb, [])
        if not rows:
            continue
        n = np.array([r["width"] for r in rows], float)
        for j, (key, lab) in enumerate((("cv_factor", "control variate f^(0), mean of per-step factors"), ("crn_factor", "CRN n vs 2n"))):
            y = np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
            e = np.array([np.nan if r.get(key + "_se") is None else r[key + "_se"] for r in rows], float)
            ok = np.isfinite(y)
            a.errorbar(n[ok] * (1 + 0.04 * i), y[ok], 2 * e[ok], fmt="os^v"[2 * j + i], capsize=2,
                       label=f"{lab}, {fb}")
        an = [r.get("antithetic") for r in rows]
        if all(x is not None for x in an):
            a.errorbar(n * (1 + 0.04 * i), [x["antithetic"] for x in an], [2 * x["antithetic_se"] for x in an],
                       fmt="D" if i == 0 else "d", capsize=2, mfc="none",
                       label=f"antithetic pairs (readout −v), per unit cost, {an[0]['seeds']} seeds, {fb}")
        # what the control variate buys on the quantity fitted: the step-averaged bias (Σ_k≥1 s.e.² ratio)
        ws = next(v for k, v in res["width_sweep"].items() if k.startswith(fb + "_vs_"))["rows"]
        avg = [sum(p * p for p in r["seed_se_plain"][1:]) / sum(c * c for c in r["seed_se_cv"][1:]) for r in ws]
        a.plot([r["width"] for r in ws], avg, "-x", label=f"control variate on the step-averaged bias, {fb}")
        if all(x is not None for x in an):
            # antithetic pairs on the same quantity: Σ_k var f_k / Σ_k 2 var((f_k + f_k⁻)/2); older JSONs without the
            # field: the per-step factors weighted by var f_k (from seed_se_plain, all seeds)
            st = []
            for x, r in zip(an, ws):
                if "antithetic_step_sum" in x:
                    st.append(x["antithetic_step_sum"])
                else:
                    v = np.array(r["seed_se_plain"][1:]) ** 2
                    st.append(float(v.sum() / (v / np.array(x["antithetic_per_step"][1:], float)).sum()))
            a.plot([r["width"] for r in ws], st, "--+", label=f"antithetic pairs on the step-averaged bias, {fb}")
    a.axhline(1.0, color="k", lw=0.6, ls=":")
    a.set_xscale("log")
    a.set_yscale("log")
    C.log_x(a, cfg["widths"])
    a.legend(fontsize=6)
    a.set(xlabel="width n", ylabel="variance reduction factor (± 2 SE)",
          title="(b) what each option buys (steps k ≥ 1)")
    a = ax[1, 1]
    if "rms_vs_depth_at_fixed_width" in fits:
        C.plot_fit(a, fits["rms_vs_depth_at_fixed_width"], f"rms coupled, n = {cfg['depth_width']}", expected=0.0,
                   expected_label="DMFT App. I: independent of L")
    a.set(xlabel="depth L", ylabel="rms |f_n − f̂_L|", title="width error across depth")
    ax[1, 2].axis("off")
    return fig


def _plot_joint(a, doc, fb_all):
    """The signed joint fit: per step, sign(c_k)·(E f_{n,k} − â_k) with ± 2 s.e., the fitted c_k n^−α (solid),
    the 1/n + 1/n² model (dotted) and a 1/n reference; â_k is the fitted limit."""
    fits, ws = doc["fits"], doc["results"]["width_sweep"]
    colors = ["C0", "C1", "C2", "C3", "C4", "C5"]
    j, anchor = 0, None
    for i, fb in enumerate(fb_all):
        fj = fits.get(f"bias_joint_{fb}")
        if fj is None:
            continue
        rows = next(v for k, v in ws.items() if k.startswith(fb + "_vs_"))["rows"]
        n = np.array(fj["widths"], float)
        M = np.array([r["mean_output"] for r in rows], float)[:, 1:]
        E = np.array([r["seed_se_cv"] for r in rows], float)[:, 1:]
        c = np.array(fj["coef"], float)
        lim = np.array(fj["limit_fitted"], float)
        two = np.array(fj["models"]["1/n+1/n^2"]["params"], float)
        nn = np.geomspace(n.min(), n.max(), 50)
        for k in np.argsort(-np.abs(c))[:2]:  # the two steps with the largest bias
            sg = np.sign(c[k]) or 1.0
            y = sg * (M[:, k] - lim[k])
            ok = y > 0
            col = colors[j % len(colors)]
            j += 1
            a.errorbar(n[ok] * (1 + 0.03 * i), y[ok], 2 * E[ok, k], fmt="os"[i % 2], color=col, capsize=2,
                       label=f"{fb}, step {fj['steps'][k]}")
            if anchor is None and ok.any():
                anchor = (n[ok][0], y[ok][0], n)
            a.plot(nn, np.abs(c[k]) * nn ** (-fj["alpha"]), "-", color=col, lw=1)
            a.plot(nn, sg * (two[k, 0] - lim[k] + two[k, 1] / nn + two[k, 2] / nn**2), ":", color=col, lw=1)
        lo, hi = fj["alpha_ci95"]
        a.plot([], [], "-", color="k", lw=1, label=f"{fb}: c_k n^-α, α = {fj['alpha']:.2f} [{lo:.2f}, {hi:.2f}]")
    a.plot([], [], ":", color="k", lw=1, label="a_k + c_k/n + e_k/n² (GLS)")
    if anchor is not None:
        n0, y0, nall = anchor
        a.plot(nall, 1.5 * y0 * (nall / n0) ** -1.0, "--", color="gray", lw=0.8, label="∝ 1/n (NFD Thm 1)")
    a.set_xscale("log")
    a.set_yscale("log")
    C.log_x(a, list(fits[f"bias_joint_{fb_all[0]}"]["widths"]) if j else [1, 2])
    a.legend(fontsize=6)
    a.set(xlabel="width n", ylabel="sign(c_k)·(E f_n,k − â_k)  (± 2 SE)",
          title="(b) signed joint fit over widths and steps (â_k: fitted limit)")


def run(size: str, out_dir: str) -> dict:
    import jax.numpy as jnp

    import nfd

    t0 = time.perf_counter()
    cfg = dict(
        activation="tanh", lr=0.5, T=1.0, d=3, K=C.pick(size, 3, 6, 10), data_seed=0,
        depths=C.pick(size, [1, 2], [1, 2, 4, 8, 16, 32, 64], [1, 2, 4, 8, 16, 32, 64, 128, 256]),
        richardson_depths=C.pick(size, [1, 2], [32, 64], [64, 128, 256]),
        particles=C.pick(size, 256, 2**17, 2**19), replicates=C.pick(size, 4, 32, 64), solver_seed=1,
        solver_dtype="float64", fit_min_depth=C.pick(size, 1, 2, 4),
        widths=C.pick(size, [8, 16], [32, 64, 128, 256, 512], [32, 64, 128, 256, 512, 1024]),
        width_depth=C.pick(size, 1, 4, 8),
        seeds=C.pick(size, 8, 2048, 8192), seed_chunk=C.pick(size, 8, 128, 256), seed=0, finite_dtype="float32",
        antithetic_seeds=C.pick(size, 8, 512, 1024),
        depth_width=C.pick(size, 16, 128, 512), depth_seeds=C.pick(size, 8, 128, 1024),
        depth_sweep_max=C.pick(size, 2, 32, 128),
    )
    X, Y = data(cfg["K"], cfg["d"], cfg["data_seed"])
    pairs = C.pick(size, (("coupled", "exact"),), (("decoupled", "gia"), ("coupled", "exact")),
                   (("decoupled", "gia"), ("coupled", "exact")))
    modes = [lb for _, lb in pairs]
    res = dict(depth_sweep={}, width_sweep={}, variance_reduction={})
    fits = {}
    L0 = cfg["width_depth"]
    depths = list(cfg["depths"])
    if L0 not in depths:
        raise ValueError(f"width_depth {L0} must be one of the depths {depths}")
    lim = {}
    # ---- (a) depth error of the limit, paired ----
    for lb in modes:
        reps, secs = {}, {}
        for L in depths:
            t = time.perf_counter()
            r = nfd.solve(X, Y, depth=L, particles=cfg["particles"], replicates=cfg["replicates"],
                          activation=cfg["activation"], lr=cfg["lr"], T=cfg["T"], backward=lb, seed=cfg["solver_seed"],
                          noise_depth=max(depths), dtype=jnp.float64, eigenvalues=False, on_singular="regularize")
            reps[L] = np.asarray(r.replicate_outputs, np.float64)
            secs[L] = time.perf_counter() - t
        finf = richardson([reps[L] for L in cfg["richardson_depths"]])
        E = np.stack([reps[L] - finf for L in depths], axis=1)  # (R, nL, K)
        fit = jackknife_fit(depths, E, cfg["fit_min_depth"])
        # the slope's s.e. falls like 1/√(total particles) at fixed depths: the count a 0.15 half-width needs
        fit["particles_for_half_width_0.15"] = int(cfg["particles"] * (fit["half_width"] / 0.15) ** 2)
        fits[f"depth_error_{lb}"] = fit
        fits[f"depth_error_{lb}_all_depths"] = {k: v for k, v in jackknife_fit(depths, E, 1).items()}
        # paired vs unpaired standard error of f_L − f_∞ (mean over steps k ≥ 1)
        unp = [float(np.mean(np.hypot(reps[L].std(0, ddof=1), finf.std(0, ddof=1))[1:]) / math.sqrt(E.shape[0]))
               for L in depths]
        pair = [float(np.mean(E[:, i].std(0, ddof=1)[1:]) / math.sqrt(E.shape[0])) for i in range(len(depths))]
        res["depth_sweep"][lb] = dict(
            limit_inf=finf.mean(0), limit_inf_se=finf.std(0, ddof=1) / math.sqrt(finf.shape[0]),
            rows=[dict(depth=L, outputs=reps[L].mean(0), outputs_se=reps[L].std(0, ddof=1) / math.sqrt(E.shape[0]),
                       err_per_step=E[:, i].mean(0), err_per_step_se=E[:, i].std(0, ddof=1) / math.sqrt(E.shape[0]),
                       err_avg=fit["all_y"][i], err_avg_se_jackknife=fit["all_yerr"][i],
                       paired_se=pair[i], unpaired_se=unp[i], solve_s=secs[L])
                  for i, L in enumerate(depths)])
        lim[lb] = reps[L0]
        if lb == "exact":
            lim_by_depth = dict(reps)

    # ---- (b) width error of finite networks at fixed depth ----
    for fb, lb in pairs:
        fr = lim[lb]
        fhat, fhat_se = fr.mean(0), fr.std(0, ddof=1) / math.sqrt(fr.shape[0])
        rows, vr, prev, Gs = [], [], None, []
        Sa = cfg["antithetic_seeds"]
        if Sa % cfg["seed_chunk"] and Sa > cfg["seed_chunk"]:
            raise ValueError("antithetic_seeds must be a multiple of seed_chunk (the partners reuse the chunks' seeds)")
        for n in cfg["widths"]:
            t = time.perf_counter()
            F, C0 = [], []
            # seeds in chunks of ``seed_chunk`` (chunk c: base seed ``seed + c``, so every network is
            # independent; the same chunking at every width keeps the common random numbers), which keeps
            # the dense initial weights of one call under nfd's 1 GiB "auto" limit at the widest n
            for c, c0 in enumerate(range(0, cfg["seeds"], cfg["seed_chunk"])):
                sim = nfd.simulate(X, Y, width=n, depth=L0, activation=cfg["activation"], lr=cfg["lr"], T=cfg["T"],
                                   backward=fb, seeds=min(cfg["seed_chunk"], cfg["seeds"] - c0), seed=cfg["seed"] + c,
                                   X_test=X, record=(), dtype=jnp.float32)
                F.append(np.asarray(sim.outputs, np.float64))
                C0.append(np.asarray(sim.test_outputs, np.float64)[:, 0, :])  # f^(0)(x_j), (S, K)
            wall = time.perf_counter() - t
            F, C0 = np.concatenate(F), np.concatenate(C0)
            G = control_variate(F, C0)
            Gs.append(G[:, 1:])
            # antithetic partners of the first Sa seeds: the same weights with the readout v negated.  Not a hook
            # of nfd.simulate, an exact identity: f(U, W, −v) = −f(U, W, v), and SGD is equivariant under the
            # isometry v → −v, so the network (U, W, −v) trained on Y is −(the network (U, W, v) trained on −Y)
            # at every step (both backward modes; tests/test_antithetic_identity.py checks it against dense
            # networks).  So the partner of seed s is −simulate(X, −Y, seed s).
            Fm, Cm = [], []
            for c, c0 in enumerate(range(0, Sa, cfg["seed_chunk"])):
                sim = nfd.simulate(X, -Y, width=n, depth=L0, activation=cfg["activation"], lr=cfg["lr"], T=cfg["T"],
                                   backward=fb, seeds=min(cfg["seed_chunk"], Sa - c0), seed=cfg["seed"] + c,
                                   X_test=X, record=(), dtype=jnp.float32)
                Fm.append(-np.asarray(sim.outputs, np.float64))
                Cm.append(-np.asarray(sim.test_outputs, np.float64)[:, 0, :])
            Fm, Cm = np.concatenate(Fm), np.concatenate(Cm)
            anti = antithetic_factor(F[:Sa], Fm, C0[:Sa])
            anti["pair_check_max_abs_f0_sum"] = float(np.max(np.abs(Cm + C0[:Sa])))  # f^(0) of partners: −f^(0)
            anti["antithetic_se"] = _boot(lambda a, b: antithetic_factor(a, b)["antithetic"], [F[:Sa], Fm])
            anti["seeds"] = Sa
            S = F.shape[0]
            m_plain, se_plain = C.mean_se(F)
            m_cv, se_cv = C.mean_se(G)  # the s.e. of the CV mean (β's estimation error is O(1/S))
            d = m_cv - fhat
            bias = np.abs(d)
            bias_se = np.sqrt(se_cv**2 + fhat_se**2)
            D = F - fhat[None]
            m2, se_m2 = C.mean_se(D**2)
            rms = np.sqrt(m2)
            rms_se = se_m2 / (2 * np.maximum(rms, 1e-300))
            ks = slice(1, None)
            k1 = len(bias) - 1
            rows.append(dict(width=n, seeds=S, bias=bias, bias_se=bias_se, bias_plain=np.abs(m_plain - fhat),
                             bias_plain_se=np.sqrt(se_plain**2 + fhat_se**2), rms=rms, rms_se=rms_se,
                             bias_avg=bias[ks].mean(), bias_avg_se=math.sqrt((bias_se[ks] ** 2).sum()) / k1,
                             rms_avg=rms[ks].mean(), rms_avg_se=math.sqrt((rms_se[ks] ** 2).sum()) / k1,
                             seed_se_plain=se_plain, seed_se_cv=se_cv, limit_se=fhat_se, mean_output=m_cv,
                             wall_s=wall, wall_s_per_seed=wall / S))
            row = dict(width=n, cv_factor=cv_factor(F, C0), cv_factor_se=_boot(cv_factor, [F, C0]),
                       cv_factor_per_step=(F.var(0) / np.maximum(G.var(0), 1e-300)),
                       seconds_per_seed=wall / S, crn_factor=None, crn_factor_se=None, antithetic=anti)
            if prev is not None:  # common random numbers: same seed index at widths n/2 and n
                def crn(a, b):
                    return float(np.mean((a[:, 1:].var(0) + b[:, 1:].var(0)) / (a - b)[:, 1:].var(0)))
                row["crn_factor"] = crn(prev, F)
                row["crn_factor_se"] = _boot(crn, [prev, F])
            vr.append(row)
            prev = F
        res["width_sweep"][f"{fb}_vs_{lb}"] = dict(limit=fhat, limit_se=fhat_se, rows=rows,
                                                   bias_noise_floor=[r["bias_avg_se"] for r in rows])
        res["variance_reduction"][fb] = vr
        ns = [r["width"] for r in rows]
        fits[f"bias_vs_width_{fb}"] = C.fit_loglog(ns, [r["bias_avg"] for r in rows], [r["bias_avg_se"] for r in rows])
        fits[f"rms_vs_width_{fb}"] = C.fit_loglog(ns, [r["rms_avg"] for r in rows], [r["rms_avg_se"] for r in rows])
        fits[f"bias_joint_{fb}"] = width_bias_fit(ns, Gs, fr[:, 1:], n_boot=C.pick(size, 20, 300, 300))

    # ---- (b') one width across depth: coupled networks against the exact limit of the same depth (part (a)'s
    # solves): does the width error grow with L? (DMFT App. I / Fig. C.8a: no)
    rows = []
    if "exact" in modes:
        for L in [L for L in depths if L <= cfg["depth_sweep_max"]]:
            fr = lim_by_depth[L]
            fhat, fhat_se = fr.mean(0), fr.std(0, ddof=1) / math.sqrt(fr.shape[0])
            sim = nfd.simulate(X, Y, width=cfg["depth_width"], depth=L, activation=cfg["activation"], lr=cfg["lr"],
                               T=cfg["T"], backward="coupled", seeds=cfg["depth_seeds"], seed=cfg["seed"], record=(),
                               dtype=jnp.float32)
            D = np.asarray(sim.outputs, np.float64) - fhat[None]
            m2, se_m2 = C.mean_se(D**2)
            rms = np.sqrt(m2)
            rse = se_m2 / (2 * np.maximum(rms, 1e-300))
            rows.append(dict(depth=L, rms_avg=rms[1:].mean(), rms_avg_se=math.sqrt((rse[1:] ** 2).sum()) / (len(rms) - 1)))
        fits["rms_vs_depth_at_fixed_width"] = C.fit_loglog([r["depth"] for r in rows], [r["rms_avg"] for r in rows],
                                                           [r["rms_avg_se"] for r in rows])
    res["finite_depth_sweep"] = dict(width=cfg["depth_width"], rows=rows)

    # ---- claims ----
    claims = []
    for lb in modes:
        fd = fits[f"depth_error_{lb}"]
        claims.append(C.claim(
            f"{lb} limit: depth error |f̂_L − f̂_∞| shrinks like 1/L", "NFD Thm 1 (App. G), rate O(1/L)",
            f"slope {C.slope_str(fd)} (95 % jackknife, half-width {fd['half_width']:.2f}; L = {cfg['fit_min_depth']}…"
            f"{max(depths)}, paired, f̂_∞ Richardson {tuple(cfg['richardson_depths'])}; half-width 0.15 needs "
            f"≈ {fd['particles_for_half_width_0.15']:.2g} particles)",
            C.in_ci(fd, -1.0, max_width=0.6) if fd["n_points"] >= 4 else None))
    for fb, lb in pairs:
        fr, fbias = fits[f"rms_vs_width_{fb}"], fits[f"bias_vs_width_{fb}"]
        claims.append(C.claim(f"{fb}: one network's error |f_n − f̂_L| shrinks like n^-1/2 (fluctuations)",
                              "DMFT App. I", f"rms slope {C.slope_str(fr)}", C.in_ci(fr, -0.5)))
        floor = np.array(res["width_sweep"][f"{fb}_vs_{lb}"]["bias_noise_floor"])
        above = np.array(fbias["y"]) > 2 * floor
        fj = fits[f"bias_joint_{fb}"]
        mo = fj["models"]
        claims.append(C.claim(f"{fb}: seed-averaged error |E f_n − f̂_L| shrinks like 1/n",
                              "NFD Thm 1 rate O(1/n); DMFT App. I",
                              f"signed joint GLS fit a_k + c_k n^-α over steps: slope {C.slope_str(fj)}"
                              f"{' (interval reaches the grid edge)' if fj['interval_at_grid_edge'] else ''}; "
                              f"model χ²/dof (p): n^-α {mo['power']['chi2']:.1f}/{mo['power']['dof']} "
                              f"({mo['power']['p']:.2g}), 1/n {mo['1/n']['chi2']:.1f}/{mo['1/n']['dof']} "
                              f"({mo['1/n']['p']:.2g}), 1/n + 1/n² {mo['1/n+1/n^2']['chi2']:.1f}/"
                              f"{mo['1/n+1/n^2']['dof']} ({mo['1/n+1/n^2']['p']:.2g}); previous estimator "
                              f"(per-width |·|, log-log) {C.slope_str(fbias)}, {int(above.sum())}/{len(above)} "
                              "widths above 2 s.e.",
                              None if fj["interval_at_grid_edge"] else C.in_ci(fj, -1.0, max_width=0.5)))

    if "rms_vs_depth_at_fixed_width" in fits:
        fdw = fits["rms_vs_depth_at_fixed_width"]
        claims.append(C.claim("width error at fixed n does not grow with L", "DMFT App. I / Fig. C.8a",
                              f"rms vs L slope {C.slope_str(fdw)} at n = {cfg['depth_width']}",
                              None if (fdw["slope"] is None or np.diff(fdw["slope_ci95"])[0] > 1.0)
                              else bool(fdw["slope_ci95"][0] <= 0.0)))
    notes = [
        "(a) paired: all depths share seed, replicates and one Brownian path (noise_depth = the finest depth); "
        "f̂_∞ = Richardson extrapolation of the finest depths per replicate; slope CI by jackknife over replicates.",
        "(a) depth_error_<mode> fits L ≥ fit_min_depth; depth_error_<mode>_all_depths fits every depth.",
        "(b) finite networks float32, solver float64; f̂_L is the depth-L solve of part (a) (its replicate s.e. is "
        "added in quadrature); bias from the control-variate mean; bias_noise_floor = its s.e.",
        "(b) variance reduction factors are var(plain)/var(with option), mean over steps k ≥ 1, s.e. by a bootstrap "
        "over seeds (200 resamples). Antithetic seeds: not measured (nfd.simulate has no hook to negate a seed's "
        "readout); the control variate f^(0) removes the same linear-in-v part.",
    ]
    return C.write_result(STUDY, size, out_dir, title="Rates during training", config=cfg, results=res, fits=fits,
                          claims=claims, notes=notes, t_start=t0, plot=plot)


if __name__ == "__main__":
    C.cli(STUDY, run)
