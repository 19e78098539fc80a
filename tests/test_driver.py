"""The shared driver (nfd._driver.run), the one divergence check, nfd.solve's options, and the
pairing of nfd.solve's and nfd.simulate's defaults."""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd._driver import next_stop


def _data(K=4, d=3, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = scale * rng.normal(size=(K, d))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1]


# ---------------------------------------------------------------------------------------------
# the driver's stops and checkpoints
# ---------------------------------------------------------------------------------------------
def _stops(total, segment, chunk, every):
    out, s = [], 0
    while s < total:
        s, save = next_stop(s, total, segment=segment, chunk=chunk, every=every)
        out.append((s, save))
    return out


def test_stops_and_checkpoints_follow_segments_chunks_and_every():
    # one segment: stops at multiples of chunk and every, saves at multiples of every and the end
    assert _stops(7, 7, 1, 3) == [(1, False), (2, False), (3, True), (4, False), (5, False), (6, True), (7, True)]
    assert _stops(7, 7, None, None) == [(7, True)]
    assert _stops(7, 7, 3, None) == [(3, True), (6, True), (7, True)]  # no every: save at every stop
    # segments of 4 (a Mean ODE run per replicate): every is counted from each segment's start
    assert _stops(8, 4, None, 3) == [(3, True), (4, True), (7, True), (8, True)]


# ---------------------------------------------------------------------------------------------
# nfd.solve options
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, kw, bad, suggestion", [
    ("particles", dict(depth=2, partcles=64), "partcles", "particles"),
    ("gamma_c", dict(depth=2, backward="gia"), "backward", None),
    ("mean_ode", dict(step=2), "step", "steps"),
])
def test_solve_refuses_unknown_keywords_naming_method_keys_and_suggestion(method, kw, bad, suggestion):
    X, Y = _data()
    if method == "mean_ode":
        Y = np.tile(Y[:, None], (1, 3))
    with pytest.raises(ValueError) as e:
        nfd.solve(X, Y, method=method, **kw)
    msg = str(e.value)
    assert "nfd.solve" in msg and repr(method) in msg and repr(bad) in msg and "Accepted:" in msg
    accepted = msg.split("Accepted:")[1]
    assert "depth" in accepted or "steps" in accepted
    if suggestion:
        assert f"Did you mean {suggestion!r}" in msg
    else:
        assert "Did you mean" not in msg
    with pytest.raises(ValueError, match="Did you mean 'particles'"):
        nfd.solve(X, Y, method="particle", depth=2, particles=64)


def test_solve_defaults_to_the_coupled_limit_and_gia_is_one_keyword_away():
    X, Y = _data(K=3)
    kw = dict(depth=2, particles=64, activation="tanh", lr=0.5, eigenvalues=False)
    default = nfd.solve(X, Y, **kw)
    assert default.config["backward"] == "exact"
    np.testing.assert_array_equal(default.outputs, nfd.solve(X, Y, backward="exact", **kw).outputs)
    gia = nfd.solve(X, Y, backward="gia", **kw)
    assert gia.config["backward"] == "gia" and not np.array_equal(gia.outputs, default.outputs)


def test_defaults_of_solve_and_simulate_describe_the_same_network():
    """nfd.simulate and nfd.solve with their defaults (ordinary ReLU networks, lr=0.1, T=1) converge.

    The finite-network mean over seeds is extrapolated in 1/n from widths n and 2n
    (f_∞ ≈ 2 f(2n) − f(n), which removes the O(1/n) bias; its standard error is
    √(4 se(2n)² + se(n)²) from the two independent seed sets), and the limit's particle mean is
    averaged over particle seeds (its standard error from their spread).  Every step must agree
    within 4 combined standard errors.
    """
    X, Y = _data(K=4, scale=1.5)
    L = 4
    fin = [nfd.simulate(X, Y, width=n, depth=L, seeds=256, seed=1 + i) for i, n in enumerate((64, 128))]
    ext = 2 * fin[1].mean - fin[0].mean
    se_ext = np.sqrt(4 * fin[1].stderr**2 + fin[0].stderr**2)
    lim = np.array([nfd.solve(X, Y, depth=L, particles=4096, seed=s, eigenvalues=False).outputs for s in range(4)])
    se_lim = lim.std(0, ddof=1) / math.sqrt(lim.shape[0])
    z = np.abs(ext - lim.mean(0)) / np.sqrt(se_ext**2 + se_lim**2)
    assert np.all(z <= 4.0), (ext, lim.mean(0), se_ext, se_lim)
    # the comparison has power: the outputs move by many standard errors over the run
    assert abs(lim.mean(0)[-1]) > 10 * se_lim[-1]


# ---------------------------------------------------------------------------------------------
# limit_loss_fn is the particle problem's loss
# ---------------------------------------------------------------------------------------------
def test_limit_loss_fn_is_the_particle_problem_loss_with_its_options():
    X, Y = _data(K=4)
    kw = dict(depth=2, particles=128, activation="tanh", seed=3)
    fn = nfd.limit_loss_fn(X, Y, noise="regenerate", storage_dtype="bfloat16", **kw)
    sol = nfd.solve(X, Y, lr=0.4, T=1.0, noise="regenerate", storage_dtype="bfloat16", eigenvalues=False, **kw)
    np.testing.assert_allclose(float(fn(0.4, 1.0)), np.mean(sol.losses), rtol=1e-5)
    # one default singular_tol for both (float32)
    from nfd.limits._nfd import default_singular_tol

    assert float(fn.problem.args[-1]) == pytest.approx(default_singular_tol(jnp.float32))
    assert sol.config["singular_tol"] == pytest.approx(default_singular_tol(jnp.float32))
    # equal problems give equal (hashable) functions: jitted wrappers are reused
    assert fn == nfd.limit_loss_fn(X, Y, noise="regenerate", storage_dtype="bfloat16", **kw)


# ---------------------------------------------------------------------------------------------
# one divergence policy
# ---------------------------------------------------------------------------------------------
def test_particle_divergence_returns_status_instead_of_crashing():
    X, Y = _data(K=6)
    kw = dict(depth=2, particles=256, activation="identity", lr=1e4)
    with pytest.raises(nfd.DivergenceError) as e:
        nfd.solve(X, 100 * Y, **kw)
    with pytest.warns(UserWarning, match="diverged"):
        sol = nfd.solve(X, 100 * Y, on_divergence="return", **kw)  # eigenvalues on: no LinAlgError
    assert sol.status.diverged and sol.status.divergence_step == e.value.step
    assert np.all(np.isfinite(sol.outputs[: e.value.step]))
    ok = nfd.solve(X, Y, depth=2, particles=64, activation="tanh", lr=0.1, eigenvalues=False)
    assert not ok.status.diverged and ok.status.divergence_step is None
    assert ok.status.dropped_pivots == ok.dropped_pivots


@pytest.mark.usefixtures("x64")
def test_mean_ode_has_progress_and_on_divergence(capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 2))
    Y = np.tanh(X)
    kw = dict(method="mean_ode", steps=4, grid=4, particles=8, replicates=2, dtype=jnp.float64)
    res = nfd.solve(X, Y, progress=True, **kw)
    err = capsys.readouterr().err
    assert "solve_mean_ode: step 10/10" in err and not res.status.diverged
    bad = dict(kw, steps=8, lr_u=1e15, lr_v=1e15, dtype=jnp.float32)
    with pytest.raises(nfd.DivergenceError) as e:
        nfd.solve(X, Y, **bad)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = nfd.solve(X, Y, on_divergence="return", **bad)
    assert any("diverged" in str(x.message) for x in w)
    assert r.status.divergence_step == e.value.step and 0 < e.value.step <= 8
    assert r.status.divergence_index in (0, 1)
    with pytest.raises(ValueError, match="on_divergence"):
        nfd.solve(X, Y, on_divergence="ignore", **kw)


def test_kernel_divergence_has_no_placeholder_step():
    err = nfd.DivergenceError("x", step=None)
    assert err.step is None


# ---------------------------------------------------------------------------------------------
# results are JAX pytrees
# ---------------------------------------------------------------------------------------------
def test_results_pass_through_tree_util_jit_and_vmap():
    import jax

    X, Y = _data(K=4)
    sim = nfd.simulate(X, Y, width=8, depth=2, activation="tanh", seeds=2)
    lim = nfd.solve(X, Y, depth=2, particles=32, activation="tanh", eigenvalues=False)
    for r in (sim, lim):
        leaves = jax.tree_util.tree_leaves(r)
        assert any(leaf is r.outputs for leaf in leaves)
        assert float(jax.jit(lambda r: r.outputs.sum())(r)) == pytest.approx(float(np.sum(r.outputs)), rel=1e-6)
        doubled = jax.jit(lambda r: jax.tree_util.tree_map(lambda a: 2 * a, r))(r)
        assert type(doubled) is type(r) and doubled.network == r.network and doubled.status == r.status
        back = doubled.to_numpy()
        assert isinstance(back.outputs, np.ndarray) and np.array_equal(back.outputs, 2 * r.outputs)
        batch = jax.tree_util.tree_map(lambda a: np.stack([a, -a]), r)
        means = jax.vmap(lambda r: r.outputs.mean())(batch)
        np.testing.assert_allclose(np.asarray(means), [r.outputs.mean(), -r.outputs.mean()], rtol=1e-6)
    assert sim.status.divergence_step is None and lim.status.dropped_pivots == lim.dropped_pivots
