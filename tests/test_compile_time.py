"""benchmarks/compile_time.py: its bookkeeping (per-program sums, per-round ratios, bit-identity flag)
and its figure, on synthetic process records (the measurement itself runs fresh processes that compile
for minutes; ``python benchmarks/compile_time.py --tiny`` is its smoke run, ~1 minute)."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import compile_time  # noqa: E402


def _proc(side, r, scale, hashes):
    ev = [["solve exact", "_advance", "trace", 0.5], ["solve exact", "_advance", "lower", 0.25],
          ["solve exact", "_advance", "backend", 4.0 * scale], ["simulate n=8", "_init", "backend", 2.0 * scale],
          ["simulate n=8", "_init", "backend", 1.0 * scale], ["other", "iota", "backend", 0.125]]
    res = dict(side=side, round=r, events=ev, main_cold_s=10.0 * scale, main_warm_s=[1.0, 0.5],
               process_wall_s=12.0 * scale, load_avg_1min_before=1.0, load_avg_1min_after=2.0,
               call_s={"solve exact": [5.0, 0.25, 0.2]}, hashes=hashes)
    res.update(totals=compile_time.totals(res), programs=compile_time.programs(res))
    return res


def test_summary_and_plot(tmp_path):
    h = {"solve exact": ["abc", "abc"]}
    rows = [_proc("before", 0, 1.0, h), _proc("after", 0, 0.5, h), _proc("after", 1, 0.5, h),
            _proc("before", 1, 1.0, {"solve exact": ["abd", "abd"]})]
    p = rows[0]["programs"]
    assert p["simulate n=8: _init"] == dict(trace=0.0, lower=0.0, backend=3.0, count=2)
    assert rows[0]["totals"]["backend"] == 4.0 + 3.0 + 0.125 and rows[0]["totals"]["programs"] == 4
    assert rows[0]["totals"]["compile"] == rows[0]["totals"]["backend"] + 0.75
    ratios, per, calls = compile_time.summarise(rows)
    assert [r["same_outputs"] for r in ratios] == [True, False]
    assert abs(ratios[0]["backend_after_over_before"] - (3.5 + 0.125) / 7.125) < 1e-12
    assert ratios[0]["warm_main_after_over_before"] == 1.0
    assert per["solve exact: _advance"]["after_backend_s"] == [2.0, 2.0]
    assert calls["solve exact"]["before_warm_s"] == [0.2, 0.2] and calls["solve exact"]["before_cold_s"] == [5.0, 5.0]
    doc = dict(results=dict(programs=per, ratios=ratios, processes=rows),
               config=dict(before_commit="0" * 40, after_commit="1" * 40, example="synthetic"),
               machine=dict(cpu_count=2, jax="x"))
    png = tmp_path / "ct.png"
    compile_time.plot(doc, str(png))
    assert png.stat().st_size > 10_000
