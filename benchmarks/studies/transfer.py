"""Study 5: hyperparameter transfer across depth [NFD Fig. 5 row 2; DMFT paper Fig. 1].

Test loss after a fixed SGD budget versus η_c for several depths, for
* ``mup``: μP ResNet (branch multiplier 1, pre-activation blocks),
* ``depth_mup``: depth-μP ResNet (branch √(T/L), pre-activation blocks),
* ``two_layer``: depth-μP with two-layer blocks (Eq. 6),
* ``two_layer_aware``: the same with the depth-aware first-layer rate η₁ = η_c n √L (Eq. 8),
on two tasks: scikit-learn's digits (8×8 images, d = 64, label y = 1 for digits ≥ 5 else −1,
MSE loss; shipped inside the package, no download) and a synthetic teacher
(y = sin(x₀) + x₁/2, x ~ N(0, I₃)).  Online SGD (each sample used once), mini-batches.
The reported optimum per depth is the grid point with the smallest mean test loss (seeds).
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

STUDY = "transfer"
SETTINGS = dict(mup=dict(parameterization="mup", block="pre"), depth_mup=dict(parameterization="depth_mup", block="pre"),
                two_layer=dict(parameterization="depth_mup", block="two_layer"),
                two_layer_aware=dict(parameterization="depth_mup", block="two_layer", depth_aware_lr=True))


def task(name, n_train, n_test, seed=0):
    if name == "digits":
        from sklearn.datasets import load_digits

        Xa, ya = load_digits(return_X_y=True)
        Xa = Xa / 16.0
        Xa = (Xa - Xa.mean(0)) / (Xa.std(0) + 1e-8)
        Ya = np.where(ya >= 5, 1.0, -1.0)
        perm = np.random.default_rng(seed).permutation(len(Xa))
        Xa, Ya = Xa[perm], Ya[perm]
        n_train = min(n_train, len(Xa) - n_test)
        return Xa[:n_train], Ya[:n_train], Xa[-n_test:], Ya[-n_test:]
    X, Y = data(n_train + n_test, 3, seed + 7)
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]


def plot(doc: dict):
    """The figure of this study, drawn from its JSON document alone."""
    cfg, res = doc["config"], doc["results"]
    nt, ns = len(cfg["tasks"]), len(cfg["settings"])
    fig, ax = C.figure(nt, ns, w=3.6, h=3.2)
    lrs = np.asarray(cfg["lrs"], float)
    for a, tname in enumerate(cfg["tasks"]):
        for b, sname in enumerate(cfg["settings"]):
            r, p = res[tname][sname], ax[a, b]
            for i, L in enumerate(cfg["depths"]):
                m = np.asarray([np.nan if v is None else v for v in r["test_loss"][i]], float)
                se = np.asarray([np.nan if v is None else v for v in r["test_loss_se"][i]], float)
                ok = np.isfinite(m) & (m > 0)  # missing points diverged
                if ok.any():
                    p.errorbar(lrs[ok], m[ok], 2 * np.nan_to_num(se[ok]), fmt="o-", ms=3, capsize=2,
                               label=f"L={L} (± 2 SE)")
            C.log_x(p, lrs)
            C.log_y(p)
            p.set(xlabel="η_c", ylabel="test loss", title=f"{tname}: {sname}")
            p.legend(fontsize=6)
    return fig


def run(size: str, out_dir: str) -> dict:
    import nfd

    t0 = time.perf_counter()
    cfg = dict(activation="relu", T=1.0, seed=0,
               tasks=C.pick(size, ["teacher"], ["digits"], ["digits", "teacher"]),
               settings=C.pick(size, ["depth_mup"], list(SETTINGS), list(SETTINGS)),
               lrs=C.pick(size, [0.1, 1.0], [0.05, 0.2, 0.8, 3.2], [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]),
               depths=C.pick(size, [2, 4], [2, 16], [2, 4, 8, 16, 32, 64]),
               width=C.pick(size, 16, 64, 256), seeds=C.pick(size, 2, 3, 8),
               steps=C.pick(size, 4, 40, 200), batch_size=C.pick(size, 4, 16, 32), n_test=C.pick(size, 32, 300, 500))
    res, claims = {}, []
    K = cfg["steps"] * cfg["batch_size"]
    for tname in cfg["tasks"]:
        Xtr, Ytr, Xte, Yte = task(tname, K, cfg["n_test"])
        steps = len(Xtr) // cfg["batch_size"]
        Xtr, Ytr = Xtr[: steps * cfg["batch_size"]], Ytr[: steps * cfg["batch_size"]]
        res[tname] = {}
        for sname in cfg["settings"]:
            grid = np.full((len(cfg["depths"]), len(cfg["lrs"])), np.nan)
            grid_se = np.full_like(grid, np.nan)
            for i, L in enumerate(cfg["depths"]):
                for j, lr in enumerate(cfg["lrs"]):
                    try:
                        sim = nfd.simulate(Xtr, Ytr, width=cfg["width"], depth=L, activation=cfg["activation"], lr=lr,
                                           T=cfg["T"], seeds=cfg["seeds"], seed=cfg["seed"], batch_size=cfg["batch_size"],
                                           X_test=Xte, record=(), on_divergence="return", **SETTINGS[sname])
                    except nfd.DivergenceError:
                        continue
                    te = 0.5 * ((sim.test_outputs[:, -1, :] - Yte[None]) ** 2).mean(1)
                    if np.isfinite(te).all():
                        grid[i, j], grid_se[i, j] = C.mean_se(te)
            best = [None if np.all(np.isnan(g)) else cfg["lrs"][int(np.nanargmin(g))] for g in grid]
            res[tname][sname] = dict(test_loss=grid, test_loss_se=grid_se, best_lr=best)
            same = len(set(best)) == 1 and None not in best
            claims.append(C.claim(f"{tname}/{sname}: optimal η_c " + ("shifts with depth" if sname in ("mup", "two_layer")
                                                                      else "transfers across depth"),
                                  {"mup": "DMFT Fig. 1", "depth_mup": "DMFT Fig. 1; NFD §5",
                                   "two_layer": "NFD Fig. 5d", "two_layer_aware": "NFD Fig. 5e"}[sname],
                                  "best η_c per depth " + ", ".join(f"L={L}: {b}" for L, b in zip(cfg["depths"], best)),
                                  (same if sname in ("depth_mup", "two_layer_aware") else not same) if None not in best else None))
    notes = [f"width {cfg['width']}, {cfg['steps']} steps of batch {cfg['batch_size']}; missing points diverged.",
             "'agrees' compares optimal grid points only: on a coarse grid equal optima are weak evidence."]
    return C.write_result(STUDY, size, out_dir, title="Hyperparameter transfer across depth", config=cfg, results=res,
                          fits={}, claims=claims, notes=notes, t_start=t0, plot=plot)


if __name__ == "__main__":
    C.cli(STUDY, run)
