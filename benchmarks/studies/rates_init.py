"""Study 1: rates at initialisation [NFD Props. 2 and 6].

Forward features, coordinate level (Prop. 2: E|h_{ℓ,i} − h_{t_ℓ}|² ≤ C(1/L + 1/n)), with the
synchronous coupling of NFD Appendix C (``nfd.limits.coupling_error``): the width part
E|h^{n,L}_ℓ − h^L_ℓ|² versus n at fixed L (predicted n^-1), the depth part E|h^L_ℓ − h_{t_ℓ}|²
versus L (exact, no Monte Carlo; predicted L^-1) and the total versus n and L; all at ℓ = L (t = T).

Backward signal (Prop. 6): ``nfd.limits`` has no synchronous coupling for g, so g is measured at the
kernel level instead: the depth error |Θ^L_0 − Θ(0)| of E[g_0²] between the depth-L recursion
(``discrete_init_kernels``) and the continuum (``gaussian_init_kernels``), versus L (predicted
L^-1), and the width error E_seeds (Θ^n_0 − Θ^L_0)² of a finite network's |g_0|²/n (``nfd.simulate``
with lr = 0, grads recorded) against its depth-L limit, versus n (predicted n^-1, the variance of
a mean over n coordinates).  The same two kernel-level errors are reported for Q = E[h_T²].
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

STUDY = "rates_init"


def plot(doc: dict):
    """The figure of this study, drawn from its JSON document alone."""
    cfg, fits = doc["config"], doc["fits"]
    fig, ax = C.figure(1, 3)
    a = ax[0, 0]
    C.plot_fit(a, fits["h_width_part_vs_n"], "E|h^{n,L} − h^L|²", expected=-1.0)
    C.plot_fit(a, fits["h_kernel_width_msd_vs_n"], "E(Q_n − Q_L)²", fmt="s", expected=-1.0)
    C.plot_fit(a, fits["g_kernel_width_msd_vs_n"], "E(Θ_n − Θ_L)² (g)", fmt="^", expected=-1.0)
    a.set(xlabel="width n", ylabel="mean-square error", title=f"width error at initialisation, L={cfg['width_depth']}")
    a = ax[0, 1]
    C.plot_fit(a, fits["h_depth_part_vs_L"], "E|h^L − h_t|²", expected=-1.0,
               expected_label="NFD Prop. 2: bound C/L (slope −1)")
    C.plot_fit(a, fits["h_kernel_depth_err_vs_L"], "|Q_L − Q(T)|", fmt="s", expected=-1.0,
               expected_label="NFD Prop. 2: bound C/L (slope −1)")
    C.plot_fit(a, fits["g_kernel_depth_err_vs_L"], "|Θ_L(0) − Θ(0)| (g)", fmt="^", expected=-1.0,
               expected_label="NFD Prop. 2: bound C/L (slope −1)")
    a.set(xlabel="depth L", ylabel="error", title="depth error at initialisation")
    a = ax[0, 2]
    C.plot_fit(a, fits["h_total_vs_L"], f"total, n={cfg['depth_width']}", expected=-1.0,
               expected_label="NFD Prop. 2: bound C(1/L + 1/n)")
    a.set(xlabel="depth L", ylabel="E|h^{n,L}_L − h_T|²", title="total coupling error")
    return fig


def run(size: str, out_dir: str) -> dict:
    import nfd
    from nfd.limits import coupling_error, discrete_init_kernels, gaussian_init_kernels

    t0 = time.perf_counter()
    cfg = dict(activation="tanh", T=1.0, q0=1.0, d=1,
               widths=C.pick(size, [16, 64], [16, 64, 256, 1024], [64, 128, 256, 512, 1024, 2048, 4096, 8192]),
               width_depth=C.pick(size, 16, 256, 1024),
               depths=C.pick(size, [2, 8], [2, 8, 32, 128], [2, 4, 8, 16, 32, 64, 128, 256, 512]),
               depth_width=C.pick(size, 64, 4096, 16384),
               seeds=C.pick(size, 4, 32, 128), seed=0,
               kernel_depth=C.pick(size, 4, 16, 64), kernel_seeds=C.pick(size, 4, 64, 256))
    res, fits = {}, {}
    act = cfg["activation"]
    # --- forward, coordinate level: width sweep at fixed depth
    rows = []
    for n in cfg["widths"]:
        ce = coupling_error(cfg["q0"], width=n, depth=cfg["width_depth"], activation=act, T=cfg["T"],
                            seeds=cfg["seeds"], seed=cfg["seed"])
        rows.append(dict(width=n, width_part=ce.width_part[-1], width_se=ce.width_stderr[-1], total=ce.total[-1],
                         total_se=ce.total_stderr[-1], depth_part=ce.depth_part[-1]))
    res["h_width_sweep"] = dict(depth=cfg["width_depth"], rows=rows)
    ns = [r["width"] for r in rows]
    fits["h_width_part_vs_n"] = C.fit_loglog(ns, [r["width_part"] for r in rows], [r["width_se"] for r in rows])
    # --- forward: depth sweep at fixed (large) width
    rows = []
    for L in cfg["depths"]:
        ce = coupling_error(cfg["q0"], width=cfg["depth_width"], depth=L, activation=act, T=cfg["T"],
                            seeds=cfg["seeds"], seed=cfg["seed"])
        rows.append(dict(depth=L, depth_part=ce.depth_part[-1], total=ce.total[-1], total_se=ce.total_stderr[-1],
                         width_part=ce.width_part[-1], width_se=ce.width_stderr[-1]))
    res["h_depth_sweep"] = dict(width=cfg["depth_width"], rows=rows)
    Ls = [r["depth"] for r in rows]
    fits["h_depth_part_vs_L"] = C.fit_loglog(Ls, [r["depth_part"] for r in rows])
    fits["h_total_vs_L"] = C.fit_loglog(Ls, [r["total"] for r in rows], [r["total_se"] for r in rows])

    # --- kernel level, depth: discrete recursion vs continuum (deterministic)
    X = np.full((1, cfg["d"]), np.sqrt(cfg["q0"]))
    cont = gaussian_init_kernels(X, activation=act, T=cfg["T"], ts=[0.0, cfg["T"]])
    rows = []
    for L in cfg["depths"]:
        dk = discrete_init_kernels(X, depth=L, activation=act, T=cfg["T"])
        rows.append(dict(depth=L, theta0_err=abs(dk.Theta[0, 0, 0] - cont.Theta[0, 0, 0]),
                         qT_err=abs(dk.Q[-1, 0, 0] - cont.Q[-1, 0, 0])))
    res["kernel_depth_sweep"] = dict(theta0_continuum=cont.Theta[0, 0, 0], qT_continuum=cont.Q[-1, 0, 0], rows=rows)
    fits["g_kernel_depth_err_vs_L"] = C.fit_loglog(Ls, [r["theta0_err"] for r in rows])
    fits["h_kernel_depth_err_vs_L"] = C.fit_loglog(Ls, [r["qT_err"] for r in rows])

    # --- kernel level, width: finite network at init (lr = 0) against its depth-L limit
    Lk = cfg["kernel_depth"]
    dk = discrete_init_kernels(X, depth=Lk, activation=act, T=cfg["T"])
    th_L, q_L = dk.Theta[0, 0, 0], dk.Q[-1, 0, 0]
    rows = []
    for n in cfg["widths"]:
        sim = nfd.simulate(X, np.zeros(1), width=n, depth=Lk, activation=act, lr=0.0, T=cfg["T"],
                           seeds=cfg["kernel_seeds"], seed=cfg["seed"], record=("features", "grads"))
        th_n = (sim.grads[:, 0, 0, :] ** 2).mean(-1)  # (seeds,) |g_0|²/n
        q_n = (sim.features[:, 0, -1, :] ** 2).mean(-1)  # |h_L|²/n
        mg, sg = C.mean_se((th_n - th_L) ** 2)
        mh, sh = C.mean_se((q_n - q_L) ** 2)
        rows.append(dict(width=n, g_msd=mg, g_msd_se=sg, h_msd=mh, h_msd_se=sh, theta0_mean=th_n.mean()))
    res["kernel_width_sweep"] = dict(depth=Lk, theta0_limit=th_L, qT_limit=q_L, rows=rows)
    fits["g_kernel_width_msd_vs_n"] = C.fit_loglog(ns, [r["g_msd"] for r in rows], [r["g_msd_se"] for r in rows])
    fits["h_kernel_width_msd_vs_n"] = C.fit_loglog(ns, [r["h_msd"] for r in rows], [r["h_msd_se"] for r in rows])

    claims = [
        C.claim("E|h^{n,L} − h^L|² (width part, synchronous coupling) = O(1/n)", "NFD Prop. 2 / Prop. 9",
                f"slope {C.slope_str(fits['h_width_part_vs_n'])} at L={cfg['width_depth']}",
                C.in_ci(fits["h_width_part_vs_n"], -1.0)),
        C.claim("E|h^L − h_t|² (depth part) ≤ C/L (an upper bound)", "NFD Prop. 2 / Prop. 11",
                f"slope {C.slope_str(fits['h_depth_part_vs_L'])} (deterministic)",
                C.within_bound(fits["h_depth_part_vs_L"], -1.0)),
        C.claim("E|h^{n,L} − h_t|² total ≤ C(1/L + 1/n)", "NFD Prop. 2",
                f"vs L at n={cfg['depth_width']}: slope {C.slope_str(fits['h_total_vs_L'])}",
                C.within_bound(fits["h_total_vs_L"], -1.0)),
        C.claim("backward kernel E[g_0²]: depth error O(1/L)", "NFD Prop. 6 (kernel level)",
                f"slope {C.slope_str(fits['g_kernel_depth_err_vs_L'])}", C.in_ci(fits["g_kernel_depth_err_vs_L"], -1.0)),
        C.claim("backward kernel E[g_0²]: width error (mean square over seeds) O(1/n)", "NFD Prop. 6 (kernel level)",
                f"slope {C.slope_str(fits['g_kernel_width_msd_vs_n'])} at L={Lk}",
                C.in_ci(fits["g_kernel_width_msd_vs_n"], -1.0)),
    ]
    notes = ["All errors at the last layer (t = T), one input with |x|²/d = q0, φ = tanh.",
             "g is measured at the kernel level only (no synchronous coupling for the backward SDE in nfd.limits)."]
    return C.write_result(STUDY, size, out_dir, title="Rates at initialisation", config=cfg, results=res, fits=fits,
                          claims=claims, notes=notes, t_start=t0, plot=plot)


if __name__ == "__main__":
    C.cli(STUDY, run)
