"""History reads of the particle solver (issue #18, item 5): every preallocated row vs the filled rows.

At step s the particle solver (nfd/limits/_nfd.py) multiplies the stored histories (φ(h), g, ξ, ξ̃;
each (H, P) per layer, H = K·B rows of which only the first s·B are filled) by the new vectors.
Reading all H rows every step moves twice the triangular minimum.  ``read_chunks`` (a field of the
solver's static description) rounds the rows read up to one of n prefix lengths (``lax.switch``
over static shapes); ``read_chunks=1`` is the full read of earlier versions.

What is measured, all in one run of this script:

* ``headline``: one memory-bound size (``--quick``: P = 2¹⁶, L = 16, K = 32, float32; ``--full``:
  P = 2¹⁸), both backward modes, full reads vs the filled prefix: the solve's compiled program
  (``ParticleProblem.advance`` from ``init``: everything ``nfd.solve`` runs on the device; the
  host-side solution with its eigenvalues is not timed).  Each configuration is compiled first (its
  first call timed; compile ≈ first − best), then ``rounds`` rounds call every configuration once
  in a random order (interleaved), best of the rounds and the median; the 1-minute load average is
  recorded each round.  In the same rounds: a streaming copy (jitted ``a * 1.0000001`` in place, the
  input donated: reads and writes the bytes) and a streaming read (jitted ``jnp.sum``) of an array of
  the size of one whole history (L, H, P), so achieved GB/s = history bytes read / solve time can be
  set against them.
* ``scaling``: the same interleaved timing at 5 values each of P, L and K around a base size (exact
  mode), full and prefix reads, and the cost exponents from a least-squares fit of log time on log
  size: slope ± its standard error (from the scatter of the 5 points about the line, the
  regression's own s.e.), 95 % interval as in ``_common.fit_loglog``.  Expected asymptotically:
  P¹ L¹ K²; at small K the O(L·K·P) part (normals, element-wise updates) flattens the K exponent.

Bytes: ``history_bytes`` counts the rows each read touches (full: H; prefix: the filled rows
rounded up to the chunk), times P and the item size; every solver read of a (rows, P) history
slice is counted once (forward: φ(h), ξ (twice with test inputs), g (+ ξ̃ exact); backward:
g, ξ̃, φ(h) (+ ξ exact); per step: g₀ and h_L).  Copies XLA makes of a slice are not counted.

    python benchmarks/history_reads.py --quick   # 2 CPU cores: a few minutes
    python benchmarks/history_reads.py           # --full sizes, meant for a GPU
    python benchmarks/history_reads.py --tiny    # seconds

Writes benchmarks/results/history_reads.json and history_reads.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np

# compile times are measured: no persistent compilation cache (import nfd would turn it on)
os.environ.setdefault("NFD_NO_COMPILATION_CACHE", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, os.path.dirname(HERE))

SIZES = {
    "tiny": dict(head=dict(P=2**12, L=4, K=8), base=dict(P=2**10, L=4, K=8),
                 grids=dict(P=[2**8, 2**9, 2**10, 2**11, 2**12], L=[1, 2, 4, 8, 16], K=[2, 4, 8, 16, 32]),
                 rounds=2, head_rounds=2),
    "quick": dict(head=dict(P=2**16, L=16, K=32), base=dict(P=2**14, L=8, K=16),
                  grids=dict(P=[2**12, 2**13, 2**14, 2**15, 2**16], L=[2, 4, 8, 16, 32], K=[4, 8, 16, 32, 64]),
                  rounds=4, head_rounds=4),
    "full": dict(head=dict(P=2**18, L=16, K=32), base=dict(P=2**16, L=16, K=32),
                 grids=dict(P=[2**14, 2**15, 2**16, 2**17, 2**18], L=[4, 8, 16, 32, 64], K=[8, 16, 32, 64, 128]),
                 rounds=5, head_rounds=7),
}
EXPECTED = dict(P=1.0, L=1.0, K=2.0)


def _data(K, d=3):
    X = np.random.default_rng(0).normal(size=(K, d))
    return X, np.tanh(X[:, 0] - 0.5 * X[:, 1])


def make(P, L, K, backward, chunks):
    """The solve's device work (init + advance to the end) with ``read_chunks=chunks``."""
    import jax
    import jax.numpy as jnp

    import nfd

    X, Y = _data(K)
    net = nfd.ResNet(depth=L, input_dim=X.shape[1], activation="tanh", lr=0.5)
    prob = nfd.particle_problem(net, X, Y, particles=P, replicates=1, backward=backward, dtype=jnp.float32,
                                eigenvalues=False)
    if hasattr(prob.static, "read_chunks"):
        prob = dataclasses.replace(prob, static=dataclasses.replace(prob.static, read_chunks=chunks))
    elif chunks != 1:
        raise RuntimeError("this nfd has no read_chunks option (full reads only)")

    def call():
        s = prob.advance(prob.init())
        jax.block_until_ready(s.carry)
        return s

    return prob, call


def history_bytes(static, exact, chunks, itemsize=4, n_test=0):
    """Bytes of history rows the solve reads (see the module docstring), full rows when chunks = 1."""
    H, B, L, P = static.steps * static.B, static.B, static.L, static.P
    n = max(1, min(chunks, static.steps))
    C = B * -(-static.steps // n)

    def rows(r):
        return H if n == 1 else min(-(-r // C) * C, H)

    total = 0
    for s in range(static.steps):
        a, b = s * B, s * B + B  # rows filled before / after this step's updates
        fwd = (3 + (1 if n_test else 0) + (1 if exact else 0)) * rows(a)
        bwd = (2 * rows(a) + rows(b)) + (rows(b) if exact else 0)
        total += L * (fwd + bwd) + 2 * rows(a)  # + g_0 (input layer) and h_L (output)
    return total * P * itemsize


def _load():
    return os.getloadavg()[0]


def interleaved(fns, rounds, seed=0):
    """Compile (first call) every function, then ``rounds`` rounds calling each once in a random order."""
    first = {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        first[k] = time.perf_counter() - t0
    names, rng = list(fns), np.random.default_rng(seed)
    runs, loads = {k: [] for k in fns}, []
    for _ in range(rounds):
        loads.append(_load())
        for i in rng.permutation(len(names)):
            t0 = time.perf_counter()
            fns[names[i]]()
            runs[names[i]].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in runs.items()}
    return dict(first_call_s=first, compile_s={k: max(first[k] - best[k], 0.0) for k in fns}, runs_s=runs,
                best_s=best, median_s={k: float(np.median(v)) for k, v in runs.items()}, load_avg_per_round=loads)


def stream_fns(nbytes):
    import jax
    import jax.numpy as jnp

    buf = [jnp.ones((nbytes // 4,), jnp.float32)]
    cp = jax.jit(lambda a: a * 1.0000001, donate_argnums=0)  # in place: no fresh pages to fault in
    sm = jax.jit(jnp.sum)

    def copy():
        buf[0] = cp(buf[0]).block_until_ready()

    return dict(copy=copy, sum=lambda: sm(buf[0]).block_until_ready())


def headline(cfg, chunks, rounds):
    P, L, K = cfg["P"], cfg["L"], cfg["K"]
    fns, info = {}, {}
    for bw in ("gia", "exact"):
        for c in chunks:
            prob, fn = make(P, L, K, bw, c)
            name = f"{bw}/chunks={c}"
            fns[name] = fn
            info[name] = dict(backward=bw, chunks=c, history_bytes=history_bytes(prob.static, bw == "exact", c))
    H = K  # one sample per step
    one_history = L * H * P * 4  # (L, H, P) float32: one history array (φ(h) or ξ)
    fns.update(stream_fns(one_history))
    t = interleaved(fns, rounds)
    bw_copy = 2 * one_history / t["best_s"]["copy"] / 1e9  # GB/s, read + write
    bw_sum = one_history / t["best_s"]["sum"] / 1e9
    rows = []
    for name, i in info.items():
        b = i["history_bytes"]
        rows.append(dict(name=name, **i, best_s=t["best_s"][name], median_s=t["median_s"][name],
                         compile_s=t["compile_s"][name], achieved_GBps=b / t["best_s"][name] / 1e9,
                         fraction_of_copy=b / t["best_s"][name] / 1e9 / bw_copy,
                         fraction_of_sum=b / t["best_s"][name] / 1e9 / bw_sum))
    speedup = {}
    for bw in ("gia", "exact"):
        for c in chunks:
            if c != chunks[0]:
                speedup[f"{bw}/chunks={c}"] = t["best_s"][f"{bw}/chunks={chunks[0]}"] / t["best_s"][f"{bw}/chunks={c}"]
    return dict(config=dict(**cfg, dtype="float32", activation="tanh", B=1, replicates=1), chunks=list(chunks),
                stream_bytes=one_history, copy_GBps=bw_copy, sum_GBps=bw_sum, rows=rows, timing=t,
                speedup_over_full=speedup)


def _slope_se(x, y):
    from scipy import stats

    r = stats.linregress(np.log(x), np.log(y))
    return float(r.slope), float(r.stderr)


def scaling(base, grids, chunks, rounds):
    from _common import fit_loglog

    out = {}
    for axis, vals in grids.items():
        fns, cfgs = {}, {}
        for v in vals:
            cfg = {**base, axis: v}
            for c in chunks:
                _, fn = make(cfg["P"], cfg["L"], cfg["K"], "exact", c)
                fns[f"{axis}={v}/chunks={c}"] = fn
                cfgs[f"{axis}={v}/chunks={c}"] = cfg
        t = interleaved(fns, rounds, seed=1)
        fits = {}
        for c in chunks:
            y = np.array([t["best_s"][f"{axis}={v}/chunks={c}"] for v in vals])
            s, se = _slope_se(vals, y)
            f = fit_loglog(vals, y)
            f.update(slope_se=se)
            fits[f"chunks={c}"] = f
            print(f"[scaling] {axis} chunks={c}: slope {s:.2f} ± {se:.2f} (times {np.round(y, 4)})", flush=True)
        out[axis] = dict(values=list(vals), configs=cfgs, timing=t, fits=fits, expected_slope=EXPECTED[axis])
        print(f"[scaling] {axis}: load {np.round(t['load_avg_per_round'], 1)}", flush=True)
    return dict(base=base, backward="exact", dtype="float32", chunks=list(chunks), axes=out)


def plot(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfd.plotting import log_axis, plot_slope_fit, savefig

    fig, axes = plt.subplots(1, 4, figsize=(21, 4.6))
    sc = doc["scaling"]
    for ax, axis in zip(axes[:3], ("P", "L", "K")):
        a = sc["axes"][axis]
        for k, (c, color) in enumerate(zip(sc["chunks"], ("C0", "C1", "C2"))):
            plot_slope_fit(ax, a["fits"][f"chunks={c}"], "full rows" if c == 1 else f"filled rows ({c} chunks)",
                           expected=a["expected_slope"] if k == 0 else None, color=color,
                           xlabel={"P": "particles P", "L": "depth L", "K": "samples K"}[axis],
                           ylabel="solve time, best of rounds [s]")
        loads = a["timing"]["load_avg_per_round"]
        ax.set_title(f"time vs {axis} (base {sc['base']}, exact)\nload {min(loads):.1f}–{max(loads):.1f}", fontsize=8)
        log_axis(ax, "x", a["values"])
        ax.legend(fontsize=6)
    ax = axes[3]
    h = doc["headline"]
    rows = h["rows"]
    x = np.arange(len(rows))
    ax.bar(x, [r["achieved_GBps"] for r in rows], color=["C0" if r["chunks"] == 1 else "C1" for r in rows])
    for xi, r in zip(x, rows):
        ax.text(xi, r["achieved_GBps"], f"{r['best_s']:.2f} s", ha="center", va="bottom", fontsize=7)
    ax.axhline(h["copy_GBps"], color="k", ls="--", lw=1, label=f"streaming copy (read+write) {h['copy_GBps']:.1f} GB/s")
    ax.axhline(h["sum_GBps"], color="k", ls=":", lw=1, label=f"streaming read (sum) {h['sum_GBps']:.1f} GB/s")
    ax.set_xticks(x, [r["name"].replace("/", "\n") for r in rows], fontsize=7)
    ax.set_ylabel("history bytes read / solve time [GB/s]")
    loads = h["timing"]["load_avg_per_round"]
    c = h["config"]
    ax.set_title(f"P = {c['P']}, L = {c['L']}, K = {c['K']} (bar label: best time)\nload {min(loads):.1f}–{max(loads):.1f}",
                 fontsize=8)
    ax.set_ylim(0, 1.4 * max(h["copy_GBps"], h["sum_GBps"], max(r["achieved_GBps"] for r in rows)))
    ax.legend(fontsize=7, loc="upper right")
    savefig(fig, path, dpi=90)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true")
    g.add_argument("--quick", action="store_true")
    p.add_argument("--chunks", default="1,4", help="read_chunks values of the scaling fits (the first: reference)")
    p.add_argument("--head-chunks", default="1,4,8", help="read_chunks values at the headline size")
    p.add_argument("--sections", default="headline,scaling")
    p.add_argument("--out", default=os.path.join(RESULTS, "history_reads.json"))
    a = p.parse_args(argv)
    size = "tiny" if a.tiny else "quick" if a.quick else "full"
    chunks = tuple(int(c) for c in a.chunks.split(","))
    cfg = SIZES[size]
    sys.path.insert(0, HERE)
    import jax

    t0 = time.time()
    doc = dict(benchmark="history_reads", size=size, load_avg_start=list(os.getloadavg()))
    if "headline" in a.sections:
        doc["headline"] = headline(cfg["head"], tuple(int(c) for c in a.head_chunks.split(",")), cfg["head_rounds"])
        for r in doc["headline"]["rows"]:
            print(f"[headline] {r['name']}: best {r['best_s']:.3f} s (median {r['median_s']:.3f}), "
                  f"{r['achieved_GBps']:.1f} GB/s = {r['fraction_of_copy']:.2f} of the copy", flush=True)
        print(f"[headline] copy {doc['headline']['copy_GBps']:.1f} GB/s, sum {doc['headline']['sum_GBps']:.1f} GB/s, "
              f"load {np.round(doc['headline']['timing']['load_avg_per_round'], 1)}", flush=True)
    if "scaling" in a.sections:
        doc["scaling"] = scaling(cfg["base"], cfg["grids"], chunks, cfg["rounds"])
    doc.update(load_avg_end=list(os.getloadavg()), wall_s=time.time() - t0,
               created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               machine=dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version(),
                            jax=jax.__version__, devices=[str(d) for d in jax.devices()]))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(doc, open(a.out, "w"), indent=1)
    if "headline" in doc and "scaling" in doc:
        plot(doc, os.path.splitext(a.out)[0] + ".png")
    print("wrote", a.out)
    return doc


if __name__ == "__main__":
    main()
