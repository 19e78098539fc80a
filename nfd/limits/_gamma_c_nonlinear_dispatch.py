"""``nfd.solve(..., method="gamma_c", block="post_ms")``: depth L or L = ∞ (``grid``)."""

from __future__ import annotations

__all__ = ["solve_gamma_c_ms"]


def solve_gamma_c_ms(X, Y, *, depth=None, grid=None, **kwargs):
    """Definition E.1: ``depth=L`` runs the depth-L recursion, ``grid=N`` (no depth) the L = ∞
    grid solver; exactly one of them must be given."""
    if (depth is None) == (grid is None):
        raise ValueError(
            "depth/grid: give depth=L for the depth-L recursion or grid=N for the L = ∞ solver "
            f"(exactly one), got depth={depth!r}, grid={grid!r}"
        )
    if grid is not None:
        from ._gamma_c_nonlinear_infinite import solve_gamma_c_nonlinear_infinite

        return solve_gamma_c_nonlinear_infinite(X, Y, grid=grid, **kwargs)
    from ._gamma_c_nonlinear import solve_gamma_c_nonlinear

    return solve_gamma_c_nonlinear(X, Y, depth=depth, **kwargs)
