"""Checkpoints of nfd.simulate and solve_mean_ode: size, save/load time, bit-identity of a resume.

    python benchmarks/checkpoints.py            # simulate: width 512, depth 32, 400 steps, 4 seeds;
                                                # Mean ODE: grid 100, 2048 particles, 100 steps, 2 replicates
    python benchmarks/checkpoints.py --tiny     # seconds (a smoke run)

Writes benchmarks/results/checkpoints.json (or --out).  Measures, on this machine's default
device: an uninterrupted run, the same run with ``checkpoint_every`` (time of every save and the
file size after it), a run killed after the checkpoint of step K/2 (an exception raised right after
the save) and resumed by the same call (load time), and whether the resumed outputs equal the
uninterrupted ones bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import jax
import numpy as np

import nfd
from nfd.finite import _simulate
from nfd.meanode import _solve as _mo


class _Stop(Exception):
    pass


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "checkpoints.json"))
    a = ap.parse_args(argv)
    doc = dict(device=str(jax.devices()[0]), machine=dict(platform=platform.platform(), cpus=os.cpu_count(),
                                                          jax=jax.__version__, python=sys.version.split()[0]),
               simulate=simulate_part(a.tiny), mean_ode=mean_ode_part(a.tiny))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(doc, fh, indent=1)
    print(json.dumps(doc, indent=1))
    if not (doc["simulate"]["bit_identical"] and doc["mean_ode"]["bit_identical"]):
        raise SystemExit("a resumed run differs from the uninterrupted one")


def simulate_part(tiny):
    if tiny:
        cfg = dict(width=64, depth=8, steps=40, seeds=2, every=10, n_test=4)
    else:
        cfg = dict(width=512, depth=32, steps=400, seeds=4, every=100, n_test=16)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(cfg["steps"], 3))
    Y = np.sin(X[:, 0]) + X[:, 1] / 2
    kw = dict(width=cfg["width"], depth=cfg["depth"], activation="tanh", lr=0.2, seeds=cfg["seeds"],
              X_test=rng.normal(size=(cfg["n_test"], 3)), weights="dense")

    t = time.perf_counter()
    full = nfd.simulate(X, Y, **kw)
    t_first = time.perf_counter() - t  # includes compilation
    t = time.perf_counter()
    nfd.simulate(X, Y, **kw)
    t_run = time.perf_counter() - t

    saves, loads = [], []
    orig_save, orig_load = _simulate._Checkpoint.save, _simulate._Checkpoint.load
    stop_at = [None]

    def save(self, step, carry):
        jax.block_until_ready(carry)
        t0 = time.perf_counter()
        orig_save(self, step, carry)
        saves.append(dict(step=step, seconds=time.perf_counter() - t0, bytes=os.path.getsize(self.path)))
        if step == stop_at[0]:
            raise _Stop()

    def load(self):
        t0 = time.perf_counter()
        out = orig_load(self)
        jax.block_until_ready(out[1])
        loads.append(dict(step=out[0], seconds=time.perf_counter() - t0))
        return out

    _simulate._Checkpoint.save, _simulate._Checkpoint.load = save, load
    try:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "run.npz")
            t = time.perf_counter()
            ck = nfd.simulate(X, Y, checkpoint=path, checkpoint_every=cfg["every"], **kw)
            t_ckpt = time.perf_counter() - t
            every_saves = list(saves)
            os.remove(path)
            saves.clear()
            half = cfg["steps"] // 2
            stop_at[0] = half
            try:
                nfd.simulate(X, Y, checkpoint=path, checkpoint_every=half, **kw)
            except _Stop:
                pass
            half_save = saves[-1]
            stop_at[0] = None
            t = time.perf_counter()
            resumed = nfd.simulate(X, Y, checkpoint=path, **kw)
            t_resume = time.perf_counter() - t
    finally:
        _simulate._Checkpoint.save, _simulate._Checkpoint.load = orig_save, orig_load

    same = all(np.array_equal(getattr(x, f), getattr(full, f)) for x in (ck, resumed)
               for f in ("outputs", "losses", "test_outputs"))
    state_bytes = cfg["seeds"] * (2 * cfg["depth"] * cfg["steps"] * cfg["width"]) * 4  # P, Q at the end
    return dict(
        config=cfg, run_s=t_run, first_run_with_compile_s=t_first, run_with_checkpoints_s=t_ckpt,
        saves=every_saves, half_checkpoint=half_save, load=loads[-1], resume_rest_s=t_resume,
        final_history_bytes=state_bytes, bit_identical=bool(same),
    )


def mean_ode_part(tiny):
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    if tiny:
        cfg = dict(grid=10, particles=64, steps=10, replicates=2, n=4, dim=3, every=4)
    else:
        cfg = dict(grid=100, particles=2048, steps=100, replicates=2, n=16, dim=3, every=25)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(cfg["n"], cfg["dim"]))
    Y = np.tanh(X[:, ::-1])
    kw = dict(steps=cfg["steps"], grid=cfg["grid"], particles=cfg["particles"], replicates=cfg["replicates"],
              dtype=jnp.float64)
    t = time.perf_counter()
    full = nfd.solve_mean_ode(X, Y, **kw)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    nfd.solve_mean_ode(X, Y, **kw)
    t_run = time.perf_counter() - t

    saves, loads = [], []
    orig_save, orig_load = _mo._Checkpoint.save, _mo._Checkpoint.load
    stop_at = [None]

    def save(self, done, run, it, carry):
        jax.block_until_ready(carry)
        t0 = time.perf_counter()
        orig_save(self, done, run, it, carry)
        saves.append(dict(run=run, step=it, seconds=time.perf_counter() - t0, bytes=os.path.getsize(self.path)))
        if (run, it) == stop_at[0]:
            raise _Stop()

    def load(self):
        t0 = time.perf_counter()
        out = orig_load(self)
        jax.block_until_ready(out[3])
        loads.append(dict(run=out[1], step=out[2], seconds=time.perf_counter() - t0))
        return out

    _mo._Checkpoint.save, _mo._Checkpoint.load = save, load
    half = (cfg["replicates"] - 1, cfg["steps"] // 2)  # mid-way through the last replicate
    try:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "run.npz")
            t = time.perf_counter()
            ck = nfd.solve_mean_ode(X, Y, checkpoint=path, checkpoint_every=cfg["every"], **kw)
            t_ckpt = time.perf_counter() - t
            every_saves = list(saves)
            os.remove(path)
            stop_at[0] = half
            try:
                nfd.solve_mean_ode(X, Y, checkpoint=path, checkpoint_every=cfg["steps"] // 2, **kw)
            except _Stop:
                pass
            half_save = saves[-1]
            stop_at[0] = None
            t = time.perf_counter()
            resumed = nfd.solve_mean_ode(X, Y, checkpoint=path, **kw)
            t_resume = time.perf_counter() - t
    finally:
        _mo._Checkpoint.save, _mo._Checkpoint.load = orig_save, orig_load
    fields = ("outputs", "losses", "forward", "u_displacement", "v_displacement", "replicate_outputs")
    same = all(np.array_equal(getattr(x, f), getattr(full, f)) for x in (ck, resumed) for f in fields)
    return dict(config=cfg, run_s=t_run, first_run_with_compile_s=t_first, run_with_checkpoints_s=t_ckpt,
                saves=every_saves, half_checkpoint=half_save, load=loads[-1], resume_rest_s=t_resume,
                bit_identical=bool(same))


if __name__ == "__main__":
    main()
