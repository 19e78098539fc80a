"""``nfd.solve``: one entry point for every limit solver.

``method`` picks the family; each family documents its own extra keyword arguments:

* ``"particles"`` (default): the NFD particle recursion of depth-μP ResNets
  (:func:`nfd.limits.solve_particles`), ``backward="gia"`` or ``"exact"``.
* ``"gamma_c"``: the Γ/C functional recursion of Tensor Programs VI for linear residual
  networks (:func:`nfd.limits.solve_gamma_c`); with ``block="post_ms"`` Definition E.1 for the
  mean-subtracted nonlinear block, at depth ``depth=L`` or at L = ∞ with ``grid=N``
  (:func:`nfd.limits.solve_gamma_c_nonlinear`, :func:`nfd.limits.solve_gamma_c_nonlinear_infinite`).
* ``"mean_ode"``: the Neural Mean ODE of ResNets with hidden width M
  (:func:`nfd.meanode.solve_mean_ode`).
"""

from __future__ import annotations

__all__ = ["solve", "METHODS"]

METHODS = ("particles", "gamma_c", "mean_ode")


def solve(X, Y, *, method: str = "particles", **kwargs):
    """Solve the infinite-width limit of a training run on (X, Y).

    Args:
        X: (K, d) training inputs (one per SGD step for the NFD and Γ/C solvers).
        Y: (K,) targets.
        method: ``"particles"``, ``"gamma_c"`` or ``"mean_ode"``.
        **kwargs: passed to the chosen solver, e.g. for ``"particles"``:
            ``depth, particles, activation, lr, T=1.0, backward="gia", frozen=(), seed=0``.

    Returns:
        The solver's result object; every one has ``.outputs`` (f̂ per step).

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(4, 2)); Y = X[:, 0]
        >>> res = nfd.solve(X, Y, depth=8, particles=2048, activation="tanh", lr=0.5)
        >>> res.outputs.shape
        (4,)
    """
    if method in ("particles", "mean_ode") and kwargs.get("block") == "post_ms":
        raise ValueError(
            f"block: the mean-subtracted block 'post_ms' is modelled by method='gamma_c' "
            f"(Definition E.1), not by method={method!r}"
        )
    if method == "particles":
        from .limits._nfd import solve_particles

        return solve_particles(X, Y, **kwargs)
    if method == "gamma_c":
        block = kwargs.pop("block", "pre")
        if block == "post_ms":  # Definition E.1 (TP VI App. E): depth=L, or grid=N for L = ∞
            from .limits._gamma_c_nonlinear_dispatch import solve_gamma_c_ms

            return solve_gamma_c_ms(X, Y, **kwargs)
        if block not in ("pre", "post"):
            raise ValueError(
                f"block: method='gamma_c' models linear 'pre'/'post' blocks and the mean-subtracted "
                f"nonlinear block 'post_ms', got {block!r}"
            )
        from .limits._gamma_c import solve_gamma_c

        return solve_gamma_c(X, Y, **kwargs)
    if method == "mean_ode":
        from .meanode._solve import solve_mean_ode

        return solve_mean_ode(X, Y, **kwargs)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
