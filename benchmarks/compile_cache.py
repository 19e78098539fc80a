"""JAX's persistent compilation cache (on by default since ``import nfd``, nfd/_cache.py): the README's
main example, examples/quickstart.py, in a first and a second process.

Each round uses a fresh, empty cache directory and runs three processes one after the other:

* ``off``: ``NFD_NO_COMPILATION_CACHE=1`` (what every process paid before the cache);
* ``first``: the cache on, empty (compiles, and writes the programs);
* ``second``: the cache on, filled by ``first`` (loads instead of compiling).

Recorded per process: the wall time of the whole process (interpreter start to exit), the time inside
``main()``, the time JAX spent in XLA compilation or loading from the cache
(``/jax/core/compile/backend_compile_duration``), in tracing and lowering (not cached), the cache hits and
misses, and the 1-minute load average before it started.  Rounds are repeated so the headline ratio is
reproduced.

    python benchmarks/compile_cache.py            # 2 rounds, a few minutes on 2 CPU cores
    python benchmarks/compile_cache.py --rounds 3 --out /tmp/cc.json

Writes benchmarks/results/compile_cache.json (``plot(doc, path)`` draws it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

CHILD = r"""
import json, sys, time
t_start = time.perf_counter()
from collections import defaultdict
from jax import monitoring
dur = defaultdict(float)
cnt = defaultdict(int)
monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: dur.__setitem__(name, dur[name] + secs))
monitoring.register_event_listener(lambda name, **kw: cnt.__setitem__(name, cnt[name] + 1))
sys.path.insert(0, sys.argv[2])
import nfd
t_import = time.perf_counter() - t_start
sys.path.insert(0, sys.argv[2] + "/examples")
import quickstart
t0 = time.perf_counter()
res = quickstart.main(["--out", sys.argv[1]])
t_main = time.perf_counter() - t0
print("RESULT " + json.dumps(dict(
    import_s=t_import, main_s=t_main, cache_dir=nfd.compilation_cache_dir(),
    backend_compile_s=dur["/jax/core/compile/backend_compile_duration"],
    trace_s=dur["/jax/core/compile/jaxpr_trace_duration"],
    lower_s=dur["/jax/core/compile/jaxpr_to_mlir_module_duration"],
    compile_time_saved_s=dur["/jax/compilation_cache/compile_time_saved_sec"],
    cache_hits=cnt["/jax/compilation_cache/cache_hits"], cache_misses=cnt["/jax/compilation_cache/cache_misses"],
    mse=res["mse"])))  # the example's result (mean-square distance per width): equal in every process
"""


def _run(kind, cache_dir, png):
    env = {k: v for k, v in os.environ.items() if k not in ("NFD_NO_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if kind == "off":
        env["NFD_NO_COMPILATION_CACHE"] = "1"
    else:
        env["NFD_CACHE_DIR"] = cache_dir
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, png, ROOT], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"{kind} process failed:\n{r.stderr[-3000:]}")
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1]
    rec = dict(kind=kind, process_wall_s=wall, load_avg_1min_before=load, **json.loads(line[7:]))
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(cache_dir) for f in fs]
    rec["cache_files"], rec["cache_bytes"] = len(files), sum(os.path.getsize(f) for f in files)
    return rec


def run(rounds=2):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        png = os.path.join(tmp, "quickstart.png")
        for r in range(rounds):
            cache_dir = os.path.join(tmp, f"cache{r}")
            os.makedirs(cache_dir)
            for kind in ("off", "first", "second"):
                rec = _run(kind, cache_dir, png)
                rec["round"] = r
                rows.append(rec)
                print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] round {r} {kind:6s}: "
                      f"process {rec['process_wall_s']:.1f} s, main {rec['main_s']:.1f} s, XLA compile/load "
                      f"{rec['backend_compile_s']:.1f} s, trace+lower {rec['trace_s'] + rec['lower_s']:.1f} s, "
                      f"hits {rec['cache_hits']} misses {rec['cache_misses']}, load {rec['load_avg_1min_before']:.1f}",
                      flush=True)
    ratios = []
    for r in range(rounds):
        by = {x["kind"]: x for x in rows if x["round"] == r}
        ratios.append(dict(round=r, process_second_over_off=by["second"]["process_wall_s"] / by["off"]["process_wall_s"],
                           compile_second_over_off=by["second"]["backend_compile_s"] / by["off"]["backend_compile_s"],
                           process_first_over_off=by["first"]["process_wall_s"] / by["off"]["process_wall_s"],
                           same_results=by["second"]["mse"] == by["off"]["mse"] == by["first"]["mse"]))
    return rows, ratios


def plot(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = doc["results"]["processes"]
    kinds = ["off", "first", "second"]
    rounds = sorted({x["round"] for x in rows})
    fig, ax = plt.subplots(1, 1, figsize=(7, 4))
    w = 0.8 / len(rounds)
    for i, r in enumerate(rounds):
        by = {x["kind"]: x for x in rows if x["round"] == r}
        x = np.arange(len(kinds)) + (i - (len(rounds) - 1) / 2) * w
        tot = [by[k]["process_wall_s"] for k in kinds]
        comp = [by[k]["backend_compile_s"] for k in kinds]
        ax.bar(x, tot, w * 0.9, color="C0", alpha=0.5, label="whole process" if i == 0 else None)
        ax.bar(x, comp, w * 0.9, color="C3", label="XLA compile / cache load" if i == 0 else None)
        for xi, t in zip(x, tot):
            ax.text(xi, t, f"{t:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(kinds)), ["cache off", "1st process\n(empty cache)", "2nd process\n(filled cache)"])
    ax.set_ylabel("seconds (one bar per round)")
    ax.set_title(f"examples/quickstart.py, {doc['machine']['cpu_count']} CPU cores, load ≈ "
                 f"{np.mean([x['load_avg_1min_before'] for x in rows]):.1f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=os.path.join(RESULTS, "compile_cache.json"))
    a = p.parse_args(argv)
    import jax

    t0 = time.perf_counter()
    rows, ratios = run(a.rounds)
    doc = dict(
        benchmark="compile_cache",
        config=dict(example="examples/quickstart.py", rounds=a.rounds, kinds=["off", "first", "second"],
                    order="interleaved per round: off, first, second; a fresh cache directory per round"),
        results=dict(processes=rows, ratios=ratios),
        machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(), python=platform.python_version(),
                     jax=jax.__version__, device_kind=jax.devices()[0].device_kind),
        notes=["backend_compile_s is JAX's /jax/core/compile/backend_compile_duration: XLA compilation, or loading "
               "the executable from the persistent cache on a hit; tracing and lowering (trace_s, lower_s) are "
               "paid in every process.",
               "Only programs compiling in ≥ 0.2 s are written (nfd's setting of "
               "jax_persistent_cache_min_compile_time_secs), so a few small programs still compile in the 2nd process."],
        wall_s=time.perf_counter() - t0,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    json.dump(doc, open(a.out, "w"), indent=1)
    png = os.path.splitext(a.out)[0] + ".png"
    plot(doc, png)
    for r in ratios:
        print(f"round {r['round']}: 2nd process / cache off = {r['process_second_over_off']:.2f} (whole process), "
              f"{r['compile_second_over_off']:.2f} (XLA compile)")
    print(f"wrote {a.out} and {png}")
    return doc


if __name__ == "__main__":
    main()
