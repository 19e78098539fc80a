"""Run every benchmark study at one size: the single command behind benchmarks/README.md.

    python benchmarks/run_all.py --quick        # minutes on 2 CPU cores (the committed results)
    python benchmarks/run_all.py                # full size, meant for a GPU
    python benchmarks/run_all.py --tiny --out /tmp/x   # seconds; used by tests/test_benchmarks.py

Each study in ``benchmarks/studies/`` writes ``<out>/<study>.json`` (schema in
``benchmarks/_common.py``) and ``<out>/<study>.png``.  The other engineers' benchmark scripts
(``finite_resnet.py``, ``nfd_solver.py``, ``gamma_c.py``, ``kernels.py``, ``mean_ode.py``,
``scaling.py``) are run as subprocesses with their own ``--quick`` flag, then the standalone
scripts of ``STANDALONE`` (variance reduction, replicates, time to accuracy, initialisation SDE,
compilation cache, checkpoints, history reads) with their own sizes, unless ``--no-external`` (never at
``--tiny``); they write to ``benchmarks/results/`` themselves.  ``<out>/run_all.json`` records what ran, how
long it took and whether it failed; ``<out>/SUMMARY.md`` tabulates every paper claim against
what was measured.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import _common  # noqa: E402

# priority order: the headline questions first
STUDIES = ("rates_training", "gia", "two_layer", "rates_init", "fig3_grid", "pre_post_T", "eigenvalues", "transfer",
           "speed", "tp6_nonlinear")
EXTERNAL = ("finite_resnet", "nfd_solver", "gamma_c", "kernels", "mean_ode", "scaling")
# standalone benchmark scripts run after EXTERNAL (name: arguments at --quick / at full size); each
# draws its own figure with its own `plot` (not redrawn by `replot`)
STANDALONE = {
    "variance_reduction": (["--quick"], []),
    "control_variates": ([], []),
    "replicates": ([], []),
    "time_to_accuracy": ([], []),
    "init_sde": ([], ["--gpu"]),
    "compile_cache": ([], []),
    "checkpoints": ([], []),
    "history_reads": (["--quick"], []),
}


def run_study(name: str, size: str, out: str) -> dict:
    mod = importlib.import_module(f"studies.{name}")
    return mod.run(size, out)


def figure_modules() -> dict:
    """{name: module} of every benchmark with a ``plot(doc)`` function (studies and external scripts)."""
    mods = {n: f"studies.{n}" for n in STUDIES}
    mods.update({n: n for n in EXTERNAL if os.path.exists(os.path.join(HERE, f"{n}.py"))})
    return mods


def replot(out: str, names=None) -> list[str]:
    """Redraw ``<out>/<name>.png`` from ``<out>/<name>.json`` for every benchmark (no computation)."""
    written = []
    for name, modname in figure_modules().items():
        if names and name not in names:
            continue
        for path in (os.path.join(out, f"{name}.json"), os.path.join(out, f"{name}_full.json")):
            if os.path.exists(path):
                mod = importlib.import_module(modname)
                written.append(_common.render(mod, path, out))
                print(f"[run_all] replotted {written[-1]}", flush=True)
    return written


def summary_md(docs: dict) -> str:
    lines = ["| study | claim (source) | measured | agrees |", "|---|---|---|---|"]
    for name, doc in docs.items():
        for c in doc["paper_claims"]:
            ag = {True: "yes", False: "**no**", None: "n/a"}[c["agrees"]]
            cell = lambda t: str(t).replace("|", "\\|")
            lines.append(f"| {name} | {cell(c['claim'])} ({cell(c['source'])}) | {cell(c['measured'])} | {ag} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true", help="seconds per study (schema test)")
    g.add_argument("--quick", action="store_true", help="minutes on 2 CPU cores")
    p.add_argument("--out", default=_common.RESULTS, help="directory for <study>.json/png")
    p.add_argument("--only", default="", help="comma-separated subset of " + ",".join(STUDIES))
    p.add_argument("--no-external", action="store_true", help="skip the other engineers' benchmark scripts")
    p.add_argument("--replot", action="store_true",
                   help="only redraw every <name>.png in --out from its <name>.json (no computation)")
    a = p.parse_args(argv)
    if a.replot:
        replot(a.out, [s for s in a.only.split(",") if s] or None)
        return 0
    size = "tiny" if a.tiny else "quick" if a.quick else "full"
    names = [s for s in a.only.split(",") if s] or list(STUDIES)
    bad = [s for s in names if s not in STUDIES]
    if bad:
        p.error(f"--only: unknown studies {bad}; choose from {STUDIES}")
    _common.setup_jax()
    os.makedirs(a.out, exist_ok=True)
    log = dict(size=size, out=os.path.abspath(a.out), studies={}, external={}, machine=_common.machine())
    docs = {}
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        print(f"[run_all] {name} ({size}) ...", flush=True)
        try:
            docs[name] = run_study(name, size, a.out)
            log["studies"][name] = dict(ok=True, wall_s=time.perf_counter() - t0)
        except Exception as e:  # one failing study must not hide the others
            traceback.print_exc()
            log["studies"][name] = dict(ok=False, wall_s=time.perf_counter() - t0, error=f"{type(e).__name__}: {e}")
        print(f"[run_all] {name}: {log['studies'][name]}", flush=True)
    if size != "tiny" and not a.no_external and not a.only:
        extra = {n: (["--quick"], []) for n in EXTERNAL}
        extra.update(STANDALONE)
        for name, (quick_args, full_args) in extra.items():
            script = os.path.join(HERE, f"{name}.py")
            if not os.path.exists(script):
                log["external"][name] = dict(ok=None, note="script not present")
                continue
            t0 = time.perf_counter()
            cmd = [sys.executable, script] + (quick_args if size == "quick" else full_args)
            print(f"[run_all] external {' '.join(cmd)}", flush=True)
            r = subprocess.run(cmd, capture_output=True, text=True)
            log["external"][name] = dict(ok=r.returncode == 0, rc=r.returncode, wall_s=time.perf_counter() - t0,
                                         stderr_tail=r.stderr[-2000:] if r.returncode else "")
    log["wall_s"] = time.perf_counter() - t_all
    log_path = os.path.join(a.out, "run_all.json")
    if a.only and os.path.exists(log_path):  # a partial run updates the record of earlier runs
        try:
            old = json.load(open(log_path))
            if old.get("size") == size:
                log["studies"] = {**old.get("studies", {}), **log["studies"]}
                log["external"] = {**old.get("external", {}), **log["external"]}
        except (OSError, ValueError):
            pass
    with open(log_path, "w") as f:
        json.dump(_common.tolist(log), f, indent=1)
    # the summary covers every study result of this size in the directory, not only this run's
    for name in STUDIES:
        path = os.path.join(a.out, f"{name}.json")
        if name not in docs and os.path.exists(path):
            doc = json.load(open(path))
            if doc.get("size") == size and not _common.check_schema(doc):
                docs[name] = doc
    docs = {n: docs[n] for n in STUDIES if n in docs}
    with open(os.path.join(a.out, "SUMMARY.md"), "w") as f:
        f.write(f"# Paper claims versus measurements ({size} size)\n\n" + summary_md(docs))
    failed = [n for n, s in log["studies"].items() if not s["ok"]]
    print(f"[run_all] done in {log['wall_s']:.1f}s; failed: {failed or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
