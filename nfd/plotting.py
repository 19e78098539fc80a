"""Plot helpers and the one figure style of nfd (matplotlib).

Every figure of the examples, the benchmarks and the `nfd` command is drawn with these
helpers, so they share one style:

* log axes are labelled at the data's own values (depths 2, 8, 32; widths 32 … 1024) or, for
  values such as errors, at round numbers inside the data's range (0.02, 0.03, 0.04), never
  as `3×10¹`; labels that would overlap are thinned when the figure is saved;
* every estimated point has an error bar (± 2 standard errors);
* every fitted slope is shown with its 95% interval next to the exponent the theory predicts,
  drawn as a dotted reference line;
* heat maps clip their colour scale to robust percentiles (1–99 by default) and have a
  labelled colour bar.

Functions:

* `plot_rates`: an error against width, depth or particles on log-log axes, with the
  weighted least-squares slope and its 95% interval.
* `plot_slope_fit`: the same drawing from a fit that was computed elsewhere (the
  benchmarks' JSON `fits` entries: `x`, `y`, `yerr`, `slope`, `slope_ci95`,
  `intercept`).
* `plot_kernel`: a kernel matrix (NNGP, Σ, Θ, feature covariance) as a heat map.
* `plot_particles`: a histogram of particle or neuron values.
* `plot_training`: outputs or losses per SGD step of finite networks and of limits.
* `plot_result`: a default figure for any result object (used by `nfd solve`).
* `log_axis`, `savefig`, `check_figure`: the axis style, saving with
  tick thinning, and the checks the tests apply to every figure.

Every `plot_*` function takes an optional `ax` and returns it (creating a figure when
`ax` is None).

Example:
    >>> import matplotlib; matplotlib.use("Agg")
    >>> from nfd.plotting import plot_rates
    >>> ax, fit = plot_rates([64, 128, 256], [0.1, 0.05, 0.025], label="error", expected=-1.0)
    >>> round(fit.slope, 3)
    -1.0
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

__all__ = ["plot_rates", "plot_slope_fit", "plot_kernel", "plot_particles", "plot_training", "plot_result",
           "log_axis", "log_log", "savefig", "check_figure", "describe", "RateFit", "fit_rate", "format_number"]


def _ax(ax, figsize=(5, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


# ---------------------------------------------------------------------------------------------
# axis style
# ---------------------------------------------------------------------------------------------
def format_number(v: float, digits: int = 3) -> str:
    """A short label for a tick value: `32`, `0.02`, `2.5e-05` (no trailing zeros)."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    a = abs(v)
    if a < 1e6 and float(v).is_integer():
        return str(int(v))
    if 1e-3 <= a < 1e5:
        s = f"{v:.{digits}g}"
        return s
    m, e = f"{v:.{max(digits - 1, 0)}e}".split("e")
    m = m.rstrip("0").rstrip(".")
    return f"{m}e{int(e)}"


def _nice_log_ticks(vmin: float, vmax: float) -> list[float]:
    """Round numbers inside [vmin, vmax] for a log axis: 1-2-5 per decade, 1…9 when fewer
    than three of those fall inside, evenly spaced round numbers when even that gives fewer than two."""
    if not (np.isfinite(vmin) and np.isfinite(vmax)) or vmin <= 0 or vmax <= vmin:
        return []
    lo, hi = math.floor(math.log10(vmin)), math.ceil(math.log10(vmax))
    for subs in ((1.0,), (1.0, 2.0, 5.0), tuple(range(1, 10))):
        t = [s * 10.0**k for k in range(lo, hi + 1) for s in subs]
        t = [v for v in t if vmin * (1 - 1e-9) <= v <= vmax * (1 + 1e-9)]
        if len(t) >= 3 or (subs == tuple(range(1, 10)) and len(t) >= 2):
            if len(t) > 12 and subs != (1.0,):
                continue
            return t
    # less than one step of 1…9 inside (a narrow range): evenly spaced round numbers
    from matplotlib.ticker import MaxNLocator

    t = [float(v) for v in MaxNLocator(4, steps=[1, 2, 2.5, 5, 10]).tick_values(vmin, vmax)]
    return [v for v in t if v > 0 and vmin * (1 - 1e-9) <= v <= vmax * (1 + 1e-9)]


def _make_locator(values):
    from matplotlib.ticker import FixedLocator, Locator

    if values is not None:
        return FixedLocator(values)

    class _NiceLogLocator(Locator):
        def __call__(self):
            vmin, vmax = sorted(self.axis.get_view_interval())
            return _nice_log_ticks(vmin, vmax)

        def tick_values(self, vmin, vmax):
            return _nice_log_ticks(*sorted((vmin, vmax)))

    return _NiceLogLocator()


def log_axis(ax, axis: str = "x", values=None, *, max_ticks: int = 9):
    """Make `ax`'s `axis` ("x" or "y") logarithmic with plain-number labels.

    Args:
        ax: the axes.
        axis: `"x"` or `"y"`.
        values: the data's own values (depths, widths): the axis is labelled exactly there
            (thinned to at most `max_ticks`, keeping the first and the last). Without it,
            round numbers inside the axis range are labelled (1-2-5, or 1…9 per decade).
        max_ticks: the most labelled ticks.

    Returns:
        `ax`.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    getattr(ax, f"set_{axis}scale")("log")
    a = ax.xaxis if axis == "x" else ax.yaxis
    ticks = None
    if values is not None:
        v = np.unique(np.asarray(values, np.float64).ravel())
        v = v[np.isfinite(v) & (v > 0)]
        if v.size > max_ticks:  # keep the ends, thin evenly in between
            idx = np.unique(np.round(np.linspace(0, v.size - 1, max_ticks)).astype(int))
            v = v[idx]
        ticks = v.tolist() if v.size >= 2 else None  # one value: round numbers around it
    a.set_major_locator(_make_locator(ticks))
    a.set_major_formatter(FuncFormatter(lambda x, pos: format_number(x)))
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())
    return ax


def log_log(ax, x_values=None, *, max_ticks: int = 9):
    """Both axes logarithmic in the nfd style: x labelled at `x_values` (default: every positive
    abscissa drawn on `ax`, thinned to `max_ticks`), y at round numbers. Returns `ax`."""
    if x_values is None:
        xs = [np.asarray(ln.get_xdata(), np.float64).ravel() for ln in ax.lines]
        xs += [np.asarray(c.get_offsets(), np.float64).reshape(-1, 2)[:, 0] for c in ax.collections
               if np.asarray(c.get_offsets()).size]
        x_values = np.concatenate(xs) if xs else None
        if x_values is not None and np.unique(x_values[np.isfinite(x_values) & (x_values > 0)]).size > 3 * max_ticks:
            x_values = None  # a continuous curve: round numbers instead
    log_axis(ax, "x", x_values, max_ticks=max_ticks)
    log_axis(ax, "y")
    return ax


def _overlaps(b1, b2, pad: float = 1.0) -> bool:
    return not (b1.x1 + pad <= b2.x0 or b2.x1 + pad <= b1.x0 or b1.y1 + pad <= b2.y0 or b2.y1 + pad <= b1.y0)


def _visible_ticklabels(axis, renderer):
    """(location, text, bbox) of the major tick labels drawn inside the view."""
    out = []
    lo, hi = sorted(axis.get_view_interval())
    for tick in axis.get_major_ticks():
        loc = tick.get_loc()
        if loc is None or not (lo - 1e-12 * abs(lo) <= loc <= hi + 1e-12 * abs(hi)):
            continue
        for lab in (tick.label1, tick.label2):
            if lab.get_visible() and lab.get_text().strip():
                out.append((loc, lab.get_text(), lab.get_window_extent(renderer)))
    return out


def _thin_ticks(fig) -> None:
    """Drop major ticks whose labels would overlap (keeping the first and the last)."""
    from matplotlib.ticker import FixedLocator

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labs = _visible_ticklabels(axis, renderer)
            if len(labs) < 3:
                continue
            labs.sort(key=lambda t: t[0])
            keep = [labs[0]]
            for item in labs[1:-1]:
                if not _overlaps(keep[-1][2], item[2], pad=2.0) and not _overlaps(item[2], labs[-1][2], pad=2.0):
                    keep.append(item)
            keep.append(labs[-1])
            if len(keep) < len(labs):
                fmt = axis.get_major_formatter()
                axis.set_major_locator(FixedLocator([k[0] for k in keep]))
                axis.set_major_formatter(fmt)


def savefig(fig, path, *, dpi: int = 120, tight: bool = True) -> str:
    """Lay out `fig`, thin overlapping tick labels and write it to `path`.

    Returns:
        `str(path)`.
    """
    from pathlib import Path

    if tight:
        fig.tight_layout()
    _thin_ticks(fig)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return str(path)


# ---------------------------------------------------------------------------------------------
# rates
# ---------------------------------------------------------------------------------------------
class RateFit(NamedTuple):
    """y ≈ prefactor · x^slope; `slope_ci95` is the 95% interval (None with 2 points and no
    standard errors)."""

    slope: float
    slope_se: float
    slope_ci95: tuple | None
    prefactor: float


def _slope_label(slope, ci) -> str:
    if slope is None:
        return "no fit"
    if ci is None or ci[0] is None:
        return f"slope {slope:.2f} (2 points, no interval)"
    return f"slope {slope:.2f} [95% CI {ci[0]:.2f}, {ci[1]:.2f}]"


def _exponent_label(p: float) -> str:
    fr = {-1.0: "-1", -0.5: "-1/2", 0.0: "0", 0.5: "1/2", 1.0: "1", -2.0: "-2", -1.5: "-3/2", 0.25: "1/4",
          -0.25: "-1/4"}
    return fr.get(float(p), f"{p:g}")


def _draw_points(ax, x, y, yerr, label, **kw):
    # the y range the data need: the points and their upper bars; lower bars that reach below a
    # quarter of the point (consistent with zero on a log axis) run off the bottom edge
    lo = y if yerr is None else np.maximum(y - 2 * np.asarray(yerr, np.float64), y / 4)
    hi = y if yerr is None else y + 2 * np.asarray(yerr, np.float64)
    prev = getattr(ax, "_nfd_yrange", (np.inf, -np.inf))
    ax._nfd_yrange = (min(prev[0], float(np.min(lo))), max(prev[1], float(np.max(hi))))
    if yerr is not None:
        yerr = np.asarray(yerr, np.float64)
        lower = np.minimum(2 * yerr, 0.999 * y)  # keep the bar on the positive axis
        cont = ax.errorbar(x, y, yerr=[lower, 2 * yerr], fmt=kw.pop("fmt", "o"), ms=kw.pop("ms", 5), capsize=3,
                           label=label, **kw)
        return cont[0].get_color()
    (line,) = ax.plot(x, y, kw.pop("fmt", "o"), label=label, **kw)
    return line.get_color()


def _variable(xlabel: str) -> str:
    w = xlabel.split()[-1] if xlabel.strip() else ""
    return w if w.isalpha() and len(w) <= 3 else "x"


def _draw_fit_and_reference(ax, x, slope, prefactor, color, expected, expected_label, xlabel_var):
    xs = np.geomspace(x.min(), x.max(), 50)
    if slope is not None:
        ax.plot(xs, prefactor * xs**slope, "-", color=color, alpha=0.7, lw=1.2)
    if expected is not None and slope is not None:
        # through the fitted line at the geometric centre of the data
        xc = math.sqrt(x.min() * x.max())
        anchor = prefactor * xc**slope
        if np.isfinite(anchor) and anchor > 0:
            e = _exponent_label(expected)
            lab = expected_label or f"expected slope {e} (${xlabel_var}^{{{e}}}$)"
            refs = getattr(ax, "_nfd_refs", {})  # one line style and legend entry per expected exponent
            if lab in refs:
                style, lab = refs[lab], "_" + lab
            else:
                style = refs[lab] = (":", "-.", "--", (0, (1, 4)))[len(refs) % 4]
            ax._nfd_refs = refs
            ax.plot(xs, anchor * (xs / xc) ** expected, linestyle=style, color="0.3", lw=1.4, label=lab)


def _finish_log_log(ax, x, xlabel, ylabel, title):
    # several series on one axes: label the union of their abscissae
    ax._nfd_xvalues = sorted(set(getattr(ax, "_nfd_xvalues", ())) | {float(v) for v in x})
    log_axis(ax, "x", ax._nfd_xvalues)
    log_axis(ax, "y")
    lo, hi = getattr(ax, "_nfd_yrange", (np.nan, np.nan))
    if np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi:
        pad = (hi / lo) ** 0.06 if hi > lo else 1.5
        ax.set_ylim(lo / pad, hi * pad)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)


def fit_rate(x, y, y_err=None) -> RateFit:
    """Fit y ≈ A x^slope by weighted least squares in log-log space, with a 95% interval.

    The interval is slope ± t·SE with the Student t of m − 2 degrees of freedom (the SE scaled
    by the reduced χ² when that exceeds 1); with two points it is the normal interval when
    `y_err` is given and `None` otherwise.

    Args:
        x, y: (m,) positive values, m ≥ 2.
        y_err: optional (m,) standard errors of y (weights 1/(y_err/y)²).

    Example:
        >>> fit = fit_rate([1, 2, 4, 8], [1.0, 0.5, 0.25, 0.125])
        >>> round(fit.slope, 6)
        -1.0
    """
    from scipy import stats

    from .kernels._error_decomposition import fit_power_law

    x = np.asarray(x, np.float64)
    pf = fit_power_law(x, y, y_err)
    dof = x.size - 2
    ci = None
    if dof >= 1:
        t = float(stats.t.ppf(0.975, dof))
        ci = (pf.slope - t * pf.slope_se, pf.slope + t * pf.slope_se)
    elif y_err is not None:  # two points with standard errors: the normal interval
        ci = (pf.slope - 1.96 * pf.slope_se, pf.slope + 1.96 * pf.slope_se)
    return RateFit(pf.slope, pf.slope_se, ci, pf.prefactor)


def plot_rates(x, y, y_err=None, *, ax=None, label: str = "", fit: bool = True, xlabel: str = "",
               ylabel: str = "", title: str = "", expected: float | None = None, expected_label: str = "",
               reference_slope: float | None = None, **kw):
    """Log-log plot of y against x with ± 2 SE error bars, the fitted power law and its 95%
    interval, and the expected exponent as a dotted reference line.

    Args:
        x: (m,) positive abscissae (width, depth, particles, ...).
        y: (m,) positive values (errors, distances).
        y_err: optional (m,) standard errors of y (weights of the fit, 2·SE error bars).
        ax: axes to draw on.
        label: legend label; the fitted slope and its interval are appended.
        fit: fit and draw y ≈ A x^slope (weighted least squares in log-log space; the 95%
            interval is slope ± t·SE with the Student t of m − 2 degrees of freedom, the SE scaled
            by the reduced χ² when that exceeds 1).
        xlabel, ylabel, title: axis labels and title.
        expected: the theory's exponent, drawn as a dotted line through the fit's first point.
        expected_label: its legend label (default "expected slope …").
        reference_slope: former name of `expected`.

    Returns:
        `(ax, fit)` where `fit` is a `RateFit` (`slope`, `slope_se`, `slope_ci95`,
        `prefactor`) or `None` when `fit=False` or with a single point.
    """
    if expected is None:
        expected = reference_slope
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
        result = fit_rate(x, y, y_err)
        ci = result.slope_ci95
        lab = f"{label}: {_slope_label(result.slope, ci)}" if label else _slope_label(result.slope, ci)
    if y_err is not None and lab:
        lab += " (± 2 SE)"
    color = _draw_points(ax, x, y, y_err, lab, **kw)
    var = _variable(xlabel)
    _draw_fit_and_reference(ax, x, None if result is None else result.slope,
                            None if result is None else result.prefactor, color, expected, expected_label, var)
    _finish_log_log(ax, x, xlabel, ylabel, title)
    return ax, result


def plot_slope_fit(ax, fit: dict, label: str, *, expected: float | None = None, expected_label: str = "",
                   xlabel: str = "", ylabel: str = "", title: str = "", **kw):
    """Draw a fit computed elsewhere: points `fit["x"], fit["y"]` with ± 2 `fit["yerr"]` bars,
    the line `exp(intercept)·x^slope`, `slope_ci95` in the legend and the expected exponent.

    Points with y ≤ 0 (not drawable on a log axis) are left out; when none is left the panel
    says so in words.

    Returns:
        `ax`.
    """
    x = np.asarray(fit["x"], np.float64)
    y = np.asarray(fit["y"], np.float64)
    e = fit.get("yerr")
    e = None if e is None else np.asarray([np.nan if v is None else v for v in e], np.float64)
    ok = (x > 0) & (y > 0) & np.isfinite(y) & np.isfinite(x)
    if ok.sum() == 0:
        ax.text(0.5, 0.5, f"{label}: no positive data at this size", ha="center", va="center",
                transform=ax.transAxes, fontsize=7)
        if title:
            ax.set_title(title)
        if xlabel:
            ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        return ax
    x, y = x[ok], y[ok]
    if e is not None:
        e = e[ok]
        e = np.where(np.isfinite(e), e, 0.0)
    slope = fit.get("slope")
    ci = fit.get("slope_ci95")
    if ci is not None and (ci[0] is None or ci[0] == ci[1]):
        ci = None
    lab = f"{label}: {_slope_label(slope, ci)}" if slope is not None else label
    if e is not None:
        lab += " (± 2 SE)"
    color = _draw_points(ax, x, y, e, lab, **kw)
    pref = None if slope is None else math.exp(fit["intercept"])
    var = _variable(xlabel)
    _draw_fit_and_reference(ax, x, slope, pref, color, expected, expected_label, var)
    _finish_log_log(ax, x, xlabel, ylabel, title)
    return ax


# ---------------------------------------------------------------------------------------------
# kernels, particles, training curves
# ---------------------------------------------------------------------------------------------
def plot_kernel(K, *, ax=None, title: str = "", cmap: str = "viridis", colorbar: bool = True,
                robust: tuple[float, float] | None = (1.0, 99.0), label: str = "value",
                xlabel: str = "sample j", ylabel: str = "sample i", **kw):
    """Heat map of a kernel matrix K (N, N2) with a labelled colour bar.

    The colour scale is clipped to the `robust` percentiles of the finite entries (a few
    large diagonal entries would otherwise leave the rest uniformly dark); the colour bar
    shows the clipping with arrow ends.  `robust=None` uses the full range.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import numpy as np
        >>> ax = plot_kernel(np.eye(3), title="identity")
    """
    K = np.asarray(K, np.float64)
    if K.ndim != 2:
        raise ValueError(f"K must be a 2-D matrix, got shape {K.shape}")
    ax = _ax(ax)
    fin = K[np.isfinite(K)]
    extend = "neither"
    if robust is not None and fin.size and "vmin" not in kw and "vmax" not in kw:
        lo, hi = np.percentile(fin, robust)
        if hi > lo:
            kw["vmin"], kw["vmax"] = float(lo), float(hi)
            below, above = bool((fin < lo).any()), bool((fin > hi).any())
            extend = "both" if below and above else "min" if below else "max" if above else "neither"
    im = ax.imshow(K, cmap=cmap, interpolation="nearest", **kw)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, extend=extend)
        cb.set_label(label + (f" (clipped to percentiles {robust[0]:g}–{robust[1]:g})" if extend != "neither" else ""),
                     fontsize=7)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(5, integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def plot_particles(values, *, ax=None, bins: int = 60, label: str = "", gaussian: bool = True,
                   xlabel: str = "value", title: str = "", **kw):
    """Density histogram of particle (or neuron) values, optionally with the Gaussian of the
    same mean and variance (the law of h_ℓ at initialisation is Gaussian; training makes it
    non-Gaussian in the feature-learning limit).

    Args:
        values: any array; it is flattened.
        bins: number of histogram bins.
        label: legend label.
        gaussian: overlay N(mean, var).
        xlabel, title: axis label and title.
    """
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2:
        raise ValueError("values must contain at least two finite numbers")
    ax = _ax(ax)
    ax.hist(v, bins=bins, density=True, alpha=0.5, label=label or "values", **kw)
    if gaussian:
        m, s = float(v.mean()), float(v.std())
        if s > 0:
            xs = np.linspace(v.min(), v.max(), 200)
            ax.plot(xs, np.exp(-0.5 * ((xs - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)), "k--", lw=1,
                    label=f"N({m:.2f}, {s:.2f}²)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


_RESULT_NAMES = {
    "ParticleSolution": "limit (NFD particle solver)",
    "GammaCResult": "limit (Γ/C recursion)",
    "MeanODEResult": "Neural Mean ODE limit",
    "ResNetResult": "finite ResNets",
    "SimulationResult": "finite networks",
}


def describe(result: Any) -> str:
    """A plain-words legend label for a result object ("limit (NFD particle solver)",
    "finite networks, n=64", ...)."""
    name = _RESULT_NAMES.get(type(result).__name__, type(result).__name__)
    net = getattr(result, "network", None)
    width = getattr(net, "width", None)
    if width is not None:
        name = f"finite networks, n={width}"
    return name


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


def plot_training(*results, labels=None, what: str = "outputs", targets=None, ax=None, logy: bool = False,
                  title: str = ""):
    """Outputs (or losses) per SGD step for several results on one axis.

    Finite-network results (`nfd.SimulationResult`) are drawn as mean ± 2 standard
    errors over seeds; limits as lines.

    Args:
        *results: result objects with `.outputs` / `.losses`.
        labels: one label per result (default: `describe`).
        what: `"outputs"` or `"losses"`.
        targets: optional (K,) targets drawn as crosses.
        logy: logarithmic y axis (for losses).
        title: the panel's title (default: what is drawn).
    """
    from matplotlib.ticker import MaxNLocator

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
        lab = labels[i] if labels is not None else describe(r)
        if band is None:
            ax.plot(k, mean, "-", lw=2, label=lab)
        else:
            ax.errorbar(k, mean, yerr=band, fmt="o", ms=3, capsize=2, label=f"{lab} (mean ± 2 SE)")
    if targets is not None:
        t = np.asarray(targets, np.float64)
        ax.plot(np.arange(t.shape[0]), t, "x", color="gray", label="target y^(k)")
    if logy:
        log_axis(ax, "y")
    ax.xaxis.set_major_locator(MaxNLocator(8, integer=True))
    ax.set_xlabel("SGD step k")
    ax.set_ylabel("output f^(k) before update k" if what == "outputs" else "loss")
    ax.set_title(title or ("network output per SGD step" if what == "outputs" else "loss per SGD step"))
    ax.legend(fontsize=7)
    return ax


def plot_result(result: Any, *, path=None, title: str = ""):
    """A default figure for a result object: its training curve and, where present, the last
    layer's kernel (Σ of a particle solution, the output kernel of a Γ/C solution).

    Args:
        result: any nfd result with `.outputs` or `.losses`.
        path: save the figure here (PNG, PDF, ...) when given.
        title: figure title.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    kern = None
    for name, words in (("sigma", "Σ = E[φ(h) φ(h)ᵀ]"), ("feature_cov", "feature covariance")):
        k = getattr(result, name, None)
        if k is not None:
            kern = (words, np.asarray(k)[-1])
            break
    what = "outputs"
    if np.asarray(getattr(result, "outputs", np.zeros((1, 1, 1)))).ndim > (2 if type(result).__name__ == "SimulationResult" else 1):
        what = "losses"
    ncol = 2 if kern is not None else 1
    fig, axes = plt.subplots(1, ncol, figsize=(5.5 * ncol, 4))
    axes = np.atleast_1d(axes)
    plot_training(result, what=what, ax=axes[0], logy=what == "losses")
    if kern is not None:
        plot_kernel(kern[1], ax=axes[1], title=f"{kern[0]}, last layer", label=kern[0],
                    xlabel="training sample j", ylabel="training sample i")
    if title:
        fig.suptitle(title)
    if path is not None:
        savefig(fig, path)
    else:
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------
def _is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>"


def _series(ax):
    """(labelled, unlabelled) counts of the data series drawn on `ax`."""
    from matplotlib.container import ErrorbarContainer

    in_containers = set()
    labelled = unlabelled = 0
    for c in ax.containers:
        for part in c.get_children():
            in_containers.add(id(part))
        if not isinstance(c, ErrorbarContainer):
            continue  # bar charts and histograms: one series per container
        if c.get_label() and not c.get_label().startswith("_"):
            labelled += 1
        else:
            unlabelled += 1
    for ln in ax.lines:
        if id(ln) in in_containers or len(np.atleast_1d(ln.get_xdata())) == 0:
            continue
        if ln.get_label() and not ln.get_label().startswith("_"):
            labelled += 1
        else:
            unlabelled += 1
    for coll in ax.collections:
        if id(coll) in in_containers:
            continue
        if coll.get_label() and not coll.get_label().startswith("_"):
            labelled += 1
    return labelled, unlabelled


def _nonfinite(ax) -> list[str]:
    bad = []
    for ln in ax.lines:
        xy = np.asarray(ln.get_xydata(), np.float64)
        if xy.size and not np.isfinite(xy).all():
            bad.append(f"line {ln.get_label()!r} has non-finite data")
    for coll in ax.collections:
        segs = getattr(coll, "get_segments", None)
        if segs is not None:
            for s in segs():
                if np.asarray(s).size and not np.isfinite(np.asarray(s, np.float64)).all():
                    bad.append("error bars with non-finite ends")
                    break
        off = coll.get_offsets()
        if np.asarray(off).size and not np.isfinite(np.ma.filled(np.asarray(off, np.float64), 0.0)).all():
            bad.append("scatter with non-finite points")
    for im in ax.images:
        a = im.get_array()
        if a is not None and not np.isfinite(np.ma.filled(np.asarray(a, np.float64), 0.0)).all():
            bad.append("image with non-finite entries")
    return bad


def check_figure(fig, *, min_ticks: int = 2) -> list[str]:
    """The style checks every nfd figure passes, as a list of problems (empty when it passes).

    After `fig.canvas.draw()`, for every visible axes that is not a colour bar: a title, an x
    and a y label, at least `min_ticks` non-empty tick labels on each axis, no two tick
    labels of one axis overlapping (their window extents), a legend when more than one data
    series is drawn, and no NaN or infinity in the drawn data.  A colour bar needs a label and
    tick labels.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> check_figure(fig)[0]
        'axes 0: no title'
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        name = f"axes {i}" + (f" ({ax.get_title()!r})" if ax.get_title() else "")
        if _is_colorbar(ax):
            if not (ax.get_ylabel().strip() or ax.get_xlabel().strip()):
                problems.append(f"{name}: colour bar without a label")
            axis = ax.yaxis if ax.get_ylabel().strip() or not ax.get_xlabel().strip() else ax.xaxis
            if not _visible_ticklabels(axis, renderer) and not _visible_ticklabels(
                    ax.xaxis if axis is ax.yaxis else ax.yaxis, renderer):
                problems.append(f"{name}: colour bar without tick labels")
            continue
        if not any(ax.get_title(loc=loc).strip() for loc in ("center", "left", "right")):
            problems.append(f"{name}: no title")
        for axis, lab in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            xy = axis.axis_name
            if not lab.strip():
                problems.append(f"{name}: no {xy} label")
            labs = _visible_ticklabels(axis, renderer)
            if len(labs) < min_ticks:
                problems.append(f"{name}: {len(labs)} {xy} tick label(s) {[t[1] for t in labs]} (need ≥ {min_ticks})")
            for a in range(len(labs)):
                for b in range(a + 1, len(labs)):
                    if _overlaps(labs[a][2], labs[b][2], pad=0.0):
                        problems.append(f"{name}: {xy} tick labels {labs[a][1]!r} and {labs[b][1]!r} overlap")
        labelled, unlabelled = _series(ax)
        if labelled + unlabelled > 1 and ax.get_legend() is None and not ax.images:
            problems.append(f"{name}: {labelled + unlabelled} series but no legend")
        problems += [f"{name}: {p}" for p in _nonfinite(ax)]
    return problems
