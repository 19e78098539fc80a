"""Plot helpers for the common figures (matplotlib).

* :func:`plot_rates`: an error against width, depth or particles on log-log axes, with the
  fitted slope (weighted least squares in log-log space, ± its standard error) in the legend.
* :func:`plot_kernel`: a kernel matrix (NNGP, Σ, Θ, feature covariance) as a heat map.
* :func:`plot_particles`: a histogram of particle values h_ℓ or g_ℓ (limit) or of neuron
  values (finite network), with an optional Gaussian of the same mean and variance.
* :func:`plot_training`: training curves (outputs or losses per SGD step) of finite networks
  (mean ± 2 standard errors over seeds) and of limits (a line).
* :func:`plot_result`: a default figure for any result object (used by the ``nfd`` command).

Every function takes an optional ``ax`` and returns it (creating a figure when ``ax`` is None).

Example:
    >>> import matplotlib; matplotlib.use("Agg")
    >>> from nfd.plotting import plot_rates
    >>> ax, fit = plot_rates([64, 128, 256], [0.1, 0.05, 0.025], label="error")
    >>> round(fit.slope, 3)
    -1.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["plot_rates", "plot_kernel", "plot_particles", "plot_training", "plot_result"]


def _ax(ax, figsize=(5, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _null_formatter():
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def plot_rates(x, y, y_err=None, *, ax=None, label: str = "", fit: bool = True, xlabel: str = "",
               ylabel: str = "", reference_slope: float | None = None, **kw):
    """Log-log plot of y against x with error bars and a fitted power law.

    Args:
        x: (m,) positive abscissae (width, depth, particles, ...).
        y: (m,) positive values (errors, distances).
        y_err: optional (m,) standard errors of y (weights of the fit, 2·SE error bars).
        ax: axes to draw on.
        label: legend label; the fitted slope is appended.
        fit: fit and draw y ≈ A x^slope.
        xlabel, ylabel: axis labels.
        reference_slope: also draw a dotted line of this slope through the first point.

    Returns:
        ``(ax, fit)`` where ``fit`` is a :class:`nfd.kernels.PowerLawFit`-like object with
        ``slope``, ``slope_se``, ``prefactor`` (``None`` when ``fit=False``).
    """
    from .kernels._error_decomposition import fit_power_law

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 1:
        raise ValueError(f"x and y must be 1-D arrays of the same length, got shapes {x.shape} and {y.shape}")
    if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise ValueError("x and y must be positive and finite for a log-log plot")
    if y_err is not None:
        y_err = np.asarray(y_err, np.float64)
        if y_err.shape != y.shape:
            raise ValueError(f"y_err must have the shape of y {y.shape}, got {y_err.shape}")
    ax = _ax(ax)
    result = None
    lab = label
    if fit and x.size >= 2:
        result = fit_power_law(x, y, y_err)
        se = f" ± {result.slope_se:.2f}" if x.size > 2 or y_err is not None else " (2 points)"
        lab = f"{label} slope {result.slope:.2f}{se}".strip()
    if y_err is not None:
        lower = np.minimum(2 * y_err, 0.999 * y)  # keep the bar on the positive axis
        line = ax.errorbar(x, y, yerr=[lower, 2 * y_err], fmt="o", capsize=3, label=lab, **kw)
        color = line[0].get_color()
    else:
        (line,) = ax.plot(x, y, "o", label=lab, **kw)
        color = line.get_color()
    if result is not None:
        xs = np.geomspace(x.min(), x.max(), 50)
        ax.plot(xs, result.prefactor * xs**result.slope, "-", color=color, alpha=0.7)
    if reference_slope is not None:
        xs = np.geomspace(x.min(), x.max(), 50)
        ax.plot(xs, y[0] * (xs / x[0]) ** reference_slope, ":", color="gray",
                label=f"slope {reference_slope:g} (reference)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{v:g}" for v in x])  # label the measured abscissae, not powers of ten
    ax.xaxis.set_minor_formatter(_null_formatter())
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax, result


def plot_kernel(K, *, ax=None, title: str = "", cmap: str = "viridis", colorbar: bool = True, **kw):
    """Heat map of a kernel matrix K (N, N2).

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import numpy as np
        >>> ax = plot_kernel(np.eye(3), title="identity")
    """
    K = np.asarray(K, np.float64)
    if K.ndim != 2:
        raise ValueError(f"K must be a 2-D matrix, got shape {K.shape}")
    ax = _ax(ax)
    im = ax.imshow(K, cmap=cmap, interpolation="nearest", **kw)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    return ax


def plot_particles(values, *, ax=None, bins: int = 60, label: str = "", gaussian: bool = True, **kw):
    """Density histogram of particle (or neuron) values, optionally with the Gaussian of the
    same mean and variance (the law of h_ℓ at initialisation is Gaussian; training makes it
    non-Gaussian in the feature-learning limit).

    Args:
        values: any array; it is flattened.
        bins: number of histogram bins.
        label: legend label.
        gaussian: overlay N(mean, var).
    """
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2:
        raise ValueError("values must contain at least two finite numbers")
    ax = _ax(ax)
    ax.hist(v, bins=bins, density=True, alpha=0.5, label=label or None, **kw)
    if gaussian:
        m, s = float(v.mean()), float(v.std())
        if s > 0:
            xs = np.linspace(v.min(), v.max(), 200)
            ax.plot(xs, np.exp(-0.5 * ((xs - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)), "k--", lw=1,
                    label=f"N({m:.2f}, {s:.2f}²)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return ax


def _curve(res, what):
    """(mean, 2·SE or None) of outputs/losses per step for any result object."""
    arr = getattr(res, what, None)
    if arr is None:
        raise ValueError(f"result of type {type(res).__name__} has no {what!r}")
    arr = np.asarray(arr, np.float64)
    if type(res).__name__ == "SimulationResult":
        s = arr.shape[0]
        se = arr.std(axis=0, ddof=1) / math.sqrt(s) if s > 1 else None
        return arr.mean(axis=0), (None if se is None else 2 * se)
    if arr.ndim > 1:  # e.g. Mean-ODE outputs (K+1, n, D): use the losses instead
        raise ValueError(f"{what!r} of {type(res).__name__} is not one number per step; use what='losses'")
    return arr, None


def plot_training(*results, labels=None, what: str = "outputs", targets=None, ax=None, logy: bool = False):
    """Outputs (or losses) per SGD step for several results on one axis.

    Finite-network results (:class:`~nfd.SimulationResult`) are drawn as mean ± 2 standard
    errors over seeds; limits as lines.

    Args:
        *results: result objects with ``.outputs`` / ``.losses``.
        labels: one label per result.
        what: ``"outputs"`` or ``"losses"``.
        targets: optional (K,) targets drawn as crosses.
        logy: logarithmic y axis (for losses).
    """
    if what not in ("outputs", "losses"):
        raise ValueError(f"what must be 'outputs' or 'losses', got {what!r}")
    if not results:
        raise ValueError("plot_training needs at least one result")
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"labels has {len(labels)} entries for {len(results)} results")
    ax = _ax(ax, figsize=(6, 4))
    for i, r in enumerate(results):
        mean, band = _curve(r, what)
        k = np.arange(mean.shape[0])
        lab = labels[i] if labels is not None else type(r).__name__
        if band is None:
            ax.plot(k, mean, "-", lw=2, label=lab)
        else:
            ax.errorbar(k, mean, yerr=band, fmt="o", ms=3, capsize=2, label=f"{lab} (mean ± 2 SE)")
    if targets is not None:
        t = np.asarray(targets, np.float64)
        ax.plot(np.arange(t.shape[0]), t, "x", color="gray", label="target")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("SGD step k")
    ax.set_ylabel("f^(k) before update k" if what == "outputs" else "loss")
    ax.legend(fontsize=8)
    return ax


def plot_result(result: Any, *, path=None, title: str = ""):
    """A default figure for a result object: its training curve and, where present, the last
    layer's kernel (Σ of a particle solution, the output kernel of a Γ/C solution).

    Args:
        result: any nfd result with ``.outputs`` or ``.losses``.
        path: save the figure here (PNG, PDF, ...) when given.
        title: figure title.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    kern = None
    for name in ("sigma", "feature_cov"):
        k = getattr(result, name, None)
        if k is not None:
            kern = (name, np.asarray(k)[-1])
            break
    what = "outputs"
    if np.asarray(getattr(result, "outputs", np.zeros((1, 1, 1)))).ndim > (2 if type(result).__name__ == "SimulationResult" else 1):
        what = "losses"
    ncol = 2 if kern is not None else 1
    fig, axes = plt.subplots(1, ncol, figsize=(5.5 * ncol, 4))
    axes = np.atleast_1d(axes)
    plot_training(result, labels=[type(result).__name__], what=what, ax=axes[0], logy=what == "losses")
    if kern is not None:
        plot_kernel(kern[1], ax=axes[1], title=f"{kern[0]} (last layer), samples × samples")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
