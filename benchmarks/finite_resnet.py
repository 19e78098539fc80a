"""Finite ResNet simulator: steps per second and peak memory versus width and depth.

Compares ``nfd.simulate`` (low-rank weight history; initial weights stored ("dense") or
regenerated per layer from counter-based keys ("regenerate")) with the straightforward
implementation a user would write: dense updated weights and ``jax.grad``
(``nfd.finite._dense.simulate_dense``). Each configuration runs in its own subprocess so
that its peak resident memory (``ru_maxrss`` from ``os.wait4``) is its own.

    python benchmarks/finite_resnet.py --quick      # minutes on 2 CPU cores
    python benchmarks/finite_resnet.py              # the full sweep (a GPU-sized run)

Writes ``benchmarks/results/finite_resnet.json`` and ``finite_resnet.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _one(cfg: dict) -> dict:
    """Run one configuration in this process; print a JSON line with its timings."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import nfd
    from nfd.finite._dense import simulate_dense

    if cfg["impl"] == "runtime_baseline":  # the Python + JAX runtime alone, for subtraction
        jax.jit(lambda a: a + 1)(jnp.ones(3)).block_until_ready()
        return {"first_call_s": 0.0, "run_s": 0.0, "steps_per_s": 0.0, "f_last": 0.0}
    n, L, K = cfg["width"], cfg["depth"], cfg["steps"]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(K, 8))
    Y = np.sin(X[:, 0])
    net = nfd.ResNet(depth=L, input_dim=8, width=n, activation="relu", lr=0.1)
    if cfg["impl"] == "dense_jax_grad":
        run = lambda: simulate_dense(net, X, Y, seeds=1, dtype=jnp.float32)["outputs"]
    else:
        run = lambda: nfd.simulate_network(net, X, Y, seeds=1, weights=cfg["impl"]).outputs
    t0 = time.perf_counter()
    out = run()
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out2 = run()
    t_run = time.perf_counter() - t0
    assert np.all(np.isfinite(out2))
    return {"first_call_s": t_first, "run_s": t_run, "steps_per_s": K / t_run, "f_last": float(np.asarray(out2)[0, -1])}


def _spawn(cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps(cfg)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return dict(cfg, status="timeout", timeout_s=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return dict(cfg, status="error", error=err.strip().splitlines()[-1] if err.strip() else str(proc.returncode))
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    res = json.loads(line)
    return dict(cfg, status="ok", wall_s=wall, **res)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sweep that finishes in minutes on 2 CPU cores")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "finite_resnet.json"))
    args = ap.parse_args(argv)

    if args.one:
        import resource

        cfg = json.loads(args.one)
        res = _one(cfg)
        res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return

    if args.quick:
        steps, widths, depths, wdepth, dwidth = 8, [128, 256, 512, 1024], [4, 16, 64], 8, 512
        big = dict(width=2048, depth=64, steps=2)
        timeout = 300
    else:
        steps, widths, depths, wdepth, dwidth = 32, [256, 512, 1024, 2048, 4096], [8, 32, 128, 256], 16, 1024
        big = dict(width=4096, depth=256, steps=4)
        timeout = 3600
    impls = ["dense", "regenerate", "dense_jax_grad"]
    configs = [dict(sweep="baseline", impl="runtime_baseline")]
    for n in widths:
        for impl in impls:
            configs.append(dict(sweep="width", width=n, depth=wdepth, steps=steps, impl=impl))
    for L in depths:
        for impl in impls:
            configs.append(dict(sweep="depth", width=dwidth, depth=L, steps=steps, impl=impl))
    configs.append(dict(sweep="big", impl="regenerate", **big))

    rows = []
    for cfg in configs:
        r = _spawn(cfg, timeout)
        rows.append(r)
        print(json.dumps(r), flush=True)
    base_rss = rows[0].get("peak_rss_mib", 0.0)
    for r in rows:
        if r.get("status") == "ok":
            r["net_rss_mib"] = r["peak_rss_mib"] - base_rss

    import nfd  # noqa: E402  (for the estimate of the big configuration)
    from nfd.finite._simulate import estimate_memory

    net = nfd.ResNet(depth=big["depth"], input_dim=8, width=big["width"])
    meta = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "jax_backend": __import__("jax").default_backend(),
        "dtype": "float32",
        "activation": "relu",
        "note": "peak_rss_mib is the subprocess's maximum resident set size; net_rss_mib subtracts the "
                "runtime_baseline process (Python + JAX alone). steps_per_s excludes compilation (second call "
                "of the same compiled run). Timings on a shared 2-core machine are noisy: compare ratios.",
        "big_config_estimate_bytes": {
            "nfd_regenerate": estimate_memory(net, steps=big["steps"], batch=1, seeds=1, n_test=0, record=(),
                                              dtype="float32", dense=False, backward="coupled"),
            "dense_weights_only": big["depth"] * big["width"] ** 2 * 4,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    from nfd.plotting import savefig

    savefig(plot({"meta": meta, "results": rows}), Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out}")


def plot(doc: dict):
    """The figure, drawn from the results JSON alone (``{"meta": ..., "results": rows}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfd.plotting import log_axis

    rows = doc["results"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    names = {"dense": "nfd, dense W0", "regenerate": "nfd, regenerated W0", "dense_jax_grad": "dense weights + jax.grad"}
    for col, (sweep, key) in enumerate((("width", "width"), ("depth", "depth"))):
        xs_all = []
        for impl, mk in (("dense", "o-"), ("regenerate", "s-"), ("dense_jax_grad", "^--")):
            pts = [r for r in rows if r.get("sweep") == sweep and r["impl"] == impl and r.get("status") == "ok"]
            if not pts:
                continue
            xs = [r[key] for r in pts]
            xs_all += xs
            axes[0, col].plot(xs, [r["steps_per_s"] for r in pts], mk, label=names.get(impl, impl))
            axes[1, col].plot(xs, [max(r["net_rss_mib"], 1.0) for r in pts], mk, label=names.get(impl, impl))
        axes[0, col].set_ylabel("SGD steps per second (after compilation)")
        axes[1, col].set_ylabel("peak RSS above the JAX runtime (MiB)")
        axes[0, col].set_title(f"speed against {key}")
        axes[1, col].set_title(f"memory against {key}")
        for ax in axes[:, col]:
            log_axis(ax, "x", xs_all)
            log_axis(ax, "y")
            ax.set_xlabel(f"{key} ({'n' if key == 'width' else 'L'})")
            ax.legend(fontsize=8)
            ax.grid(True, which="major", alpha=0.3)
    fig.suptitle("nfd.simulate (dense / regenerated W0, low-rank updates) against dense weights + jax.grad")
    return fig


if __name__ == "__main__":
    main()
