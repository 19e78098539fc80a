"""Checkpoint and resume of the Neural Mean ODE solver: a solve interrupted after ANY GD step of
ANY replicate run and resumed from its checkpoint equals the uninterrupted solve bit for bit."""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from nfd.meanode import _solve, solve_mean_ode
from _xla import subprocess_env

FIELDS = ("outputs", "outputs_stderr", "losses", "forward", "u_displacement", "v_displacement",
          "replicate_outputs")


def _data(n=4, D=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    return X, np.tanh(X[:, ::-1])


def _assert_identical(a, b):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), f


class _Crash(Exception):
    pass


def _crash_at(monkeypatch, point):
    """Die right after the checkpoint (run, iterations) == point is on disk."""
    orig = _solve._Checkpoint.save
    seen = []

    def save(self, done, run, it, carry):
        orig(self, done, run, it, carry)
        seen.append((run, it))
        if (run, it) == point:
            raise _Crash(point)

    monkeypatch.setattr(_solve._Checkpoint, "save", save)
    return seen


def _points(kw, tmp_path, monkeypatch):
    seen = _crash_at(monkeypatch, None)
    solve_mean_ode(*_data(), checkpoint=tmp_path / "all.npz", checkpoint_every=1, **kw)
    monkeypatch.undo()
    return seen


@pytest.mark.parametrize(
    "opts",
    [
        dict(coupling="independent", replicates=2),
        dict(coupling="common", replicates=1, lazy=True, richardson=True, sampler="iid"),
    ],
    ids=["independent-2replicates", "common-lazy-richardson"],
)
@pytest.mark.usefixtures("x64")  # float64 reference
def test_resume_after_every_step_is_bit_identical(tmp_path, monkeypatch, opts):
    X, Y = _data()
    kw = dict(steps=4, grid=6, particles=16, forward_steps=(0, 2, 4), dtype=jnp.float64, **opts)
    full = solve_mean_ode(X, Y, **kw)
    points = _points(kw, tmp_path, monkeypatch)
    # K = 4 steps → K + 1 = 5 iterations per run: saved after 1..4 and at the run's end (next run, 0)
    runs = 2  # two replicates, or the N and 2N grids of Richardson
    assert points == [p for r in range(runs) for p in [(r, 1), (r, 2), (r, 3), (r, 4), (r + 1, 0)]], points
    for j, point in enumerate(points[:-1]):
        path = tmp_path / f"c{j}.npz"
        with monkeypatch.context() as m:
            _crash_at(m, point)
            with pytest.raises(_Crash):
                solve_mean_ode(X, Y, checkpoint=path, checkpoint_every=1, **kw)
        with np.load(path) as z:
            meta = json.loads(z["__meta__"].tobytes().decode())
        assert (meta["run"], meta["it"]) == point
        resumed = solve_mean_ode(X, Y, checkpoint=path, **kw)  # resumed with other pieces
        _assert_identical(resumed, full)
    # a finished checkpoint only reads the results back
    _assert_identical(solve_mean_ode(X, Y, checkpoint=path, **kw), full)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, jax.numpy as jnp
    from nfd.meanode import _solve, solve_mean_ode
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3)); Y = np.tanh(X[:, ::-1])
    orig = _solve._Checkpoint.save
    def save(self, done, run, it, carry):
        orig(self, done, run, it, carry)
        if (run, it) == (1, 3):
            os._exit(17)  # killed right after this checkpoint is on disk
    _solve._Checkpoint.save = save
    solve_mean_ode(X, Y, steps=5, grid=6, particles=16, replicates=3, dtype=jnp.float64,
                   checkpoint=sys.argv[1], checkpoint_every=1)
    print("not killed")
    """
)


@pytest.mark.usefixtures("x64")  # float64 reference
@pytest.mark.slow  # ~7 s; the same kill/resume path of nfd.simulate runs in the default suite
def test_killed_process_resumes_bit_identically(tmp_path):
    path = str(tmp_path / "killed.npz")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", KILL_SCRIPT, path], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 17, out.stderr[-3000:]
    X, Y = _data()
    kw = dict(steps=5, grid=6, particles=16, replicates=3, dtype=jnp.float64)
    _assert_identical(solve_mean_ode(X, Y, checkpoint=path, **kw), solve_mean_ode(X, Y, **kw))


@pytest.mark.usefixtures("x64")  # float64 reference
def test_checkpoint_of_another_problem_is_refused(tmp_path):
    X, Y = _data()
    kw = dict(steps=2, grid=4, particles=8, replicates=1, dtype=jnp.float64)
    path = tmp_path / "c.npz"
    solve_mean_ode(X, Y, checkpoint=path, **kw)
    before = path.read_bytes()
    for other in (dict(kw, seed=1), dict(kw, steps=3), dict(kw, grid=8), dict(kw, alpha=2.0), dict(kw, lazy=True),
                  dict(kw, coupling="common"), dict(kw, replicates=2)):
        with pytest.raises(ValueError, match="different problem"):
            solve_mean_ode(X, Y, checkpoint=path, **other)
    with pytest.raises(ValueError, match="different problem"):
        solve_mean_ode(X, Y + 1e-9, checkpoint=path, **kw)
    assert path.read_bytes() == before
    bad = tmp_path / "bad.npz"
    bad.write_text("nope")
    with pytest.raises(ValueError, match="not a readable"):
        solve_mean_ode(X, Y, checkpoint=bad, **kw)


def test_bad_checkpoint_arguments(tmp_path):
    X, Y = _data()
    kw = dict(steps=2, grid=4, particles=8)
    with pytest.raises(ValueError, match="needs checkpoint"):
        solve_mean_ode(X, Y, checkpoint_every=1, **kw)
    for every in (0, -2, True, 1.5):
        with pytest.raises(ValueError, match="checkpoint_every must be a positive integer"):
            solve_mean_ode(X, Y, checkpoint=tmp_path / "c.npz", checkpoint_every=every, **kw)
    with pytest.raises(ValueError, match="file path"):
        solve_mean_ode(X, Y, checkpoint=tmp_path, **kw)
    assert not os.listdir(tmp_path)


MULTI_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, jax.numpy as jnp
    from nfd.meanode import _solve, solve_mean_ode
    assert len(jax.devices()) == 4
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3)); Y = np.tanh(X[:, ::-1])
    kw = dict(steps=5, grid=6, particles=16, replicates=2, forward_steps=(0, 3, 5), dtype=jnp.float64)
    path = sys.argv[1]
    full = solve_mean_ode(X, Y, devices="all", **kw)

    class Crash(Exception):
        pass

    orig, orig_load = _solve._Checkpoint.save, _solve._Checkpoint.load
    specs = []
    def load(self):
        out = orig_load(self)
        specs.append(getattr(out[3][0][0].sharding, "spec", "one device") if out[3] is not None else None)
        return out
    _solve._Checkpoint.load = load
    for point in ((0, 2), (1, 4)):
        def save(self, done, run, it, carry, point=point):
            orig(self, done, run, it, carry)
            if (run, it) == point:
                raise Crash()
        _solve._Checkpoint.save = save
        try:
            solve_mean_ode(X, Y, devices="all", checkpoint=f"{path}{point[0]}", checkpoint_every=1, **kw)
        except Crash:
            pass
        _solve._Checkpoint.save = orig
        res = solve_mean_ode(X, Y, devices="all", checkpoint=f"{path}{point[0]}", **kw)
        assert specs[-1] == jax.sharding.PartitionSpec(None, "particles", None), specs
        for f in ("outputs", "forward", "losses", "u_displacement", "v_displacement", "replicate_outputs"):
            assert np.array_equal(getattr(res, f), getattr(full, f)), (point, f)
    # the 4-device checkpoint resumes on one device: the particle sums are reordered, so equal to
    # round-off (a few eps per mean through 5 GD steps; 1e-13 as in test_sharding_meanode.py)
    def save(self, done, run, it, carry):
        orig(self, done, run, it, carry)
        if (run, it) == (1, 2):
            raise Crash()
    _solve._Checkpoint.save = save
    try:
        solve_mean_ode(X, Y, devices="all", checkpoint=path + "x", checkpoint_every=1, **kw)
    except Crash:
        pass
    _solve._Checkpoint.save = orig
    one = solve_mean_ode(X, Y, checkpoint=path + "x", **kw)
    assert specs[-1] == "one device", specs
    np.testing.assert_allclose(one.outputs, full.outputs, rtol=0, atol=1e-13)
    print("OK")
    """
)


def test_sharded_checkpoint_resumes_bit_identically_on_four_devices(tmp_path):
    env = subprocess_env(devices=4)
    out = subprocess.run([sys.executable, "-c", MULTI_SCRIPT, str(tmp_path / "s")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")
