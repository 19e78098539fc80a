"""Plot helpers: the fitted slope is the slope of the data, figures are written, bad input fails."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import nfd  # noqa: E402
from nfd.plotting import plot_kernel, plot_particles, plot_rates, plot_result, plot_training  # noqa: E402


def test_rates_fit_recovers_exact_power_law_and_draws_it():
    x = np.array([16.0, 32, 64, 128])
    y = 3.0 * x**-0.5
    ax, fit = plot_rates(x, y, label="err", xlabel="width", reference_slope=-0.5)
    # exact data: the least-squares slope is exact to rounding
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert fit.prefactor == pytest.approx(3.0, rel=1e-12)
    assert "slope -0.50" in ax.get_legend().get_texts()[0].get_text()
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    plt.close("all")


def test_rates_with_errors_weights_the_fit():
    x = np.array([1.0, 2, 4, 8])
    y = x**-1.0
    y_bad = y.copy()
    y_bad[-1] *= 3  # an outlier with a huge standard error must barely move the fit
    se = np.array([1e-4, 1e-4, 1e-4, 10.0])
    _, fit = plot_rates(x, y_bad, se)
    assert fit.slope == pytest.approx(-1.0, abs=1e-3)
    with pytest.raises(ValueError, match="positive"):
        plot_rates([1, 2], [1.0, -1.0])
    with pytest.raises(ValueError, match="y_err"):
        plot_rates([1, 2], [1.0, 0.5], [0.1])
    plt.close("all")


def test_kernel_particles_training_and_default_figure(tmp_path):
    ax = plot_kernel(np.arange(12.0).reshape(3, 4), title="K")
    assert ax.images[0].get_array().shape == (3, 4)
    with pytest.raises(ValueError, match="2-D"):
        plot_kernel(np.zeros(3))
    rng = np.random.default_rng(0)
    ax = plot_particles(rng.normal(size=2000), label="h")
    heights = [p.get_height() for p in ax.patches]
    # a density histogram integrates to 1
    widths = [p.get_width() for p in ax.patches]
    assert np.dot(heights, widths) == pytest.approx(1.0, rel=1e-9)

    X = rng.normal(size=(4, 2))
    Y = X[:, 0]
    sim = nfd.simulate(X, Y, width=16, depth=2, activation="tanh", lr=0.5, seeds=3)
    lim = nfd.solve(X, Y, depth=2, particles=64, activation="tanh", lr=0.5)
    ax = plot_training(sim, lim, labels=["finite", "limit"], targets=Y)
    # the finite curve is the seed mean
    np.testing.assert_allclose(ax.lines[0].get_ydata(), sim.mean, rtol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        plot_training(sim, labels=["a", "b"])
    fig = plot_result(lim, path=tmp_path / "lim.png", title="limit")
    assert (tmp_path / "lim.png").stat().st_size > 1000 and len(fig.axes) >= 2
    plt.close("all")


def test_fit_rate_interval_is_the_t_interval_of_ordinary_least_squares():
    from scipy import stats

    from nfd.plotting import fit_rate

    rng = np.random.default_rng(1)
    x = np.array([16.0, 32, 64, 128, 256, 512])
    y = 2.0 * x**-0.7 * np.exp(0.1 * rng.normal(size=x.size))
    fit = fit_rate(x, y)
    ref = stats.linregress(np.log(x), np.log(y))  # independent: scipy's unweighted regression
    t = stats.t.ppf(0.975, x.size - 2)
    assert fit.slope == pytest.approx(ref.slope, rel=1e-10)
    assert fit.slope_ci95[0] == pytest.approx(ref.slope - t * ref.stderr, rel=1e-8)
    assert fit.slope_ci95[1] == pytest.approx(ref.slope + t * ref.stderr, rel=1e-8)
    assert fit_rate([1, 2], [1.0, 0.5]).slope_ci95 is None  # two points, no standard errors: no interval


def test_kernel_colour_scale_is_clipped_to_robust_percentiles():
    K = np.random.default_rng(0).normal(size=(30, 30))
    K[0, 0] = 1e4
    ax = plot_kernel(K, title="K")
    lo, hi = ax.images[0].get_clim()
    assert (lo, hi) == pytest.approx(tuple(np.percentile(K, [1, 99])))
    assert ax.get_xlabel() and ax.get_ylabel() and "percentiles" in ax.figure.axes[-1].get_ylabel()
    plt.close("all")
