"""Bad input is refused before any work: every case below raises an error whose message names
the argument (or the file), and nothing is traced or compiled before it does.

The compile counter listens to JAX's monitoring events for tracing a jaxpr and compiling an
XLA program; each case first clears JAX's in-memory caches, so that any jitted call (even of a
function compiled earlier in the session) and any eager operation would be counted.  A positive
control checks that the counter does see a compilation.
"""

from __future__ import annotations

import json
import os
import pickle

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest

import nfd
from nfd._validate import seed_key

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration")
_seen: list[str] = []
_active = [False]


def _listener(name, *args, **kwargs):
    if _active[0] and name in _COMPILE_EVENTS:
        _seen.append(name)


jax.monitoring.register_event_duration_secs_listener(_listener)


def refused(call, *names, exc=ValueError):
    """Run ``call``; it must raise ``exc`` naming each of ``names`` and compile nothing."""
    jax.clear_caches()
    _seen.clear()
    _active[0] = True
    try:
        with pytest.raises(exc) as info:
            call()
    finally:
        _active[0] = False
    msg = str(info.value)
    for n in names:
        assert n in msg, f"message does not name {n!r}: {msg}"
    assert not _seen, f"compiled/traced before refusing ({len(_seen)} events): {msg}"
    return info.value


def test_counter_sees_compilation():
    jax.clear_caches()
    _seen.clear()
    _active[0] = True
    try:
        jnp.sin(jnp.arange(3.0)).block_until_ready()
    finally:
        _active[0] = False
    assert _seen


RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 2))
Y = np.tanh(X[:, 0])
XV = RNG.normal(size=(4, 3))  # Mean ODE data: targets in R^D
YV = np.tanh(XV)


def sim(**kw):
    args = dict(width=8, depth=2, activation="tanh", lr=0.5)
    args.update(kw)
    Xa, Ya = args.pop("X", X), args.pop("Y", Y)
    return lambda: nfd.simulate(Xa, Ya, **args)


def part(**kw):
    args = dict(depth=2, particles=16, activation="tanh", lr=0.5)
    args.update(kw)
    Xa, Ya = args.pop("X", X), args.pop("Y", Y)
    return lambda: nfd.solve(Xa, Ya, method="particles", **args)


def gc(**kw):
    Xg, Yg = np.array([[1.0], [-0.5], [0.8]]), np.array([0.5, -1.0, 0.3])
    args = dict(depth=4)
    args.update(kw)
    Xa = args.pop("X", Xg)
    return lambda: nfd.solve(Xa, Yg, method="gamma_c", **args)


def mo(**kw):
    args = dict(steps=2, grid=4, particles=8, replicates=1, sampler="iid")
    args.update(kw)
    Xa = args.pop("X", XV)
    return lambda: nfd.solve(Xa, YV, method="mean_ode", **args)


def ker(**kw):
    args = dict(activation="relu")
    args.update(kw)
    Xa = args.pop("X", X)
    return lambda: nfd.nngp_kernel(Xa, **args)


def llf(**kw):
    args = dict(depth=2, particles=16, activation="tanh")
    args.update(kw)
    return lambda: nfd.limit_loss_fn(X, Y, **args)


MISSING = os.path.join("/nonexistent-nfd-dir", "sub", "ck.npz")

CASES = {
    # ---- nfd.simulate -------------------------------------------------------------------------
    "sim-width-0": (sim(width=0), "width"),
    "sim-width-bool": (sim(width=True), "width"),
    "sim-width-float": (sim(width=8.0), "width"),
    "sim-depth-neg": (sim(depth=-1), "depth"),
    "sim-depth-np-neg": (sim(depth=np.int64(-2)), "depth"),
    "sim-seeds-0": (sim(seeds=0), "seeds"),
    "sim-seed-neg": (sim(seed=-1), "seed", "2**64"),
    "sim-seed-2**64": (sim(seed=2**64), "seed", "2**64"),
    "sim-seed-float": (sim(seed=1.5), "seed"),
    "sim-seed-bool": (sim(seed=True), "seed"),
    "sim-dtype-banana": (sim(dtype="banana"), "dtype", "float32"),
    "sim-backward-typo": (sim(backward="decoupld"), "backward", "did you mean 'decoupled'"),
    "sim-frozen-none": (sim(frozen=None), "frozen", "()"),
    "sim-frozen-typo": (sim(frozen="inputt"), "frozen", "did you mean 'input'"),
    "sim-lr-neg": (sim(lr=-1.0), "lr"),
    "sim-lr-nan": (sim(lr=float("nan")), "lr"),
    "sim-lr-str": (sim(lr="0.1"), "lr"),
    "sim-T-0": (sim(T=0.0), "T"),
    "sim-X-complex": (sim(X=X + 1j), "X", "complex"),
    "sim-X-(4,0)": (sim(X=np.zeros((4, 0))), "X", "(4, 0)"),
    "sim-X-1d": (sim(X=X[:, 0]), "X"),
    "sim-X-nan": (sim(X=np.where(X > 1, np.nan, X)), "X", "NaN"),
    "sim-Y-length": (sim(Y=Y[:3]), "Y"),
    "sim-Y-complex": (sim(Y=Y + 1j), "Y", "complex"),
    "sim-X-overflows-float32": (sim(X=X * 1e39), "X", "float32"),
    "sim-Y-overflows-float32": (sim(Y=Y * 1e39), "Y", "float32"),
    "sim-X-strings": (sim(X=np.array([["a", "b"]] * 4)), "X"),
    "sim-batch-not-dividing": (sim(batch_size=3), "batch_size"),
    "sim-batch-0": (sim(batch_size=0), "batch_size"),
    "sim-max-memory-str": (sim(max_memory="8GB"), "max_memory"),
    "sim-weights-typo": (sim(weights="sparse"), "weights"),
    "sim-on-divergence": (sim(on_divergence="ignore"), "on_divergence"),
    "sim-activation-typo": (sim(activation="rleu"), "activation"),
    "sim-block": (sim(block="mid"), "block"),
    "sim-parameterization": (sim(parameterization="mpu"), "parameterization", "did you mean 'mup'"),
    "sim-loss": (sim(loss="mae"), "loss"),
    "sim-logistic-labels": (sim(loss="logistic"), "Y", "logistic"),
    "sim-checkpoint-missing-dir": (sim(checkpoint=MISSING), "checkpoint", "does not exist"),
    "sim-checkpoint-is-dir": (sim(checkpoint="/"), "checkpoint", "directory"),
    "sim-checkpoint-every-0": (sim(checkpoint_every=0), "checkpoint_every"),
    "sim-X_test-d": (sim(X_test=np.zeros((2, 5))), "X_test"),
    "sim-chunk-steps-0": (sim(chunk_steps=0), "chunk_steps"),
    "sim-record": (sim(record=("weights",)), "record"),
    "sim-progress-str": (sim(progress="yes"), "progress"),
    # ---- nfd.solve, method="particles" ------------------------------------------------------
    "part-particles-1": (part(particles=1), "particles"),
    "part-particles-float": (part(particles=2.5), "particles"),
    "part-backward-typo": (part(backward="gai"), "backward", "did you mean 'gia'"),
    "part-singular-tol-str": (part(singular_tol="abc"), "singular_tol"),
    "part-singular-tol-1.5": (part(singular_tol=1.5), "singular_tol"),
    "part-max-memory-str": (part(max_memory="8GB"), "max_memory"),
    "part-dtype-banana": (part(dtype="banana"), "dtype"),
    "part-storage-dtype": (part(storage_dtype="int8"), "storage_dtype"),
    "part-noise": (part(noise="fresh"), "noise"),
    "part-noise-depth-0": (part(noise_depth=0), "noise_depth"),
    "part-on-singular": (part(on_singular="ignore"), "on_singular"),
    "part-seed-2**64": (part(seed=2**64), "seed"),
    "part-X-complex": (part(X=X * 1j), "X", "complex"),
    "part-X-(4,0)": (part(X=np.zeros((4, 0))), "X", "(4, 0)"),
    "part-frozen-none": (part(frozen=None), "frozen"),
    "part-Y-inf": (part(Y=np.array([0.0, np.inf, 0.0, 0.0])), "Y"),
    "part-checkpoint-missing-dir": (part(checkpoint=MISSING), "checkpoint", "does not exist"),
    "part-eigenvalues-str": (part(eigenvalues="no"), "eigenvalues"),
    "part-replicates-0": (part(replicates=0), "replicates"),
    "part-replicates-float": (part(replicates=2.0), "replicates"),
    "part-replicates-bool": (part(replicates=True), "replicates"),
    "part-replicates-not-dividing": (part(replicates=3), "replicates", "particles=16"),
    "part-replicates-1-particle-each": (part(replicates=16), "replicates"),
    "part-richardson-depths-not-doubling": (part(depth=None, richardson_depths=(2, 3)), "richardson_depths"),
    "part-richardson-depths-4-levels": (part(depth=None, richardson_depths=(1, 2, 4, 8)), "richardson_depths"),
    "part-richardson-depths-without-depth-none": (part(richardson_depths=(2, 4)), "richardson_depths"),
    "part-depth-none-noise-depth": (part(depth=None, richardson_depths=(2, 4), noise_depth=6), "noise_depth"),
    "part-depth-none-checkpoint": (part(depth=None, richardson_depths=(2, 4), checkpoint="ck.npz"), "checkpoint"),
    "solve-method-typo": (lambda: nfd.solve(X, Y, method="particle", depth=2, particles=16), "method"),
    # ---- nfd.solve, method="gamma_c" --------------------------------------------------------
    "gc-depth-0": (gc(depth=0), "depth"),
    "gc-activation": (gc(activation="tanh"), "activation"),
    "gc-frozen-none": (gc(frozen=None), "frozen"),
    "gc-max-memory-str": (gc(max_memory="8GB"), "max_memory"),
    "gc-X-complex": (gc(X=np.array([[1.0], [-0.5], [0.8]]) * 1j), "X", "complex"),
    "gc-infinite-grid": (lambda: nfd.limits.solve_gamma_c_infinite(X[:, :1], Y, grid=2), "grid"),
    # ---- nfd.solve, method="mean_ode" -------------------------------------------------------
    "mo-steps-neg": (mo(steps=-1), "steps"),
    "mo-particles-0": (mo(particles=0), "particles"),
    "mo-sampler-typo": (mo(sampler="sobl"), "sampler", "did you mean 'sobol'"),
    "mo-coupling": (mo(coupling="x"), "coupling"),
    "mo-seed-neg": (mo(seed=-1), "seed"),
    "mo-dtype-banana": (mo(dtype="banana"), "dtype"),
    "mo-max-memory-str": (mo(max_memory="8GB"), "max_memory"),
    "mo-X-complex": (mo(X=XV + 1j), "X", "complex"),
    "mo-X-overflows-float32": (mo(X=XV * 1e39, dtype="float32"), "X", "float32"),
    "mo-checkpoint-missing-dir": (mo(checkpoint=MISSING), "checkpoint", "does not exist"),
    # ---- nfd.nngp_kernel --------------------------------------------------------------------
    "ker-rtol-neg": (ker(rtol=-1), "rtol"),
    "ker-max-steps-0": (ker(max_steps=0), "max_steps"),
    "ker-atol-str": (ker(atol="x"), "atol"),
    "ker-T-neg": (ker(T=-1.0), "T"),
    "ker-depth-0": (ker(depth=0), "depth"),
    "ker-X-complex": (ker(X=X + 1j), "X", "complex"),
    "ker-X2-d": (ker(X2=np.zeros((3, 5))), "X2"),
    "ker-max-memory-str": (ker(max_memory="8GB"), "max_memory"),
    "ker-activation": (ker(activation="banana"), "activation"),
    # ---- nfd.limit_loss_fn ------------------------------------------------------------------
    "llf-particles-1": (llf(particles=1), "particles"),
    "llf-seed-2**64": (llf(seed=2**64), "seed"),
    "llf-singular-tol-str": (llf(singular_tol="abc"), "singular_tol"),
    "llf-dtype-banana": (llf(dtype="banana"), "dtype"),
    "llf-objective": (llf(objective="train"), "objective"),
    "llf-frozen-none": (llf(frozen=None), "frozen"),
    "llf-max-memory-str": (llf(max_memory="8GB"), "max_memory"),
    "llf-backward-typo": (llf(backward="gai"), "backward"),
    "llf-replicates-not-dividing": (llf(replicates=3), "replicates"),
    "llf-X-complex": (lambda: nfd.limit_loss_fn(X * 1j, Y, depth=2, particles=16), "X", "complex"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_before_compiling(case):
    call, *names = CASES[case]
    refused(call, *names)


def test_depth_none_refused_when_an_extrapolation_depth_exceeds_the_memory_check():
    # A limit between the estimates of depth 2 and depth 4 admits depth 2 alone but refuses
    # depth=None over (2, 4): the finest depth is checked first, before anything is compiled, and
    # the message names depth=None.
    from nfd.limits import estimate_particle_memory

    est = {L: estimate_particle_memory(particles=16, replicates=2, depth=L, samples=4, input_dim=2, exact=True)
           for L in (2, 4)}
    limit = (est[2] + est[4]) // 2
    assert est[2] < limit < est[4]
    assert part(depth=2, max_memory=limit)().outputs.shape == (4,)  # depth 2 alone fits
    refused(part(depth=None, richardson_depths=(2, 4), max_memory=limit), "depth=None", "richardson_depths",
            exc=nfd.MemoryEstimateError)


def test_overflow_of_the_compute_dtype_with_x64_off():
    """With JAX's default 32-bit mode, data finite in float64 but beyond float32 is an input error
    naming the array (not a 'divergence' at step 0)."""
    with jax.enable_x64(False):
        refused(ker(X=X * 1e39), "X", "float32")
        refused(sim(X=X * 1e39), "X", "float32")
        refused(part(Y=Y * 1e39), "Y", "float32")
        refused(mo(X=XV * 1e39), "X", "float32")


# ---- files: nfd.load and checkpoints ---------------------------------------------------------
def _npz_bytes(tmp_path, **arrays):
    p = tmp_path / "src.npz"
    np.savez(p, **arrays)
    return p.read_bytes()


def _bad_files(tmp_path):
    """name -> bytes of files that are not readable nfd results/checkpoints."""
    good = _npz_bytes(tmp_path, __nfd_meta__=np.asarray(json.dumps({"format": "nfd-result"})),
                      a=np.arange(1000.0))
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    return {
        "random.npz": np.random.default_rng(1).bytes(300),
        "pickle.npz": pickle.dumps({"outputs": [1, 2, 3]}),
        "truncated.npz": good[: len(good) // 2],
        "bare-npy.npz": npy.read_bytes(),
        "foreign.npz": _npz_bytes(tmp_path, X=np.zeros(3)),
        "empty.npz": b"",
    }


_FOREIGN_JSON = {
    "random.json": None,
    "not-json.json": b"{ this is not json",
    "list.json": b"[1, 2, 3]",
    "other-format.json": json.dumps({"format": "something-else"}).encode(),
    "unknown-type.json": json.dumps({"format": "nfd-result", "format_version": 1, "config": {},
                                     "result": {"__dataclass__": "nfd.finite:NoSuchResult", "fields": {}}}).encode(),
    "non-nfd-type.json": json.dumps({"format": "nfd-result", "format_version": 1, "config": {},
                                     "result": {"__dataclass__": "os:system", "fields": {}}}).encode(),
    "future-version.json": json.dumps({"format": "nfd-result", "format_version": 99, "config": {},
                                       "result": {}}).encode(),
    "missing-result.json": json.dumps({"format": "nfd-result", "format_version": 1}).encode(),
}

FILE_KINDS = ["random.npz", "pickle.npz", "truncated.npz", "bare-npy.npz", "foreign.npz", "empty.npz", *_FOREIGN_JSON]


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_load_refuses_unreadable_file(tmp_path, kind):
    data = _FOREIGN_JSON.get(kind) if kind.endswith(".json") else _bad_files(tmp_path)[kind]
    if data is None:
        data = np.random.default_rng(2).bytes(200)
    p = tmp_path / kind
    p.write_bytes(data)
    err = refused(lambda: nfd.load(p), str(p), exc=nfd.FileFormatError)
    assert isinstance(err, ValueError) and err.path == str(p) and err.reason


@pytest.mark.parametrize("kind", ["random.npz", "pickle.npz", "truncated.npz", "bare-npy.npz", "foreign.npz", "empty.npz"])
@pytest.mark.parametrize("solver", ["simulate", "particles", "mean_ode"])
def test_checkpoint_refuses_unreadable_file(tmp_path, kind, solver):
    p = tmp_path / f"ck-{kind}"
    p.write_bytes(_bad_files(tmp_path)[kind])
    call = {"simulate": sim(checkpoint=p), "particles": part(checkpoint=p), "mean_ode": mo(checkpoint=p)}[solver]
    refused(call, str(p), "not a readable", exc=nfd.FileFormatError)


def test_save_load_paths_named(tmp_path):
    refused(lambda: nfd.load(tmp_path / "r.txt"), "path", ".npz")
    refused(lambda: nfd.load(5), "path")
    refused(lambda: nfd.save(tmp_path, {"a": 1}), "path")
    refused(lambda: nfd.load(tmp_path / "nope.npz"), "nope.npz", exc=FileNotFoundError)
    refused(lambda: nfd.save(tmp_path / "r.npz", {"a": 1}, config=[1]), "config")


# ---- the nfd command ---------------------------------------------------------------------------
def _cli(tmp_path, capsys, *argv, data=None):
    from nfd._cli import main

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({
        "data": data or {"kind": "synthetic", "samples": 4, "input_dim": 2, "seed": 0},
        "model": {"depth": 2, "activation": "tanh", "lr": 0.5},
        "solve": {"method": "particles", "particles": 16},
        "simulate": {"widths": [8], "seeds": 2},
        "output": {"figure": False},
    }))
    out = {}

    def run():
        out["rc"] = main([argv[0], str(cfg), "--quiet", *argv[1:]])
        raise ValueError(capsys.readouterr().err)  # the message the user sees

    return run, out


CLI_CASES = {
    "out-is-file": (("solve", "--out", "{file}"), "--out"),
    "out-under-file": (("simulate", "--out", "{file}/sub"), "--out"),
    "seed-neg": (("solve", "--set", "solve.seed=-1", "--out", "{dir}"), "seed"),
    "particles-1": (("solve", "--set", "solve.particles=1", "--out", "{dir}"), "particles"),
    "depth-0": (("simulate", "--set", "model.depth=0", "--out", "{dir}"), "depth"),
    "sim-seed-2**64": (("simulate", "--set", f"simulate.seed={2**64}", "--out", "{dir}"), "seed"),
    "checkpoint-missing-dir": (("simulate", "--set", f'simulate.checkpoint="{MISSING}"', "--out", "{dir}"),
                               "checkpoint"),
    "dtype-banana": (("solve", "--set", 'solve.dtype="banana"', "--out", "{dir}"), "dtype"),
    "data-file-random": (("solve", "--out", "{dir}"), "not a readable", "data.npz"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_refuses_before_compiling(tmp_path, capsys, case):
    argv, *names = CLI_CASES[case]
    f = tmp_path / "a-file"
    f.write_text("x")
    rand = tmp_path / "data.npz"
    rand.write_bytes(np.random.default_rng(3).bytes(100))
    argv = [a.format(file=f, dir=tmp_path / "out", rand=rand) for a in argv]
    data = {"kind": "file", "path": str(rand)} if case.startswith("data-file") else None
    run, out = _cli(tmp_path, capsys, *argv, data=data)
    refused(run, *names)
    assert out["rc"] == 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---- coercion is the same everywhere -------------------------------------------------------------
def test_numpy_integers_and_lone_group_accepted():
    net = nfd.ResNet(depth=np.int64(3), input_dim=np.int32(2), width=np.int64(8), frozen="input")
    assert (net.depth, net.input_dim, net.width, net.frozen) == (3, 2, 8, ("input",))
    assert type(net.width) is int
    assert nfd.ResNet(depth=2, input_dim=2, frozen=("output", "input", "input")).frozen == ("input", "output")


# ---- seeds: the full range, no collisions, with 64-bit JAX off -------------------------------------
def test_seed_key_matches_prngkey_and_uses_all_bits():
    for s in (0, 1, 12345, 2**31 - 1, 2**32 - 1):  # existing results are kept
        with jax.enable_x64(False):
            assert np.array_equal(seed_key(s), jax.random.PRNGKey(s))
        with jax.enable_x64(True):
            assert np.array_equal(seed_key(s), jax.random.PRNGKey(s))
    with jax.enable_x64(True):  # = PRNGKey with 64-bit JAX over the int64 range
        for s in (2**32, 2**32 + 5, 2**63 - 1):
            assert np.array_equal(seed_key(s), jax.random.PRNGKey(s))
    with jax.enable_x64(False):
        keys = {tuple(np.asarray(seed_key(s)).tolist()) for s in (5, 5 + 2**32, 5 + 2**33, 2**64 - 1, 2**63)}
    assert len(keys) == 5


def test_seed_collision_with_x64_off():
    """seed and seed + 2**32 give different networks and particles with JAX's default 32-bit mode."""
    with jax.enable_x64(False):
        assert not jax.config.jax_enable_x64
        a = nfd.simulate(X, Y, width=8, depth=2, activation="tanh", lr=0.5, seed=5).outputs
        b = nfd.simulate(X, Y, width=8, depth=2, activation="tanh", lr=0.5, seed=5 + 2**32).outputs
        c = nfd.simulate(X, Y, width=8, depth=2, activation="tanh", lr=0.5, seed=5).outputs
        assert np.array_equal(a, c) and not np.array_equal(a, b)
        p = nfd.solve(X, Y, depth=2, particles=16, activation="tanh", lr=0.5, seed=5, eigenvalues=False).outputs
        q = nfd.solve(X, Y, depth=2, particles=16, activation="tanh", lr=0.5, seed=5 + 2**32,
                      eigenvalues=False).outputs
        assert not np.array_equal(p, q)
        assert np.all(np.isfinite(b)) and np.all(np.isfinite(q))
        top = nfd.simulate(X, Y, width=8, depth=2, activation="tanh", lr=0.5, seed=2**64 - 1).outputs
        assert np.all(np.isfinite(top)) and not np.array_equal(top, a)  # the top of the documented range


# ---- failures during the run are reported, not crashed into ----------------------------------------
def _square():
    return nfd.Activation("square_test", lambda x: x**2, lambda x: 2 * x,
                          pair_closed_form=lambda a, b, c: a * b + 2 * c**2, lipschitz=False)


def test_nngp_blow_up_is_divergence_error():
    X3 = np.eye(3) * 2.0
    with pytest.raises(nfd.DivergenceError, match="nngp_kernel") as e:
        nfd.nngp_kernel(X3, activation=_square(), T=5.0, max_steps=256)
    assert e.value.step > 0 and e.value.quantity == "NNGP kernel"
    # the same activation over a horizon before the blow-up solves normally (closed form: C_ii' = C²)
    c0 = 4.0 / 3.0  # C_0 = |x|²/d
    C = nfd.nngp_kernel(X3, activation=_square(), T=0.1, max_steps=256)  # same program as above
    assert C[0, 0] == pytest.approx(c0 / (1 - 3 * c0 * 0.1), rel=1e-4)  # dC/dt = 3 C² (E h⁴ = 3C²)


def test_on_divergence_return_records_divergence():
    Xd = RNG.normal(size=(6, 2)) * 3
    Yd = Xd[:, 0] * 10
    with pytest.warns(UserWarning, match="diverged"):
        sol = nfd.solve(Xd, Yd, depth=4, particles=64, activation="relu", lr=50.0, on_divergence="return")
    k = sol.status.divergence_step
    assert 0 <= k < 6 and np.all(np.isfinite(sol.outputs[:k])) and not np.isfinite(sol.outputs[k])
    assert sol.sigma_min_eig.shape == (4,)  # NaN where the kernels are not finite, no LinAlgError


def test_gamma_c_runs_in_float64_without_global_flag():
    Xg, Yg = np.array([[1.0], [-0.5], [0.8]]), np.array([0.5, -1.0, 0.3])
    with jax.enable_x64(False):
        res = nfd.solve(Xg, Yg, depth=8, method="gamma_c")
        assert not jax.config.jax_enable_x64  # the user's setting is left alone
    assert res.outputs.dtype == np.float64
    with jax.enable_x64(True):
        ref = nfd.solve(Xg, Yg, depth=8, method="gamma_c")
    np.testing.assert_array_equal(res.outputs, ref.outputs)
