"""The L = ∞ limit of the NFD particle solver: Richardson extrapolation over depths.

``nfd.solve(X, Y, depth=None, ...)`` (the package's convention for an infinite size, as
``width=None``) solves the particle recursion at depths L, 2L (and 4L) that share one Brownian
path (``noise_depth`` = the finest depth: the normals of a coarse layer are the scaled sums of
those of the fine layers it spans) and the same initial weights (the same seed and replicates).
The Euler–Maruyama weak error expands as f_L = f_∞ + c₁/L + c₂/L² + …, so

    2 levels:  f_∞ ≈ 2 f_{2L} − f_L                      (error O(1/L²))
    3 levels:  f_∞ ≈ (8 f_{4L} − 6 f_{2L} + f_L) / 3     (error O(1/L³))

The combination is formed per replicate system (the levels of replicate r share its particles
and path), so ``outputs_stderr``, the spread of the extrapolated replicate values / √R, includes
the noise the extrapolation amplifies.  ``outputs_bias`` estimates what is left of the depth
bias: with 3 levels |A₃ − A₂|, the 3-level value minus the finer 2-level one (the O(1/L²) error
of A₂, an upper estimate of A₃'s); with 2 levels |f_{2L} − f_L|, the first-order correction
that was applied (an upper estimate while L is in the asymptotic range).

Example:
    >>> import numpy as np, nfd
    >>> X = np.random.default_rng(0).normal(size=(3, 2)); Y = X[:, 0]
    >>> lim = nfd.solve(X, Y, depth=None, richardson_depths=(2, 4), particles=1024, activation="tanh", lr=0.5)
    >>> lim.outputs.shape, lim.config["depths"]
    ((3,), (2, 4))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _driver
from .._errors import MemoryEstimateError
from .._model import ResNet
from .._results import Status, result
from .._validate import check_inputs_2d

__all__ = ["ParticleLimit", "solve_particles_limit", "DEFAULT_RICHARDSON_DEPTHS", "richardson_weights"]

# The default depths of ``depth=None``: cost 1 + 2 = 3 times a depth-8 solve.
DEFAULT_RICHARDSON_DEPTHS = (8, 16)


def richardson_weights(levels: int) -> tuple[float, ...]:
    """Weights w_i of Σ w_i f_{2^i L} that cancel the first ``levels`` − 1 powers of 1/L.

    Example:
        >>> richardson_weights(2), richardson_weights(3)
        ((-1.0, 2.0), (0.3333333333333333, -2.0, 2.6666666666666665))
    """
    if levels == 2:
        return (-1.0, 2.0)
    if levels == 3:
        return (1.0 / 3.0, -2.0, 8.0 / 3.0)
    raise ValueError(f"richardson_depths: 2 or 3 levels are supported, got {levels}")


@result
class ParticleLimit:
    """What ``nfd.solve(..., depth=None)`` returns: the particle limit extrapolated to L = ∞.

    Attributes:
        outputs: (K,) the extrapolated f̂^(k) (mean over the replicate systems).
        outputs_stderr: (K,) its standard error: std (ddof=1) of the replicates' extrapolated
            values / √R (NaN for one replicate).
        outputs_bias: (K,) estimated remaining depth bias (module docstring).
        losses, losses_stderr: (K,) the extrapolated per-sample losses (each replicate's losses
            extrapolated) and their standard error.
        test_outputs, test_outputs_stderr, test_outputs_bias: (steps, N) the same for ``X_test``, or ``None``.
        sigma, sigma_stderr: (L₀, K, K) Σ at the layer times (ℓ−1)/L₀·T of the coarsest depth L₀,
            extrapolated, and its standard error.
        theta, theta_stderr: (L₀, K, K) Θ at the layer times ℓ/L₀·T, likewise.
        level_outputs: (levels, K) the outputs at each depth (``config["depths"]``).
        replicate_outputs: (R, K) each replicate's extrapolated outputs (for :func:`nfd.paired_difference`).
        replicate_losses: (R, K); replicate_test_outputs: (R, steps, N) or ``None``.
        network: the :class:`~nfd.ResNet` of the coarsest depth (width ``None``).
        config: the particle solve's configuration plus ``depths`` and ``extrapolation``.
        status: :class:`~nfd.Status` of the levels (dropped pivots summed; the first divergence).
    """

    outputs: np.ndarray
    outputs_stderr: np.ndarray
    outputs_bias: np.ndarray
    losses: np.ndarray
    losses_stderr: np.ndarray
    test_outputs: np.ndarray | None
    test_outputs_stderr: np.ndarray | None
    test_outputs_bias: np.ndarray | None
    sigma: np.ndarray
    sigma_stderr: np.ndarray
    theta: np.ndarray
    theta_stderr: np.ndarray
    level_outputs: np.ndarray
    replicate_outputs: np.ndarray
    replicate_losses: np.ndarray
    replicate_test_outputs: np.ndarray | None
    network: ResNet
    config: dict
    status: Status = Status()


def check_richardson_depths(depths) -> tuple[int, ...]:
    """``depths`` as a tuple of 2 or 3 positive integers, each twice the previous."""
    try:
        d = tuple(depths)
    except TypeError:
        d = None
    ok = (d is not None and len(d) in (2, 3)
          and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1 for x in d)
          and all(d[i + 1] == 2 * d[i] for i in range(len(d) - 1)))
    if not ok:
        raise ValueError(f"richardson_depths must be 2 or 3 positive integers, each twice the previous "
                         f"(e.g. (8, 16) or (8, 16, 32)), got {depths!r}")
    return tuple(int(x) for x in d)


def _combine(w, levels):
    return sum(wi * np.asarray(a, np.float64) for wi, a in zip(w, levels))


def _mean_se(a):
    R = a.shape[0]
    mean = a.mean(axis=0)
    se = a.std(axis=0, ddof=1) / math.sqrt(R) if R > 1 else np.full_like(mean, np.nan)
    return mean, se


def _bias(levels):
    """Remaining-bias estimate from per-replicate level values (list of (R, ...))."""
    levels = [np.asarray(a, np.float64) for a in levels]
    if len(levels) == 2:
        return np.abs((levels[1] - levels[0]).mean(axis=0))
    a2 = (2 * levels[2] - levels[1]).mean(axis=0)
    a3 = _combine(richardson_weights(3), levels).mean(axis=0)
    return np.abs(a3 - a2)


def solve_particles_limit(X, Y, *, richardson_depths=None, activation: Any = "relu", lr: float = 0.1, T: float = 1.0,
                          backward: str | None = None, frozen: tuple[str, ...] = (), seed: int = 0, loss: str = "mse",
                          noise_depth: int | None = None, checkpoint=None, checkpoint_every=None,
                          progress: bool = False, on_divergence: str = "raise", **kwargs) -> ParticleLimit:
    """The particle limit at L = ∞ by Richardson extrapolation (module docstring).

    Every depth's problem is validated and its memory checked before any of them runs; the
    depths share the seed, the replicate keys and one Brownian path (``noise_depth``, default the
    finest depth; a given one must be a multiple of it).  Checkpoints are not supported here.
    """
    from ._nfd import DEFAULT_BACKWARD, particle_problem

    depths = check_richardson_depths(DEFAULT_RICHARDSON_DEPTHS if richardson_depths is None else richardson_depths)
    finest = depths[-1]
    if noise_depth is None:
        noise_depth = finest
    elif (not isinstance(noise_depth, (int, np.integer)) or isinstance(noise_depth, bool) or noise_depth < finest
          or noise_depth % finest):
        raise ValueError(f"noise_depth must be a multiple of the finest extrapolation depth {finest} "
                         f"(richardson_depths={depths}), got {noise_depth!r}")
    if checkpoint is not None or checkpoint_every is not None:
        raise ValueError("checkpoint: depth=None (Richardson extrapolation over several depths) does not support "
                         "checkpoints; solve each depth with noise_depth= and a checkpoint instead")
    if backward is None:
        backward = DEFAULT_BACKWARD
    X_arr = check_inputs_2d(X)
    probs = []
    for L in reversed(depths):  # the finest (largest) first: a refused memory check comes before any work
        net = ResNet(depth=L, input_dim=X_arr.shape[1], width=None, activation=activation, T=T, block="pre",
                     parameterization="depth_mup", lr=lr, frozen=frozen, loss=loss)
        try:
            probs.append(particle_problem(net, X, Y, backward=backward, seed=seed, noise_depth=noise_depth, **kwargs))
        except MemoryEstimateError as e:
            raise MemoryEstimateError(
                f"depth=None: the Richardson extrapolation solves depths richardson_depths={depths}, and depth {L} "
                f"is refused: {e}", estimate_bytes=e.estimate_bytes, limit_bytes=e.limit_bytes) from None
    probs = probs[::-1]
    sols = [_driver.run(p, progress=progress, on_divergence=on_divergence) for p in probs]

    w = richardson_weights(len(depths))
    rep_f = [s.replicate_outputs for s in sols]
    rf = _combine(w, rep_f)
    rl = _combine(w, [s.replicate_losses for s in sols])
    f, f_se = _mean_se(rf)
    lo, lo_se = _mean_se(rl)
    ft = ft_se = ft_b = rt = None
    if sols[0].replicate_test_outputs is not None:
        rt_levels = [s.replicate_test_outputs for s in sols]
        rt = _combine(w, rt_levels)
        ft, ft_se = _mean_se(rt)
        ft_b = _bias(rt_levels)
    L0 = depths[0]
    # kernels at the coarse layer times: Σ_{ℓ-1} at (ℓ-1)/L0 is layer m(ℓ-1) of depth m·L0; Θ_ℓ at ℓ/L0 is m·ℓ
    sig_levels = [s.replicate_sigma[:, :: L // L0] for s, L in zip(sols, depths)]
    the_levels = [s.replicate_theta[:, L // L0 - 1:: L // L0] for s, L in zip(sols, depths)]
    sig, sig_se = _mean_se(_combine(w, sig_levels))
    the, the_se = _mean_se(_combine(w, the_levels))

    dropped = tuple(int(sum(s.status.dropped_pivots[i] for s in sols)) for i in range(2))
    div = next((s.status for s in sols if s.status.diverged), None)
    sing = [s.status.singular_step for s in sols if s.status.singular_step is not None]
    status = Status(divergence_step=None if div is None else div.divergence_step,
                    divergence_index=None if div is None else div.divergence_index,
                    dropped_pivots=dropped, singular_step=min(sing) if sing else None)
    config = dict(sols[-1].config)
    config.update(depths=depths, extrapolation=f"richardson-{len(depths)}", noise_depth=int(noise_depth))
    return ParticleLimit(
        outputs=f, outputs_stderr=f_se, outputs_bias=_bias(rep_f), losses=lo, losses_stderr=lo_se,
        test_outputs=ft, test_outputs_stderr=ft_se, test_outputs_bias=ft_b, sigma=sig, sigma_stderr=sig_se,
        theta=the, theta_stderr=the_se, level_outputs=np.stack([s.outputs for s in sols]),
        replicate_outputs=rf, replicate_losses=rl, replicate_test_outputs=rt, network=probs[0].network,
        config=config, status=status,
    )
