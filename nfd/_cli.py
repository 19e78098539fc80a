"""The nfd command line: solve a limit or simulate finite networks from a config file.

    nfd template > run.toml          # an annotated example configuration
    nfd solve run.toml               # the limit: writes nfd-out/solve.npz, solve_summary.json, solve.png
    nfd simulate run.toml --limit    # finite networks of every width (and the limit), one figure
    nfd bench --quick                # run benchmarks/<name>.py --quick from a clone of the repository

A configuration file (TOML or JSON) has up to five sections; only [model] is required:

  [data]      kind = "synthetic" (default; samples, input_dim, target = tanh | sin | linear, seed),
              "digits" (scikit-learn's handwritten digits, two classes, samples; needs
              pip install "nfd[examples]") or "file" (path = an .npz file with arrays X and Y)
  [model]     the network, shared by the limit and the finite networks: depth, activation,
              lr (the learning-rate constant), T, frozen, loss, ...
  [solve]     method = particles | gamma_c | mean_ode, and that solver's options
              (particles, backward, seed, batch_size, dtype, ...)
  [simulate]  widths = [64, 256] and the options of nfd.simulate (seeds, backward, seed, ...)
  [output]    dir (default nfd-out), format (npz or json), figure (true or false)

Outputs: solve.npz (or .json; read it back in Python with nfd.load), solve_summary.json
(outputs, losses, wall time, machine) and solve.png; for simulate, simulate_n<width>.npz per
width, simulate.json and simulate.png. A short summary table is printed at the end.

Every option is checked against the function it goes to before anything runs.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "load_config", "TEMPLATE"]

SECTIONS = ("data", "model", "solve", "simulate", "output")

TEMPLATE = {
    "data": {"kind": "synthetic", "samples": 12, "input_dim": 4, "target": "tanh", "seed": 0},
    "model": {"depth": 8, "activation": "tanh", "lr": 0.5, "T": 1.0},
    "solve": {"method": "particles", "particles": 4096, "backward": "exact", "seed": 0},
    "simulate": {"widths": [64, 256], "seeds": 8, "backward": "coupled", "seed": 1},
    "output": {"dir": "nfd-out", "format": "npz", "figure": True},
}

_TEMPLATE_COMMENTS = {
    "data": "training stream: kind = synthetic | digits | file (path = 'data.npz' with X, Y)",
    "model": "the network shared by the limit and the finite networks (nfd.ResNet fields)",
    "solve": "the limit: method = particles | gamma_c | mean_ode, and that solver's options",
    "simulate": "finite networks: one run of `seeds` networks per width",
    "output": "where results go: <dir>/solve.npz (or .json), solve_summary.json, solve.png",
}

# config keys of [model] that the Mean-ODE family does not take (it has its own model)
_RESNET_ONLY = ("depth", "T", "frozen", "loss", "lr", "block", "parameterization", "depth_aware_lr")


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def template_text(fmt: str = "toml", method: str = "particles") -> str:
    """An example configuration for ``method`` in TOML or JSON."""
    cfg = json.loads(json.dumps(TEMPLATE))
    if method == "gamma_c":
        cfg["model"].update(activation="identity", lr=1.0)
        cfg["solve"] = {"method": "gamma_c", "frozen": ["input", "output"]}
        cfg["simulate"]["frozen"] = ["input", "output"]
    elif method == "mean_ode":
        cfg["data"] = {"kind": "synthetic", "samples": 8, "input_dim": 3, "target": "tanh", "seed": 0}
        cfg["model"] = {"activation": "tanh"}
        cfg["solve"] = {"method": "mean_ode", "steps": 20, "grid": 32, "particles": 256, "replicates": 2,
                        "dtype": "float64"}
        cfg.pop("simulate")
    elif method != "particles":
        raise ValueError(f"method must be particles, gamma_c or mean_ode, got {method!r}")
    if fmt == "json":
        return json.dumps(cfg, indent=2) + "\n"
    if fmt != "toml":
        raise ValueError(f"format must be toml or json, got {fmt!r}")
    lines = []
    for sec, body in cfg.items():
        lines.append(f"# {_TEMPLATE_COMMENTS[sec]}")
        lines.append(f"[{sec}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)


def load_config(path, overrides=()) -> dict:
    """Read a TOML or JSON config, apply ``section.key=value`` overrides, check the sections."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"config file {str(p)!r} does not exist")
    if p.suffix == ".json":
        try:
            cfg = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config {str(p)!r} is not valid JSON: {e}") from None
    elif p.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib
            except ModuleNotFoundError:
                raise ValueError("reading TOML needs Python ≥ 3.11 or `pip install tomli`; or use a .json config") from None
        try:
            cfg = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"config {str(p)!r} is not valid TOML: {e}") from None
    else:
        raise ValueError(f"config must end in .toml or .json, got {str(p)!r}")
    if not isinstance(cfg, dict):
        raise ValueError("config must be a table/object of sections")
    for ov in overrides:
        key, sep, val = ov.partition("=")
        sec, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--set expects section.key=value, got {ov!r}")
        try:
            parsed = json.loads(val)
        except json.JSONDecodeError:
            parsed = val
        cfg.setdefault(sec, {})[name] = parsed
    bad = [s for s in cfg if s not in SECTIONS]
    if bad:
        raise ValueError(f"config: unknown section(s) {bad}; sections are {list(SECTIONS)}")
    for s, body in cfg.items():
        if not isinstance(body, dict):
            raise ValueError(f"config: [{s}] must be a table of key = value pairs")
    if "model" not in cfg:
        raise ValueError("config: the [model] section is required (depth, activation, lr, ...)")
    return cfg


def make_data(cfg: dict, method: str = "particles"):
    """(X, Y) from the [data] section."""
    data = dict(cfg.get("data", {}))
    kind = data.pop("kind", "synthetic")
    seed = data.pop("seed", 0)
    if kind == "synthetic":
        K = data.pop("samples", 12)
        d = data.pop("input_dim", 4)
        target = data.pop("target", "tanh")
        _no_extra("data", data)
        for name, v in (("samples", K), ("input_dim", d)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"config [data] {name} must be a positive integer, got {v!r}")
        fns = {"tanh": np.tanh, "sin": np.sin, "linear": lambda z: z}
        if target not in fns:
            raise ValueError(f"config [data] target must be one of {sorted(fns)}, got {target!r}")
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(K, d))
        if method == "mean_ode":
            A = rng.normal(size=(d, d))
            return X, fns[target](X @ A / np.sqrt(d))
        w = rng.normal(size=d)
        return X, fns[target](X @ w / np.sqrt(d))
    if kind == "digits":
        K = data.pop("samples", 64)
        classes = data.pop("classes", [0, 1])
        _no_extra("data", data)
        try:
            from sklearn.datasets import load_digits
        except ModuleNotFoundError:
            raise ValueError('config [data] kind = "digits" needs scikit-learn: pip install -e ".[examples]" '
                             '(or pip install scikit-learn)') from None

        dg = load_digits()
        if len(classes) != 2:
            raise ValueError(f"config [data] classes must list two digit classes, got {classes!r}")
        mask = np.isin(dg.target, classes)
        X = dg.data[mask].astype(np.float64)
        X = (X - X.mean(0)) / (X.std(0) + 1e-8)
        y = np.where(dg.target[mask] == classes[1], 1.0, -1.0)
        idx = np.random.default_rng(seed).permutation(X.shape[0])[:K]
        loss = cfg.get("model", {}).get("loss", "mse")
        return X[idx], ((y[idx] + 1) / 2 if loss == "logistic" else y[idx])
    if kind == "file":
        path = data.pop("path", None)
        _no_extra("data", data)
        if path is None:
            raise ValueError("config [data] kind='file' needs path = 'file.npz' (arrays X and Y)")
        from ._io import _open_npz

        if not Path(path).is_file():
            raise ValueError(f"config [data] path {path!r} does not exist")
        with _open_npz(path, "data file (NPZ with X and Y)") as z:
            if "X" not in z.files or "Y" not in z.files:
                raise ValueError(f"config [data] {path!r} must contain arrays named X and Y")
            return z["X"], z["Y"]
    raise ValueError(f"config [data] kind must be synthetic, digits or file, got {kind!r}")


def _no_extra(section, leftover):
    if leftover:
        raise ValueError(f"config [{section}]: unknown option(s) {sorted(leftover)}")


def _dtype_of(kw):
    if "dtype" in kw:
        import jax
        import jax.numpy as jnp

        name = kw["dtype"]
        if name not in ("float32", "float64"):
            raise ValueError(f"config: dtype must be 'float32' or 'float64', got {name!r}")
        if name == "float64":
            jax.config.update("jax_enable_x64", True)
        kw["dtype"] = getattr(jnp, name)
    for k in ("frozen",):
        if k in kw and isinstance(kw[k], list):
            kw[k] = tuple(kw[k])
    return kw


def _accepted(*fns) -> set[str] | None:
    names: set[str] = set()
    for fn in fns:
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and not p.name.startswith("_"):
                names.add(p.name)
    return names - {"X", "Y", "net"}


def _solve_target(method):
    if method == "particles":
        from .limits._nfd import particle_problem, solve_particles, solve_particles_network

        return solve_particles, (solve_particles, solve_particles_network, particle_problem)
    if method == "gamma_c":
        from .limits._gamma_c import solve_gamma_c

        return solve_gamma_c, (solve_gamma_c,)
    if method == "mean_ode":
        from .meanode._solve import solve_mean_ode

        return solve_mean_ode, (solve_mean_ode,)
    raise ValueError(f"config [solve] method must be particles, gamma_c or mean_ode, got {method!r}")


def solve_kwargs(cfg: dict):
    """(method, function, keyword arguments) for ``nfd solve``, checked against the signature."""
    sol = dict(cfg.get("solve", {}))
    method = sol.pop("method", "particles")
    fn, sigs = _solve_target(method)
    model = dict(cfg["model"])
    if method == "mean_ode":
        model = {k: v for k, v in model.items() if k not in _RESNET_ONLY}
    kw = {**model, **sol}
    ok = _accepted(*sigs)
    bad = sorted(set(kw) - ok)
    if bad:
        raise ValueError(f"config [model]/[solve]: option(s) {bad} are not accepted by method {method!r}; "
                         f"accepted: {sorted(ok)}")
    kw = _dtype_of(kw)
    if method == "mean_ode" and "dtype" not in kw:
        import jax

        jax.config.update("jax_enable_x64", True)  # the Mean ODE's default dtype follows this flag
        # (the Γ/C solver runs in float64 by itself)
    return method, fn, kw


def simulate_kwargs(cfg: dict):
    """(widths, keyword arguments of nfd.simulate) for ``nfd simulate``."""
    from .finite._simulate import simulate, simulate_network

    if "simulate" not in cfg:
        raise ValueError("config: `nfd simulate` needs a [simulate] section with widths = [...]")
    sim = dict(cfg["simulate"])
    widths = sim.pop("widths", None)
    if widths is None and "width" in sim:
        widths = [sim.pop("width")]
    if not isinstance(widths, list) or not widths or any(isinstance(w, bool) or not isinstance(w, int) or w <= 0
                                                         for w in widths):
        raise ValueError(f"config [simulate] widths must be a non-empty list of positive integers, got {widths!r}")
    kw = {**cfg["model"], **sim}
    ok = _accepted(simulate, simulate_network) - {"width"}
    bad = sorted(set(kw) - ok)
    if bad:
        raise ValueError(f"config [model]/[simulate]: option(s) {bad} are not accepted by nfd.simulate; "
                         f"accepted: {sorted(ok)}")
    return widths, _dtype_of(kw)


def _output(cfg, args):
    out = dict(cfg.get("output", {}))
    d = Path(args.out or out.pop("dir", "nfd-out"))
    fmt = args.format or out.pop("format", "npz")
    fig = out.pop("figure", True) and not args.no_figure
    out.pop("dir", None)
    out.pop("format", None)
    _no_extra("output", out)
    if fmt not in ("npz", "json"):
        raise ValueError(f"output format must be npz or json, got {fmt!r}")
    from ._validate import check_output_dir

    check_output_dir("--out" if args.out else "config [output] dir", d)  # before any compute
    return d, fmt, bool(fig)


def _machine():
    import jax

    return {"platform": platform.platform(), "python": platform.python_version(), "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()], "processor": platform.processor() or platform.machine()}


class _Log:
    def __init__(self, quiet):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg):
        if not self.quiet:
            print(f"[nfd {time.perf_counter() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


class _Progress:
    """A tqdm progress bar fed by the solvers' ``progress(done, steps)`` hook.

    The first chunk of steps includes compilation, so the bar starts when it returns (its rate
    and time left count only compiled steps) and the first chunk's time is reported on its own
    as ``compile_s`` (compilation plus one chunk).
    """

    def __init__(self, desc: str, log: _Log):
        self.desc, self.log = desc, log
        self.t0 = time.perf_counter()
        self.bar = None
        self.compile_s = None

    def __call__(self, done: int, steps: int):
        if self.bar is None:
            from tqdm.auto import tqdm

            self.compile_s = time.perf_counter() - self.t0
            self.log(f"{self.desc}: compiled and ran the first {done}/{steps} steps in {self.compile_s:.1f}s")
            self.bar = tqdm(total=steps, initial=done, desc=self.desc, unit="step", file=sys.stderr, leave=True,
                            dynamic_ncols=True, disable=self.log.quiet,
                            bar_format="{desc}: step {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}, {rate_fmt}")
            self.bar.refresh()
        else:
            self.bar.update(done - self.bar.n)
        if done >= steps:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    """A two-column plain-text table."""
    w = max(len(k) for k, _ in rows)
    return "\n".join([title] + [f"  {k.ljust(w)}  {v}" for k, v in rows])


def _numbers(a, digits: int = 3, most: int = 8) -> str:
    a = np.asarray(a, np.float64).ravel()
    txt = " ".join(f"{v:.{digits}g}" for v in a[:most])
    return txt + (f" … ({a.size} values)" if a.size > most else "")


def _slope_text(fit) -> str:
    if fit is None:
        return "n/a (needs two widths with a non-zero distance)"
    if fit.slope_ci95 is None:
        return f"{fit.slope:.2f} (two points, no interval)"
    lo, hi = fit.slope_ci95
    return f"{fit.slope:.2f}, 95% interval [{lo:.2f}, {hi:.2f}]"


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------
def cmd_solve(args) -> int:
    from . import __version__
    from ._io import save, to_jsonable

    log = _Log(args.quiet)
    cfg = load_config(args.config, args.set)
    method, fn, kw = solve_kwargs(cfg)
    out_dir, fmt, want_fig = _output(cfg, args)
    X, Y = make_data(cfg, method)
    log(f"solve: method={method}, data X{X.shape}, options {_short(kw)}")
    bar = None
    if method == "particles" and not args.quiet and "progress" not in kw:
        bar = kw["progress"] = _Progress("solve", log)  # a progress bar on stderr (results are identical)
    t = time.perf_counter()
    try:
        res = fn(X, Y, **kw)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t
    log(f"solve: done in {wall:.1f}s")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = save(out_dir / f"solve.{fmt}", res, config=cfg)
    summary = {"command": "solve", "config": cfg, "method": method, "wall_time_s": wall, "nfd_version": __version__,
               "machine": _machine(), "outputs": to_jsonable(getattr(res, "outputs", None)),
               "losses": to_jsonable(getattr(res, "losses", None)), "result_file": str(path)}
    for name in ("outputs_stderr", "losses_stderr"):  # the replicate systems' error bars, where the solver has them
        if getattr(res, name, None) is not None:
            summary[name] = to_jsonable(getattr(res, name))
    (out_dir / "solve_summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    log(f"wrote {path}")
    files = [str(path), str(out_dir / "solve_summary.json")]
    if want_fig:
        import matplotlib

        matplotlib.use("Agg")
        from .plotting import plot_result

        fig_path = out_dir / "solve.png"
        plot_result(res, path=fig_path, title=f"nfd solve: method={method}")
        log(f"wrote {fig_path}")
        files.append(str(fig_path))
    rows = [("method", method + (f", backward={kw['backward']}" if "backward" in kw else "")
             + (f", {kw['particles']} particles" if "particles" in kw else ""))]
    outs = getattr(res, "outputs", None)
    if outs is not None and np.asarray(outs).ndim == 1:
        rows.append(("outputs per step", _numbers(outs)))
        se = getattr(res, "outputs_stderr", None)
        if se is not None and np.asarray(se).shape == np.asarray(outs).shape:
            rep = getattr(res, "replicate_outputs", None)
            how = f" (over {np.asarray(rep).shape[0]} replicate systems)" if rep is not None else ""
            rows.append(("  standard errors", _numbers(se) + how))
    losses = getattr(res, "losses", None)
    if losses is not None and np.asarray(losses).size:
        lse = getattr(res, "losses_stderr", None)
        pm = (f" ± {float(np.asarray(lse).ravel()[-1]):.2g} (s.e.)" if lse is not None
              and np.asarray(lse).size == np.asarray(losses).size else "")
        rows.append(("final loss", f"{float(np.asarray(losses).ravel()[-1]):.4g}" + pm))
    rows.append(("wall time", f"{wall:.1f} s" + (f" (compilation and first chunk {bar.compile_s:.1f} s)"
                                                  if bar is not None and bar.compile_s is not None else "")))
    rows.append(("files", ", ".join(files)))
    print(_table("nfd solve: summary", rows))
    return 0


def cmd_simulate(args) -> int:
    from . import __version__
    from ._io import save, to_jsonable
    from .finite._simulate import simulate

    log = _Log(args.quiet)
    cfg = load_config(args.config, args.set)
    widths, kw = simulate_kwargs(cfg)
    out_dir, fmt, want_fig = _output(cfg, args)
    limit = None
    if args.limit:
        method, fn, skw = solve_kwargs(cfg)
        if method == "mean_ode":
            raise ValueError("--limit: the Mean-ODE limit is not a limit of nfd.simulate's networks")
    X, Y = make_data(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, summary = {}, {"command": "simulate", "config": cfg, "nfd_version": __version__, "machine": _machine(),
                            "runs": []}
    ckpt = kw.pop("checkpoint", None)
    for n in widths:
        log(f"simulate: width {n}, options {_short(kw)}")
        t = time.perf_counter()
        if ckpt is not None:  # one checkpoint file per width: run_n64.npz, run_n128.npz, ...
            p = Path(ckpt)
            kw["checkpoint"] = str(p.with_name(f"{p.stem}_n{n}{p.suffix}")) if len(widths) > 1 else str(p)
        bar = _Progress(f"width {n}", log) if not args.quiet else False
        try:
            r = simulate(X, Y, width=n, progress=bar, **kw)
        finally:
            if bar:
                bar.close()
        wall = time.perf_counter() - t
        results[n] = r
        path = save(out_dir / f"simulate_n{n}.{fmt}", r, config=cfg)
        summary["runs"].append({"width": n, "wall_time_s": wall, "mean": to_jsonable(r.mean),
                                "stderr": to_jsonable(r.stderr), "result_file": str(path),
                                "compile_s": bar.compile_s if bar else None})
        log(f"simulate: width {n} done in {wall:.1f}s, wrote {path}")
    if args.limit:
        log(f"solve: method={method} (the limit to compare with)")
        limit = fn(X, Y, **skw)
        save(out_dir / f"solve.{fmt}", limit, config=cfg)
        summary["limit"] = {"method": method, "outputs": to_jsonable(limit.outputs)}
        fhat = np.asarray(limit.outputs, np.float64)
        for run in summary["runs"]:
            r = results[run["width"]]
            m = np.asarray(r.mean)
            run["rms_distance_to_limit"] = float(np.sqrt(np.mean((m - fhat) ** 2)))
            # per network: mean over steps k ≥ 1 of (f_n − f̂)²; its mean over seeds and standard error
            per_seed = np.mean((np.asarray(r.outputs, np.float64)[:, 1:] - fhat[None, 1:]) ** 2, axis=1)
            run["ms_distance_to_limit"] = float(per_seed.mean())
            run["ms_distance_to_limit_se"] = (float(per_seed.std(ddof=1) / np.sqrt(per_seed.size))
                                              if per_seed.size > 1 else None)
        summary["limit"]["ms_distance_fit"] = _distance_fit(summary["runs"])
    (out_dir / "simulate.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    files = [run["result_file"] for run in summary["runs"]]
    if limit is not None:
        files.append(str(out_dir / f"solve.{fmt}"))
    files.append(str(out_dir / "simulate.json"))
    if want_fig:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .plotting import describe, plot_rates, plot_training, savefig

        runs = [r for r in summary["runs"] if r.get("ms_distance_to_limit", 0) > 0]
        ncol = 2 if (limit is not None and len(runs) >= 2) else 1
        fig, axes = plt.subplots(1, ncol, figsize=(6 * ncol, 4.4))
        axes = np.atleast_1d(axes)
        res = [results[n] for n in widths] + ([limit] if limit is not None else [])
        labels = [f"finite networks, n={n}" for n in widths] + ([describe(limit)] if limit is not None else [])
        plot_training(*res, labels=labels, targets=Y, ax=axes[0], title="output per SGD step")
        if ncol == 2:
            se = [r["ms_distance_to_limit_se"] for r in runs]
            plot_rates([r["width"] for r in runs], [r["ms_distance_to_limit"] for r in runs],
                       None if None in se else np.asarray(se), ax=axes[1], label="E|f_n − f̂|²", xlabel="width n",
                       ylabel="mean-square distance to the limit (steps k ≥ 1)", expected=-1.0,
                       expected_label="expected rate 1/n (NFD Thm 1)", title="convergence to the limit")
        savefig(fig, out_dir / "simulate.png")
        log(f"wrote {out_dir / 'simulate.png'}")
        files.append(str(out_dir / "simulate.png"))
    _print_simulate_summary(summary, files)
    return 0


def _distance_fit(runs):
    """The log-log fit of the mean-square distance against width, as a JSON-able dict (or None)."""
    from .plotting import fit_rate

    ok = [r for r in runs if r.get("ms_distance_to_limit", 0) > 0]
    if len(ok) < 2:
        return None
    se = [r["ms_distance_to_limit_se"] for r in ok]
    fit = fit_rate([r["width"] for r in ok], [r["ms_distance_to_limit"] for r in ok],
                   None if None in se or 0.0 in se else se)
    return {"slope": fit.slope, "slope_se": fit.slope_se,
            "slope_ci95": None if fit.slope_ci95 is None else list(fit.slope_ci95), "expected": -1.0}


def _print_simulate_summary(summary, files):
    head = f"  {'width':>6}  {'seeds':>5}  {'f at the last step (mean ± SE)':>31}  {'wall s':>7}"
    lim = summary.get("limit")
    if lim is not None:
        head += f"  {'E|f_n − f̂|² (± SE)':>22}"
    lines = ["nfd simulate: summary", head]
    for r in summary["runs"]:
        m, e = np.asarray(r["mean"], np.float64).ravel(), np.asarray(r["stderr"], np.float64).ravel()
        seeds = summary["config"].get("simulate", {}).get("seeds", "")
        last = f"{m[-1]:.4g} ± {e[-1]:.2g}"
        row = f"  {r['width']:>6}  {seeds!s:>5}  {last:>31}  {r['wall_time_s']:>7.1f}"
        if lim is not None:
            se = r.get("ms_distance_to_limit_se")
            cell = f"{r['ms_distance_to_limit']:.3g}" + (f" ± {se:.2g}" if se is not None else "")
            row += f"  {cell:>22}"
        lines.append(row)
    if lim is not None:
        fit = lim.get("ms_distance_fit")
        lines.append(f"  limit: method {lim['method']}, outputs {_numbers(lim['outputs'])}")
        if fit is None:
            lines.append("  fitted slope of E|f_n − f̂|² against width: n/a (needs two widths)")
        else:
            ci = fit["slope_ci95"]
            ci_txt = f", 95% interval [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else " (two points, no interval)"
            lines.append(f"  fitted slope of E|f_n − f̂|² against width: {fit['slope']:.2f}{ci_txt}; expected −1 (1/n)")
    lines.append(f"  files: {', '.join(files)}")
    print("\n".join(lines))


def _find_bench_dir(arg):
    cands = [Path(arg)] if arg else [Path.cwd() / "benchmarks", Path(__file__).resolve().parents[1] / "benchmarks"]
    for c in cands:
        if c.is_dir():
            return c
    raise ValueError("bench: no benchmarks/ folder found (run from a clone of the repository or pass --dir)")


def cmd_bench(args) -> int:
    d = _find_bench_dir(args.dir)
    avail = sorted(p.stem for p in d.glob("*.py") if not p.name.startswith("_") and p.stem != "run_all")
    if (d / "studies").is_dir():  # the paper-claim studies: benchmarks/studies/<name>.py
        avail += sorted(f"studies/{p.stem}" for p in (d / "studies").glob("*.py") if not p.name.startswith("_"))
    if args.list:
        for a in avail:
            print(a)
        return 0
    names = args.names or avail
    bad = [n for n in names if n not in avail]
    if bad:
        raise ValueError(f"bench: unknown benchmark(s) {bad}; available in {d}: {avail}")
    log = _Log(args.quiet)
    failed = []
    for n in names:
        cmd = [sys.executable, str(d / f"{n}.py")] + ([] if args.full else ["--quick"])
        log(f"bench: running {' '.join(cmd[1:])}")
        t = time.perf_counter()
        rc = subprocess.call(cmd, cwd=str(d.parent))
        log(f"bench: {n} finished with exit code {rc} in {time.perf_counter() - t:.1f}s")
        if rc:
            failed.append(n)
    if failed:
        print(f"nfd bench: failed: {failed}", file=sys.stderr)
        return 1
    return 0


def cmd_template(args) -> int:
    sys.stdout.write(template_text(args.format, args.method))
    return 0


def _short(kw):
    return ", ".join(f"{k}={getattr(v, '__name__', v)}" for k, v in kw.items())


# ---------------------------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with errors that help: the usage of the (sub)command that failed, a
    "did you mean" for a misspelled option or command, and where to find the options."""

    def _option_strings(self) -> list[str]:
        return [o for a in self._actions for o in a.option_strings]

    def _choices(self) -> list[str]:
        out = []
        for a in self._actions:
            if isinstance(a, argparse._SubParsersAction):
                out += list(a.choices)
        return out

    def suggestions(self, message: str) -> list[str]:
        """'did you mean' lines for an argparse error message."""
        hints = []
        m = re.search(r"unrecognized arguments: (.*)", message)
        if m:
            for tok in m.group(1).split():
                if tok.startswith("-"):
                    opt = tok.split("=", 1)[0]
                    close = difflib.get_close_matches(opt, self._option_strings(), n=1, cutoff=0.5)
                    if close:
                        hints.append(f"did you mean {close[0]} (instead of {opt})?")
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2))
            close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.5)
            if close:
                hints.append(f"did you mean {close[0]!r} (instead of {m.group(1)!r})?")
        return hints

    def error(self, message):
        self.print_usage(sys.stderr)
        lines = [f"{self.prog}: error: {message}"] + [f"{self.prog}: {h}" for h in self.suggestions(message)]
        lines.append(f"Run '{self.prog} --help' for the options.")
        self.exit(2, "\n".join(lines) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nfd",
        description="Infinite width-and-depth limits of residual networks, and finite networks to compare "
                    "them with. Start with `nfd template > run.toml`, then `nfd solve run.toml`.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp):
        sp.add_argument("config", help="configuration file (.toml or .json); `nfd template` prints an example")
        sp.add_argument("--out", metavar="DIR", help="output folder (overrides [output] dir; default nfd-out)")
        sp.add_argument("--format", choices=("npz", "json"),
                        help="result file format (overrides [output] format; default npz)")
        sp.add_argument("--no-figure", action="store_true", help="do not write the PNG figure")
        sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config entry, e.g. --set model.lr=0.25 --set solve.particles=2048 "
                             "(VALUE is read as JSON, else as a string); repeatable")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")

    s = sub.add_parser("solve", help="solve the infinite-width limit described by a config file",
                       description="Solve the limit ([solve] method = particles | gamma_c | mean_ode) on the "
                                   "[data] stream with the [model] network. Writes <out>/solve.npz (or .json) "
                                   "with the result and its configuration (read it back with nfd.load), a "
                                   "solve_summary.json (outputs, losses, wall time, machine) and solve.png.")
    common(s)
    s.set_defaults(func=cmd_solve)

    m = sub.add_parser("simulate", help="train finite networks of each width in [simulate] widths",
                       description="Train [simulate] seeds finite networks for every width in [simulate] widths "
                                   "(progress is reported between chunks of SGD steps). Writes "
                                   "<out>/simulate_n<width>.npz per width, simulate.json (seed means, standard "
                                   "errors, wall times, machine) and simulate.png.")
    common(m)
    m.add_argument("--limit", action="store_true",
                   help="also solve the [solve] limit, draw it, and fit the mean-square distance of the "
                        "networks to it against width (log-log slope with a 95%% interval; expected 1/n)")
    m.set_defaults(func=cmd_simulate)

    b = sub.add_parser("bench", help="run the benchmark scripts of a clone of the repository",
                       description="Run benchmarks/<name>.py and benchmarks/studies/<name>.py with --quick (or "
                                   "at full size with --full). Each writes benchmarks/results/<name>.json and a PNG.")
    b.add_argument("names", nargs="*", help="benchmark names, e.g. nfd_solver or studies/gia (default: all); "
                                           "see --list")
    b.add_argument("--list", action="store_true", help="list the available benchmarks and exit")
    b.add_argument("--full", action="store_true", help="run at full size (hours on a laptop) instead of --quick")
    b.add_argument("--dir", help="the benchmarks folder (default: ./benchmarks)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    b.set_defaults(func=cmd_bench)

    t = sub.add_parser("template", help="print an example configuration",
                       description="Print an annotated example configuration to stdout.")
    t.add_argument("--method", default="particles", choices=("particles", "gamma_c", "mean_ode"),
                   help="which limit the example solves (default particles)")
    t.add_argument("--format", default="toml", choices=("toml", "json"), help="output format (default toml)")
    t.set_defaults(func=cmd_template)
    return p


def main(argv=None) -> int:
    """Entry point of the ``nfd`` command (returns the exit status)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # report unknown options with the usage of the subcommand they were given to
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        target = sub.choices.get(getattr(args, "command", None), parser) if sub is not None else parser
        target.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"nfd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # DivergenceError, MemoryEstimateError: clear message, non-zero exit
        from ._errors import DivergenceError, MemoryEstimateError

        if isinstance(e, (DivergenceError, MemoryEstimateError)):
            print(f"nfd {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
