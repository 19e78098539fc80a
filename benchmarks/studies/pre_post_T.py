"""Study 6: pre- versus post-activation blocks [NFD Prop. 1, Fig. 1a] and the time horizon T [NFD Fig. 2].

(a) Feature size |h_L|²/n at initialisation versus depth under depth-μP (branch √(T/L)), for
pre-activation blocks (Eq. 1) and post-activation blocks (Eq. 9), φ = ReLU (positive dominant).
Prop. 1: post-activation features grow without bound with depth (each block adds a drift
√(T/L)·E[φ] > 0, so |h_L|²/n ~ L); pre-activation features stay O(1) (they follow the SDE).

(b) Online SGD on a synthetic teacher with depth-μP ResNets of fixed depth and width for several T:
training loss (mean online loss over the last quarter of the steps) and test loss (held-out inputs
after training), finite networks (mean ± s.e. over seeds) and the GIA limit (particle solver).
Fig. 2 reports that moderate T helps and very large T destabilises training.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
from studies.rates_training import data  # noqa: E402

STUDY = "pre_post_T"


def plot(doc: dict):
    """The figure of this study, drawn from its JSON document alone."""
    cfg, res, fits = doc["config"], doc["results"], doc["fits"]
    rows = res["horizon"]["rows"]
    fig, ax = C.figure(1, 2)
    a = ax[0, 0]
    C.plot_fit(a, fits["growth_pre"], "pre-activation", expected=0.0,
               expected_label="NFD Prop. 2: bounded (slope 0)")
    C.plot_fit(a, fits["growth_post"], "post-activation", fmt="s")
    a.set(xlabel="depth L", ylabel="|h_L|²/n at initialisation",
          title=f"feature size against depth (ReLU, n={cfg['growth_width']})")
    a = ax[0, 1]
    t = np.asarray([r["T"] for r in rows], float)
    none = lambda v: np.nan if v is None else v  # noqa: E731
    for key, fmt, lab in (("train", "o-", "finite, train"), ("test", "s-", "finite, test")):
        m = np.asarray([none(r[key]) for r in rows], float)
        se = np.asarray([none(r[key + "_se"]) for r in rows], float)
        ok = np.isfinite(m) & np.isfinite(se)  # all seeds diverged: no point
        a.errorbar(t[ok], m[ok], 2 * se[ok], fmt=fmt, ms=4, capsize=2, label=f"{lab} (± 2 SE)")
    for key, fmt, lab in (("limit_train", "--", "limit, train"), ("limit_test", ":", "limit, test")):
        v = np.asarray([none(r[key]) for r in rows], float)
        if np.isfinite(v).any():
            a.plot(t[np.isfinite(v)], v[np.isfinite(v)], fmt, label=lab)
    C.log_x(a, t)
    C.log_y(a)
    a.set(xlabel="time horizon T", ylabel="loss",
          title=f"horizon T: L={cfg['T_depth']}, n={cfg['T_width']}, {cfg['T_steps']} steps")
    a.legend(fontsize=7)
    return fig


def run(size: str, out_dir: str) -> dict:
    import jax.numpy as jnp

    import nfd

    t0 = time.perf_counter()
    cfg = dict(activation="relu", d=3, data_seed=0,
               growth_depths=C.pick(size, [2, 8], [2, 8, 32, 128], [2, 4, 8, 16, 32, 64, 128, 256, 512]),
               growth_width=C.pick(size, 16, 256, 1024), growth_seeds=C.pick(size, 2, 8, 16), seed=0,
               Ts=C.pick(size, [0.5, 2.0], [0.25, 1.0, 4.0, 16.0, 64.0], [0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64]),
               T_depth=C.pick(size, 2, 8, 16), T_width=C.pick(size, 16, 128, 512), T_seeds=C.pick(size, 2, 8, 32),
               T_steps=C.pick(size, 4, 48, 200), T_batch=C.pick(size, 1, 4, 16), lr=0.25, n_test=C.pick(size, 8, 64, 256),
               particles=C.pick(size, 256, 4096, 32768))
    res, fits = dict(growth={}, horizon={}), {}
    X1 = data(1, cfg["d"], cfg["data_seed"])[0]
    for block in ("pre", "post"):
        rows = []
        for L in cfg["growth_depths"]:
            sim = nfd.simulate(X1, np.zeros(1), width=cfg["growth_width"], depth=L, activation=cfg["activation"], lr=0.0,
                               block=block, seeds=cfg["growth_seeds"], seed=cfg["seed"], record=("features",),
                               on_divergence="return")
            sq = (sim.features[:, 0, -1, :] ** 2).mean(-1)
            m, se = C.mean_se(sq)
            rows.append(dict(depth=L, feature_sq=m, feature_sq_se=se))
        res["growth"][block] = rows
        fits[f"growth_{block}"] = C.fit_loglog([r["depth"] for r in rows], [r["feature_sq"] for r in rows],
                                               [r["feature_sq_se"] for r in rows])
    K = cfg["T_steps"] * cfg["T_batch"]
    X, Y = data(K + cfg["n_test"], cfg["d"], cfg["data_seed"] + 1)
    Xtr, Ytr, Xte, Yte = X[:K], Y[:K], X[K:], Y[K:]
    q = max(1, cfg["T_steps"] // 4) * cfg["T_batch"]
    rows = []
    for T in cfg["Ts"]:
        sim = nfd.simulate(Xtr, Ytr, width=cfg["T_width"], depth=cfg["T_depth"], activation=cfg["activation"],
                           lr=cfg["lr"], T=T, seeds=cfg["T_seeds"], seed=cfg["seed"], batch_size=cfg["T_batch"],
                           X_test=Xte, record=(), on_divergence="return")
        tr = sim.losses[:, -q:].mean(1)
        te = 0.5 * ((sim.test_outputs[:, -1, :] - Yte[None]) ** 2).mean(1)
        row = dict(T=T, train=C.mean_se(tr)[0], train_se=C.mean_se(tr)[1], test=C.mean_se(te)[0],
                   test_se=C.mean_se(te)[1], diverged_seeds=int((~np.isfinite(sim.outputs).all(1)).sum()))
        try:
            sol = nfd.solve(Xtr, Ytr, depth=cfg["T_depth"], particles=cfg["particles"], activation=cfg["activation"],
                            lr=cfg["lr"], T=T, batch_size=cfg["T_batch"], X_test=Xte, eigenvalues=False,
                            on_singular="regularize", dtype=jnp.float64)
            row.update(limit_train=sol.losses[-q:].mean(), limit_test=0.5 * ((sol.test_outputs[-1] - Yte) ** 2).mean())
        except nfd.DivergenceError as e:
            row.update(limit_train=None, limit_test=None, limit_error=str(e))
        rows.append(row)
    res["horizon"] = dict(depth=cfg["T_depth"], width=cfg["T_width"], rows=rows)
    best_tr = min(rows, key=lambda r: r["train"] if np.isfinite(r["train"]) else np.inf)
    best_te = min(rows, key=lambda r: r["test"] if np.isfinite(r["test"]) else np.inf)
    Ts = cfg["Ts"]
    post = res["growth"]["post"]
    claims = [
        C.claim("pre-activation features stay bounded with depth (slope 0 of |h_L|²/n vs L)", "NFD Prop. 2, Fig. 1a",
                f"slope {C.slope_str(fits['growth_pre'])}", C.in_ci(fits["growth_pre"], 0.0)),
        C.claim("post-activation features grow with depth (ReLU is positive dominant)", "NFD Prop. 1, Fig. 1a",
                f"|h_L|²/n from {post[0]['feature_sq']:.3g} ± {post[0]['feature_sq_se']:.1g} (L={post[0]['depth']}) to "
                f"{post[-1]['feature_sq']:.3g} ± {post[-1]['feature_sq_se']:.1g} (L={post[-1]['depth']}); "
                f"power-law slope {C.slope_str(fits['growth_post'])}",
                # growth = the deepest value exceeds the shallowest by more than 4 combined standard errors
                bool(post[-1]["feature_sq"] - post[0]["feature_sq"]
                     > 4 * np.hypot(post[-1]["feature_sq_se"], post[0]["feature_sq_se"]))),
        C.claim("moderate T beats both the smallest and the largest T", "NFD Fig. 2",
                f"best train loss at T={best_tr['T']}, best test loss at T={best_te['T']} (tried {Ts})",
                bool(Ts[0] < best_te["T"] < Ts[-1]) if len(Ts) > 2 else None),
    ]
    notes = ["Synthetic teacher y = sin(x₀) + x₁/2 with x ~ N(0, I₃) (the paper uses CIFAR-10).",
             "Train loss: mean online loss (before each update) over the last quarter of the steps."]
    return C.write_result(STUDY, size, out_dir, title="Pre vs post activation; time horizon T", config=cfg,
                          results=res, fits=fits, claims=claims, notes=notes, t_start=t0, plot=plot)


if __name__ == "__main__":
    C.cli(STUDY, run)
