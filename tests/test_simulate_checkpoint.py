"""Checkpoint and resume of nfd.simulate: a run interrupted after ANY step k and resumed from its
checkpoint equals the uninterrupted run bit for bit (np.array_equal, no tolerance)."""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd.finite import _simulate
from _xla import subprocess_env


def _data(K=6, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, d))
    return X, np.sin(X[:, 0])


FIELDS = ("outputs", "losses", "test_outputs", "features", "grads", "frozen_x", "frozen_dh")


def _assert_identical(a, b):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name


class _Crash(Exception):
    pass


def _crash_after(monkeypatch, k):
    """Make the run die right after its checkpoint of step k is on disk (as a killed job would)."""
    orig = _simulate._Checkpoint.save

    def save(self, step, carry):
        orig(self, step, carry)
        if step == k:
            raise _Crash(k)

    monkeypatch.setattr(_simulate._Checkpoint, "save", save)


def _step_in(path):
    with np.load(path) as z:
        return json.loads(z["__meta__"].tobytes().decode())["step"]


@pytest.mark.parametrize(
    "opts",
    [
        dict(backward="coupled", weights="dense", block="pre", record=("features",)),
        dict(backward="decoupled", weights="regenerate", block="two_layer", record=("grads", "frozen")),
    ],
    ids=["coupled-dense-pre", "decoupled-regenerate-two_layer"],
)
def test_resume_after_every_step_is_bit_identical(tmp_path, monkeypatch, opts):
    X, Y = _data(K=12)
    kw = dict(width=16, depth=3, activation="tanh", lr=0.4, seeds=2, batch_size=2, X_test=X[:3], **opts)
    full = nfd.simulate(X, Y, **kw)  # 6 SGD steps, never interrupted
    steps = 6
    for k in range(1, steps):
        path = tmp_path / f"run{k}.npz"
        with monkeypatch.context() as m:
            _crash_after(m, k)
            with pytest.raises(_Crash):
                nfd.simulate(X, Y, checkpoint=path, checkpoint_every=1, **kw)
        assert _step_in(path) == k and not os.path.exists(str(path) + ".tmp")
        # resume with another split of the remaining steps: still one compiled program
        resumed = nfd.simulate(X, Y, checkpoint=path, chunk_steps=4, **kw)
        _assert_identical(resumed, full)
        assert _step_in(path) == steps  # written at the end
    # a finished checkpoint just returns the result
    _assert_identical(nfd.simulate(X, Y, checkpoint=path, **kw), full)


def test_checkpoint_every_writes_at_multiples_and_end(tmp_path, monkeypatch, capsys):
    X, Y = _data(K=7)
    kw = dict(width=8, depth=2, activation="tanh", lr=0.3, seeds=2)
    seen = []
    orig = _simulate._Checkpoint.save
    monkeypatch.setattr(_simulate._Checkpoint, "save", lambda self, s, c: (seen.append(s), orig(self, s, c)))
    path = tmp_path / "c.npz"
    res = nfd.simulate(X, Y, checkpoint=path, checkpoint_every=3, progress=True, **kw)
    assert seen == [3, 6, 7]
    err = capsys.readouterr().err
    assert "step 3/7" in err and "step 7/7" in err
    nfd.simulate(X, Y, checkpoint=path, progress=True, **kw)
    assert "resuming from" in (err := capsys.readouterr().err) and "at step 7/7" in err
    _assert_identical(res, nfd.simulate(X, Y, **kw))


KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np, nfd
    from nfd.finite import _simulate
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 3)); Y = np.sin(X[:, 0])
    orig = _simulate._Checkpoint.save
    def save(self, step, carry):
        orig(self, step, carry)
        if step == 5:
            os._exit(17)  # killed right after the checkpoint of step 5 is on disk
    _simulate._Checkpoint.save = save
    nfd.simulate(X, Y, width=16, depth=3, activation="relu", lr=0.3, seeds=3, X_test=X[:2],
                 checkpoint=sys.argv[1], checkpoint_every=1)
    print("not killed")
    """
)


def test_killed_process_resumes_bit_identically(tmp_path):
    path = str(tmp_path / "killed.npz")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", KILL_SCRIPT, path], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 17, out.stderr[-3000:]
    assert _step_in(path) == 5
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 3))
    Y = np.sin(X[:, 0])
    kw = dict(width=16, depth=3, activation="relu", lr=0.3, seeds=3, X_test=X[:2])
    resumed = nfd.simulate(X, Y, checkpoint=path, **kw)
    _assert_identical(resumed, nfd.simulate(X, Y, **kw))


def test_checkpoint_of_another_problem_is_refused(tmp_path):
    X, Y = _data(K=4)
    kw = dict(width=8, depth=2, activation="tanh", lr=0.3, seeds=2)
    path = tmp_path / "c.npz"
    nfd.simulate(X, Y, checkpoint=path, **kw)
    before = path.read_bytes()
    others = [
        dict(kw, seed=1),
        dict(kw, lr=0.2),
        dict(kw, seeds=4),
        dict(kw, backward="decoupled"),
        dict(kw, X_test=X[:1]),
        dict(kw, record=("features",)),
    ]
    for other in others:
        with pytest.raises(ValueError, match="different problem"):
            nfd.simulate(X, Y, checkpoint=path, **other)
    with pytest.raises(ValueError, match="different problem"):
        nfd.simulate(X, Y + 1e-9, checkpoint=path, **kw)  # other data
    assert path.read_bytes() == before  # a refused checkpoint is left alone
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        nfd.simulate(X, Y, checkpoint=bad, **kw)


def test_bad_checkpoint_arguments(tmp_path):
    X, Y = _data(K=4)
    kw = dict(width=8, depth=2, activation="tanh")
    with pytest.raises(ValueError, match="needs checkpoint"):
        nfd.simulate(X, Y, checkpoint_every=2, **kw)
    for every in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="checkpoint_every must be a positive integer"):
            nfd.simulate(X, Y, checkpoint=tmp_path / "c.npz", checkpoint_every=every, **kw)
    with pytest.raises(ValueError, match="file path"):
        nfd.simulate(X, Y, checkpoint=tmp_path, **kw)
    with pytest.raises(ValueError, match="file path"):
        nfd.simulate(X, Y, checkpoint=3, **kw)
    with pytest.raises(ValueError, match="chunk_steps"):
        nfd.simulate(X, Y, chunk_steps=0, **kw)
    assert not os.listdir(tmp_path)


@pytest.mark.usefixtures("x64")  # float64 reference
def test_checkpoint_stores_only_the_filled_history(tmp_path, monkeypatch):
    # P, Q hold K·L·n numbers per seed at the end but only k·L·n after step k: the file grows with k
    X, Y = _data(K=8)
    kw = dict(width=32, depth=4, activation="tanh", lr=0.3, seeds=2, weights="dense", dtype=jnp.float64)
    path = tmp_path / "c.npz"
    with monkeypatch.context() as m:
        _crash_after(m, 2)
        with pytest.raises(_Crash):
            nfd.simulate(X, Y, checkpoint=path, checkpoint_every=2, **kw)
    with np.load(path) as z:
        meta = json.loads(z["__meta__"].tobytes().decode())
        assert meta["dtypes"]["state/P"] == ["float64", [2, 1, 4, 2, 32]]  # (seeds, F, L, k·B, n)
        assert "state/W0" not in meta["dtypes"]  # redrawn from the seed keys
        assert meta["dtypes"]["outs/f"] == ["float64", [2, 2, 1]]


MULTI_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, jax.numpy as jnp, nfd
    from nfd.finite import _simulate
    assert len(jax.devices()) == 4, jax.devices()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3)); Y = np.sin(X[:, 0])
    kw = dict(width=16, depth=3, activation="tanh", lr=0.3, seeds=8, X_test=X[:2], record=("features",))
    path = sys.argv[1]

    class Crash(Exception):
        pass

    orig = _simulate._Checkpoint.save
    placed = []
    orig_load = _simulate._Checkpoint.load
    def load(self):
        step, carry = orig_load(self)
        placed.append({getattr(a.sharding, "spec", (None,))[0] for a in jax.tree_util.tree_leaves(carry)})
        placed.append({len(a.sharding.device_set) for a in jax.tree_util.tree_leaves(carry)})
        return step, carry
    _simulate._Checkpoint.load = load
    for weights in ("dense", "regenerate"):
        full = nfd.simulate(X, Y, devices="all", weights=weights, **kw)
        for k in ((1,) if weights == "dense" else (4,)):
            def save(self, step, carry, k=k):
                orig(self, step, carry)
                if step == k:
                    raise Crash()
            _simulate._Checkpoint.save = save
            try:
                nfd.simulate(X, Y, devices="all", weights=weights, checkpoint=f"{path}{weights}{k}",
                             checkpoint_every=1, **kw)
            except Crash:
                pass
            _simulate._Checkpoint.save = orig
            res = nfd.simulate(X, Y, devices="all", weights=weights, checkpoint=f"{path}{weights}{k}", **kw)
            assert placed[-2:] == [{"seeds"}, {4}], placed
            for name in ("outputs", "losses", "test_outputs", "features"):
                assert np.array_equal(getattr(res, name), getattr(full, name)), (weights, k, name)
    # a checkpoint written on 4 devices resumes on one device (placement differs, the numbers do not)
    def save(self, step, carry):
        orig(self, step, carry)
        if step == 3:
            raise Crash()
    _simulate._Checkpoint.save = save
    try:
        nfd.simulate(X, Y, devices="all", weights="regenerate", checkpoint=path + "x", checkpoint_every=1, **kw)
    except Crash:
        pass
    _simulate._Checkpoint.save = orig
    res = nfd.simulate(X, Y, weights="regenerate", checkpoint=path + "x", **kw)
    assert placed[-1] == {1}, placed
    # float32; another device count may change how XLA vectorizes the seed batch, so round-off only
    np.testing.assert_allclose(res.outputs, full.outputs, rtol=1e-5, atol=1e-6)
    print(json.dumps(dict(four_to_one_identical=bool(np.array_equal(res.outputs, full.outputs)),
                          max_abs_diff=float(np.max(np.abs(res.outputs - full.outputs))))))
    print("OK")
    """
)


def test_sharded_checkpoint_resumes_bit_identically_on_four_devices(tmp_path):
    env = subprocess_env(devices=4)
    out = subprocess.run([sys.executable, "-c", MULTI_SCRIPT, str(tmp_path / "s")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")
    print(out.stdout)
