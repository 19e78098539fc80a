"""Study 8: speed.  Ratios are the headline; absolute times only with the machine (in the JSON).

(a) The NFD particle solver against brute-force finite networks for the same limit quantity
    f̂^(k) (coupled networks, exact mode) at equal standard error: the solver's standard error
    at P particles is the spread over independent particle systems; the finite networks' is the
    spread over seeds at width n, and the number of seeds needed to match it is extrapolated as
    S* = (sd_seed / se_solver)² from a measured per-seed time.  (This ignores the finite
    networks' O(1/n) bias, which favours them.)
(b) The forward McKean–Vlasov SDE at initialisation, dh = Σ(h)^{1/2} dW with Σ = E[φ(h)φ(h)ᵀ]
    over N inputs: nfd's Euler–Maruyama particles against the same particle system written with
    diffrax (``Euler`` over a batched ``UnsafeBrownianPath``, ``adjoint=ForwardMode()``), same
    initial particles U, same P and steps; E[h_T h_Tᵀ] from both agree within Monte-Carlo error
    (different Brownian draws).  nfd is timed forward-only (its backward pass removed by jit
    dead-code elimination) and, for reference, as the public forward+backward call.
(c) Kernels against neural-tangents: skipped when ``neural_tangents`` does not import
    (it does not with jax 0.10; see shared/notes/ecosystem.md).
"""

from __future__ import annotations

import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
from studies.rates_training import data  # noqa: E402

STUDY = "speed"


def best_time(fn, reps):
    fn()  # compile / warm up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts))


def part_a(cfg):
    import jax.numpy as jnp

    import nfd

    X, Y = data(cfg["K"], 3, 0)
    kw = dict(depth=cfg["depth"], activation="tanh", lr=0.5)
    outs, times = [], []
    nfd.solve(X, Y, particles=cfg["particles"], backward="exact", seed=999, dtype=jnp.float32, eigenvalues=False,
              on_singular="regularize", **kw)  # compile
    for r in range(cfg["particle_reps"]):
        t = time.perf_counter()
        s = nfd.solve(X, Y, particles=cfg["particles"], backward="exact", seed=r, dtype=jnp.float32, eigenvalues=False,
                      on_singular="regularize", **kw)
        times.append(time.perf_counter() - t)
        outs.append(s.outputs[-1])
    se_solver = float(np.std(outs, ddof=1))  # s.e. of ONE solve = spread of independent solves
    t_solver = float(np.median(times))
    n, S0 = cfg["width"], cfg["seeds"]
    nfd.simulate(X, Y, width=n, seeds=S0, seed=123, record=(), **kw)  # compile
    t = time.perf_counter()
    sim = nfd.simulate(X, Y, width=n, seeds=S0, seed=0, record=(), **kw)
    t_sim = time.perf_counter() - t
    sd_seed = float(sim.outputs[:, -1].std(ddof=1))
    S_star = (sd_seed / se_solver) ** 2
    t_finite = t_sim / S0 * S_star
    return dict(solver_time_s=t_solver, solver_se=se_solver, solver_mean=float(np.mean(outs)),
                finite_time_s_for_S0=t_sim, finite_sd_per_seed=sd_seed, seeds_needed=S_star,
                finite_time_s_at_equal_se=t_finite, finite_mean=float(sim.outputs[:, -1].mean()),
                finite_se=sd_seed / math.sqrt(S0), speedup=t_finite / t_solver)


def part_b(cfg):
    import diffrax
    import jax
    import jax.numpy as jnp
    import lineax as lx

    import nfd
    from nfd.limits import _init_sde

    act = nfd.get_activation("tanh")
    N, d, P, L, T = cfg["inputs"], 3, cfg["sde_particles"], cfg["sde_steps"], 1.0
    X = jnp.asarray(np.random.default_rng(0).normal(size=(N, d)), jnp.float32)
    tau = T / L
    key = jax.random.PRNGKey(0)

    @jax.jit
    def nfd_forward(key):
        Q, _, _, _ = _init_sde._init_particles(key, X, jnp.asarray(tau, jnp.float32), L=L, P=P, act=act)
        return Q[-1]  # forward only: the backward scan is dead code

    k_u = jax.random.split(key, 4)[0]  # nfd draws U from the first of four keys: same initial particles
    U = jax.random.normal(k_u, (P, d), jnp.float32)
    h0 = X @ U.T / math.sqrt(d)

    def vf(t, y, args):
        u = act.fn(y)
        R = _init_sde._psd_sqrt(u @ u.T / P)
        return lx.FunctionLinearOperator(lambda w: R @ w, jax.ShapeDtypeStruct((N, P), y.dtype))

    @jax.jit
    def diffrax_forward(key):
        bm = diffrax.UnsafeBrownianPath(shape=(N, P), key=key)
        sol = diffrax.diffeqsolve(diffrax.ControlTerm(vf, bm), diffrax.Euler(), 0.0, T, tau, h0,
                                  adjoint=diffrax.ForwardMode(), max_steps=L + 1,
                                  saveat=diffrax.SaveAt(t1=True))
        hT = sol.ys[-1]
        return hT @ hT.T / P, hT

    run_nfd = lambda: nfd_forward(key).block_until_ready()
    run_dfx = lambda: diffrax_forward(jax.random.PRNGKey(1))[0].block_until_ready()
    public = lambda: nfd.limits.init_sde_particles(np.asarray(X), depth=L, particles=P, activation="tanh")
    tn, tn_med = best_time(run_nfd, cfg["timing_reps"])
    td, td_med = best_time(run_dfx, cfg["timing_reps"])
    tp, _ = best_time(public, max(1, cfg["timing_reps"] // 2))
    Qn = np.asarray(nfd_forward(key))
    Qd, hT = (np.asarray(a) for a in diffrax_forward(jax.random.PRNGKey(1)))
    # Monte-Carlo s.e. of a particle mean of h^a h^b, from the diffrax particles
    se = np.sqrt(np.var(hT[:, None, :] * hT[None, :, :], axis=-1) / P)
    z = np.abs(Qn - Qd) / (math.sqrt(2) * se)
    return dict(nfd_forward_time_s=tn, nfd_forward_median_s=tn_med, diffrax_time_s=td, diffrax_median_s=td_med,
                nfd_public_forward_backward_time_s=tp, ratio_diffrax_over_nfd=td / tn,
                Q_nfd=Qn, Q_diffrax=Qd, Q_se=se, max_abs_z=float(z.max()))


def part_c():
    try:
        import neural_tangents  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return dict(skipped=True, reason=f"neural_tangents does not import here: {type(e).__name__}: {str(e)[:200]}")
    return dict(skipped=True, reason="neural_tangents imports, but the comparison is not implemented yet")


def plot(doc: dict):
    """The figure of this study, drawn from its JSON document alone."""
    cfg, res = doc["config"], doc["results"]
    a, b = res["solver_vs_finite"], res["sde_nfd_vs_diffrax"]
    fig, ax = C.figure(1, 2)
    p = ax[0, 0]
    p.bar(["NFD solver", f"finite n={cfg['width']}"], [a["solver_time_s"], a["finite_time_s_at_equal_se"]],
          color=["C0", "C1"])
    C.log_y(p)
    p.set(ylabel="seconds (best of repeats)", xlabel="method",
          title=f"time to standard error {a['solver_se']:.2g} of f̂^(K)")
    p = ax[0, 1]
    names = ["nfd forward", "diffrax Euler", "nfd fwd+bwd"]
    best = [b["nfd_forward_time_s"], b["diffrax_time_s"], b["nfd_public_forward_backward_time_s"]]
    p.bar(names, best, color=["C0", "C2", "C0"], label="best of repeats")
    med = [b.get("nfd_forward_median_s"), b.get("diffrax_median_s")]
    if all(m is not None for m in med):
        p.plot(names[:2], med, "kD", ms=5, label=f"median of {cfg['timing_reps']}")
        p.legend(fontsize=7)
    C.log_y(p)
    p.set(ylabel="seconds", xlabel="method",
          title=f"MV-SDE at init, P={cfg['sde_particles']}, {cfg['sde_steps']} steps")
    return fig


def run(size: str, out_dir: str) -> dict:
    t0 = time.perf_counter()
    cfg = dict(K=C.pick(size, 3, 6, 10), depth=C.pick(size, 2, 8, 32), particles=C.pick(size, 256, 2**14, 2**18),
               particle_reps=C.pick(size, 3, 6, 10), width=C.pick(size, 16, 256, 1024), seeds=C.pick(size, 4, 32, 128),
               inputs=C.pick(size, 2, 4, 8), sde_particles=C.pick(size, 512, 2**15, 2**20),
               sde_steps=C.pick(size, 8, 128, 1024), timing_reps=C.pick(size, 2, 5, 10), dtype="float32")
    res = dict(solver_vs_finite=part_a(cfg), sde_nfd_vs_diffrax=part_b(cfg), kernels_vs_neural_tangents=part_c())
    a, b = res["solver_vs_finite"], res["sde_nfd_vs_diffrax"]
    claims = [
        C.claim("the limit solver is cheaper than brute-force finite networks at equal standard error",
                "issue 7 (speed)", f"finite/solver time ratio {a['speedup']:.3g} (P={cfg['particles']} vs n={cfg['width']}, "
                f"S*={a['seeds_needed']:.3g} seeds)", bool(a["speedup"] > 1)),
        C.claim("nfd's forward MV-SDE is at least as fast as the diffrax particle system (same P, steps)",
                "issue 7 (speed); shared/notes/ecosystem.md", f"diffrax/nfd time ratio {b['ratio_diffrax_over_nfd']:.3g}; "
                f"E[h_T h_Tᵀ] agree within {b['max_abs_z']:.2g} combined s.e.", bool(b["ratio_diffrax_over_nfd"] >= 0.9)),
        C.claim("the two SDE solutions agree (same law)", "Prop. 2", f"max |ΔQ|/s.e. = {b['max_abs_z']:.2g}",
                bool(b["max_abs_z"] < 4.0)),  # 4 s.e.: a z-score bound for N(N+1)/2 ≤ 36 entries
    ]
    notes = ["Times are best-of-repeats after compilation on the machine recorded in 'machine'; the machine is "
             "shared with other jobs, so absolute times are noisy and only ratios are meaningful.",
             "(a) ignores the finite networks' width bias (it favours the finite networks)."]
    return C.write_result(STUDY, size, out_dir, title="Speed", config=cfg, results=res, fits={}, claims=claims,
                          notes=notes, t_start=t0, plot=plot)


if __name__ == "__main__":
    C.cli(STUDY, run)
