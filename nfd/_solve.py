"""``nfd.solve``: one entry point for every limit solver.

``method`` picks the family; each family documents its own extra keyword arguments and its
defaults differ where the models differ:

* ``"particles"`` (default): the NFD particle recursion of depth-μP ResNets
  (:func:`nfd.limits.solve_particles`).  Defaults: ``backward="exact"`` (the limit of the
  ordinary, coupled networks that :func:`nfd.simulate` builds by default; ``backward="gia"`` is
  the published NFD, the limit of decoupled networks), ``activation="relu"``, ``lr=0.1``,
  ``T=1.0``, ``frozen=()`` (all groups trained), ``dtype=float32``, ``block="pre"``;
  ``block="post_ms"`` is the mean-subtracted block of TP VI §6.3 (``backward="exact"`` only).
* ``"gamma_c"``: the Γ/C functional recursion of Tensor Programs VI for linear residual
  networks (:func:`nfd.limits.solve_gamma_c`).  Defaults: ``activation="identity"`` (the only
  one it solves), ``lr=1.0``, ``frozen=("input", "output")`` (the paper's setting), float64.
  With ``block="post_ms"``: Definition E.1 for the mean-subtracted nonlinear block, at depth
  ``depth=L`` or at L = ∞ with ``grid=N`` (:func:`nfd.limits.solve_gamma_c_nonlinear`,
  :func:`nfd.limits.solve_gamma_c_nonlinear_infinite`).
* ``"mean_ode"``: the Neural Mean ODE of ResNets with hidden width M
  (:func:`nfd.meanode.solve_mean_ode`).  Defaults: ``activation="tanh"``, MLP units, α = 1,
  σ_u = σ_v = √D, η_u = η_v = D (the setting of the paper's §2.4), full-batch GD.
"""

from __future__ import annotations

import difflib
import inspect

__all__ = ["solve", "METHODS", "accepted_keywords"]

METHODS = ("particles", "gamma_c", "mean_ode")


def _solvers(method):
    """The functions whose keywords ``method`` accepts; the first one is called."""
    if method == "particles":
        from .limits._nfd import particle_problem, solve_particles, solve_particles_network

        return solve_particles, solve_particles_network, particle_problem
    if method == "gamma_c":
        from .limits._gamma_c import solve_gamma_c

        return (solve_gamma_c,)
    from .meanode._solve import solve_mean_ode

    return (solve_mean_ode,)


def accepted_keywords(method: str) -> tuple[str, ...]:
    """The keyword arguments ``nfd.solve(X, Y, method=method, ...)`` accepts (sorted).

    Example:
        >>> "backward" in accepted_keywords("particles"), "backward" in accepted_keywords("gamma_c")
        (True, False)
    """
    keys = set()
    for fn in _solvers(method):
        for name, p in inspect.signature(fn).parameters.items():
            if p.kind is p.KEYWORD_ONLY and not name.startswith("_"):
                keys.add(name)
    return tuple(sorted(keys))


def _check_keywords(method, kwargs):
    accepted = accepted_keywords(method)
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"nfd.solve(method={method!r}) got an unknown keyword argument {key!r}.{hint} "
                             f"Accepted: {', '.join(accepted)}")


def solve(X, Y, *, method: str = "particles", **kwargs):
    """Solve the infinite-width limit of a training run on (X, Y).

    Args:
        X: (K, d) training inputs (one per SGD step for the NFD and Γ/C solvers; the whole
            training set, (n, D), for the Mean ODE).
        Y: (K,) targets ((n, D) for the Mean ODE).
        method: ``"particles"``, ``"gamma_c"`` or ``"mean_ode"``.
        **kwargs: passed to the chosen solver (see the module docstring for each method's
            defaults), e.g. for ``"particles"``: ``depth, particles, activation="relu", lr=0.1,
            T=1.0, backward="exact", frozen=(), seed=0``.  An unknown keyword is refused with a
            ``ValueError`` listing the accepted ones (:func:`accepted_keywords`).

    Returns:
        The solver's result object; every one has ``.outputs`` (f̂ per step).

    Example:
        >>> import numpy as np, nfd
        >>> X = np.random.default_rng(0).normal(size=(4, 2)); Y = X[:, 0]
        >>> res = nfd.solve(X, Y, depth=8, particles=2048, activation="tanh", lr=0.5)
        >>> res.outputs.shape, res.config["backward"]
        ((4,), 'exact')
    """
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"nfd.solve: method must be one of {METHODS}, got {method!r}.{hint}")
    block = kwargs.get("block")
    if method == "mean_ode" and block == "post_ms":
        raise ValueError(
            f"block: the mean-subtracted block 'post_ms' is modelled by method='gamma_c' "
            f"(Definition E.1) and method='particles' (exact backward), not by method={method!r}"
        )
    if method == "gamma_c" and "block" in kwargs:
        kwargs = dict(kwargs)
        block = kwargs.pop("block")
        if block == "post_ms":  # Definition E.1 (TP VI App. E): depth=L, or grid=N for L = ∞
            from .limits._gamma_c_nonlinear_dispatch import solve_gamma_c_ms

            return solve_gamma_c_ms(X, Y, **kwargs)
        if block not in ("pre", "post"):
            raise ValueError(
                f"block: method='gamma_c' models linear 'pre'/'post' blocks and the mean-subtracted "
                f"nonlinear block 'post_ms', got {block!r}"
            )
    _check_keywords(method, kwargs)
    return _solvers(method)[0](X, Y, **kwargs)
