"""Differentiable limits: the loss of the NFD particle limit after K SGD steps as a pure,
differentiable JAX function of the learning-rate constant η_c and the depth horizon T.

The NFD particle recursion (:func:`nfd.limits.solve_particles`) is a fixed-shape compiled
program whose only real-valued inputs besides the data are the group learning rates η_c and
√τ = √(T/L); its particles are a pure function of the seed.  With the seed fixed, the limit
loss ℒ(η_c, T) is therefore an ordinary smooth function that JAX differentiates through the
whole training run (both forward-mode, ``jax.jacfwd``, and reverse-mode, ``jax.grad``).  The
derivative is the derivative of the P-particle estimate; it converges to the derivative of the
n → ∞ limit at the same O(1/√P) Monte-Carlo rate as the loss itself.

Two objectives:

* ``objective="online"`` (default): the mean online loss (1/K) Σ_k ℓ(f̂^(k), y^(k)), where
  f̂^(k) is the output on sample k *before* the update on it (for an online stream of fresh
  samples this is the generalisation loss averaged over training);
* ``objective="test"``: the mean loss on (X_test, Y_test) *after* all K steps.

Forward mode is the default in :func:`limit_loss_and_grad`: with two parameters it needs no
stored trajectory (memory of one solve, ≈ 3× its arithmetic) and compiles faster; reverse mode
stores the solver state at every step (memory ≈ steps × one solve).

Example:
    >>> import numpy as np, nfd
    >>> X = np.random.default_rng(0).normal(size=(4, 2)); Y = np.tanh(X[:, 0])
    >>> g = nfd.limit_loss_and_grad(X, Y, lr=0.5, depth=4, particles=256, activation="tanh")
    >>> bool(np.isfinite(g.d_lr) and np.isfinite(g.d_T))
    True
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import DivergenceError
from ._memory import check_memory
from ._model import ResNet
from ._results import result
from ._validate import (check_bytes, check_choice, check_data, check_dtype, check_inputs_2d, check_int,
                        check_seed, check_test_inputs)

__all__ = ["limit_loss_fn", "limit_loss_and_grad", "LimitGradient", "optimal_lr", "OptimalLR", "OBJECTIVES"]

OBJECTIVES = ("online", "test")
MODES = ("forward", "reverse")


@result
class LimitGradient:
    """Value and gradient of a limit loss (floats).

    Attributes:
        loss: ℒ(η_c, T).
        d_lr: ∂ℒ/∂η_c.
        d_T: ∂ℒ/∂T.
        lr, T: where they were evaluated.
        network: the :class:`~nfd.ResNet` (width ``None``) that was solved.
        config: particles, backward, seed, objective, mode, dtype, replicates.
        loss_stderr, d_lr_stderr, d_T_stderr: standard errors of ``loss``, ``d_lr`` and ``d_T``:
            the standard deviation (ddof=1) over the R replicate systems / √R (NaN for R = 1).
    """

    loss: float
    d_lr: float
    d_T: float
    lr: float
    T: float
    network: ResNet
    config: dict
    loss_stderr: float = math.nan
    d_lr_stderr: float = math.nan
    d_T_stderr: float = math.nan


@dataclasses.dataclass(frozen=True)
class OptimalLR:
    """What :func:`optimal_lr` returns.

    Attributes:
        lr: the minimiser η_c* of the limit loss in the bracket: the log-midpoint of the final
            bisection bracket inside the best cell of the coarse scan.
        loss: ℒ(η_c*).
        d_lr: ∂ℒ/∂η_c at η_c* (≈ 0 for an interior minimum).
        interior: False when the minimum is at an end of the bracket (widen it).
        history: (evaluations, 3) rows (η_c, ℒ, ∂ℒ/∂η_c) of every gradient evaluation (``inf``
            where the limit diverged).
        loss_stderr, d_lr_stderr: standard errors of ``loss`` and ``d_lr`` over the replicate systems.
        lr_stderr: standard error of ``lr`` (interior minima): the delta method,
            SE(∂ℒ/∂η_c) / |∂²ℒ/∂η_c²|, with the curvature from the two bisection evaluations that
            bracket η_c* (NaN when it cannot be estimated).  It is the Monte-Carlo error of the
            minimiser; the bisection's own resolution is in the ``iterations`` bound.
    """

    lr: float
    loss: float
    d_lr: float
    interior: bool
    history: np.ndarray
    loss_stderr: float = math.nan
    d_lr_stderr: float = math.nan
    lr_stderr: float = math.nan


def _validate(X, Y, *, depth, particles, activation, backward, frozen, seed, loss, batch_size, X_test, Y_test,
              objective, dtype):
    from .limits._nfd import BACKWARDS

    X_arr = check_inputs_2d(X)
    net = ResNet(depth=depth, input_dim=X_arr.shape[1], width=None, activation=activation, T=1.0,
                 parameterization="depth_mup", lr=0.1, frozen=frozen, loss=loss)
    check_choice("backward", backward, BACKWARDS)
    check_int("particles", particles, min=2)
    check_seed(seed)
    check_choice("objective", objective, OBJECTIVES)
    dtype = check_dtype("dtype", dtype)
    X, Y = check_data(X, Y, loss=loss, batch_size=batch_size, dtype=dtype)
    X_test = check_test_inputs(X_test, net.input_dim, dtype=dtype)
    if objective == "test":
        if X_test is None or Y_test is None:
            raise ValueError("objective='test' needs X_test (N, d) and Y_test (N,)")
        _, Y_test = check_data(X_test, Y_test, loss=loss)
    elif Y_test is not None:
        raise ValueError("Y_test is only used with objective='test'")
    return net, X, Y, X_test, Y_test, dtype


def _memory(net, *, particles, samples, n_test, backward, dtype, mode, steps, max_memory, storage_dtype=None,
            noise="store"):
    from .limits._nfd import estimate_particle_memory

    sdt = jnp.dtype(dtype) if storage_dtype is None else jnp.dtype(storage_dtype)
    one = estimate_particle_memory(particles=particles, depth=net.depth, samples=samples, input_dim=net.input_dim,
                                   n_test=n_test, exact=backward == "exact", itemsize=jnp.dtype(dtype).itemsize,
                                   storage_itemsize=sdt.itemsize, noise=noise)
    # forward mode carries primal + 2 tangents; reverse mode keeps the state of every step
    est = 3 * one if mode == "forward" else (steps + 2) * one
    check_memory(est, what=f"limit gradient ({mode} mode)",
                 hint=f"particles={particles}, depth={net.depth}, samples={samples}; "
                      "reverse mode stores every step, forward mode does not", limit_bytes=max_memory)
    return est


def limit_loss_fn(
    X,
    Y,
    *,
    depth: int,
    particles: int,
    activation: Any = "relu",
    backward: str | None = None,
    frozen: tuple[str, ...] = (),
    seed: int = 0,
    loss: str = "mse",
    batch_size: int = 1,
    objective: str = "online",
    X_test=None,
    Y_test=None,
    dtype=jnp.float32,
    singular_tol: float | None = None,
    max_memory: int | None = None,
    devices=None,
    storage_dtype=None,
    noise: str = "store",
    replicates: int | None = None,
    _mode_for_memory: str = "forward",
) -> Callable[[Any, Any], jax.Array]:
    """The limit loss ℒ(η_c, T) of the NFD particle recursion as a pure JAX function.

    Input is validated and memory checked now; the returned function ``fn(lr, T)`` is pure
    (the particles are fixed by ``seed``), traceable, and differentiable with ``jax.grad``,
    ``jax.jacfwd``, ``jax.jit`` and ``jax.vmap``.  Divergence shows as a NaN value (use
    :func:`limit_loss_and_grad` for a checked evaluation).

    Args:
        X: (K, d) training inputs, ``batch_size`` per SGD step.
        Y: (K,) targets.
        depth: L, as in :func:`nfd.limits.solve_particles` (so are ``particles``, ``activation``,
            ``backward`` (default ``"exact"``), ``frozen``, ``seed``, ``loss``, ``batch_size``, ``dtype``,
            ``singular_tol``, ``devices``, ``storage_dtype``, ``noise`` and ``replicates``: the function is
            :meth:`nfd.ParticleProblem.loss_fn` of the same particle problem).
        objective: ``"online"`` (mean of ℓ(f̂^(k), y^(k)) over the K samples, each before its
            update) or ``"test"`` (mean loss on X_test, Y_test after all K steps).
        X_test: (N, d) held-out inputs for ``objective="test"``.
        Y_test: (N,) held-out targets.
        max_memory: byte limit for the memory check.

    Returns:
        ``fn(lr, T) -> scalar``: the loss as a function of η_c (≥ 0) and T (> 0): the mean over the
        ``replicates`` independent particle systems of each one's loss.  ``fn.replicate_values(lr, T)``
        gives the (R,) per-system losses and ``fn.stderr(lr, T)`` their standard error
        (std (ddof=1) / √R); :func:`limit_loss_and_grad` reports the errors of the derivatives too.

    Example:
        >>> import jax, numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(4, 2)); Y = X[:, 0]
        >>> fn = nfd.limit_loss_fn(X, Y, depth=4, particles=256, activation="tanh")
        >>> dl = jax.grad(fn, argnums=0)(0.5, 1.0)   # ∂ℒ/∂η_c
        >>> bool(np.isfinite(dl))
        True
    """
    from .limits._nfd import DEFAULT_BACKWARD, particle_problem

    if backward is None:
        backward = DEFAULT_BACKWARD
    net, X, Y, X_test, Y_test, dtype = _validate(
        X, Y, depth=depth, particles=particles, activation=activation, backward=backward, frozen=frozen,
        seed=seed, loss=loss, batch_size=batch_size, X_test=X_test, Y_test=Y_test, objective=objective,
        dtype=dtype)
    max_memory = check_bytes("max_memory", max_memory)
    B = int(batch_size)
    K = X.shape[0]
    if objective == "test":
        # one extra (dummy) step: the test outputs recorded before it are those after K updates
        X = np.concatenate([X, X[-B:]], axis=0)
        Y = np.concatenate([Y, Y[-B:]], axis=0)
    steps = X.shape[0] // B
    N = 0 if X_test is None or objective != "test" else X_test.shape[0]
    _memory(net, particles=int(particles), samples=X.shape[0], n_test=N, backward=backward, dtype=dtype,
            mode=_mode_for_memory, steps=steps, max_memory=max_memory, storage_dtype=storage_dtype, noise=noise)
    prob = particle_problem(net, X, Y, particles=particles, backward=backward, seed=seed, batch_size=B,
                            X_test=X_test if N else None, dtype=dtype, singular_tol=singular_tol,
                            max_memory=max_memory, eigenvalues=False, devices=devices, storage_dtype=storage_dtype,
                            noise=noise, replicates=replicates)
    return prob.loss_fn(objective, K=K, Y_test=Y_test if N else None)


def limit_loss_and_grad(X, Y, *, lr: float, T: float = 1.0, mode: str = "forward", max_memory: int | None = None,
                        **kwargs) -> LimitGradient:
    """ℒ(η_c, T) of the NFD particle limit and its gradient (∂ℒ/∂η_c, ∂ℒ/∂T).

    Args:
        X, Y: the training stream, (K, d) and (K,).
        lr: η_c ≥ 0 at which to evaluate.
        T: depth horizon T > 0.
        mode: ``"forward"`` (``jax.jacfwd``; default, memory of one solve) or ``"reverse"``
            (``jax.grad``; memory ≈ steps × one solve).
        max_memory: byte limit.
        **kwargs: ``depth``, ``particles`` and the other arguments of :func:`limit_loss_fn`.

    Returns:
        :class:`LimitGradient`.

    Raises:
        DivergenceError: when the loss or its gradient is not finite.

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(4, 2)); Y = X[:, 0]
        >>> g = nfd.limit_loss_and_grad(X, Y, lr=0.5, depth=4, particles=256, activation="tanh")
        >>> g.loss > 0
        True
    """
    check_choice("mode", mode, MODES)
    lr_f = _check_float("lr", lr, allow_zero=True)
    T_f = _check_float("T", T, allow_zero=False)
    fn = limit_loss_fn(X, Y, max_memory=max_memory, _mode_for_memory=mode, **kwargs)
    vals, gs = _value_and_grad(fn, mode)(lr_f, T_f)  # (R,), (R, 2): every replicate system
    vals, gs = np.asarray(vals, np.float64), np.asarray(gs, np.float64)
    R = vals.shape[0]
    se = (lambda a: float(a.std(ddof=1) / math.sqrt(R)) if R > 1 else math.nan)
    val, d_lr, d_T = float(vals.mean()), float(gs[:, 0].mean()), float(gs[:, 1].mean())
    if not (math.isfinite(val) and math.isfinite(d_lr) and math.isfinite(d_T)):
        raise DivergenceError(
            f"limit loss or gradient not finite at lr={lr_f}, T={T_f} (loss={val}, d_lr={d_lr}, d_T={d_T}); "
            "the limit diverged: try a smaller lr", step=None, quantity="limit loss")
    kw = dict(kwargs)
    net = ResNet(depth=kw["depth"], input_dim=np.asarray(X).shape[1], width=None,
                 activation=kw.get("activation", "relu"), T=T_f, lr=lr_f, frozen=kw.get("frozen", ()),
                 loss=kw.get("loss", "mse"))
    from .limits._nfd import DEFAULT_BACKWARD

    config = dict(particles=int(kw["particles"]), backward=kw.get("backward") or DEFAULT_BACKWARD,
                  seed=int(kw.get("seed", 0)),
                  objective=kw.get("objective", "online"), mode=mode, dtype=str(jnp.dtype(kw.get("dtype", jnp.float32))),
                  replicates=R)
    return LimitGradient(loss=val, d_lr=d_lr, d_T=d_T, lr=lr_f, T=T_f, network=net, config=config,
                         loss_stderr=se(vals), d_lr_stderr=se(gs[:, 0]), d_T_stderr=se(gs[:, 1]))


@functools.lru_cache(maxsize=32)
def _value_and_grad(fn, mode):
    """jit(lr, T -> (values (R,), gradients (R, 2))): every replicate system's loss and derivatives."""
    per_rep = getattr(fn, "replicate_values", None)
    if per_rep is None:  # a plain scalar function: one "replicate"
        per_rep = lambda lr, T: jnp.reshape(fn(lr, T), (1,))  # noqa: E731

    if mode == "reverse":
        # one reverse pass: a rate and horizon per replicate, so d(Σ_r ℒ_r)/d(lr_r) = dℒ_r/dη_c
        R = getattr(fn, "replicates", None)

        def rev(lr, T):
            if R is None:
                v, g = jax.value_and_grad(lambda a, b: fn(a, b), argnums=(0, 1))(lr, T)
                return jnp.reshape(v, (1,)), jnp.stack(g)[None]
            lrs, Ts = jnp.full((R,), lr), jnp.full((R,), T)

            def total(a, b):
                v = per_rep(a, b)
                return jnp.sum(v), v

            (_, v), g = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(lrs, Ts)
            return v, jnp.stack(g, axis=1)

        return jax.jit(rev)

    def fwd(lr, T):
        p = jnp.stack([jnp.asarray(lr), jnp.asarray(T)])
        val, jvp_fn = jax.linearize(lambda q: per_rep(q[0], q[1]), p)
        g = jax.vmap(jvp_fn)(jnp.eye(2, dtype=p.dtype))  # (2, R)
        return val, g.T

    return jax.jit(fwd)


def _check_float(name, v, *, allow_zero):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite number, got {v!r}")
    return f


def optimal_lr(X, Y, *, bracket: tuple[float, float], T: float = 1.0, grid: int = 16, iterations: int = 20,
               **kwargs) -> OptimalLR:
    """η_c minimising the limit loss ℒ(η_c, T) inside ``bracket``.

    Two stages, both on one compiled program: the loss is evaluated on ``grid`` log-spaced
    rates across the bracket (the loss need not be unimodal), then the best grid cell is refined
    by bisection on the sign of the exact derivative ∂ℒ/∂η_c (in log η_c).  A rate at which the
    limit diverges counts as ℒ = +∞ with ∂ℒ/∂η_c > 0.  When the best grid point is an end of the
    bracket and the derivative there points outside it, that end is returned with
    ``interior=False`` (widen the bracket).

    Args:
        X, Y: training stream.
        bracket: (lo, hi) with 0 < lo < hi.
        T: depth horizon.
        grid: number of log-spaced rates of the coarse scan (≥ 3).
        iterations: bisection steps inside the best grid cell; the result is within a factor
            (hi/lo)^(2/(grid−1)·2^-(iterations+1)) of the cell's stationary point.
        **kwargs: ``depth``, ``particles`` and the other arguments of :func:`limit_loss_fn`.

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(6, 2)); Y = np.tanh(X[:, 0])
        >>> opt = nfd.optimal_lr(X, Y, bracket=(0.05, 5.0), depth=4, particles=256, activation="tanh",
        ...                      grid=4, iterations=3)
        >>> 0.05 <= opt.lr <= 5.0
        True
    """
    try:
        lo, hi = (float(bracket[0]), float(bracket[1]))
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"bracket must be a pair (lo, hi) of numbers, got {bracket!r}") from None
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"bracket must satisfy 0 < lo < hi, got {bracket!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 3:
        raise ValueError(f"grid must be an integer ≥ 3, got {grid!r}")
    _check_float("T", T, allow_zero=False)
    hist = []
    errs = {}  # lr -> (loss_stderr, d_lr_stderr)

    def ev(lr):
        # a diverged run counts as loss +∞ with ∂ℒ/∂η_c = +∞: the optimum lies at a smaller η_c
        try:
            g = limit_loss_and_grad(X, Y, lr=lr, T=T, **kwargs)
            val = (lr, g.loss, g.d_lr)
            errs[lr] = (g.loss_stderr, g.d_lr_stderr)
        except DivergenceError:
            val = (lr, math.inf, math.inf)
            errs[lr] = (math.nan, math.nan)
        hist.append(val)
        return val

    def done(best, interior, curvature=math.nan):
        se_loss, se_d = errs[best[0]]
        lr_se = se_d / abs(curvature) if math.isfinite(curvature) and curvature != 0 else math.nan
        return OptimalLR(lr=best[0], loss=best[1], d_lr=best[2], interior=interior, history=np.asarray(hist),
                         loss_stderr=se_loss, d_lr_stderr=se_d, lr_stderr=lr_se)

    fn = limit_loss_fn(X, Y, **kwargs)
    rates = np.geomspace(lo, hi, grid)
    losses = np.array([float(fn(float(a), float(T))) for a in rates])
    losses = np.where(np.isfinite(losses), losses, np.inf)
    if not np.isfinite(losses).any():
        raise DivergenceError(f"optimal_lr: the limit diverges at every rate in {bracket}", step=None,
                              quantity="limit loss")
    j = int(np.argmin(losses))
    a_i, b_i = max(j - 1, 0), min(j + 1, grid - 1)
    ga, gb = ev(float(rates[a_i])), ev(float(rates[b_i]))
    if ga[2] >= 0 or gb[2] <= 0:
        # no sign change of ∂ℒ/∂η_c across the cell: the minimum is at the best evaluated end
        gj = ev(float(rates[j]))
        best = min((ga, gb, gj), key=lambda t: t[1])
        return done(best, 0 < j < grid - 1)
    a, b = math.log(rates[a_i]), math.log(rates[b_i])
    for _ in range(iterations):
        m = 0.5 * (a + b)
        g = ev(math.exp(m))
        if g[2] > 0:
            b = m
        else:
            a = m
    # the minimiser lies in [e^a, e^b]; report the (log-)midpoint of the final bracket
    final = ev(math.exp(0.5 * (a + b)))
    # mean curvature ∂²ℒ/∂η_c² over the grid cell (its ends bracket η_c*; same particles at both)
    curvature = (gb[2] - ga[2]) / (gb[0] - ga[0])
    return done(final, True, curvature)
