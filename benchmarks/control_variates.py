"""Control variates with known means for the NFD particle solver (issue 18 item 1, the third candidate).

Problem and solver: those of ``variance_reduction.py`` (tanh, d = 3, K = L = 8, η_c = 0.5, exact
backward, float32), with the solver's Gaussians (U, v and the increments ξ, ξ̃) generated on the host
(``variance_reduction.probe_outputs``, i.i.d.) so that quantities with known means can be formed from
them.  A control variate estimator is f̂_cv^(k) = f̂^(k) − β_kᵀ (c − E c) for a vector c of particle
means whose expectation E c is known; it is unbiased for any β fixed independently of the system it
corrects, and its variance is var f̂ − (explained part).  The features (all particle means, E c known
in closed form or by 2-d Gauss–Hermite quadrature of order 192, float64; tanh: orders 96 and 192 differ by 1e-7, erf at 192 matches its closed form to 2e-16):

* ``moments`` (14): v, v² − 1, U_i, U_iU_j − δ_ij (i ≤ j), v·U_i;
* ``f0`` (1): f̂^(0) itself (E = 0: v is independent of the forward pass at step 0 and symmetric);
* ``init`` (80): v·φ(h_0(x_a)) (E = 0), φ(h_0(x_a))φ(h_0(x_b)) and v²·φ(h_0(x_a))φ(h_0(x_b))
  (E = E[φφ] under N(0, X Xᵀ/d)), h_0(x) = x·U/√d the particle's initial embedding;
* ``path`` (124): v·g with g any function of U and the increments (E = 0: v is independent of
  them): for step k, W_k = Σ_l ξ_{k,l}/√L and W̃_k = Σ_l ξ̃_{k,l}/√L (forward, backward),
  v·φ(h_0(x_k) + c W_k) for c ∈ {0, ½, 1, 2}, v·φ(h_0(x_k) + c W_k)·W̃_k, v·φ(h_0(x_k))·W_k and
  v·φ(h_0(x_k))φ(h_0(x_j)) for j < k — crude v-free surrogates of the particle's path;
* ``noise`` (384): ξ, v·ξ and ξ² − 1 for every (step, forward/backward, layer).

β is fitted by least squares over S systems and the gain is measured by cross-fitting (β from the
other folds, 8 folds): the reduction factor sd(f̂)/sd(f̂_cv) on held-out systems is what a user gets
with β fitted on a pilot of the same size; its se by bootstrap over the systems (1000 resamples).
Transfer: β fitted on all S systems at P₀ is applied to S₁ new systems at 4·P₀ (first-order theory:
f̂ − f and c − E c both scale as P^−1/2, so β does not depend on P); unbiasedness is checked there
(mean of f̂_cv against the mean of f̂ on the same systems and against the i.i.d. solver's mean).

    python benchmarks/control_variates.py            # ≈ 5 min on 2 cores
    python benchmarks/control_variates.py --quick    # ≈ 1 min (S = 512)

Writes benchmarks/results/control_variates.json and .png.
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

import variance_reduction as vr  # noqa: E402
from _common import machine  # noqa: E402
from rates_training import data  # noqa: E402

RESULTS = os.path.join(HERE, "results")
K, L, D_IN = vr.K, vr.L, vr.D_IN
GROUPS = ("moments", "f0", "init", "path", "noise")
NESTED = (("moments",), ("moments", "f0"), ("moments", "f0", "init"), ("moments", "f0", "init", "path"),
          ("moments", "f0", "init", "path", "noise"))


def gauss_pair_mean(f, Q, order=192):
    """E[f(u_a) f(u_b)] for u ~ N(0, Q), Q (N, N): (N, N) by 2-d Gauss–Hermite quadrature (float64)."""
    x, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    N = len(Q)
    out = np.empty((N, N))
    for a in range(N):
        for b in range(N):
            C = np.array([[Q[a, a], Q[a, b]], [Q[a, b], Q[b, b]]])
            e, V = np.linalg.eigh(C)
            F = V * np.sqrt(np.clip(e, 0, None))
            ua = F[0, 0] * x[:, None] + F[0, 1] * x[None, :]
            ub = F[1, 0] * x[:, None] + F[1, 1] * x[None, :]
            out[a, b] = float(np.sum(w[:, None] * w[None, :] * f(ua) * f(ub)))
    return out


def features(U, v, Z, X, Epp):
    """Control features (centred by their known means) of one system, grouped: dict of (n_g,) arrays.
    U (P, d), v (P,), Z (K, 2, L, P), X (N, d), Epp = E[φ(h_a)φ(h_b)] (N, N)."""
    P, d = U.shape
    iu = np.triu_indices(d)
    UU = np.einsum("pi,pj->ij", U, U) / P - np.eye(d)
    mom = np.concatenate([[v.mean(), (v**2).mean() - 1], U.mean(0), UU[iu], (v[:, None] * U).mean(0)])
    ph = np.tanh(U @ X.T / math.sqrt(d))  # (P, N)
    N = X.shape[0]
    it = np.triu_indices(N)
    pp = ph.T @ ph / P - Epp
    vpp = (ph * (v**2)[:, None]).T @ ph / P - Epp
    init = np.concatenate([(v[:, None] * ph).mean(0), pp[it], vpp[it]])
    Zf = Z.reshape(-1, P)
    noise = np.concatenate([Zf.mean(1), (Zf * v).mean(1), (Zf**2).mean(1) - 1])
    h0 = U @ X.T / math.sqrt(d)
    path = []
    for k in range(Z.shape[0]):
        Wf, Wb = Z[k, 0].sum(0) / math.sqrt(Z.shape[2]), Z[k, 1].sum(0) / math.sqrt(Z.shape[2])
        for c in (0.0, 0.5, 1.0, 2.0):
            g = np.tanh(h0[:, k] + c * Wf)
            path += [(v * g).mean(), (v * g * Wb).mean(), (v * ph[:, k] * Wf).mean()]
        path += [(v * ph[:, k] * ph[:, j]).mean() for j in range(k)]
    return dict(moments=mom, init=init, path=np.array(path), noise=noise)


def systems(P, seeds, X, Epp, chunk=64):
    """f̂ (S, K) and the features (dict of (S, n_g)) of S host-generated i.i.d. systems."""
    fs, feats = [], {g: [] for g in ("moments", "init", "path", "noise")}
    seeds = list(seeds)
    for i in range(0, len(seeds), chunk):
        ss = seeds[i:i + chunk]
        fs.append(vr.probe_outputs(P, "probe_iid", ss))
        for s in ss:  # the same Gaussians probe_outputs drew (same generator and seed), in float32 as fed
            U, v, Z = (np.asarray(a, np.float32).astype(np.float64)
                       for a in vr._gaussians("probe_iid", P, np.random.default_rng([7, s])))
            for g, x in features(U, v, Z, X, Epp).items():
                feats[g].append(x)
    f = np.concatenate(fs)
    F = {g: np.stack(x) for g, x in feats.items()}
    F["f0"] = f[:, :1].copy()
    return f, F


def design(F, groups):
    return np.concatenate([F[g] for g in groups], axis=1)


def fit_beta(C, f):
    """Least-squares β (n_c, K) of f (S, K) on the centred controls C (S, n_c), intercept included."""
    A = np.concatenate([np.ones((len(C), 1)), C], axis=1)
    coef, *_ = np.linalg.lstsq(A, f, rcond=None)
    return coef[1:]


def crossfit(C, f, folds=8, seed=0):
    """f̂_cv (S, K) with β for each fold fitted on the other folds."""
    S = len(f)
    idx = np.random.default_rng(seed).permutation(S)
    out = np.empty_like(f)
    for part in np.array_split(idx, folds):
        train = np.setdiff1d(idx, part)
        beta = fit_beta(C[train], f[train])
        out[part] = f[part] - C[part] @ beta
    return out


def reduction(f, fcv, n_boot=1000, seed=0):
    """sd(f)/sd(f_cv) for the last step and the RMS over steps, with bootstrap se over systems."""
    S = len(f)
    rng = np.random.default_rng(seed)

    def r(i):
        a, b = f[i].var(0, ddof=1), fcv[i].var(0, ddof=1)
        return np.concatenate([[math.sqrt(a[-1] / b[-1]), math.sqrt(a.mean() / b.mean())], np.sqrt(a / b)])

    est = r(np.arange(S))
    boot = np.array([r(rng.integers(0, S, S)) for _ in range(n_boot)])
    se = boot.std(0)
    return dict(last=float(est[0]), last_se=float(se[0]), rms=float(est[1]), rms_se=float(se[1]),
                per_step=est[2:].tolist(), per_step_se=se[2:].tolist())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=os.path.join(RESULTS, "control_variates.json"))
    p.add_argument("--plot-only", action="store_true")
    a = p.parse_args(argv)
    if a.plot_only:
        return plot(json.load(open(a.out)), os.path.splitext(a.out)[0] + ".png")
    t0 = time.perf_counter()
    P0, S0, S1 = (1024, 512, 128) if a.quick else (1024, 2048, 256)
    X, _ = data(K, D_IN, 0)
    X = np.asarray(X, np.float64)
    Epp = gauss_pair_mean(np.tanh, X @ X.T / D_IN)
    res = dict(config=dict(K=K, L=L, d=D_IN, lr=vr.LR, activation="tanh", backward="exact", dtype="float32",
                           P0=P0, systems=S0, transfer_P=4 * P0, transfer_systems=S1, folds=8, bootstrap=1000,
                           groups={g: None for g in GROUPS}, nested=[list(n) for n in NESTED]),
               load=[os.getloadavg()])
    f, F = systems(P0, range(200_000, 200_000 + S0), X, Epp)
    res["config"]["groups"] = {g: int(F[g].shape[1]) for g in GROUPS}
    # the features' known means: checked on these systems (z of their means over S0 systems)
    zf = {g: float(np.max(np.abs(F[g].mean(0) / (F[g].std(0, ddof=1) / math.sqrt(S0))))) for g in GROUPS}
    res["feature_mean_max_abs_z"] = zf
    print("features: max |z| of their means (known means check)", {g: round(v, 2) for g, v in zf.items()}, flush=True)
    res["crossfit"] = {}
    for groups in NESTED:
        C = design(F, groups)
        fcv = crossfit(C, f)
        r = reduction(f, fcv)
        r["controls"] = int(C.shape[1])
        res["crossfit"]["+".join(groups)] = r
        print("+".join(groups), C.shape[1], "reduction last %.3f ± %.3f, rms %.3f ± %.3f" % (
            r["last"], r["last_se"], r["rms"], r["rms_se"]), flush=True)
    # in-sample R² (optimistic: what β fitted on the same systems would claim), for reference
    res["in_sample"] = {}
    for groups in NESTED:
        C = design(F, groups)
        fin = f - C @ fit_beta(C, f)
        res["in_sample"]["+".join(groups)] = reduction(f, fin, n_boot=200)
    # transfer to 4·P0 with β from all S0 systems at P0
    f1, F1 = systems(4 * P0, range(300_000, 300_000 + S1), X, Epp)
    res["transfer"] = {}
    for groups in NESTED:
        beta = fit_beta(design(F, groups), f)
        C1 = design(F1, groups)
        fcv1 = f1 - C1 @ beta
        r = reduction(f1, fcv1)
        d = fcv1 - f1  # paired: the correction's mean must be 0 (known means, β fixed)
        r["correction_mean_z"] = (d.mean(0) / (d.std(0, ddof=1) / math.sqrt(S1))).tolist()
        r["max_abs_correction_z"] = float(np.max(np.abs(r["correction_mean_z"])))
        res["transfer"]["+".join(groups)] = r
        print("transfer", "+".join(groups), "reduction last %.3f ± %.3f, rms %.3f ± %.3f, max|z| %.2f" % (
            r["last"], r["last_se"], r["rms"], r["rms_se"], r["max_abs_correction_z"]), flush=True)
    try:  # for the figure: the adopted scheme's reduction at the same P (variance_reduction.py)
        vrj = json.load(open(os.path.join(RESULTS, "variance_reduction.json")))["comparisons"]["sobol"][str(P0)]
        res["sobol_reference"] = dict(P=P0, last=vrj["reduction_last"], rms=vrj["reduction_rms"],
                                      source="results/variance_reduction.json")
    except (OSError, KeyError):
        pass
    res["sd_sqrtP"] = dict(P0=(f.std(0, ddof=1) * math.sqrt(P0)).tolist(),
                           P1=(f1.std(0, ddof=1) * math.sqrt(4 * P0)).tolist())
    res["load"].append(os.getloadavg())
    res["machine"] = machine()
    res["wall_s"] = time.perf_counter() - t0
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(res, open(a.out, "w"), indent=1)
    plot(res, os.path.splitext(a.out)[0] + ".png")
    print("wrote", a.out, f"({res['wall_s']:.0f} s)")


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    names = list(res["crossfit"])
    xs = np.arange(len(names))
    ax = axes[0]
    for off, (part, lab) in zip((-0.15, 0.15), (("crossfit", f"cross-fitted, P = {res['config']['P0']}"),
                                                   ("transfer", f"β from P₀, applied at P = {res['config']['transfer_P']}"))):
        for q, mk in (("last", "o"), ("rms", "s")):
            y = [res[part][n][q] for n in names]
            e = [res[part][n][q + "_se"] for n in names]
            ax.errorbar(xs + off + (0.05 if q == "rms" else -0.05), y, yerr=e, fmt=mk, capsize=3,
                        label=f"{lab}, {'last step' if q == 'last' else 'RMS over steps'}")
    ax.axhline(1, color="k", lw=0.8)
    ax.axhline(4, color="r", lw=0.8, ls="--", label="issue 18 goal (4×)")
    sob = res.get("sobol_reference")
    if sob:
        ax.axhline(sob["rms"], color="g", lw=0.8, ls=":", label=f"sampling='sobol', RMS ({sob['rms']:.1f}×, P = {sob['P']})")
    ax.set_xticks(xs)
    ax.set_xticklabels([("+" + n.split("+")[-1] if "+" in n else n) + f"\n({res['crossfit'][n]['controls']} controls)"
                        for n in names], fontsize=7)
    ax.set_xlabel("feature groups, nested (each adds to the one on its left)", fontsize=8)
    ax.set_ylabel("sd reduction sd(f̂)/sd(f̂_cv)  (± 1 bootstrap se)")
    ax.set_yscale("log")
    ax.set_ylim(0.8, 6)
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks([1, 1.5, 2, 3, 4, 5])
    ax.set_title("Control variates with known means (nested feature groups)", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[1]
    for n in names:  # step 0 with f̂^(0) as a control is exact (infinite reduction): drawn from step 1
        ks = range(1, res["config"]["K"]) if "f0" in n else range(res["config"]["K"])
        ax.errorbar(list(ks), [res["crossfit"][n]["per_step"][k] for k in ks],
                    yerr=[res["crossfit"][n].get("per_step_se", [0] * 99)[k] for k in ks], fmt="o-", capsize=2,
                    label=n)
    ax.axhline(1, color="k", lw=0.8)
    ax.text(0.02, 0.12, "step 0 with f̂^(0) as a control: exact (not drawn)", transform=ax.transAxes, fontsize=7,
            va="bottom")
    ax.set_xlabel("step k")
    ax.set_ylabel("sd reduction per step (cross-fitted)")
    ax.legend(fontsize=6)
    ax.set_title(f"{res['config']['systems']} systems, {res['config']['folds']}-fold cross-fitting", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
