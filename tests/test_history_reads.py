"""The particle solver's history reads over the filled rows only (``read_chunks``, issue #18 item 5)
equal the reads of every preallocated row up to floating-point summation order.

Round-off bounds (float64, ε = 2⁻⁵³; Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1):
a dot product of n terms computed in any order is within γ_n·Σ|a_i x_i| of the exact value,
γ_n = nε/(1 − nε).  The filled-prefix read computes the same dot products with the zero rows left
out (each zero term is exactly 0), so the two results differ by at most 2·γ_n·Σ|a_i x_i|, n the
length of the contraction (rows H for coef @ history, particles P for history @ F.T).  That bound
is checked directly on the two helpers.

End to end, each step passes the difference through S = 2L + 2 sequential stages (input layer, L
forward layers, output, L backward layers) per step, steps·S in all, each adding at most
2·γ_n (n = H + P covers both contractions) relative to the size of the quantity, and amplified
by the linear solves with the Cholesky factors of Σ and Θ by at most their condition number κ
(forward error ≤ κ × backward error).  So every output, kernel and path may differ by
    steps · S · 2γ_{H+P} · κ · max|value|
(κ the largest condition number of Σ_ℓ and Θ_ℓ over layers, from the solution's kernels, on the
directions the solver keeps: eigenvalues below ``singular_tol``·λ_max are dropped as singular).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd import _driver
from nfd.limits import _nfd

pytestmark = pytest.mark.usefixtures("x64")

EPS = float(np.finfo(np.float64).eps) / 2  # unit round-off 2⁻⁵³


def gamma(n):
    return n * EPS / (1 - n * EPS)


def _static(steps, B, P, chunks):
    return _nfd._Static(P=P, L=2, d=1, steps=steps, B=B, N=0, exact=False, activation=None, loss="mse",
                        record_paths=False, dtype=jnp.float64, read_chunks=chunks)


@pytest.mark.parametrize("steps, B, chunks", [(5, 1, 2), (5, 1, 8), (4, 2, 3), (3, 3, 1)])
def test_prefix_reads_equal_full_reads_within_the_summation_order_bound(steps, B, chunks):
    P, L = 64, 2
    H = steps * B
    st = _static(steps, B, P, chunks)
    rng = np.random.default_rng(0)
    fns = {}
    for ll, name in ((0, "A"), (1, "A"), (None, "a")):
        fns[ll, name] = jax.jit(lambda state, coef, F, r, ll=ll, name=name: (
            _nfd._hist_left(st, state, name, ll, coef, r), _nfd._hist_right(st, state, name, ll, F, r)))
    for rows in range(0, H + 1):
        hist = rng.normal(size=(L, H, P))
        hist[:, rows:] = 0.0  # rows ≥ rows are unfilled (zeros), as in the solver's state
        coef = rng.normal(size=(3, H))
        F = rng.normal(size=(2, P))
        for (ll, name), fn in fns.items():
            l = 0 if ll is None else ll
            state = {"A": jnp.asarray(hist), "a": jnp.asarray(hist[l])}
            left, right = (np.asarray(v) for v in fn(state, jnp.asarray(coef), jnp.asarray(F), rows))
            full_left, full_right = coef @ hist[l], hist[l] @ F.T
            bound_l = 2 * gamma(H) * (np.abs(coef) @ np.abs(hist[l]))
            bound_r = 2 * gamma(P) * (np.abs(hist[l]) @ np.abs(F).T)
            assert left.shape == full_left.shape and right.shape == full_right.shape
            assert np.all(np.abs(left - full_left) <= bound_l), (rows, ll, name)
            assert np.all(np.abs(right - full_right) <= bound_r), (rows, ll, name)
            assert np.all(right[rows:] == 0.0)


def _cond_on_range(M, tol):
    """Condition number of a PSD kernel on the directions the solver keeps: eigenvalues at or
    below tol·λ_max are the singular directions its Cholesky drops (e.g. Θ_L with two samples of
    one mini-batch, whose g_L are identical)."""
    w = np.linalg.eigvalsh(M)
    return w[-1] / np.min(w[w > tol * w[-1]])


def _solve(prob, chunks):
    p = dataclasses.replace(prob, static=dataclasses.replace(prob.static, read_chunks=chunks))
    return _driver.run(p)


CASES = [
    dict(backward="gia", noise="store"),
    dict(backward="exact", noise="store"),
    dict(backward="gia", noise="regenerate"),
    dict(backward="exact", noise="regenerate", batch_size=2),
    dict(backward="exact", noise="store", block="post_ms", X_test=True),
]
# the two stored-noise cases in the default run (each ≈ 25 s), the other three in the slow part
_SLOW = (2, 3, 4)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if i in _SLOW else c
                                  for i, c in enumerate(CASES)],
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_solve_with_filled_row_reads_equals_full_reads(case):
    case = dict(case)
    block = case.pop("block", "pre")
    B = case.pop("batch_size", 1)
    test = case.pop("X_test", False)
    K, d, L, P = 6, 2, 3, 256
    rng = np.random.default_rng(0)
    X = rng.normal(size=(K, d))
    Y = np.tanh(X[:, 0] - 0.5 * X[:, 1])
    net = nfd.ResNet(depth=L, input_dim=d, activation="tanh", lr=0.5, block=block)
    prob = nfd.particle_problem(net, X, Y, particles=P, replicates=2, dtype=jnp.float64, batch_size=B,
                                record_paths=True, X_test=rng.normal(size=(2, d)) if test else None, **case)
    ref = _solve(prob, 1)
    steps, H = K // B, K
    kappa = max(_cond_on_range(a, _nfd.default_singular_tol(jnp.float64)) for a in (*ref.sigma, *ref.theta))
    rel = steps * (2 * L + 2) * 2 * gamma(H + P // 2) * kappa
    assert rel < 1e-4  # meaningful: a wrong or missing row changes the results by O(1)
    # chunks 2: prefixes of ⌈steps/2⌉·B rows (zero rows inside the read); the default; one per step
    worst = 0.0
    for chunks in (2, _nfd.READ_CHUNKS, steps):
        sol = _solve(prob, chunks)
        for name in ("outputs", "sigma", "theta", "features", "grads", "test_outputs"):
            a, b = getattr(ref, name), getattr(sol, name)
            if a is None:
                assert b is None
                continue
            np.testing.assert_allclose(b, a, rtol=0, atol=rel * np.max(np.abs(a)), err_msg=f"{name}, chunks={chunks}")
            worst = max(worst, float(np.max(np.abs(b - a)) / np.max(np.abs(a))))
    print(f"largest relative difference {worst:.1e}, bound {rel:.1e} (kappa {kappa:.1e})")


def test_default_reads_filled_rows_only_for_large_solves():
    # small solves keep the earlier program (one full read); large ones use READ_CHUNKS prefixes
    small = dataclasses.replace(_static(16, 1, 4096, None), dtype=jnp.float32)
    large = dataclasses.replace(small, P=2**16, L=16, steps=32)
    assert _nfd._read_chunks(small) == 1 and _nfd._prefixes(small) == (16, 1)
    assert _nfd._read_chunks(large) == _nfd.READ_CHUNKS > 1
    assert _nfd._prefixes(large) == (32 // _nfd.READ_CHUNKS, _nfd.READ_CHUNKS)
    # not part of the checkpoint fingerprint (the repr): it does not change what is computed
    assert "read_chunks" not in repr(large)


def _with_chunks(prob, chunks):
    return dataclasses.replace(prob, static=dataclasses.replace(prob.static, read_chunks=chunks))


def test_resume_with_filled_row_reads_is_bit_identical(tmp_path):
    """Checkpoint after every step of a solve with prefix reads (read_chunks = 4), resume in a freshly
    built problem: bit for bit the uninterrupted solve (the reads' branch index is the step, part of
    the saved state)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 2))
    Y = np.tanh(X[:, 0])
    net = nfd.ResNet(depth=3, input_dim=2, activation="tanh", lr=0.5)
    kw = dict(particles=128, replicates=2, dtype=jnp.float64, backward="exact", X_test=rng.normal(size=(2, 2)))
    prob = _with_chunks(nfd.particle_problem(net, X, Y, **kw), 4)
    assert _nfd._prefixes(prob.static)[1] == 4  # four prefix lengths are really in use
    full = _driver.run(prob)
    for k in range(prob.steps + 1):
        path = tmp_path / f"c{k}.npz"
        prob.save(prob.advance(prob.init(), k), path)
        fresh = _with_chunks(nfd.particle_problem(net, X, Y, **kw), 4)
        sol = fresh.solution(fresh.advance(fresh.load(path)))
        for name in ("outputs", "sigma", "theta", "test_outputs"):
            assert np.array_equal(getattr(sol, name), getattr(full, name)), (k, name)


SHARD = """
import dataclasses, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np, jax.numpy as jnp, nfd
from nfd import _driver
assert len(jax.devices()) == 4, jax.devices()
rng = np.random.default_rng(1)
X = rng.normal(size=(8, 2)); Y = np.tanh(X[:, 0])
net = nfd.ResNet(depth=3, input_dim=2, activation="tanh", lr=0.5)
out = {}
for devices in (None, "all"):
    prob = nfd.particle_problem(net, X, Y, particles=256, dtype=jnp.float64, backward="exact", devices=devices)
    prob = dataclasses.replace(prob, static=dataclasses.replace(prob.static, read_chunks=4))
    out[devices] = _driver.run(prob)
np.savez(sys.argv[1], **{f"{k}_{n}": np.asarray(getattr(v, n)) for k, v in (("one", out[None]), ("four", out["all"]))
                        for n in ("outputs", "sigma", "theta")})
"""


@pytest.mark.slow
def test_filled_row_reads_sharded_over_four_devices_equal_one_device(tmp_path):
    """read_chunks = 4 with the particles split over 4 host devices equals one device, within the
    summation-order bound of the module docstring (sharding reorders the particle sums)."""
    import subprocess
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from _xla import subprocess_env

    path = tmp_path / "shard.npz"
    r = subprocess.run([sys.executable, "-c", SHARD, str(path)], env=subprocess_env(devices=4), capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    z = np.load(path)
    steps, L, P, H = 8, 3, 256, 8
    kappa = max(_cond_on_range(a, _nfd.default_singular_tol(jnp.float64)) for a in (*z["one_sigma"], *z["one_theta"]))
    rel = steps * (2 * L + 2) * 2 * gamma(H + P) * kappa
    assert rel < 1e-4
    for name in ("outputs", "sigma", "theta"):
        a, b = z[f"one_{name}"], z[f"four_{name}"]
        np.testing.assert_allclose(b, a, rtol=0, atol=rel * np.max(np.abs(a)), err_msg=name)
    assert not np.array_equal(z["one_outputs"], 0 * z["one_outputs"])
