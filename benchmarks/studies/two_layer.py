"""Study 4: two-layer residual blocks [NFD §5, Appendix H, Fig. 5 row 1].

Blocks x_ℓ = W_{ℓ,1} h_{ℓ-1}/√n, h_ℓ = h_{ℓ-1} + √(T/L)/√n W_{ℓ,2} φ(x_ℓ) trained by SGD, with
``nfd.simulate(..., block="two_layer", record=("frozen",))`` recording, for every step and layer,

* ‖x_ℓ − x̃_ℓ‖/√n with x̃_ℓ = W_{ℓ,1}^(0) h_{ℓ-1}/√n (Eq. 27): the first layer's own feature update;
* ‖∂h_ℓ − ∂h̃_ℓ‖/√n with ∂h = (h_ℓ − h_{ℓ-1})/τ and ∂h̃ using W_{ℓ,2}^(0) (Eq. 33–34).

Predictions: under depth-μP the first quantity decays like L^{-1/2}; with the depth-aware rate
η₁ = η_c n √L (Eq. 8) it stays O(1); the second stays O(1) in both cases.
Reported value: mean over layers at the last recorded step, mean ± s.e. over seeds.
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

STUDY = "two_layer"


def plot(doc: dict):
    """The figure of this study, drawn from its JSON document alone."""
    cfg, fits = doc["config"], doc["fits"]
    fig, ax = C.figure(1, 2)
    names = {"depth_mup": "depth-μP η₁ = η_c n", "depth_aware": "depth-aware η₁ = η_c n √L"}
    C.plot_fit(ax[0, 0], fits["frozen_x_depth_mup"], names["depth_mup"], expected=-0.5,
               expected_label="NFD App. H.1: slope −1/2 under depth-μP")
    C.plot_fit(ax[0, 0], fits["frozen_x_depth_aware"], names["depth_aware"], fmt="s", expected=0.0,
               expected_label="NFD Eq. 8: slope 0 with the depth-aware rate")
    for key, fmt in (("depth_mup", "o"), ("depth_aware", "s")):
        C.plot_fit(ax[0, 1], fits[f"frozen_dh_{key}"], names[key], fmt=fmt, expected=0.0,
                   expected_label="NFD App. H.2: slope 0 (stays O(1))")
    ax[0, 0].set(xlabel="depth L", ylabel="‖x − x̃‖/√n (first internal layer)",
                 title=f"first-layer feature update, n={cfg['width']}")
    ax[0, 1].set(xlabel="depth L", ylabel="‖∂h − ∂h̃‖/√n (residual stream)", title="residual-stream update")
    return fig


def run(size: str, out_dir: str) -> dict:
    import nfd

    t0 = time.perf_counter()
    cfg = dict(activation="relu", lr=0.1, T=1.0, d=3, data_seed=0, parameterization="depth_mup",
               steps=C.pick(size, 3, 20, 300), batch_size=C.pick(size, 1, 4, 16),
               depths=C.pick(size, [2, 4], [2, 8, 32, 128], [2, 4, 8, 16, 32, 64, 128, 256]),
               width=C.pick(size, 16, 128, 512), seeds=C.pick(size, 2, 8, 16), seed=0)
    X, Y = data(cfg["steps"] * cfg["batch_size"], cfg["d"], cfg["data_seed"])
    res, fits = {}, {}
    for aware in (False, True):
        key = "depth_aware" if aware else "depth_mup"
        rows = []
        for L in cfg["depths"]:
            sim = nfd.simulate(X, Y, width=cfg["width"], depth=L, activation=cfg["activation"], lr=cfg["lr"],
                               T=cfg["T"], block="two_layer", depth_aware_lr=aware, seeds=cfg["seeds"],
                               seed=cfg["seed"], batch_size=cfg["batch_size"], record=("frozen",),
                               on_divergence="return")
            fx = sim.frozen_x[:, -1, :].mean(axis=-1)  # (seeds,): last sample, mean over layers
            fdh = sim.frozen_dh[:, -1, :].mean(axis=-1)
            mx, sx = C.mean_se(fx)
            mh, sh = C.mean_se(fdh)
            rows.append(dict(depth=L, frozen_x=mx, frozen_x_se=sx, frozen_dh=mh, frozen_dh_se=sh,
                             frozen_x_per_layer=sim.frozen_x[:, -1, :].mean(0),
                             final_loss=C.mean_se(sim.losses[:, -cfg["batch_size"]:].mean(1))[0],
                             diverged=bool(~np.isfinite(sim.outputs).all())))
        res[key] = rows
        Ls = [r["depth"] for r in rows]
        fits[f"frozen_x_{key}"] = C.fit_loglog(Ls, [r["frozen_x"] for r in rows], [r["frozen_x_se"] for r in rows])
        fits[f"frozen_dh_{key}"] = C.fit_loglog(Ls, [r["frozen_dh"] for r in rows], [r["frozen_dh_se"] for r in rows])
    claims = [
        C.claim("depth-μP: first-layer feature update ‖x − x̃‖/√n decays like L^-1/2", "NFD App. H.1, Fig. 5a",
                f"slope {C.slope_str(fits['frozen_x_depth_mup'])}", C.in_ci(fits["frozen_x_depth_mup"], -0.5)),
        C.claim("depth-aware rate η₁ = η_c n √L: ‖x − x̃‖/√n stays O(1)", "NFD Eq. 8, Fig. 5b",
                f"slope {C.slope_str(fits['frozen_x_depth_aware'])}", C.in_ci(fits["frozen_x_depth_aware"], 0.0)),
        C.claim("residual-stream update ‖∂h − ∂h̃‖/√n stays O(1) under depth-μP", "NFD App. H.2, Fig. 5c",
                f"slope {C.slope_str(fits['frozen_dh_depth_mup'])}", C.in_ci(fits["frozen_dh_depth_mup"], 0.0)),
        C.claim("... and with the depth-aware rate", "NFD App. H.2",
                f"slope {C.slope_str(fits['frozen_dh_depth_aware'])}", C.in_ci(fits["frozen_dh_depth_aware"], 0.0)),
    ]
    notes = [f"{cfg['steps']} SGD steps of batch {cfg['batch_size']} on the synthetic teacher (paper: 300 steps on CIFAR-10)."]
    return C.write_result(STUDY, size, out_dir, title="Two-layer blocks: internal learning collapse", config=cfg,
                          results=res, fits=fits, claims=claims, notes=notes, t_start=t0, plot=plot)


if __name__ == "__main__":
    C.cli(STUDY, run)
