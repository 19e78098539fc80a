"""Every figure of the examples and of the benchmarks follows nfd's figure style.

Each figure is inspected through matplotlib's API after ``canvas.draw()``
(:func:`nfd.plotting.check_figure`): every panel has a title, both axis labels and at least two
non-empty tick labels per axis whose window extents do not overlap; a panel with more than one
data series has a legend; no NaN or infinity is drawn; colour bars are labelled.

Benchmark figures are redrawn from the committed ``benchmarks/results/*.json`` (each benchmark's
``plot`` takes its results JSON), so no benchmark is rerun. Example figures are drawn by running
each example at its small size (the sizes of ``tests/test_examples.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nfd.plotting import check_figure, log_axis, plot_kernel, plot_rates, savefig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_all  # noqa: E402
from test_examples import SMALL  # noqa: E402


def _bench_cases():
    cases = []
    for name, modname in run_all.figure_modules().items():
        for stem in (name, f"{name}_full"):
            if (RESULTS / f"{stem}.json").exists():
                cases.append((stem, modname))
    return cases


def test_every_benchmark_with_a_figure_has_committed_results():
    # a benchmark whose JSON is missing would silently escape the style check below
    names = {c[0] for c in _bench_cases()}
    assert set(run_all.figure_modules()) <= names


@pytest.mark.parametrize("stem,modname", _bench_cases(), ids=[c[0] for c in _bench_cases()])
def test_benchmark_figure_redrawn_from_its_json_follows_the_style(stem, modname, tmp_path):
    mod = importlib.import_module(modname)
    doc = json.loads((RESULTS / f"{stem}.json").read_text())
    fig = mod.plot(doc)
    try:
        savefig(fig, tmp_path / f"{stem}.png", dpi=60)  # as the benchmark saves it (layout, tick thinning)
        problems = check_figure(fig)
        assert problems == [], f"{stem}: {problems}"
    finally:
        plt.close("all")


def _load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_fig_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _finite_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, float):
        yield obj


@pytest.mark.parametrize("name", sorted(SMALL))
def test_example_figure_follows_the_style(name, tmp_path):
    out = tmp_path / f"{name}.png"
    plt.close("all")
    try:
        res = _load_example(name).main([*SMALL[name], "--out", str(out)])
        assert out.exists() and out.stat().st_size > 5000
        nums = list(_finite_numbers(res))
        # every reported number is finite: a NaN (a standard error of one seed, a fit through one
        # point) is a result the example should not report at all, never a success
        assert nums, "the example returned no numbers"
        bad = [x for x in nums if not math.isfinite(x)]
        assert not bad, f"{name}: non-finite results {bad[:10]}"
        figs = [plt.figure(n) for n in plt.get_fignums()]
        assert figs, "the example left no figure open to inspect"
        for fig in figs:
            assert check_figure(fig) == [], f"{name}: {check_figure(fig)}"
    finally:
        plt.close("all")


# --- the checker itself catches what it is meant to catch --------------------------------------
def test_check_figure_flags_overlapping_log_ticks_missing_labels_and_nan():
    fig, ax = plt.subplots(figsize=(2.0, 1.6))
    ax.plot([30, 40, 60], [1, np.nan, 2], "o", label="a")
    ax.plot([30, 40, 60], [1, 2, 3], "s")
    ax.set_xscale("log")
    ax.set_xticks([30, 31, 32, 33, 40, 60], ["30", "31", "32", "33", "40", "60"])
    problems = "\n".join(check_figure(fig))
    assert "no title" in problems and "no x label" in problems and "no y label" in problems
    assert "overlap" in problems
    assert "no legend" in problems
    assert "non-finite" in problems
    plt.close(fig)


def test_style_passes_at_a_small_size_and_labels_data_values():
    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 2.6))
    widths = [32, 64, 128, 256, 512, 1024]
    err = [0.045, 0.035, 0.03, 0.025, 0.02, 0.017]  # no power of ten inside the data's range
    _, fit = plot_rates(widths, err, [0.002] * 6, ax=a, label="distance", xlabel="width n", ylabel="RMS distance",
                        title="convergence", expected=-1.0)
    K = np.random.default_rng(0).normal(size=(20, 20))
    K[0, 0] = 1e3  # one outlier must not set the colour scale
    plot_kernel(K, ax=b, title="kernel")
    path = savefig(fig, Path(os.environ.get("TMPDIR", "/tmp")) / "nfd_style_check.png")
    assert check_figure(fig) == []
    # the x axis is labelled at the data's own widths (thinned only if crowded) as plain numbers
    xt = [t.get_text() for t in a.get_xticklabels() if t.get_text()]
    assert set(xt) <= {str(w) for w in widths} and {"32", "1024"} <= set(xt)
    # the y axis has round-number labels inside 0.017–0.045, no powers of ten
    yt = [t.get_text() for t in a.get_yticklabels() if t.get_text()]
    assert len(yt) >= 2 and not any("10^" in t or "×" in t for t in yt)
    # the fit's 95% interval is in the legend, next to the expected slope
    legend = " ".join(t.get_text() for t in a.get_legend().get_texts())
    assert "95% CI" in legend and "expected slope -1" in legend
    assert fit.slope_ci95[0] < fit.slope < fit.slope_ci95[1]
    lo, hi = b.images[0].get_clim()
    assert hi < 10 and lo > -10  # robust percentiles, not the outlier
    plt.close(fig)
    os.remove(path)


def test_log_axis_thins_crowded_data_values():
    fig, ax = plt.subplots(figsize=(2.2, 2))
    xs = [2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32]
    ax.plot(xs, np.arange(1, 13), "o")
    log_axis(ax, "x", xs)
    ax.set(title="t", xlabel="x", ylabel="y")
    savefig(fig, Path(os.environ.get("TMPDIR", "/tmp")) / "nfd_thin_check.png")
    assert check_figure(fig) == []
    shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert shown[0] == "2" and shown[-1] == "32" and len(shown) < len(xs)
    plt.close(fig)
