"""Compile time of the README's main example (examples/quickstart.py), program by program, before
and after a change to nfd (issue 18 item 4: "reduce compile time where the program structure allows").

Each process is fresh, with the persistent compilation cache off (``NFD_NO_COMPILATION_CACHE=1``),
and runs ``quickstart.main()`` from one of two source trees: ``before`` (a checkout of an earlier
commit, by default the one this branch started from) and ``after`` (this tree).  The processes are
interleaved (before, after; after, before; ...) so that the machine's varying load falls on both
alike, and every round is a full pair, so the headline ratio is measured once per round.

Recorded per process: the 1-minute load average before it started, its wall time, and for every
program JAX compiled the tracing (``/jax/core/compile/jaxpr_trace_duration``), lowering
(``.../jaxpr_to_mlir_module_duration``) and XLA compilation (``.../backend_compile_duration``)
durations.  Programs are named by the quickstart call that compiled them (``solve exact``,
``simulate n=64``, ...; the calls are wrapped, the example is not changed) and JAX's name for the
function (``_advance``, ``_init``, ...).  After the cold run the same calls are repeated
(``--warm`` times, compiled programs reused) and the best time of each is kept: the execution time,
so that a program that compiles faster but runs slower is seen.  The outputs of every call are
hashed, so the rounds also check that before and after compute the same numbers bit for bit.

    python benchmarks/compile_time.py                    # 2 rounds, ~10 minutes on 2 loaded CPU cores
    python benchmarks/compile_time.py --rounds 3 --before /path/to/old/checkout
    python benchmarks/compile_time.py --tiny --out /tmp/ct.json   # ~20 s: one tiny simulation, 1 round
    python benchmarks/compile_time.py --identity         # bit-identity of 17 option sets only

Writes benchmarks/results/compile_time.json and .png (``plot(doc, path)`` draws it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
# the commit the compile-time work (branch compile-time) started from: the default "before" tree
BEFORE_REF = "0032775bef4146d9ba784a5b2a05cc2265083898"
# --tiny: one tiny nfd.simulate call per process instead of the example (a smoke test of the
# machinery: compilation dominates even the example's smallest sizes, ~30 s per process)
TINY_ARGS = ["tiny"]

CHILD = r"""
import hashlib, json, os, sys, time
t_start = time.perf_counter()
from jax import monitoring
EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
          "/jax/core/compile/backend_compile_duration": "backend"}
phase = ["import"]
rec = []
def listen(name, secs, **kw):
    if name in EVENTS:
        fn = str(kw.get("fun_name", "?"))
        fn = fn[4:-1] if fn.startswith("jit(") and fn.endswith(")") else fn
        rec.append((phase[0], fn, EVENTS[name], secs))
monitoring.register_event_duration_secs_listener(listen)
tree, png, warm = sys.argv[1], sys.argv[2], int(sys.argv[3])
qargs = json.loads(sys.argv[4])
sys.path.insert(0, tree)
import numpy as np
import nfd
assert os.path.dirname(os.path.dirname(os.path.abspath(nfd.__file__))) == os.path.abspath(tree), nfd.__file__
t_import = time.perf_counter() - t_start
times, hashes = {}, {}
def wrap(fn, label):
    def call(*a, **k):
        name = label(k)
        phase[0] = name
        t0 = time.perf_counter()
        res = fn(*a, **k)
        out = np.ascontiguousarray(np.asarray(res.outputs))
        times.setdefault(name, []).append(time.perf_counter() - t0)
        hashes.setdefault(name, []).append(hashlib.sha256(out.tobytes() + str(out.dtype).encode()).hexdigest()[:16])
        phase[0] = "other"
        return res
    return call
nfd.solve = wrap(nfd.solve, lambda k: f"solve {k.get('backward', 'exact')}")
nfd.simulate = wrap(nfd.simulate, lambda k: f"simulate n={k['width']}")
if qargs == ["tiny"]:  # smoke test: one tiny simulation instead of the example
    def example():
        X = np.random.default_rng(0).normal(size=(2, 3))
        nfd.simulate(X, X[:, 0], width=8, depth=2, seeds=2, seed=1, activation="tanh", lr=0.5)
else:
    sys.path.insert(0, os.path.join(tree, "examples"))
    import quickstart
    def example():
        quickstart.main(["--out", png] + qargs)
phase[0] = "other"
t0 = time.perf_counter()
example()
t_cold = time.perf_counter() - t0
n_cold = len(rec)
t_warm = []
for _ in range(warm):
    t0 = time.perf_counter()
    example()
    t_warm.append(time.perf_counter() - t0)
print("RESULT " + json.dumps(dict(import_s=t_import, main_cold_s=t_cold, main_warm_s=t_warm, events=rec[:n_cold],
                                  events_warm=rec[n_cold:], call_s=times, hashes=hashes, nfd_file=nfd.__file__)))
"""

# Bit-identity beyond the example: the solver and simulator options whose programs the change touches,
# each run in both trees and every result array hashed (python benchmarks/compile_time.py --identity).
IDENTITY_CHILD = r"""
import hashlib, json, os, sys
tree, x64 = sys.argv[1], sys.argv[2] == "x64"
sys.path.insert(0, tree)
import numpy as np, jax
jax.config.update("jax_enable_x64", x64)
import jax.numpy as jnp
import nfd
rng = np.random.default_rng(0)
X = rng.normal(size=(4, 3)); Y = np.tanh(X[:, 0] - X[:, 1])
Xt = rng.normal(size=(2, 3))
P = dict(depth=3, particles=256, activation="tanh", lr=0.5, seed=0)
S = dict(depth=3, width=16, activation="tanh", lr=0.5, seeds=2, seed=1)
cases = {
  "solve exact": lambda: nfd.solve(X, Y, backward="exact", **P),
  "solve gia relu": lambda: nfd.solve(X, Y, **dict(P, backward="gia", activation="relu")),
  "solve exact float64": lambda: nfd.solve(X, Y, backward="exact", dtype=jnp.float64, **P),
  "solve exact regenerate": lambda: nfd.solve(X, Y, backward="exact", noise="regenerate", **P),
  "solve exact X_test": lambda: nfd.solve(X, Y, backward="exact", X_test=Xt, **P),
  "solve exact replicates=1": lambda: nfd.solve(X, Y, backward="exact", replicates=1, **P),
  "solve exact noise_depth=6": lambda: nfd.solve(X, Y, backward="exact", noise_depth=6, **P),
  "solve exact batch 2": lambda: nfd.solve(X, Y, backward="exact", batch_size=2, **P),
  "solve post_ms": lambda: nfd.solve(X, Y, backward="exact", block="post_ms", **P),
  "solve sobol": lambda: nfd.solve(X, Y, backward="exact", sampling="sobol", **P),
  "solve record_paths": lambda: nfd.solve(X, Y, backward="exact", record_paths=True, **P),
  "simulate coupled": lambda: nfd.simulate(X, Y, **S),
  "simulate decoupled": lambda: nfd.simulate(X, Y, backward="decoupled", **S),
  "simulate regenerate": lambda: nfd.simulate(X, Y, weights="regenerate", **S),
  "simulate two_layer": lambda: nfd.simulate(X, Y, block="two_layer", **S),
  "simulate float64 X_test": lambda: nfd.simulate(X, Y, dtype=jnp.float64, X_test=Xt, **S),
  "init_params": lambda: init_params(nfd.ResNet(depth=3, input_dim=3, width=16), jax.random.PRNGKey(5)),
}
from nfd.finite._simulate import init_params
cases = {(k + " (x64)" if x64 else k): v for k, v in cases.items() if x64 == ("float64" in k)}
out = {}
for name, fn in cases.items():
    res = fn()
    arrs = jax.tree_util.tree_leaves(res) if isinstance(res, tuple) else [
        getattr(res, k) for k in ("outputs", "losses", "test_outputs", "sigma", "theta", "features", "grads")
        if getattr(res, k, None) is not None]
    h = hashlib.sha256()
    for a in arrs:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(a.tobytes() + str(a.dtype).encode())
    out[name] = h.hexdigest()[:16]
print("RESULT " + json.dumps(out))
"""


def identity(before, after):
    """{case: {"before": hash, "after": hash, "same": bool}} over :data:`IDENTITY_CHILD`'s cases."""
    res = {"before": {}, "after": {}}
    for side, tree, x64 in (("before", before, "x32"), ("after", after, "x32"), ("before", before, "x64"),
                            ("after", after, "x64")):
        env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "NFD_CACHE_DIR")}
        env["NFD_NO_COMPILATION_CACHE"] = "1"
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
        r = subprocess.run([sys.executable, "-c", IDENTITY_CHILD, tree, x64], env=env, capture_output=True,
                           text=True, cwd=tree)
        if r.returncode:
            raise RuntimeError(f"identity check in {tree} failed:\n{r.stderr[-3000:]}")
        res[side].update(json.loads([x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1][7:]))
    return {k: dict(before=res["before"][k], after=res["after"].get(k), same=res["before"][k] == res["after"].get(k))
            for k in res["before"]}


def _child(tree, png, warm, qargs):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "NFD_CACHE_DIR")}
    env["NFD_NO_COMPILATION_CACHE"] = "1"
    env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, tree, png, str(warm), json.dumps(qargs)], env=env,
                       capture_output=True, text=True, cwd=tree)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"process in {tree} failed:\n{r.stderr[-3000:]}")
    res = json.loads([x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
    res.update(process_wall_s=wall, load_avg_1min_before=load, load_avg_1min_after=os.getloadavg()[0])
    return res


def programs(res) -> dict:
    """{"<call>: <function>": {"trace": s, "lower": s, "backend": s, "count": n}} of one process's cold run."""
    out = {}
    for ph, fn, kind, secs in res["events"]:
        d = out.setdefault(f"{ph}: {fn}", dict(trace=0.0, lower=0.0, backend=0.0, count=0))
        d[kind] += secs
        d["count"] += kind == "backend"
    return out


def totals(res) -> dict:
    tot = dict(trace=0.0, lower=0.0, backend=0.0, programs=0)
    for ph, fn, kind, secs in res["events"]:
        tot[kind] += secs
        tot["programs"] += kind == "backend"
    tot["compile"] = tot["trace"] + tot["lower"] + tot["backend"]
    return tot


def run(before, after, rounds=2, warm=2, qargs=()):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        png = os.path.join(tmp, "quickstart.png")
        for r in range(rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for side in order:
                res = _child(before if side == "before" else after, png, warm, list(qargs))
                res.update(side=side, round=r, totals=totals(res), programs=programs(res))
                rows.append(res)
                t = res["totals"]
                print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] round {r} {side:6s}: process "
                      f"{res['process_wall_s']:.1f} s, cold main {res['main_cold_s']:.1f} s, warm main "
                      f"{min(res['main_warm_s']) if res['main_warm_s'] else float('nan'):.2f} s, XLA compile "
                      f"{t['backend']:.1f} s, trace {t['trace']:.1f} s, lower {t['lower']:.1f} s, "
                      f"{t['programs']} programs, load {res['load_avg_1min_before']:.1f}", flush=True)
    return rows


def summarise(rows):
    """Per-round after/before ratios, per-program mean and spread, and the bit-identity check."""
    rounds = sorted({x["round"] for x in rows})
    by = {(x["round"], x["side"]): x for x in rows}
    ratios = []
    for r in rounds:
        b, a = by[(r, "before")], by[(r, "after")]
        ratios.append(dict(
            round=r,
            backend_after_over_before=a["totals"]["backend"] / b["totals"]["backend"],
            compile_after_over_before=a["totals"]["compile"] / b["totals"]["compile"],
            cold_main_after_over_before=a["main_cold_s"] / b["main_cold_s"],
            process_after_over_before=a["process_wall_s"] / b["process_wall_s"],
            warm_main_after_over_before=(min(a["main_warm_s"]) / min(b["main_warm_s"])
                                         if a["main_warm_s"] and b["main_warm_s"] else None),
            same_outputs=a["hashes"] == b["hashes"],
            load_before=b["load_avg_1min_before"], load_after=a["load_avg_1min_before"]))
    names = []
    for x in rows:
        for k in x["programs"]:
            if k not in names:
                names.append(k)
    per = {}
    for k in names:
        d = {}
        for side in ("before", "after"):
            for kind in ("trace", "lower", "backend"):
                v = [by[(r, side)]["programs"].get(k, {}).get(kind, 0.0) for r in rounds]
                d[f"{side}_{kind}_s"] = v
        per[k] = d
    calls = {}
    for x in rows:
        for k, v in x["call_s"].items():
            c = calls.setdefault(k, dict(before_warm_s=[], after_warm_s=[], before_cold_s=[], after_cold_s=[]))
            c[f"{x['side']}_cold_s"].append(v[0])
            if len(v) > 1:
                c[f"{x['side']}_warm_s"].append(min(v[1:]))
    return ratios, per, calls


def _spread(v):
    """'mean (min–max)' of a list of numbers."""
    import numpy as np

    v = np.asarray(v, float)
    return f"{v.mean():.2f} ({v.min():.2f}–{v.max():.2f})" if len(v) > 1 else f"{v.mean():.2f}"


def plot(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    per = doc["results"]["programs"]
    ratios = doc["results"]["ratios"]
    # XLA compile time per quickstart call (the sum over the programs it compiled; a change may split
    # or merge programs, so the calls are what before and after share), mean and range over rounds
    calls = []
    for k in per:
        c = k.split(": ")[0]
        if c not in calls:
            calls.append(c)
    labels = calls

    def vals(side, kind="backend"):
        return [np.sum([np.asarray(per[k][f"{side}_{kind}_s"]) for k in per if k.split(": ")[0] == c], axis=0)
                for c in calls]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw=dict(width_ratios=[3, 1.3]))
    y = np.arange(len(labels))
    for i, (side, col) in enumerate((("before", "C0"), ("after", "C3"))):
        v = vals(side)
        m = np.array([a.mean() for a in v])
        lo = m - np.array([a.min() for a in v])
        hi = np.array([a.max() for a in v]) - m
        ax1.barh(y + (-0.2 if i == 0 else 0.2), m, 0.38, xerr=[lo, hi], color=col, capsize=2,
                 label=f"{side} ({doc['config'][side + '_commit'][:7]}), mean over rounds, bars: min–max")
        for yi, mi, hii in zip(y, m, hi):
            ax1.text(mi + hii, yi + (-0.2 if i == 0 else 0.2), f" {mi:.1f}", va="center", fontsize=7)
    ax1.set_yticks(y, labels, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlabel("XLA compile time of the call's programs (s)")
    ax1.set_ylabel("call (other: programs outside nfd.solve / nfd.simulate)")
    ax1.set_title(f"{doc['config']['example']}: XLA compilation per call, fresh process, cache off", fontsize=9)
    ax1.legend(fontsize=7, loc="lower right")
    rows = doc["results"]["processes"]
    rounds = sorted({x["round"] for x in rows})
    w = 0.38
    kinds = (("backend", "XLA compile", "C3"), ("lower", "lowering", "C1"), ("trace", "tracing", "C2"))
    for j, side in enumerate(("before", "after")):
        for r in rounds:
            x = [x_ for x_ in rows if x_["round"] == r and x_["side"] == side][0]
            pos = r + (j - 0.5) * w
            bottom = 0.0
            for kind, lab, col in kinds:
                v = x["totals"][kind]
                ax2.bar(pos, v, w * 0.95, bottom=bottom, color=col, alpha=1.0 if side == "after" else 0.55,
                        label=f"{lab} ({side})" if r == rounds[0] else None)
                bottom += v
            ax2.text(pos, bottom, f"{side[0]}\n{bottom:.0f}", ha="center", va="bottom", fontsize=7)
    ax2.set_xticks(rounds, [f"round {r}\nload {ratios[r]['load_before']:.1f}/{ratios[r]['load_after']:.1f}"
                            for r in rounds], fontsize=7)
    ax2.set_ylabel("seconds per process (b = before, a = after)")
    ax2.set_title("compile time per process, by stage", fontsize=9)
    ax2.legend(fontsize=6, ncol=2, loc="upper right")
    top = max(x["totals"]["compile"] for x in rows)
    ax2.set_ylim(0, top * 1.6)
    fig.suptitle(f"{doc['machine']['cpu_count']} CPU cores, jax {doc['machine']['jax']}; XLA compile after/before "
                 f"per round: " + ", ".join(f"{x['backend_after_over_before']:.2f}" for x in ratios), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _commit(tree):
    try:
        return subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        return "unknown"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help="before/after pairs (default 2; 1 with --tiny)")
    p.add_argument("--warm", type=int, default=None,
                   help="warm repeats of the example per process (default 2; 1 with --tiny)")
    p.add_argument("--before", default=None, help="checkout of the earlier tree (default: a temporary git worktree "
                                                  f"of --before-ref)")
    p.add_argument("--before-ref", default=BEFORE_REF)
    p.add_argument("--after", default=ROOT, help="the tree measured as 'after' (default: this one)")
    p.add_argument("--identity", action="store_true", help="only the bit-identity check of the solver and "
                                                            "simulator options (IDENTITY_CHILD), printed and written")
    p.add_argument("--tiny", action="store_true", help="smoke test: one tiny simulation per process (~20 s in all)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/compile_time.json; with "
                                               "--tiny a temporary directory)")
    a = p.parse_args(argv)
    rounds = a.rounds if a.rounds is not None else (1 if a.tiny else 2)
    warm = a.warm if a.warm is not None else (1 if a.tiny else 2)
    qargs = TINY_ARGS if a.tiny else []
    out = a.out or (os.path.join(tempfile.mkdtemp(), "compile_time.json") if a.tiny
                    else os.path.join(RESULTS, "compile_time.json"))
    import jax

    made = None
    before = a.before
    if before is None:
        made = tempfile.mkdtemp(prefix="nfd-before-")
        os.rmdir(made)
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", made, a.before_ref], check=True,
                       capture_output=True)
        before = made
    try:
        t0 = time.perf_counter()
        if a.identity:
            ident = identity(os.path.abspath(before), os.path.abspath(a.after))
            for k, v in ident.items():
                print(f"{k:32s} {v['before']} {v['after']} {'same' if v['same'] else 'DIFFERENT'}")
            return ident
        rows = run(os.path.abspath(before), os.path.abspath(a.after), rounds, warm, qargs)
        ratios, per, calls = summarise(rows)
        ident = None if a.tiny else identity(os.path.abspath(before), os.path.abspath(a.after))
    finally:
        if made is not None:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", made], capture_output=True)
            shutil.rmtree(made, ignore_errors=True)
    doc = dict(
        benchmark="compile_time",
        size="tiny" if a.tiny else "full",
        config=dict(example="examples/quickstart.py" if not a.tiny else "one tiny nfd.simulate call",
                    quickstart_args=qargs, rounds=rounds, warm_repeats=warm,
                    before_commit=_commit(before) if made is None else a.before_ref, after_commit=_commit(a.after),
                    order="interleaved: round r runs (before, after) for even r, (after, before) for odd r; each a "
                          "fresh process with NFD_NO_COMPILATION_CACHE=1"),
        results=dict(ratios=ratios, programs=per, calls=calls, processes=rows, identity=ident),
        machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(), python=platform.python_version(),
                     jax=jax.__version__, device_kind=jax.devices()[0].device_kind),
        notes=["trace/lower/backend: JAX's monitoring events jaxpr_trace_duration, jaxpr_to_mlir_module_duration, "
               "backend_compile_duration (XLA compilation), summed per program name within a quickstart call.",
               "call_s: wall time of each nfd.solve / nfd.simulate call; the first (cold) includes compilation, the "
               "best of the warm repeats is the execution time.",
               "same_outputs: sha256 of every call's outputs array, before vs after, equal (bit-identical).",
               "identity: every result array of 17 solver/simulator option sets (IDENTITY_CHILD), hashed in both "
               "trees (not with --tiny)."],
        wall_s=time.perf_counter() - t0,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    json.dump(doc, open(out, "w"), indent=1)
    png = os.path.splitext(out)[0] + ".png"
    plot(doc, png)
    for r in ratios:
        print(f"round {r['round']}: after/before XLA compile {r['backend_after_over_before']:.2f}, trace+lower+"
              f"compile {r['compile_after_over_before']:.2f}, cold example {r['cold_main_after_over_before']:.2f}, "
              f"warm example {r['warm_main_after_over_before'] or float('nan'):.2f}, same outputs "
              f"{r['same_outputs']}, load {r['load_before']:.1f}/{r['load_after']:.1f}")
    if ident is not None:
        print(f"bit-identical option sets: {sum(v['same'] for v in ident.values())}/{len(ident)}"
              + "".join(f"\n  DIFFERENT: {k}" for k, v in ident.items() if not v["same"]))
    print(f"wrote {out} and {png}")
    return doc


if __name__ == "__main__":
    main()
