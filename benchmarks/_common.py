"""Shared helpers of the benchmark studies: sizes, result schema, log-log fits, plots.

Every study writes ``<out>/<study>.json`` with the schema below (checked by
``tests/test_benchmarks.py``) and ``<out>/<study>.png``:

    {
      "schema": 1, "study": str, "size": "tiny"|"quick"|"full",
      "title": str, "paper_claims": [ {"claim": str, "source": str, "measured": str,
                                       "agrees": true|false|null} ],
      "config": {...},            # everything needed to rerun: sizes, seeds, lr, activation, ...
      "results": {...},           # the numbers; every mean comes with its standard error
      "fits": {name: {"slope", "slope_ci95", "intercept", "x", "y", ...}},
      "notes": [str], "machine": {...}, "wall_s": float, "created": str, "figure": str|null
    }

A study module exposes ``run(size: str, out_dir: str) -> dict`` (the JSON it wrote) and is
runnable on its own: ``python benchmarks/studies/<study>.py --quick``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
SIZES = ("tiny", "quick", "full")
SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema", "study", "size", "title", "paper_claims", "config", "results", "fits", "notes",
                 "machine", "wall_s", "created", "figure")
CLAIM_KEYS = ("claim", "source", "measured", "agrees")
FIT_KEYS = ("slope", "slope_ci95", "intercept", "x", "y", "n_points")


def machine() -> dict:
    """Where the numbers were measured (absolute times mean nothing without it)."""
    import jax

    return dict(
        platform=platform.platform(), processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(), python=platform.python_version(), jax=jax.__version__,
        devices=[str(d) for d in jax.devices()],
        affinity=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    )


def pick(size: str, tiny, quick, full):
    """The value for ``size`` (one of :data:`SIZES`)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return {"tiny": tiny, "quick": quick, "full": full}[size]


def fit_loglog(x, y, yerr=None, *, n_boot: int = 400, seed: int = 0) -> dict:
    """Least-squares slope of log y against log x with a 95% confidence interval.

    The interval combines two sources: the regression's own t-interval (scatter of the points
    about the line, needs ≥ 3 points) and, when ``yerr`` (standard errors of y) is given, a
    parametric bootstrap that redraws y ~ N(y, yerr²) (clipped to stay positive) and refits.
    The reported ``slope_ci95`` is the wider of the two.  Points with y ≤ 0 are dropped.

    Args:
        x, y: (m,) positive abscissae and values.
        yerr: optional (m,) standard errors of y.

    Returns:
        dict with ``slope``, ``slope_ci95`` [lo, hi], ``intercept`` (of log y), ``x``, ``y``,
        ``yerr``, ``n_points`` and ``ci_method``.

    Example:
        >>> fit_loglog([1, 2, 4, 8], [1, 0.5, 0.25, 0.125])["slope"]
        -1.0
    """
    from scipy import stats

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    e = None if yerr is None else np.asarray(yerr, float)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() < 2:
        return dict(slope=None, slope_ci95=[None, None], intercept=None, x=x.tolist(), y=y.tolist(),
                    yerr=None if e is None else e.tolist(), n_points=int(ok.sum()), ci_method="too few points")
    lx, ly = np.log(x[ok]), np.log(y[ok])
    s, c = np.polyfit(lx, ly, 1)
    lo, hi = s, s
    methods = []
    m = int(ok.sum())
    if m >= 3:
        r = stats.linregress(lx, ly)
        t = stats.t.ppf(0.975, m - 2)
        lo, hi = min(lo, r.slope - t * r.stderr), max(hi, r.slope + t * r.stderr)
        methods.append("t-interval")
    if e is not None and np.isfinite(e[ok]).all():
        rng = np.random.default_rng(seed)
        yb = y[ok][None, :] + e[ok][None, :] * rng.standard_normal((n_boot, m))
        yb = np.maximum(yb, 1e-3 * y[ok][None, :])
        sb = np.polyfit(lx, np.log(yb).T, 1)[0]
        q = np.percentile(sb, [2.5, 97.5])
        lo, hi = min(lo, q[0]), max(hi, q[1])
        methods.append("parametric bootstrap over yerr")
    return dict(slope=float(s), slope_ci95=[float(lo), float(hi)], intercept=float(c), x=x.tolist(), y=y.tolist(),
                yerr=None if e is None else e.tolist(), n_points=m, ci_method=" + ".join(methods) or "none (2 points)")


def slope_str(fit: dict) -> str:
    if fit.get("slope") is None:
        return "n/a"
    lo, hi = fit["slope_ci95"]
    return f"{fit['slope']:.2f} [{lo:.2f}, {hi:.2f}]"


def in_ci(fit: dict, value: float, max_width: float = 1.0) -> bool | None:
    """Whether ``value`` lies in the fit's 95% interval; ``None`` (inconclusive) when the
    interval is wider than ``max_width`` or there is no fit."""
    if fit.get("slope") is None:
        return None
    lo, hi = fit["slope_ci95"]
    if hi - lo > max_width:
        return None
    return bool(lo <= value <= hi)


def within_bound(fit: dict, value: float, max_width: float = 1.0) -> bool | None:
    """For an upper bound "error ≤ C x^value": ``True`` when the measured decay is at least as fast
    (the interval reaches down to ``value`` or below), ``False`` when the whole interval is slower,
    ``None`` when inconclusive (no fit, or an interval wider than ``max_width``)."""
    if fit.get("slope") is None:
        return None
    lo, hi = fit["slope_ci95"]
    if hi - lo > max_width:
        return None
    return bool(lo <= value)


def mean_se(a, axis=0):
    """Mean and standard error of the mean along ``axis`` (NaN s.e. for one sample)."""
    a = np.asarray(a, float)
    m = a.mean(axis=axis)
    k = a.shape[axis]
    se = a.std(axis=axis, ddof=1) / math.sqrt(k) if k > 1 else np.full_like(m, np.nan)
    return m, se


def tolist(obj):
    """Make numpy scalars/arrays JSON-serialisable (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): tolist(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [tolist(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return tolist(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def claim(claim: str, source: str, measured: str, agrees: bool | None) -> dict:
    return dict(claim=claim, source=source, measured=measured, agrees=agrees)


def write_result(study: str, size: str, out_dir: str, *, title: str, config: dict, results: dict, fits: dict,
                 claims: list, notes: list, t_start: float, figure: str | None = None, plot=None) -> dict:
    """Write ``<out_dir>/<study>.json``; with ``plot`` (a function of the JSON document returning a
    matplotlib figure, the study's ``plot``) also ``<out_dir>/<study>.png`` drawn from the document
    alone, so the figure can be redrawn from the committed JSON (``render``)."""
    os.makedirs(out_dir, exist_ok=True)
    if plot is not None:
        figure = f"{study}.png"
    doc = dict(schema=SCHEMA_VERSION, study=study, size=size, title=title, paper_claims=claims, config=config,
               results=results, fits=fits, notes=notes, machine=machine(), wall_s=time.perf_counter() - t_start,
               created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), figure=figure)
    doc = tolist(doc)
    with open(os.path.join(out_dir, f"{study}.json"), "w") as f:
        json.dump(doc, f, indent=1)
    if plot is not None:
        savefig(plot(doc), out_dir, study)
    return doc


def render(module, json_path: str, out_dir: str | None = None) -> str:
    """Redraw a study's figure from its JSON (no computation): ``module.plot(doc)`` saved as
    ``<out_dir>/<study>.png`` (default: next to the JSON). Returns the PNG path."""
    with open(json_path) as f:
        doc = json.load(f)
    out = out_dir or os.path.dirname(os.path.abspath(json_path))
    name = os.path.splitext(os.path.basename(json_path))[0]
    return os.path.join(out, savefig(module.plot(doc), out, name))


def check_schema(doc: dict) -> list[str]:
    """Problems with a result document (empty list = valid)."""
    errs = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in doc]
    if errs:
        return errs
    if doc["schema"] != SCHEMA_VERSION:
        errs.append(f"schema {doc['schema']} != {SCHEMA_VERSION}")
    if doc["size"] not in SIZES:
        errs.append(f"size {doc['size']!r}")
    if not isinstance(doc["paper_claims"], list) or not doc["paper_claims"]:
        errs.append("paper_claims must be a non-empty list")
    for c in doc.get("paper_claims", []):
        for k in CLAIM_KEYS:
            if k not in c:
                errs.append(f"claim missing {k!r}")
        if c.get("agrees") not in (True, False, None):
            errs.append("claim 'agrees' must be true/false/null")
    for name, fit in doc["fits"].items():
        for k in FIT_KEYS:
            if k not in fit:
                errs.append(f"fit {name} missing {k!r}")
    if not isinstance(doc["results"], dict) or not doc["results"]:
        errs.append("results must be a non-empty dict")
    if not isinstance(doc["wall_s"], (int, float)):
        errs.append("wall_s must be a number")
    return errs


def figure(nrows=1, ncols=2, w=5.0, h=3.8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    return fig, axes


def savefig(fig, out_dir: str, study: str) -> str:
    """Save with nfd's figure style (tick thinning) as ``<out_dir>/<study>.png``; returns the file name."""
    import matplotlib.pyplot as plt

    from nfd.plotting import savefig as _save

    _save(fig, os.path.join(out_dir, f"{study}.png"), dpi=90)
    plt.close(fig)
    return f"{study}.png"


def plot_fit(ax, fit: dict, label: str, *, expected: float | None = None, **kw):
    """Points with ± 2 SE error bars, the fitted power law with its 95% interval in the legend and,
    with ``expected``, the paper's exponent as a dotted reference line (``nfd.plotting.plot_slope_fit``)."""
    from nfd.plotting import plot_slope_fit

    return plot_slope_fit(ax, fit, label, expected=expected, **kw)


def log_x(ax, values):
    """Log x axis labelled at the data's values (depths, widths)."""
    from nfd.plotting import log_axis

    log_axis(ax, "x", values)


def log_y(ax):
    """Log y axis labelled at round numbers inside the data's range."""
    from nfd.plotting import log_axis

    log_axis(ax, "y")


def cli(study: str, run) -> None:
    """``python benchmarks/studies/<study>.py [--tiny|--quick] [--out DIR]``."""
    p = argparse.ArgumentParser(description=f"benchmark study {study}")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true", help="seconds; for the schema test")
    g.add_argument("--quick", action="store_true", help="minutes on 2 CPU cores")
    p.add_argument("--out", default=RESULTS)
    a = p.parse_args()
    size = "tiny" if a.tiny else "quick" if a.quick else "full"
    setup_jax()
    doc = run(size, a.out)
    print(json.dumps(dict(study=study, wall_s=doc["wall_s"], claims=doc["paper_claims"]), indent=1))


def setup_jax():
    import jax

    jax.config.update("jax_enable_x64", True)
