"""Save/load round trips of result objects with their configuration."""

import dataclasses
import json

import numpy as np
import pytest

# one worker builds this file's module fixtures (pytest-xdist, --dist loadgroup in pyproject.toml)
pytestmark = pytest.mark.xdist_group("io")

import nfd
from nfd._io import load, save, to_jsonable


def _assert_same(a, b):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, f.name
            np.testing.assert_array_equal(x, y)  # bit-exact, NaN == NaN
        else:
            assert x == y, (f.name, x, y)


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3))
    Y = np.tanh(X[:, 0])
    sim = nfd.simulate(X, Y, width=16, depth=2, activation="tanh", lr=0.5, seeds=3, X_test=X[:2],
                       record=("features",))
    lim = nfd.solve(X, Y, depth=2, particles=64, activation="tanh", lr=0.5)
    return sim, lim


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_round_trip_of_simulation_and_limit(tmp_path, results, suffix):
    for i, res in enumerate(results):
        p = save(tmp_path / f"r{i}{suffix}", res, config={"width": 16, "tags": ("a", "b"), "lr": 0.5})
        back, cfg = load(p, return_config=True)
        _assert_same(res, back)
        assert cfg == {"width": 16, "tags": ("a", "b"), "lr": 0.5}
    # derived quantities work on the loaded object
    sim = load(tmp_path / f"r0{suffix}")
    np.testing.assert_array_equal(sim.mean, results[0].mean)
    np.testing.assert_array_equal(sim.stderr, results[0].stderr)
    assert sim.network.activation.name == "tanh" and sim.network.width == 16


def test_nonfinite_values_and_plain_dicts_round_trip(tmp_path):
    rec = {"x": np.array([1.0, np.nan, np.inf, -np.inf]), "n": 3, "s": "ok", "f": float("nan"),
           "nested": {"k": np.arange(6).reshape(2, 3)}, "none": None}
    for suffix in (".npz", ".json"):
        back = load(save(tmp_path / f"d{suffix}", rec))
        np.testing.assert_array_equal(back["x"], rec["x"])
        np.testing.assert_array_equal(back["nested"]["k"], rec["nested"]["k"])
        assert back["nested"]["k"].dtype == rec["nested"]["k"].dtype
        assert back["n"] == 3 and back["s"] == "ok" and back["none"] is None and np.isnan(back["f"])


def test_bad_paths_and_files(tmp_path):
    with pytest.raises(ValueError, match="path"):
        save(tmp_path / "x.pkl", {"a": 1})
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not an nfd result"):
        load(tmp_path / "foreign.npz")
    with pytest.raises(ValueError, match="object"):
        save(tmp_path / "o.npz", {"a": object()})
    # a JSON file naming a non-nfd type is refused rather than imported
    evil = {"format": "nfd-result", "config": {}, "result": {"__dataclass__": "os:system", "fields": {}}}
    (tmp_path / "evil.json").write_text(json.dumps(evil))
    with pytest.raises(ValueError, match="non-nfd"):
        load(tmp_path / "evil.json")


def test_to_jsonable_is_strict_json(results):
    txt = json.dumps(to_jsonable(results[0]), allow_nan=False)  # NaN stderr etc. become null
    back = json.loads(txt)
    np.testing.assert_allclose(np.asarray(back["outputs"]), results[0].outputs, rtol=1e-6)
    assert back["network"]["activation"] == "tanh"
