"""Finite-size error decomposition of a finite network's predictor around its N, L → ∞ limit
(depthwise-transfer paper, Appendix I, Eq. 106–110).

With ‖z‖² = mean over evaluation points of ⟨z²⟩ (⟨·⟩ = average over initialisations),

    ‖f_{N,L} − f_{∞,∞}‖² = ‖f_{N,L} − ⟨f_{N,L}⟩‖²         variance        ~ Σ_f/N
                         + ‖⟨f_{N,L}⟩ − f_{∞,∞}‖²          squared bias, which itself splits as
    ⟨f_{N,L}⟩ − f_{∞,∞} = (⟨f_{N,L}⟩ − f_{∞,L})  [mean-predictor width error, O(1/N)]
                         + (f_{∞,L} − f_{∞,∞})     [depth error at infinite width, O(1/L)].

(The first identity is exact; the paper's Eq. 106 is the triangle-inequality version.)  An
ensemble of E independent networks divides the variance term by E and leaves the bias, so the
ensemble error falls like 1/N² + 1/L² instead of 1/N.

Estimators over S seeds (outputs f_s(p), s = 1..S, at P points): variance = mean_p of the
unbiased sample variance; squared mean-predictor error = mean_p[(f̄_p − f_{∞,L,p})² − s²_p/S]
(unbiased: E(f̄ − μ)² = bias² + Var/S); standard errors by the delete-one jackknife over seeds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ErrorDecomposition", "error_decomposition", "PowerLawFit", "fit_power_law"]


@dataclasses.dataclass(frozen=True)
class ErrorDecomposition:
    """Squared-norm error terms of one (width, depth) configuration; ``*_se`` are jackknife
    standard errors over seeds (0 for the deterministic depth term).

    Attributes:
        variance: ‖f_{N,L} − ⟨f_{N,L}⟩‖².
        mean_bias_sq: ‖⟨f_{N,L}⟩ − f_{∞,L}‖² (unbiased; may come out slightly negative).
        depth_error_sq: ‖f_{∞,L} − f_{∞,∞}‖².
        bias_sq: ‖⟨f_{N,L}⟩ − f_{∞,∞}‖² (unbiased).
        total_sq: ‖f_{N,L} − f_{∞,∞}‖² (mean squared error of one network).
        seeds: S.  width, depth: labels passed through.
    """

    variance: float
    variance_se: float
    mean_bias_sq: float
    mean_bias_sq_se: float
    depth_error_sq: float
    bias_sq: float
    bias_sq_se: float
    total_sq: float
    total_sq_se: float
    seeds: int
    width: int | None = None
    depth: int | None = None

    def ensemble_error_sq(self, ensemble: int) -> float:
        """Expected ‖f̄_E − f_{∞,∞}‖² of the average of ``ensemble`` independent networks."""
        if isinstance(ensemble, bool) or not isinstance(ensemble, (int, np.integer)) or ensemble <= 0:
            raise ValueError(f"ensemble must be a positive integer, got {ensemble!r}")
        return self.variance / ensemble + self.bias_sq


def _terms(f, fL, fI):
    S = f.shape[0]
    m = f.mean(0)
    var = f.var(0, ddof=1)
    return np.array(
        [
            var.mean(),
            ((m - fL) ** 2 - var / S).mean(),
            ((m - fI) ** 2 - var / S).mean(),
            ((f - fI) ** 2).mean(),
        ]
    )


def _leave_one_out_terms(f, fL, fI):
    """_terms on every delete-one subsample at once, (S, 4), from running sums (O(S·P))."""
    S = f.shape[0]
    n = S - 1
    s1 = f.sum(0)
    s2 = (f**2).sum(0)
    m = (s1[None] - f) / n  # (S, P) leave-one-out means
    var = ((s2[None] - f**2) - n * m**2) / (n - 1)
    sqI = ((f - fI) ** 2).sum(0)
    return np.stack(
        [
            var.mean(1),
            ((m - fL) ** 2 - var / n).mean(1),
            ((m - fI) ** 2 - var / n).mean(1),
            ((sqI[None] - (f - fI) ** 2) / n).mean(1),
        ],
        axis=1,
    )


def error_decomposition(outputs, f_inf_L, f_inf_inf, *, width=None, depth=None) -> ErrorDecomposition:
    """Estimate the Appendix-I error terms from finite-network outputs.

    Args:
        outputs: (S, P) outputs of S independently initialised networks at P points (or (S,)).
        f_inf_L: (P,) the infinite-width limit at the same depth L.
        f_inf_inf: (P,) the infinite-width-and-depth limit.
        width, depth: labels stored in the result.

    Returns:
        :class:`ErrorDecomposition`.

    Example:
        >>> import numpy as np
        >>> f = 1.0 + 0.1 * np.random.default_rng(0).normal(size=(400, 3))
        >>> e = error_decomposition(f, np.ones(3), np.ones(3) * 1.01)
        >>> round(e.variance, 3), round(e.depth_error_sq, 6)
        (0.01, 0.0001)
    """
    f = np.asarray(outputs, np.float64)
    if f.ndim == 1:
        f = f[:, None]
    if f.ndim != 2 or f.shape[0] < 3:
        raise ValueError(f"outputs must have shape (seeds ≥ 3, P), got {np.shape(outputs)}")
    if not np.all(np.isfinite(f)):
        raise ValueError("outputs contain NaN or infinite values")
    P = f.shape[1]
    fL = np.broadcast_to(np.asarray(f_inf_L, np.float64), (P,))
    fI = np.broadcast_to(np.asarray(f_inf_inf, np.float64), (P,))
    if not (np.all(np.isfinite(fL)) and np.all(np.isfinite(fI))):
        raise ValueError("f_inf_L and f_inf_inf must be finite")
    S = f.shape[0]
    est = _terms(f, fL, fI)
    jack = _leave_one_out_terms(f, fL, fI)
    se = np.sqrt((S - 1) / S * ((jack - jack.mean(0)) ** 2).sum(0))
    return ErrorDecomposition(
        variance=float(est[0]),
        variance_se=float(se[0]),
        mean_bias_sq=float(est[1]),
        mean_bias_sq_se=float(se[1]),
        depth_error_sq=float(((fL - fI) ** 2).mean()),
        bias_sq=float(est[2]),
        bias_sq_se=float(se[2]),
        total_sq=float(est[3]),
        total_sq_se=float(se[3]),
        seeds=S,
        width=width,
        depth=depth,
    )


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """y ≈ A x^slope fitted in log-log space; ``slope_se`` from the weighted least squares."""

    slope: float
    slope_se: float
    prefactor: float


def fit_power_law(x, y, y_se=None) -> PowerLawFit:
    """Fit log y = log A + slope · log x (weights 1/σ² with σ = y_se/y when given).

    Example:
        >>> fit = fit_power_law([1, 2, 4, 8], [1.0, 0.25, 0.0625, 0.015625])
        >>> round(fit.slope, 6)
        -2.0
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError("x and y must be 1-D arrays of the same length ≥ 2")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for a log-log fit")
    lx, ly = np.log(x), np.log(y)
    if y_se is None:
        w = np.ones_like(ly)
    else:
        s = np.asarray(y_se, np.float64) / y
        w = 1.0 / np.maximum(s, 1e-12) ** 2
    Aw = np.stack([np.ones_like(lx), lx], 1) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(Aw, ly * np.sqrt(w), rcond=None)
    resid = ly - (coef[0] + coef[1] * lx)
    dof = max(x.size - 2, 1)
    cov = np.linalg.inv(Aw.T @ Aw)
    if y_se is None:
        cov = cov * (resid @ resid) / dof
    else:
        # Scale by the reduced χ² when it exceeds 1 (the model or the σ's are off).
        chi2 = (resid**2 * w).sum() / dof
        cov = cov * max(chi2, 1.0)
    return PowerLawFit(slope=float(coef[1]), slope_se=float(np.sqrt(cov[1, 1])), prefactor=float(np.exp(coef[0])))
