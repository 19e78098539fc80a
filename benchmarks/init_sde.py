"""The forward McKean–Vlasov SDE at initialisation, dh = Σ(h)^{1/2} dW, Σ = E[φ(h)φ(h)ᵀ] over N inputs
(issue 18, item 3): nfd against what a user would otherwise write, in one run.

Methods (all forward only, the same P, N, L, dtype and initial law; the quantity is E[h_T h_Tᵀ]):

* ``nfd``: the public ``init_sde_particles(..., backward=False)`` (validation, jit, the per-layer
  covariances copied to the host);
* ``nfd_eigh``: the same call with the per-layer factor of Σ by ``eigh`` (the factor before this
  change: a LAPACK / cuSOLVER call per layer) instead of the default pivoted Cholesky written as N
  unrolled element-wise rank-one steps (no solver call), validation left out;
* ``nfd_stacked``: the same (default factor) with both per-layer Gram matrices, φ(h)φ(h)ᵀ and hhᵀ,
  from one product of [h; φ(h)] (``gram="stacked"``) instead of two;
* ``nfd_core``: its jitted kernel alone (``_init_particles(backward=False, record=False)``; only
  Q_T is returned, so the per-layer covariances are dead code and not computed);
* ``nfd_core_eigh``: the same with the ``eigh`` factor;
* ``nfd_fwd_bwd``: the public call with the backward SDE too (for reference);
* ``nfd_before``: a verbatim copy of the public call before this change (forward and backward, all
  paths materialised and copied to the host: what the issue measured);
* ``plain_scan``: a plain ``lax.scan`` over (N, P) particles with a Cholesky factor of Σ;
* ``plain_scan_PN``: the same with the other layout, (P, N) particles (particles on the major axis);
* ``diffrax``: ``diffrax.Euler`` over a batched ``UnsafeBrownianPath`` with ``adjoint=ForwardMode()``.

Timing: every method compiled first (its first call timed; compile ≈ first − best), then ``rounds``
rounds calling each method once in a random order (interleaved), best of the rounds; the whole block repeated
``repeats`` times so the headline ratios are reproduced; the 1-minute load average is recorded per
round.  Agreement: each method's E[h_T h_Tᵀ] against the mean of all methods, in units of the
Monte-Carlo standard error of one run (from the particles' spread of h^a h^b), and in units of the
measured run-to-run standard deviation (``spread``: ``nfd_core`` and ``nfd`` over ``spread_seeds``
seeds each; the particles interact through Σ, so the i.i.d. s.e. understates it; ``spread_vs_P``:
the same ratio at smaller P).  ``hlo``: the solver-library
calls (custom calls) and the number of fusions in each jitted kernel as compiled on this device.

    python benchmarks/init_sde.py                 # P = 32768, N = 4, L = 128, float32 (2 CPU cores: ~1 min)
    python benchmarks/init_sde.py --tiny          # seconds
    python benchmarks/init_sde.py --gpu           # adds P = 2^20 (benchmarks/gpu.sh)

Writes benchmarks/results/init_sde.json; ``plot(doc, path)`` draws it (init_sde.png).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, os.path.dirname(HERE))

SIZES = {
    "tiny": dict(configs=[dict(P=1024, N=2, L=8)], rounds=2, repeats=1, spread_seeds=8),
    "default": dict(configs=[dict(P=32768, N=4, L=128)], rounds=7, repeats=2, spread_seeds=48,
                    spread_P=[2048, 8192]),
    # at P = 2^20 the "before" path would copy 2 × 2 GiB of paths to the host per call: left out there
    "gpu": dict(configs=[dict(P=32768, N=4, L=128),
                         dict(P=1048576, N=4, L=128, methods=("nfd", "nfd_eigh", "nfd_stacked", "nfd_core", "nfd_core_eigh",
                                                              "plain_scan", "diffrax", "nfd_fwd_bwd"))],
                rounds=5, repeats=2, spread_seeds=48),
}
ORDER = ("nfd", "nfd_eigh", "nfd_stacked", "nfd_core", "nfd_core_eigh", "plain_scan", "plain_scan_PN", "diffrax", "nfd_fwd_bwd",
         "nfd_before")


JITTED = {}  # name -> (jitted kernel, example argument), filled by make_methods (for hlo_summary)


def hlo_summary(fn, arg):
    """Solver-library calls and kernel counts of ``fn`` as compiled for this device: custom-call
    targets (LAPACK / cuSOLVER / cuBLAS), and the number of fusions, while loops and dots."""
    import re

    import jax

    txt = (fn if hasattr(fn, "lower") else jax.jit(fn)).lower(arg).compile().as_text()
    return dict(custom_calls=sorted(set(re.findall(r'custom_call_target="([^"]+)"', txt))),
                n_custom_calls=len(re.findall(r"custom-call\(", txt)),
                n_fusions=len(re.findall(r"= [^=]* fusion\(", txt)), n_while=len(re.findall(r" while\(", txt)),
                n_dots=len(re.findall(r" dot\(", txt)), hlo_chars=len(txt))


def cuda_lowering(P=32768, N=4, L=128):
    """{method: custom-call targets} of every jitted method's program lowered for CUDA — lowering needs
    no GPU, so this shows on any machine which library calls the GPU program makes (e.g. cuSOLVER's
    ``syevd`` per layer for an ``eigh`` factor, ``potrf`` for a Cholesky)."""
    import re

    import jax

    make_methods(inputs(N), L=L, P=P)
    out = {}
    for k, (fn, arg) in JITTED.items():
        f = fn if hasattr(fn, "trace") else jax.jit(fn)
        try:
            txt = f.trace(arg).lower(lowering_platforms=("cuda",)).as_text()
            out[k] = sorted(set(re.findall(r"custom_call @(\w+)", txt)))
        except Exception as e:  # e.g. a host callback (diffrax/equinox runtime checks) cannot be lowered off-device
            out[k] = dict(error=f"{type(e).__name__}: {str(e)[:200]}")
    return dict(P=P, N=N, L=L, jax=jax.__version__, custom_calls=out)


def inputs(N, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(N, d))


def legacy_init_sde_particles(X, *, depth, particles, activation="tanh", T=1.0, seed=0):
    """nfd's ``init_sde_particles`` before issue 18 (forward and backward, every path kept and copied
    to the host), verbatim apart from the validation, kept here as the "before" of the benchmark."""
    import jax
    import jax.numpy as jnp

    import nfd
    from nfd.limits._init_sde import _psd_sqrt

    act = nfd.get_activation(activation)
    L, P = depth, particles
    out = _legacy_jit(jax.random.PRNGKey(int(seed)), jnp.asarray(X, jnp.float32), jnp.asarray(T / L, jnp.float32),
                      L=L, P=P, act=act, sqrt=_psd_sqrt)
    Q, Th, h, g = (np.asarray(a) for a in out)
    return Q, Th


def _legacy(key, X, tau, *, L, P, act, sqrt):
    import jax
    import jax.numpy as jnp

    N, d = X.shape
    dtype = X.dtype
    k_u, k_v, k_f, k_b = jax.random.split(key, 4)
    U = jax.random.normal(k_u, (P, d), dtype)
    h0 = X @ U.T / math.sqrt(d)
    st = jnp.sqrt(tau)

    def fwd(h, l):
        u = act.fn(h)
        S = u @ u.T / P
        xi = jax.random.normal(jax.random.fold_in(k_f, l), (N, P), dtype)
        return h + st * sqrt(S) @ xi, h

    hL, hs = jax.lax.scan(fwd, h0, jnp.arange(L))
    H = jnp.concatenate([hs, hL[None]], axis=0)
    v = jax.random.normal(k_v, (P,), dtype)
    gL = jnp.broadcast_to(v, (N, P))

    def bwd(g, xs):
        l, hp = xs
        Th = g @ g.T / P
        xi = jax.random.normal(jax.random.fold_in(k_b, l), (N, P), dtype)
        return g + st * act.deriv(hp) * (sqrt(Th) @ xi), g

    g0, gs = jax.lax.scan(bwd, gL, (jnp.arange(L), hs), reverse=True)
    G = jnp.concatenate([g0[None], gs], axis=0)
    Q = jnp.einsum("lap,lbp->lab", H, H) / P
    Th = jnp.einsum("lap,lbp->lab", G, G) / P
    return Q, Th, H, G


def _legacy_jit(*a, **kw):
    import jax

    global _LEGACY
    if "_LEGACY" not in globals():
        _LEGACY = jax.jit(_legacy, static_argnames=("L", "P", "act", "sqrt"))
    return _LEGACY(*a, **kw)


def make_methods(X, *, L, P, activation="tanh", T=1.0, dtype="float32"):
    """{name: fn(seed) -> (Q_T (N, N) numpy, h_T (N, P) numpy or None)} for the methods above."""
    import diffrax
    import jax
    import jax.numpy as jnp
    import lineax as lx

    import nfd
    from nfd._validate import seed_key
    from nfd.limits import _init_sde

    dt = jnp.dtype(dtype)
    act = nfd.get_activation(activation)
    N, d = X.shape
    Xj = jnp.asarray(X, dt)
    tau = T / L
    st = math.sqrt(tau)

    def h0_of(key):  # the initial particles h_0 = X U/√d, U ~ N(0, I_d) per particle
        U = jax.random.normal(key, (P, d), dt)
        return Xj @ U.T / math.sqrt(d)

    @jax.jit
    def plain_scan(key):
        k0, kw = jax.random.split(key)

        def step(h, l):
            u = act.fn(h)
            R = jnp.linalg.cholesky(u @ u.T / P)
            xi = jax.random.normal(jax.random.fold_in(kw, l), (N, P), dt)
            return h + st * R @ xi, None

        hT = jax.lax.scan(step, h0_of(k0), jnp.arange(L))[0]
        return hT @ hT.T / P, hT

    @jax.jit
    def plain_scan_pn(key):  # the other layout: particles on the major axis, h of shape (P, N)
        k0, kw = jax.random.split(key)

        def step(h, l):
            u = act.fn(h)
            R = jnp.linalg.cholesky(u.T @ u / P)
            xi = jax.random.normal(jax.random.fold_in(kw, l), (P, N), dt)
            return h + st * xi @ R.T, None

        hT = jax.lax.scan(step, h0_of(k0).T, jnp.arange(L))[0]
        return hT.T @ hT / P, hT.T

    def vf(t, y, args):
        u = act.fn(y)
        R = jnp.linalg.cholesky(u @ u.T / P)
        return lx.FunctionLinearOperator(lambda w: R @ w, jax.ShapeDtypeStruct((N, P), y.dtype))

    @jax.jit
    def diffrax_fwd(key):
        k0, kw = jax.random.split(key)
        bm = diffrax.UnsafeBrownianPath(shape=(N, P), key=kw)
        sol = diffrax.diffeqsolve(diffrax.ControlTerm(vf, bm), diffrax.Euler(), 0.0, T, tau, h0_of(k0),
                                  adjoint=diffrax.ForwardMode(), max_steps=L + 1, saveat=diffrax.SaveAt(t1=True))
        hT = sol.ys[-1]
        return hT @ hT.T / P, hT

    def core_of(factor):
        return jax.jit(lambda key: _init_sde._init_particles(key, Xj, jnp.asarray(tau, dt), L=L, P=P, act=act,
                                                             backward=False, record=False, factor=factor)[0][-1])

    core, core_eigh = core_of("auto"), core_of("eigh")

    def public(s, **kw):  # init_sde_particles(..., backward=False) without validation, other options
        Q = _init_sde._init_particles_jit(seed_key(s), Xj, jnp.asarray(tau, dt), L=L, P=P, act=act,
                                          backward=False, record=False, **kw)[0]
        return np.asarray(Q)[-1]

    def np2(out):
        return tuple(np.asarray(a) for a in out)

    key0 = jax.random.PRNGKey(0)
    JITTED.clear()
    JITTED.update(nfd=(lambda k: _init_sde._init_particles_jit(k, Xj, jnp.asarray(tau, dt), L=L, P=P, act=act,
                                                              backward=False, record=False), key0),
                  nfd_eigh=(lambda k: _init_sde._init_particles_jit(k, Xj, jnp.asarray(tau, dt), L=L, P=P, act=act,
                                                                   backward=False, record=False, factor="eigh"), key0),
                  nfd_stacked=(lambda k: _init_sde._init_particles_jit(k, Xj, jnp.asarray(tau, dt), L=L, P=P,
                                                                      act=act, backward=False, record=False,
                                                                      gram="stacked"), key0),
                  nfd_core=(core, key0), nfd_core_eigh=(core_eigh, key0), plain_scan=(plain_scan, key0),
                  diffrax=(diffrax_fwd, key0))
    return {
        "nfd": lambda s: (nfd.init_sde_particles(X, depth=L, particles=P, activation=activation, T=T, seed=s,
                                                 dtype=dt, backward=False).Q[-1], None),
        "nfd_eigh": lambda s: (public(s, factor="eigh"), None),
        "nfd_stacked": lambda s: (public(s, gram="stacked"), None),
        "nfd_core": lambda s: (np.asarray(core(jax.random.PRNGKey(s))), None),
        "nfd_core_eigh": lambda s: (np.asarray(core_eigh(jax.random.PRNGKey(s))), None),
        "plain_scan": lambda s: np2(plain_scan(jax.random.PRNGKey(s))),
        "plain_scan_PN": lambda s: np2(plain_scan_pn(jax.random.PRNGKey(s))),
        "diffrax": lambda s: np2(diffrax_fwd(jax.random.PRNGKey(s))),
        "nfd_fwd_bwd": lambda s: (nfd.init_sde_particles(X, depth=L, particles=P, activation=activation, T=T,
                                                         seed=s, dtype=dt).Q[-1], None),
        "nfd_before": lambda s: (legacy_init_sde_particles(X, depth=L, particles=P, activation=activation, T=T,
                                                           seed=s)[0][-1], None),
    }


def _stamp():
    return f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}]"


def bench_config(P, N, L, rounds, repeats, methods=ORDER, dtype="float32", spread_seeds=0):
    X = inputs(N)
    fns = make_methods(X, L=L, P=P, dtype=dtype)
    fns = {k: fns[k] for k in methods}
    first = {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        fn(10_000)
        first[k] = time.perf_counter() - t0
    reps = []
    order_rng = np.random.default_rng(0)
    names = list(fns)
    for r in range(repeats):
        runs = {k: [] for k in fns}
        loads = []
        for _ in range(rounds):
            loads.append(os.getloadavg()[0])
            for i in order_rng.permutation(len(names)):  # a new order each round: no method always follows another
                k = names[i]
                t0 = time.perf_counter()
                fns[k](r)
                runs[k].append(time.perf_counter() - t0)
        best = {k: min(v) for k, v in runs.items()}
        rep = dict(repeat=r, best_s=best, runs_s=runs, load_avg_per_round=loads,
                   ratio_nfd_over_plain_scan=best["nfd"] / best["plain_scan"] if "plain_scan" in best else None,
                   ratio_nfd_over_diffrax=best["nfd"] / best["diffrax"] if "diffrax" in best else None,
                   ratio_nfd_before_over_plain_scan=(best["nfd_before"] / best["plain_scan"]
                                                     if "nfd_before" in best and "plain_scan" in best else None),
                   ratio_nfd_before_over_nfd=best["nfd_before"] / best["nfd"] if "nfd_before" in best else None,
                   ratio_nfd_eigh_over_nfd=best["nfd_eigh"] / best["nfd"] if "nfd_eigh" in best else None,
                   per_round_ratio_quartiles={f"{a}/{b}": np.percentile(np.asarray(runs[a]) / np.asarray(runs[b]),
                                                                        [25, 50, 75]).tolist()
                                              for a, b in (("nfd", "plain_scan"), ("nfd_core", "plain_scan"),
                                                           ("nfd_eigh", "nfd"), ("nfd_core_eigh", "nfd_core"),
                                                           ("nfd_stacked", "nfd"), ("nfd", "diffrax"))
                                              if a in runs and b in runs},
                   ratio_nfd_core_eigh_over_nfd_core=(best["nfd_core_eigh"] / best["nfd_core"]
                                                      if "nfd_core_eigh" in best and "nfd_core" in best else None))
        fmt = lambda x: "n/a" if x is None else f"{x:.2f}"
        reps.append(rep)
        print(f"{_stamp()} P={P} N={N} L={L} repeat {r}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in best.items())
              + f"; nfd/plain {fmt(rep['ratio_nfd_over_plain_scan'])}, nfd/diffrax {fmt(rep['ratio_nfd_over_diffrax'])}, "
              f"before/nfd {fmt(rep['ratio_nfd_before_over_nfd'])}, eigh/chol {fmt(rep['ratio_nfd_eigh_over_nfd'])} "
              f"(core {fmt(rep['ratio_nfd_core_eigh_over_nfd_core'])}); load {np.mean(loads):.1f}", flush=True)
    compile_s = {k: max(first[k] - min(rr["best_s"][k] for rr in reps), 0.0) for k in fns}
    hlo = {}
    for k in fns:
        if k in JITTED:
            try:
                hlo[k] = hlo_summary(*JITTED[k])
            except Exception as e:  # a summary is a diagnostic: never let it cost the timings
                hlo[k] = dict(error=repr(e))
    # run-to-run spread of Q_T (nfd_core over spread_seeds seeds) against the i.i.d. s.e. of one run:
    # the particles interact through Σ (a particle mean), so one run's i.i.d. s.e. need not be the spread
    # (and the public path's spread, which on a GPU runs a differently compiled per-layer Gram product)
    spread = None
    if spread_seeds and "nfd_core" in fns:
        qs = np.array([fns["nfd_core"](1000 + s)[0] for s in range(spread_seeds)])
        sd = qs.std(0, ddof=1)
        spread = dict(seeds=spread_seeds, method="nfd_core", sd_run_to_run=sd.tolist(), mean=qs.mean(0).tolist())
        if "nfd" in fns:
            qn = np.array([fns["nfd"](2000 + s)[0] for s in range(spread_seeds)])
            sdn = qn.std(0, ddof=1)
            # ratio of two independent sample sds of S seeds: relative s.e. ≈ 1/√(S − 1)
            spread.update(nfd_sd_run_to_run=sdn.tolist(), nfd_mean=qn.mean(0).tolist(),
                          ratio_sd_nfd_over_sd_core=(sdn / sd).tolist(),
                          ratio_sd_nfd_over_sd_core_rel_se=1 / math.sqrt(spread_seeds - 1),
                          # the two means (independent seeds) in units of their combined s.e.
                          z_mean_nfd_vs_core=((qn.mean(0) - qs.mean(0))
                                              / np.sqrt((sdn**2 + sd**2) / spread_seeds)).tolist())
    # agreement of E[h_T h_Tᵀ]: one run per method with its own seed
    Qs, hT = {}, None
    for i, (k, fn) in enumerate(fns.items()):
        q, h = fn(100 + i)
        Qs[k] = q
        if h is not None and hT is None:
            hT = h
    prod = hT[:, None, :] * hT[None, :, :]
    se = prod.std(axis=-1, ddof=1) / math.sqrt(P)  # s.e. of one run's particle mean of h^a h^b
    Qbar = np.mean([Qs[k] for k in fns], axis=0)
    m = len(fns)
    # z of each method against the mean of all (independent runs: var of the difference = se²(1 − 1/m))
    z = {k: float(np.max(np.abs(Qs[k] - Qbar) / (se * math.sqrt(1 - 1 / m)))) for k in fns}
    extra = {}
    if spread is not None:
        sd = np.asarray(spread["sd_run_to_run"])
        ratio = sd / se
        # s.e. of the ratio from the sample sd of S seeds (chi-square, ≈ ratio/√(2(S−1)))
        spread.update(ratio_sd_over_iid_se=ratio.tolist(),
                      ratio_se=(ratio / math.sqrt(2 * (spread_seeds - 1))).tolist())
        extra["max_abs_z_vs_mean_spread"] = {k: float(np.max(np.abs(Qs[k] - Qbar) / (sd * math.sqrt(1 - 1 / m))))
                                             for k in fns}
        iu = np.triu_indices(N)
        print(f"{_stamp()} P={P}: run-to-run sd / i.i.d. s.e. of Q_T over {spread_seeds} seeds: "
              f"{np.round(ratio[iu], 2).tolist()} (each ± ≈{100 / math.sqrt(2 * (spread_seeds - 1)):.0f}%)", flush=True)
        if "ratio_sd_nfd_over_sd_core" in spread:
            print(f"{_stamp()} P={P}: sd(nfd) / sd(nfd_core): "
                  f"{np.round(np.asarray(spread['ratio_sd_nfd_over_sd_core'])[iu], 2).tolist()} (each ± ≈"
                  f"{100 * spread['ratio_sd_nfd_over_sd_core_rel_se']:.0f}%); mean(nfd) − mean(nfd_core) in s.e.: "
                  f"{np.round(np.asarray(spread['z_mean_nfd_vs_core'])[iu], 2).tolist()}", flush=True)
    print(f"{_stamp()} P={P}: max |z| vs the mean (i.i.d. s.e.): " + ", ".join(f"{k} {v:.2f}" for k, v in z.items())
          + ("" if spread is None else "; with the run-to-run sd: " + ", ".join(
              f"{k} {v:.2f}" for k, v in extra["max_abs_z_vs_mean_spread"].items())), flush=True)
    return dict(P=P, N=N, L=L, d=X.shape[1], dtype=dtype, activation="tanh", T=1.0, rounds=rounds,
                first_call_s=first, compile_s=compile_s, repeats=reps, Q_T={k: v.tolist() for k, v in Qs.items()},
                Q_T_se_one_run=se.tolist(), max_abs_z_vs_mean=z, spread=spread, hlo=hlo, **extra)


def spread_at(P, N, L, seeds, dtype="float32"):
    """Run-to-run sd of Q_T (``nfd_core`` over ``seeds`` seeds) / the i.i.d. s.e. of one run (the
    mean over 4 plain-scan runs' particle spread of h^a h^b / √P), at one P: whether the inflation
    by the mean-field coupling depends on P."""
    X = inputs(N)
    fns = make_methods(X, L=L, P=P, dtype=dtype)
    qs = np.array([fns["nfd_core"](3000 + s)[0] for s in range(seeds)])
    se = []
    for s in range(4):
        hT = fns["plain_scan"](4000 + s)[1]
        se.append((hT[:, None, :] * hT[None, :, :]).std(axis=-1, ddof=1) / math.sqrt(P))
    se = np.mean(se, axis=0)
    ratio = qs.std(0, ddof=1) / se
    iu = np.triu_indices(N)
    print(f"{_stamp()} spread at P={P}, L={L}: run-to-run sd / i.i.d. s.e. over {seeds} seeds: "
          f"{np.round(ratio[iu].astype(float), 2).tolist()} (each ± ≈{100 / math.sqrt(2 * (seeds - 1)):.0f}%)", flush=True)
    return dict(P=P, N=N, L=L, seeds=seeds, ratio_sd_over_iid_se=ratio.tolist(),
                ratio_rel_se=1 / math.sqrt(2 * (seeds - 1)))


def accumulation_check(Q, P=1 << 20, seed=0):
    """How far float32 summation can move a Gram entry of P particles, in units of its Monte-Carlo
    s.e.: float32 Gaussian particles with covariance Q; the particle mean of h^a h^b summed (i) fully
    sequentially in float32 (the worst order: np.cumsum), (ii) by float32 BLAS, against float64."""
    rng = np.random.default_rng(seed)
    Q = np.asarray(Q, np.float64)
    N = Q.shape[0]
    w, V = np.linalg.eigh(Q)
    h = ((V * np.sqrt(np.maximum(w, 0))) @ rng.normal(size=(N, P))).astype(np.float32)
    h64 = h.astype(np.float64)
    exact = h64 @ h64.T / P
    se = np.array([[(h64[a] * h64[b]).std(ddof=1) / math.sqrt(P) for b in range(N)] for a in range(N)])
    seq = np.array([[np.cumsum(h[a] * h[b], dtype=np.float32)[-1] / np.float32(P) for b in range(N)] for a in range(N)])
    blas = (h @ h.T) / np.float32(P)
    return dict(P=P, max_err_over_se_sequential=float(np.max(np.abs(seq - exact) / se)),
                max_rel_err_sequential=float(np.max(np.abs(seq - exact) / np.abs(exact))),
                max_err_over_se_blas=float(np.max(np.abs(blas - exact) / se)))


def plot(doc, path):
    """Top row: best time per method and repeat; bottom row: time ÷ plain scan per method, the bar the
    ratio of the bests, the whisker the interquartile range of the per-round ratios (both repeats)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfgs = doc["results"]
    fig, axes = plt.subplots(2, len(cfgs), figsize=(6.5 * len(cfgs), 7.5), squeeze=False)
    for j, c in enumerate(cfgs):
        ax, ax2 = axes[0, j], axes[1, j]
        names = list(c["first_call_s"])
        reps = c["repeats"]
        w = 0.8 / len(reps)
        for i, r in enumerate(reps):
            x = np.arange(len(names)) + (i - (len(reps) - 1) / 2) * w
            y = [r["best_s"][k] * 1e3 for k in names]
            ax.bar(x, y, w * 0.9, label=f"repeat {i} (load {np.mean(r['load_avg_per_round']):.1f})")
            for xi, yi in zip(x, y):
                ax.text(xi, yi, f"{yi:.0f}", ha="center", va="bottom", fontsize=6)
            if "plain_scan" in r["best_s"]:
                yr = [r["best_s"][k] / r["best_s"]["plain_scan"] for k in names]
                q = [np.percentile(np.asarray(r["runs_s"][k]) / np.asarray(r["runs_s"]["plain_scan"]), [25, 75])
                     for k in names]
                ax2.bar(x, yr, w * 0.9, label=f"repeat {i}")
                ax2.errorbar(x, yr, yerr=np.array([[max(yi - lo, 0), max(hi - yi, 0)] for yi, (lo, hi) in zip(yr, q)]).T,
                             fmt="none", ecolor="k", lw=0.8, capsize=2)
                for xi, yi in zip(x, yr):
                    ax2.text(xi, 0.03, f"{yi:.2f}", ha="center", va="bottom", fontsize=6, rotation=90, color="w")
        for a in (ax, ax2):
            a.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax.set_ylabel(f"ms, best of {c['rounds']} interleaved calls")
        zs = c.get("max_abs_z_vs_mean_spread")
        ax.set_title(f"MV-SDE at init, P={c['P']}, N={c['N']}, L={c['L']}, {c['dtype']}\n"
                     f"{doc['machine']['device_kind']}; max |z| of E[h_T h_Tᵀ] {max(c['max_abs_z_vs_mean'].values()):.1f}"
                     " (i.i.d. s.e.)" + ("" if not zs else f", {max(zs.values()):.1f} (run-to-run sd)"), fontsize=9)
        ax.legend(fontsize=7)
        ax2.axhline(1.0, color="k", ls="--", lw=0.8)
        ax2.set_ylabel("time ÷ plain scan (bar: bests; whisker: IQR per round)", fontsize=8)
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true")
    g.add_argument("--gpu", action="store_true")
    p.add_argument("--out", default=os.path.join(RESULTS, "init_sde.json"))
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--cuda-lowering", action="store_true",
                   help="only add the CUDA lowering's custom calls per method to --out (seconds; no GPU needed)")
    a = p.parse_args(argv)
    if a.cuda_lowering:
        doc = json.load(open(a.out))
        doc["cuda_lowering"] = cuda_lowering()
        json.dump(doc, open(a.out, "w"), indent=1)
        print(json.dumps(doc["cuda_lowering"], indent=1))
        return doc
    import jax

    import nfd

    nfd.disable_compilation_cache()  # compile times here are real compilations, not loads from disk
    size = "tiny" if a.tiny else "gpu" if a.gpu else "default"
    S = SIZES[size]
    t0 = time.perf_counter()
    dev = jax.devices()[0]
    print(f"{_stamp()} init_sde benchmark on {dev.device_kind} ({dev.platform}), size {size}", flush=True)
    res = [bench_config(c["P"], c["N"], c["L"], S["rounds"], S["repeats"], methods=c.get("methods", ORDER),
                        spread_seeds=S.get("spread_seeds", 0))
           for c in S["configs"]]
    spread_vs_P = [spread_at(P, 4, 128, S["spread_seeds"]) for P in S.get("spread_P", [])]
    acc = accumulation_check(np.asarray(res[0]["Q_T"]["plain_scan" if "plain_scan" in res[0]["Q_T"] else "nfd"]))
    print(f"{_stamp()} float32 summation over P = 2^20 particles, |error| / s.e. of a Gram entry: sequential "
          f"{acc['max_err_over_se_sequential']:.3f} (relative {acc['max_rel_err_sequential']:.1e}), BLAS "
          f"{acc['max_err_over_se_blas']:.4f}", flush=True)
    doc = dict(benchmark="init_sde", size=size, config=S, methods=list(ORDER), results=res, spread_vs_P=spread_vs_P,
               float32_accumulation=acc, cuda_lowering=cuda_lowering(),
               machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(), python=platform.python_version(),
                            jax=jax.__version__, device_kind=dev.device_kind, device_platform=dev.platform,
                            device_count=len(jax.devices())),
               notes=["Times are wall clock (the public calls include validation and the host copy of Q); "
                      "compile_s = first call − best warm call.",
                      "max_abs_z_vs_mean: largest |Q_T(method) − mean over methods| over the N×N entries in units of "
                      "the Monte-Carlo s.e. of one run (particle spread of h^a h^b / √P, times √(1 − 1/m)); "
                      "different seeds per method.  That s.e. treats the particles as independent; the mean-field "
                      "coupling (Σ is a particle mean) correlates them, so the run-to-run spread can be somewhat larger: "
                      "the rigorous agreement check is tests/test_init_sde.py (spread over 16 seeds per method)."],
               wall_s=time.perf_counter() - t0,
               created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    json.dump(doc, open(a.out, "w"), indent=1)
    if not a.no_plot:
        plot(doc, os.path.splitext(a.out)[0] + ".png")
    print(f"{_stamp()} wrote {a.out} in {doc['wall_s']:.0f} s", flush=True)
    return doc


if __name__ == "__main__":
    main()
