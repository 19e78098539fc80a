"""The benchmark suite's single command runs and writes result files with the documented schema.

The non-slow test runs ``benchmarks/run_all.py --tiny`` on one study (compilation dominates the
tiny size: each study compiles several network and solver shapes); the slow test runs every study.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _common  # noqa: E402
import run_all  # noqa: E402


def _run(out, only=None):
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "run_all.py"), "--tiny", "--out", str(out)]
    if only:
        cmd += ["--only", only]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _check_dir(out, names):
    log = json.loads((out / "run_all.json").read_text())
    assert log["size"] == "tiny"
    assert set(log["studies"]) == set(names)
    assert all(s["ok"] for s in log["studies"].values()), log["studies"]
    summary = (out / "SUMMARY.md").read_text()
    for name in names:
        doc = json.loads((out / f"{name}.json").read_text())
        assert _common.check_schema(doc) == [], (name, _common.check_schema(doc))
        assert doc["study"] == name and doc["size"] == "tiny"
        assert doc["figure"] and (out / doc["figure"]).stat().st_size > 1000
        assert f"| {name} |" in summary


def test_run_all_tiny_one_study(tmp_path):
    _run(tmp_path, only="rates_training")
    _check_dir(tmp_path, ["rates_training"])


@pytest.mark.slow
def test_run_all_tiny_every_study(tmp_path):
    _run(tmp_path)
    _check_dir(tmp_path, list(run_all.STUDIES))


def test_fit_loglog_recovers_power_law():
    x = np.array([16, 32, 64, 128, 256.0])
    exact = _common.fit_loglog(x, 3.0 * x**-0.5)
    assert abs(exact["slope"] + 0.5) < 1e-12
    # noisy points with known standard errors: the 95% interval should cover the true slope;
    # 5% relative noise on 5 points spanning a factor 16 gives an interval of roughly ±0.1
    rng = np.random.default_rng(0)
    y = 2.0 * x**-1.0
    yerr = 0.05 * y
    fit = _common.fit_loglog(x, y + yerr * rng.standard_normal(5), yerr)
    lo, hi = fit["slope_ci95"]
    assert lo <= -1.0 <= hi and hi - lo < 0.5
    assert _common.in_ci(fit, -1.0) is True
    assert _common.in_ci(dict(slope=-1.0, slope_ci95=[-3.0, 1.0]), -1.0) is None  # too wide: inconclusive


def test_check_schema_rejects_incomplete_documents():
    assert _common.check_schema({}) != []
    good = dict(schema=1, study="x", size="tiny", title="t", paper_claims=[_common.claim("c", "s", "m", None)],
                config={}, results={"a": 1}, fits={}, notes=[], machine={}, wall_s=1.0, created="now", figure=None)
    assert _common.check_schema(good) == []
    assert _common.check_schema({**good, "paper_claims": []}) != []
    assert _common.check_schema({**good, "size": "huge"}) != []
    assert _common.check_schema({**good, "fits": {"f": {"slope": 1.0}}}) != []


def test_run_all_rejects_unknown_study(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run_all.py"), "--tiny", "--only", "nope",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "unknown studies" in r.stderr


@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.slow
def test_scaling_benchmark_tiny(tmp_path):
    """benchmarks/scaling.py --tiny (about 2 minutes): every device count runs, the sharded runs
    equal one device to round-off (float64: below 1e-10 relative; the solvers' own tests bound
    the same quantity at 1e-12 or 1e-13 on smaller problems), a resumed run is bit-identical."""
    out = tmp_path / "scaling.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "scaling.py"), "--tiny", "--out", str(out)],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert (tmp_path / "scaling.png").stat().st_size > 1000
    for case, rows in res["strong"]["cases"].items():
        assert [row["devices"] for row in rows] == [1, 2, 4, 8]
        if case.endswith("float64"):
            assert max(row["max_rel_deviation_from_1_device"] for row in rows) < 1e-10, case
    assert res["checkpoint"]["bit_identical"]
