"""Study 2: rates during training [NFD Thm 1, Fig 3; DMFT paper Appendix I, Fig C.8].

|f^(k)_{n,L} − f̂^(k)| after several SGD steps, versus width n (at fixed depth, against the
limit of the *same* depth, so only the width error is left) and versus depth L (the limit
solver at depth L against the solver at a much larger depth L_ref, so only the depth error is left).

* decoupled finite networks against ``nfd.solve(..., backward="gia")``,
  coupled finite networks against ``nfd.solve(..., backward="exact")``.
* two error measures, because they are predicted to scale differently (DMFT paper, App. I):
  ``bias`` = |mean over seeds of f_n − f̂| (ensemble-averaged error, predicted O(1/n)) and
  ``rms``  = sqrt(mean over seeds of (f_n − f̂)²) (one network's error, predicted O(1/√n)
  from initialisation fluctuations).  The NFD paper writes O(1/L + 1/n) without saying which.

Errors are evaluated at every step k ≥ 1 and summarised by their mean over those steps
(``*_avg``) and at the last step (``*_last``); slopes are fitted to ``*_avg``.
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


def limit(X, Y, *, depth, particles, backward, reps, lr, activation, seed0=1000):
    """Mean and s.e. over ``reps`` independent particle systems of f̂^(k)."""
    import jax.numpy as jnp

    import nfd

    outs = np.stack([
        nfd.solve(X, Y, depth=depth, particles=particles, activation=activation, lr=lr, backward=backward,
                  seed=seed0 + r, dtype=jnp.float64, eigenvalues=False, on_singular="regularize").outputs
        for r in range(reps)
    ])
    m, se = C.mean_se(outs)
    return m, (se if reps > 1 else np.zeros_like(m))


def errors(F, fhat, fhat_se):
    """bias and rms of the finite outputs F (S, K) against fhat (K,), per step, with s.e."""
    S = F.shape[0]
    D = F - fhat[None]
    mean_d, se_d = C.mean_se(D)
    bias = np.abs(mean_d)
    bias_se = np.sqrt(se_d**2 + fhat_se**2)
    sq = D**2
    m2, se_m2 = C.mean_se(sq)
    rms = np.sqrt(m2)
    rms_se = se_m2 / (2 * np.maximum(rms, 1e-300))
    return bias, bias_se, rms, rms_se


def plot(doc: dict):
    """The figure of this study, drawn from its JSON document alone."""
    cfg, fits = doc["config"], doc["fits"]
    fb_all = [fb for fb in ("decoupled", "coupled") if f"rms_vs_width_{fb}" in fits]
    modes = [lb for lb in ("gia", "exact") if f"depth_error_{lb}" in fits]
    fig, ax = C.figure(1, 3, w=5.4, h=4.0)
    a = ax[0, 0]
    for i, fb in enumerate(fb_all):
        C.plot_fit(a, fits[f"rms_vs_width_{fb}"], f"rms {fb}", fmt="os"[i % 2], expected=-0.5,
                   expected_label="DMFT App. I: rms ∝ n^-1/2")
        C.plot_fit(a, fits[f"bias_vs_width_{fb}"], f"bias {fb}", fmt="^v"[i % 2], expected=-1.0,
                   expected_label="NFD Thm 1: bias ∝ 1/n")
    a.set(xlabel="width n", ylabel="|f_n − f̂|, mean over steps k ≥ 1", title=f"width error, L = {cfg['width_depth']}")
    a = ax[0, 1]
    for i, lb in enumerate(modes):
        C.plot_fit(a, fits[f"depth_error_{lb}"], f"{lb} limit", fmt="os"[i % 2], expected=-1.0,
                   expected_label="NFD Thm 1: ∝ 1/L")
    a.set(xlabel="depth L", ylabel="|f̂_L − f̂_Lref|", title=f"depth error of the limit (L_ref = {cfg['depth_ref']})")
    a = ax[0, 2]
    C.plot_fit(a, fits["rms_vs_depth_at_fixed_width"], f"rms coupled, n={cfg['depth_width']}", expected=0.0,
               expected_label="DMFT App. I: independent of L")
    a.set(xlabel="depth L", ylabel="rms |f_n − f̂_L|", title="width error across depth")
    return fig


def run(size: str, out_dir: str) -> dict:
    import jax.numpy as jnp

    import nfd

    t0 = time.perf_counter()
    cfg = dict(
        activation="tanh", lr=0.5, T=1.0, d=3, K=C.pick(size, 3, 6, 10), data_seed=0,
        widths=C.pick(size, [8, 16], [32, 64, 128, 256, 512], [64, 128, 256, 512, 1024, 2048, 4096]),
        width_depth=C.pick(size, 1, 4, 8),
        seeds=C.pick(size, 4, 48, 256), seed=0, finite_dtype="float32",
        particles=C.pick(size, 512, 2**15, 2**18), particle_reps=C.pick(size, 2, 4, 8), solver_dtype="float64",
        depths=C.pick(size, [1, 2], [1, 2, 4, 8, 16, 32], [1, 2, 4, 8, 16, 32, 64, 128]),
        depth_ref=C.pick(size, 4, 256, 1024),
        depth_width=C.pick(size, 16, 128, 512),
    )
    X, Y = data(cfg["K"], cfg["d"], cfg["data_seed"])
    # tiny (schema test): one pair, one limit mode, no finite depth sweep, to keep compilations few
    pairs = C.pick(size, (("coupled", "exact"),), (("decoupled", "gia"), ("coupled", "exact")),
                   (("decoupled", "gia"), ("coupled", "exact")))
    modes = [lb for _, lb in pairs]
    res = dict(width_sweep={}, depth_sweep={}, finite_depth_sweep={})
    fits = {}
    L0 = cfg["width_depth"]
    for fb, lb in pairs:
        fhat, fhat_se = limit(X, Y, depth=L0, particles=cfg["particles"], backward=lb, reps=cfg["particle_reps"],
                              lr=cfg["lr"], activation=cfg["activation"])
        rows = []
        for n in cfg["widths"]:
            sim = nfd.simulate(X, Y, width=n, depth=L0, activation=cfg["activation"], lr=cfg["lr"], T=cfg["T"],
                               backward=fb, seeds=cfg["seeds"], seed=cfg["seed"], record=(), dtype=jnp.float32)
            b, bse, r, rse = errors(sim.outputs, fhat, fhat_se)
            ks = slice(1, None)
            rows.append(dict(width=n, bias=b, bias_se=bse, rms=r, rms_se=rse,
                             bias_avg=b[ks].mean(), bias_avg_se=math.sqrt((bse[ks] ** 2).sum()) / (len(b) - 1),
                             rms_avg=r[ks].mean(), rms_avg_se=math.sqrt((rse[ks] ** 2).sum()) / (len(r) - 1),
                             mean_output=sim.mean, stderr_output=sim.stderr))
        res["width_sweep"][f"{fb}_vs_{lb}"] = dict(limit=fhat, limit_se=fhat_se, rows=rows)
        ns = [r["width"] for r in rows]
        fits[f"bias_vs_width_{fb}"] = C.fit_loglog(ns, [r["bias_avg"] for r in rows], [r["bias_avg_se"] for r in rows])
        fits[f"rms_vs_width_{fb}"] = C.fit_loglog(ns, [r["rms_avg"] for r in rows], [r["rms_avg_se"] for r in rows])
        # noise floor of the bias: what |mean| would be if the true bias were zero
        res["width_sweep"][f"{fb}_vs_{lb}"]["bias_noise_floor"] = [r["bias_avg_se"] for r in rows]

    # depth: solver at depth L versus the solver at depth L_ref (common particle seeds)
    for lb in modes:
        ref, ref_se = limit(X, Y, depth=cfg["depth_ref"], particles=cfg["particles"], backward=lb,
                            reps=cfg["particle_reps"], lr=cfg["lr"], activation=cfg["activation"])
        rows = []
        for L in cfg["depths"]:
            fl, fl_se = limit(X, Y, depth=L, particles=cfg["particles"], backward=lb, reps=cfg["particle_reps"],
                              lr=cfg["lr"], activation=cfg["activation"])
            e = np.abs(fl - ref)[1:]
            ese = np.sqrt(fl_se**2 + ref_se**2)[1:]
            rows.append(dict(depth=L, outputs=fl, outputs_se=fl_se, err=np.abs(fl - ref), err_avg=e.mean(),
                             err_avg_se=math.sqrt((ese**2).sum()) / len(e)))
        res["depth_sweep"][lb] = dict(reference=ref, reference_se=ref_se, rows=rows)
        fits[f"depth_error_{lb}"] = C.fit_loglog([r["depth"] for r in rows], [r["err_avg"] for r in rows],
                                                 [r["err_avg_se"] for r in rows])

    # finite coupled networks of one width across depth, against the exact limit of the same depth:
    # does the width error depend on L? (DMFT App. I: O(1/n) square error, independent of L)
    rows = []
    for L in (cfg["depths"] if size != "tiny" else []):
        fhat, fhat_se = limit(X, Y, depth=L, particles=cfg["particles"], backward="exact",
                              reps=cfg["particle_reps"], lr=cfg["lr"], activation=cfg["activation"])
        sim = nfd.simulate(X, Y, width=cfg["depth_width"], depth=L, activation=cfg["activation"], lr=cfg["lr"],
                           backward="coupled", seeds=cfg["seeds"], seed=cfg["seed"], record=())
        b, bse, r, rse = errors(sim.outputs, fhat, fhat_se)
        rows.append(dict(depth=L, rms_avg=r[1:].mean(), rms_avg_se=math.sqrt((rse[1:] ** 2).sum()) / (len(r) - 1),
                         bias_avg=b[1:].mean(), bias_avg_se=math.sqrt((bse[1:] ** 2).sum()) / (len(b) - 1)))
    res["finite_depth_sweep"] = dict(width=cfg["depth_width"], rows=rows)
    fits["rms_vs_depth_at_fixed_width"] = C.fit_loglog([r["depth"] for r in rows], [r["rms_avg"] for r in rows],
                                                       [r["rms_avg_se"] for r in rows])

    # ---- claims ----
    claims = []
    for fb, _ in pairs:
        fr, fbias = fits[f"rms_vs_width_{fb}"], fits[f"bias_vs_width_{fb}"]
        claims.append(C.claim(f"{fb}: one network's error |f_n − f̂| shrinks like n^-1/2 (fluctuations)",
                              "DMFT App. I", f"rms slope {C.slope_str(fr)}", C.in_ci(fr, -0.5)))
        floor = np.array(res["width_sweep"][f"{fb}_vs_{'gia' if fb == 'decoupled' else 'exact'}"]["bias_noise_floor"])
        above = np.array(fbias["y"]) > 2 * floor
        claims.append(C.claim(f"{fb}: seed-averaged error |E f_n − f̂| shrinks like 1/n",
                              "NFD Thm 1 rate O(1/n); DMFT App. I",
                              f"bias slope {C.slope_str(fbias)}; {int(above.sum())}/{len(above)} widths above 2 s.e. noise",
                              C.in_ci(fbias, -1.0) if above.sum() >= 3 else None))
    for lb in modes:
        fd = fits[f"depth_error_{lb}"]
        claims.append(C.claim(f"{lb} limit: depth error |f̂_L − f̂_Lref| shrinks like 1/L", "NFD Thm 1 (App. G), rate O(1/L)",
                              f"slope {C.slope_str(fd)} (L_ref = {cfg['depth_ref']})", C.in_ci(fd, -1.0)))
    fdw = fits["rms_vs_depth_at_fixed_width"]
    claims.append(C.claim("width error at fixed n does not grow with L", "DMFT App. I / Fig. C.8a",
                          f"rms vs L slope {C.slope_str(fdw)} at n = {cfg['depth_width']}",
                          None if (fdw["slope"] is None or np.diff(fdw["slope_ci95"])[0] > 1.0)
                          else bool(fdw["slope_ci95"][0] <= 0.0)))

    # ---- figure ----
    notes = [
        "Finite networks use float32, the solver float64; f̂ is the mean of `particle_reps` independent particle systems, "
        "whose spread gives the solver's standard error (added in quadrature to the seeds' standard error).",
        "bias_noise_floor is the standard error of the bias estimate: a bias below ~2× the floor is not resolved.",
    ]
    return C.write_result(STUDY, size, out_dir, title="Rates during training", config=cfg, results=res, fits=fits,
                          claims=claims, notes=notes, t_start=t0, plot=plot)


if __name__ == "__main__":
    C.cli(STUDY, run)
