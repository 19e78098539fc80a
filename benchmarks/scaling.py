"""Scaling out (issue #9): strong scaling over devices, reduced-precision storage, noise
regeneration and checkpointing, recorded to benchmarks/results/scaling.json and scaling.png.

Sections:

* ``strong``: one fixed problem per solver, run on D = 1, 2, 4, 8 devices (each D in its own
  process; on a CPU-only machine the devices are XLA's simulated host devices,
  ``--xla_force_host_platform_device_count=D``, which share the same cores: this shows that the
  sharded programs are correct and what the partitioning costs, not a speed-up).  Solvers: the NFD
  particle solver in both modes (particles sharded), the Neural Mean ODE solver (particles
  sharded) and the finite simulator (seeds sharded).  Recorded: compile time, best-of-3 wall time,
  speed-up and efficiency relative to D = 1, and the largest relative deviation of the outputs
  from the D = 1 run (float64 runs: round-off, ~1e-15).
* ``precision``: the NFD solver with the O(L·K·P) histories stored in bfloat16 or float16
  (arithmetic in float32), against float32 storage, on the same particle seeds; the root-mean-
  square change of the outputs is compared with their Monte-Carlo standard deviation over seeds.
* ``noise``: ``noise="regenerate"`` (normals recomputed from counter-based keys) versus stored
  normals: time, memory estimate and compiled memory, and the (round-off) difference.
* ``checkpoint``: time to save and load a mid-run checkpoint, its size, and that the resumed run
  equals the uninterrupted one bit for bit.

Usage:  python benchmarks/scaling.py --quick        (a few minutes on 2 CPU cores)
        python benchmarks/scaling.py                (full size, meant for a machine with GPUs: the
                                                     strong section then uses the real devices)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
ROOT = os.path.dirname(HERE)
DEVICE_COUNTS = (1, 2, 4, 8)


def _sizes(size):
    return {
        "tiny": dict(nfd=dict(P=512, L=4, K=8), ode=dict(P=256, grid=16, steps=5), sim=dict(n=64, L=4, K=8, seeds=8),
                     prec=dict(P=512, L=4, K=8, seeds=4), noise=dict(P=2048, L=8, K=16)),
        "quick": dict(nfd=dict(P=16384, L=16, K=32), ode=dict(P=8192, grid=64, steps=20),
                      sim=dict(n=512, L=16, K=32, seeds=8), prec=dict(P=4096, L=16, K=16, seeds=8),
                      noise=dict(P=16384, L=16, K=32)),
        # one GPU, a few minutes in all (benchmarks/gpu.sh)
        "gpu": dict(nfd=dict(P=131072, L=32, K=64), ode=dict(P=65536, grid=64, steps=50),
                    sim=dict(n=1024, L=32, K=64, seeds=8), prec=dict(P=65536, L=32, K=64, seeds=8),
                    noise=dict(P=131072, L=32, K=64)),
        "full": dict(nfd=dict(P=262144, L=64, K=128), ode=dict(P=262144, grid=128, steps=100),
                     sim=dict(n=2048, L=64, K=128, seeds=8), prec=dict(P=65536, L=32, K=64, seeds=8),
                     noise=dict(P=262144, L=32, K=128)),
    }[size]


def _data(K, d=3, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, d))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1]


def _timed(fn, reps=3):
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return first, best, out


# ---------------------------------------------------------------------------------------------
# worker: one device count, one process
# ---------------------------------------------------------------------------------------------
def worker(size, out_path, D):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, ROOT)
    import nfd

    S = _sizes(size)
    if len(jax.devices()) < D:
        raise RuntimeError(f"asked for {D} devices, this process has {len(jax.devices())}")
    devices = None if D == 1 else jax.devices()[:D]
    rec, arrays = {}, {}

    c = S["nfd"]
    X, Y = _data(c["K"])
    for mode in ("gia", "exact"):
        for dt in ("float32", "float64"):
            def run(mode=mode, dt=dt):
                return nfd.solve(X, Y, depth=c["L"], particles=c["P"], activation="tanh", lr=0.5, backward=mode,
                                 dtype=jnp.dtype(dt), devices=devices, eigenvalues=False)
            first, best, sol = _timed(run)
            rec[f"nfd_{mode}_{dt}"] = dict(compile_and_run_s=first, wall_s=best)
            arrays[f"nfd_{mode}_{dt}"] = np.concatenate([sol.outputs, sol.sigma.ravel(), sol.theta.ravel()])

    c = S["ode"]
    rng = np.random.default_rng(1)
    Xo, Yo = rng.normal(size=(2, 8, 3))
    for dt in ("float32", "float64"):
        def run_ode(dt=dt):
            return nfd.solve_mean_ode(Xo, Yo, steps=c["steps"], grid=c["grid"], particles=c["P"], replicates=1,
                                      dtype=jnp.dtype(dt), devices=devices)
        first, best, res = _timed(run_ode)
        rec[f"mean_ode_{dt}"] = dict(compile_and_run_s=first, wall_s=best)
        arrays[f"mean_ode_{dt}"] = res.outputs.ravel()

    c = S["sim"]
    Xs, Ys = _data(c["K"])
    for dt in ("float32", "float64"):
        def run_sim(dt=dt):
            return nfd.simulate(Xs, Ys, width=c["n"], depth=c["L"], activation="tanh", lr=0.5, seeds=c["seeds"],
                                dtype=jnp.dtype(dt), devices=devices)
        first, best, res = _timed(run_sim)
        rec[f"simulate_{dt}"] = dict(compile_and_run_s=first, wall_s=best)
        arrays[f"simulate_{dt}"] = np.asarray(res.outputs).ravel()

    np.savez(out_path + ".npz", **arrays)
    json.dump(dict(devices=D, device_kind=[str(d) for d in jax.devices()][:1], timings=rec), open(out_path, "w"))


def strong(size, real):
    """``real``: use this machine's accelerators (D up to their number); else D simulated host devices."""
    import numpy as np

    import jax

    counts = [D for D in DEVICE_COUNTS if not real or D <= len(jax.devices())]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for D in counts:
            out = os.path.join(tmp, f"w{D}.json")
            env = dict(os.environ)
            if not real:
                env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={D}", JAX_PLATFORMS="cpu")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", size, "--worker-out", out,
                                "--worker-devices", str(D)], env=env, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"worker D={D} failed:\n{r.stderr[-4000:]}")
            runs[D] = json.load(open(out))
            runs[D]["arrays"] = dict(np.load(out + ".npz"))
            print(f"[strong] D={D} done in {time.perf_counter() - t0:.0f} s", flush=True)
    cases = list(runs[1]["timings"])
    table = {}
    for case in cases:
        ref = runs[1]["arrays"][case]
        rows = []
        for D in counts:
            t = runs[D]["timings"][case]
            dev = float(np.max(np.abs(runs[D]["arrays"][case] - ref)) / max(np.max(np.abs(ref)), 1e-300))
            rows.append(dict(devices=D, wall_s=t["wall_s"], compile_and_run_s=t["compile_and_run_s"],
                             speedup=runs[1]["timings"][case]["wall_s"] / t["wall_s"],
                             efficiency=runs[1]["timings"][case]["wall_s"] / t["wall_s"] / D,
                             max_rel_deviation_from_1_device=dev))
        table[case] = rows
        print(f"[strong] {case}: " + ", ".join(f"D={r['devices']} {r['wall_s']:.3f}s dev {r['max_rel_deviation_from_1_device']:.1e}"
                                              for r in rows), flush=True)
    return dict(device_kind=runs[1]["device_kind"], simulated=not real, device_counts=counts, cases=table,
                sizes=_sizes(size))


# ---------------------------------------------------------------------------------------------
# precision, noise, checkpoint (this process, one device)
# ---------------------------------------------------------------------------------------------
def precision(size):
    import jax.numpy as jnp
    import numpy as np

    import nfd

    c = _sizes(size)["prec"]
    X, Y = _data(c["K"])
    out = {}
    for mode in ("gia", "exact"):
        kw = dict(depth=c["L"], particles=c["P"], activation="tanh", lr=0.5, backward=mode, eigenvalues=False,
                  dtype=jnp.float32)
        full = np.array([nfd.solve(X, Y, seed=s, **kw).outputs for s in range(c["seeds"])])
        mc_sd = full.std(axis=0, ddof=1)
        res = {}
        for sd in ("bfloat16", "float16"):
            half = np.array([nfd.solve(X, Y, seed=s, storage_dtype=sd, **kw).outputs for s in range(c["seeds"])])
            rms = np.sqrt(np.mean((half - full) ** 2, axis=0))
            est = nfd.limits.estimate_particle_memory(particles=c["P"], depth=c["L"], samples=c["K"], input_dim=3,
                                                      storage_itemsize=2)
            res[sd] = dict(rms_change=rms.tolist(), mc_sd=mc_sd.tolist(), max_ratio=float(np.max(rms / mc_sd)),
                           median_ratio=float(np.median(rms / mc_sd)), memory_estimate_bytes=est)
            print(f"[precision] {mode} {sd}: rms change / MC sd max {res[sd]['max_ratio']:.2e}, "
                  f"median {res[sd]['median_ratio']:.2e}", flush=True)
        res["float32_memory_estimate_bytes"] = nfd.limits.estimate_particle_memory(
            particles=c["P"], depth=c["L"], samples=c["K"], input_dim=3)
        out[mode] = res
    return dict(config=c, results=out)


def _compiled_bytes(prob):
    import jax.numpy as jnp

    from nfd.limits import _nfd

    prog = _nfd._program(prob.static)
    s0 = jnp.asarray(0)
    ma = prog.advance_donating.lower(prog.init(), s0, s0 + 1, *prob.args).compile().memory_analysis()
    if ma is None:
        return None
    return int(ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes + ma.temp_size_in_bytes)


def noise(size):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import nfd

    c = _sizes(size)["noise"]
    X, Y = _data(c["K"])
    net = nfd.ResNet(depth=c["L"], input_dim=3, activation="tanh", lr=0.5)
    out = {}
    ref = {}
    for mode in ("gia", "exact"):
        for nz in ("store", "regenerate"):
            for sd in (None, "bfloat16"):
                kw = dict(particles=c["P"], backward=mode, noise=nz, storage_dtype=sd, eigenvalues=False)
                prob = nfd.particle_problem(net, X, Y, **kw)
                first, best, sol = _timed(lambda: nfd.limits.solve_particles_network(net, X, Y, **kw), reps=2)
                key = f"{mode}/{nz}/{sd or 'float32'}"
                if (mode, sd) not in ref:
                    ref[(mode, sd)] = sol.outputs
                out[key] = dict(wall_s=best, compile_and_run_s=first,
                                memory_estimate_bytes=prob.options["memory_estimate_bytes"],
                                compiled_bytes=_compiled_bytes(prob),
                                max_abs_diff_vs_stored=float(np.max(np.abs(sol.outputs - ref[(mode, sd)]))))
                print(f"[noise] {key}: {best:.3f}s, est {out[key]['memory_estimate_bytes'] / 2**20:.1f} MiB, "
                      f"compiled {out[key]['compiled_bytes'] / 2**20:.1f} MiB", flush=True)
    del jax, jnp
    return dict(config=c, results=out)


def checkpoint(size):
    import numpy as np

    import nfd

    c = _sizes(size)["noise"]
    X, Y = _data(c["K"])
    net = nfd.ResNet(depth=c["L"], input_dim=3, activation="tanh", lr=0.5)
    prob = nfd.particle_problem(net, X, Y, particles=c["P"], backward="exact", eigenvalues=False)
    full = prob.solution(prob.advance(prob.init()))
    half = prob.advance(prob.init(), prob.steps // 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ckpt.npz")
        t0 = time.perf_counter()
        prob.save(half, path)
        t_save = time.perf_counter() - t0
        nbytes = os.path.getsize(path)
        t0 = time.perf_counter()
        back = prob.load(path)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        resumed = prob.solution(prob.advance(back))
        t_rest = time.perf_counter() - t0
    same = all(np.array_equal(getattr(full, f), getattr(resumed, f)) for f in ("outputs", "losses", "sigma", "theta"))
    print(f"[checkpoint] {nbytes / 2**20:.1f} MiB, save {t_save:.3f}s, load {t_load:.3f}s, bit-identical {same}",
          flush=True)
    return dict(config=c, checkpoint_bytes=nbytes, save_s=t_save, load_s=t_load, resume_rest_s=t_rest,
                bit_identical=bool(same), at_step=prob.steps // 2, steps=prob.steps)


# ---------------------------------------------------------------------------------------------
def plot(res, path=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfd.plotting import log_axis, log_log, savefig
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for case, rows in res["strong"]["cases"].items():
        if not case.endswith("float32"):
            continue
        D = [r["devices"] for r in rows]
        ax.plot(D, [r["wall_s"] for r in rows], "o-", label=case.replace("_float32", ""))
    D = np.array(res["strong"]["device_counts"])
    first = min(rows[0]["wall_s"] for rows in res["strong"]["cases"].values())
    ax.plot(D, first / D, "k:", label="ideal (∝ 1/D)")
    log_log(ax, D)
    ax.set_xlabel("devices D" + (" (simulated host devices)" if res["strong"]["simulated"] else ""))
    ax.set_ylabel("wall time per solve [s]")
    ax.set_title("strong scaling (float32)")
    ax.legend(fontsize=7)
    ax = axes[1]
    for case, rows in res["strong"]["cases"].items():
        if not case.endswith("float64"):
            continue
        D = [r["devices"] for r in rows[1:]]
        ax.plot(D, [max(r["max_rel_deviation_from_1_device"], 1e-18) for r in rows[1:]], "o-",
                    label=case.replace("_float64", ""))
    ax.axhline(2.2e-16, color="k", ls=":", label="float64 ulp")
    log_axis(ax, "y")
    ax.set_xticks(sorted({r["devices"] for rows in res["strong"]["cases"].values() for r in rows[1:]}))
    ax.set_xlabel("devices D")
    ax.set_ylabel("max relative deviation from D = 1")
    ax.set_title("sharded = one device (float64)")
    ax.legend(fontsize=7)
    ax = axes[2]
    names, vals = [], []
    for mode, r in res["precision"]["results"].items():
        for sd in ("bfloat16", "float16"):
            names.append(f"{mode}\n{sd}")
            vals.append(r[sd]["max_ratio"])
    ax.bar(range(len(vals)), vals)
    ax.set_xticks(range(len(vals)), names, fontsize=8)
    log_axis(ax, "y")
    ax.set_xlabel("history storage")
    ax.set_ylabel("max over samples of rms change / MC sd")
    ax.set_title("16-bit history storage: error vs Monte-Carlo error")
    if path is not None:
        savefig(fig, path, dpi=110)
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="a few minutes on 2 CPU cores")
    g.add_argument("--tiny", action="store_true", help="seconds (smoke test)")
    g.add_argument("--gpu", action="store_true", help="sizes for a few minutes on one GPU (benchmarks/gpu.sh)")
    p.add_argument("--sections", default="strong,precision,noise,checkpoint",
                   help="comma-separated subset (the figure needs strong and precision)")
    p.add_argument("--out", default=os.path.join(RESULTS, "scaling.json"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-devices", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.worker_out, a.worker_devices)
    size = "tiny" if a.tiny else "quick" if a.quick else "gpu" if a.gpu else "full"
    sections = a.sections.split(",")
    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, ROOT)
    t0 = time.perf_counter()
    res = dict(size=size, machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(), jax=jax.__version__,
                                       python=platform.python_version(), devices=[str(d) for d in jax.devices()]))
    real = jax.default_backend() != "cpu"
    res["gpu"] = (f"strong section on {len(jax.devices())} × {jax.devices()[0].device_kind}" if real else
                  "no accelerator on this machine: the strong section ran on simulated host devices")
    res["device_kind"] = jax.devices()[0].device_kind
    fns = dict(strong=lambda: strong(size, real), precision=lambda: precision(size), noise=lambda: noise(size),
               checkpoint=lambda: checkpoint(size))
    for name in sections:
        res[name] = fns[name]()
    res["wall_s"] = time.perf_counter() - t0
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    png = os.path.splitext(a.out)[0] + ".png"
    res["figure"] = os.path.basename(png) if "strong" in res and "precision" in res else None
    json.dump(res, open(a.out, "w"), indent=1)
    if res["figure"]:
        plot(res, png)
    print(f"wrote {a.out} and {png} in {res['wall_s']:.0f} s")
    return res


if __name__ == "__main__":
    main()
