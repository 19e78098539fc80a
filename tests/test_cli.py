"""The ``nfd`` command line: --help documents every option, config files round-trip."""

import json
import subprocess
import sys

import numpy as np
import pytest

import nfd
from nfd._cli import build_parser, load_config, main, make_data, template_text

SMALL = ["--set", "data.samples=4", "--set", "data.input_dim=2", "--set", "model.depth=2",
         "--set", "solve.particles=64", "--set", "simulate.widths=[16, 32]", "--set", "simulate.seeds=2"]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    top = capsys.readouterr().out
    for cmd in ("solve", "simulate", "bench", "template"):
        assert cmd in top
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sp in sub.choices.items():
        for act in sp._actions:
            assert act.help and len(act.help) > 10, (name, act.dest)
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "usage: nfd " + name in capsys.readouterr().out
    # the module runs as a program too (what the installed `nfd` script calls)
    out = subprocess.run([sys.executable, "-m", "nfd._cli", "--help"], capture_output=True, text=True, check=True)
    assert "nfd template" in out.stdout


def test_toml_and_json_configs_round_trip_to_the_same_limit(tmp_path):
    (tmp_path / "run.toml").write_text(template_text("toml"))
    (tmp_path / "run.json").write_text(template_text("json"))
    assert load_config(tmp_path / "run.toml") == load_config(tmp_path / "run.json")
    assert main(["solve", str(tmp_path / "run.toml"), "--out", str(tmp_path / "a"), "-q", *SMALL]) == 0
    assert main(["solve", str(tmp_path / "run.json"), "--out", str(tmp_path / "b"), "--format", "json", "-q",
                 "--no-figure", *SMALL]) == 0
    a, cfg = nfd.load(tmp_path / "a" / "solve.npz", return_config=True)
    b = nfd.load(tmp_path / "b" / "solve.json")
    assert (tmp_path / "a" / "solve.png").stat().st_size > 1000
    assert not (tmp_path / "b" / "solve.png").exists()
    # the stored configuration is the one that ran (overrides applied)
    assert cfg["model"]["depth"] == 2 and cfg["solve"]["particles"] == 64
    # the same run done directly from Python gives bit-identical outputs
    X, Y = make_data(cfg)
    direct = nfd.solve(X, Y, depth=2, particles=64, activation="tanh", lr=0.5, T=1.0, backward="exact", seed=0)
    np.testing.assert_array_equal(a.outputs, direct.outputs)
    np.testing.assert_array_equal(b.outputs, direct.outputs)
    summary = json.loads((tmp_path / "a" / "solve_summary.json").read_text())
    np.testing.assert_allclose(summary["outputs"], direct.outputs, rtol=1e-6)
    assert summary["wall_time_s"] > 0 and summary["machine"]["jax"]


def test_solve_replicates_reach_the_solver_and_the_summary_reports_standard_errors(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(template_text("toml"))
    SMALL4 = [a.replace("solve.particles=64", "solve.particles=128") for a in SMALL]
    assert main(["solve", str(tmp_path / "run.toml"), "--out", str(tmp_path / "a"), "--no-figure", "-q",
                 *SMALL4, "--set", "solve.replicates=4"]) == 0
    out = capsys.readouterr().out
    assert "standard errors" in out and "over 4 replicate systems" in out and "± " in out
    _, cfg = nfd.load(tmp_path / "a" / "solve.npz", return_config=True)
    X, Y = make_data(cfg)
    direct = nfd.solve(X, Y, depth=2, particles=128, replicates=4, activation="tanh", lr=0.5, T=1.0,
                       backward="exact", seed=0)
    summary = json.loads((tmp_path / "a" / "solve_summary.json").read_text())
    # the same computation (bit-identical, as the outputs above); float32 values survive JSON exactly
    np.testing.assert_array_equal(np.float32(summary["outputs_stderr"]), direct.outputs_stderr)
    np.testing.assert_array_equal(np.float32(summary["losses_stderr"]), direct.losses_stderr)
    assert np.all(np.asarray(summary["outputs_stderr"]) > 0)


def test_simulate_with_limit_writes_results_and_distances(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(template_text("toml"))
    assert main(["simulate", str(tmp_path / "run.toml"), "--out", str(tmp_path), "--limit", *SMALL]) == 0
    err = capsys.readouterr().err
    assert "step 4/4" in err  # progress between chunks of the compiled loop
    summary = json.loads((tmp_path / "simulate.json").read_text())
    lim = nfd.load(tmp_path / "solve.npz")
    for run in summary["runs"]:
        r = nfd.load(tmp_path / f"simulate_n{run['width']}.npz")
        assert r.outputs.shape == (2, 4) and r.network.width == run["width"]
        d = np.sqrt(np.mean((r.mean - lim.outputs) ** 2))
        assert run["rms_distance_to_limit"] == pytest.approx(d, rel=1e-6)
    assert (tmp_path / "simulate.png").exists()


def test_bad_configs_fail_fast_with_the_key_named(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    for body, needle in [
        ({"model": {"depth": 2}, "solver": {}}, "unknown section"),
        ({"model": {"depth": 2, "widht": 3}}, "widht"),
        ({"model": {"depth": 2}, "solve": {"method": "magic"}}, "method"),
        ({"model": {"depth": 2}, "data": {"kind": "synthetic", "samples": -1}}, "samples"),
        ({"data": {}}, "[model]"),
    ]:
        cfg.write_text(json.dumps(body))
        assert main(["solve", str(cfg), "--out", str(tmp_path / "o"), "-q"]) == 2
        assert needle in capsys.readouterr().err
    assert main(["solve", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["solve", str(cfg), "--set", "nodot=3"]) == 2
    assert "section.key=value" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_bench_lists_and_runs_scripts_with_quick(tmp_path, capsys):
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "_helper.py").write_text("")
    (d / "toy.py").write_text("import sys, pathlib\npathlib.Path('argv.txt').write_text(' '.join(sys.argv[1:]))\n")
    assert main(["bench", "--dir", str(d), "--list"]) == 0
    assert capsys.readouterr().out.split() == ["toy"]
    assert main(["bench", "toy", "--dir", str(d), "-q"]) == 0
    assert (tmp_path / "argv.txt").read_text() == "--quick"
    assert main(["bench", "nope", "--dir", str(d)]) == 2


def test_simulate_checkpoint_option_writes_one_file_per_width_and_resumes(tmp_path):
    """`checkpoint` in [simulate] is passed to nfd.simulate, one file per width; a rerun of the same
    config finds the finished checkpoints and gives the same numbers back (bit for bit)."""
    (tmp_path / "run.toml").write_text(template_text("toml"))
    ck = tmp_path / "ck" / "sim.npz"
    (tmp_path / "ck").mkdir()
    args = ["simulate", str(tmp_path / "run.toml"), "-q", "--no-figure", *SMALL,
            "--set", f'simulate.checkpoint="{ck}"', "--set", "simulate.checkpoint_every=2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["sim_n16.npz", "sim_n32.npz"]
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ck").iterdir()}
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ck").iterdir()} == stamp  # nothing recomputed
    for n in (16, 32):
        a, b = nfd.load(tmp_path / "a" / f"simulate_n{n}.npz"), nfd.load(tmp_path / "b" / f"simulate_n{n}.npz")
        np.testing.assert_array_equal(a.outputs, b.outputs)
    # the checkpointed run is the plain run
    assert main(["simulate", str(tmp_path / "run.toml"), "-q", "--no-figure", *SMALL, "--out", str(tmp_path / "c")]) == 0
    for n in (16, 32):
        a, c = nfd.load(tmp_path / "a" / f"simulate_n{n}.npz"), nfd.load(tmp_path / "c" / f"simulate_n{n}.npz")
        np.testing.assert_array_equal(a.outputs, c.outputs)


def test_help_is_plain_words_and_mistakes_get_the_subcommand_usage_and_a_suggestion(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and ":func:" not in top and ":class:" not in top
    # a misspelled subcommand: top-level usage and the closest command
    with pytest.raises(SystemExit) as e:
        main(["slove", "run.toml"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean 'solve'" in err
    # a misspelled option: the usage of the subcommand it was given to, and the closest option
    with pytest.raises(SystemExit) as e:
        main(["template", "--methd", "gamma_c"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: nfd template") and "did you mean --method" in err
    with pytest.raises(SystemExit):
        main(["simulate", "run.toml", "--limt"])
    err = capsys.readouterr().err
    assert err.startswith("usage: nfd simulate") and "did you mean --limit" in err


def test_solve_and_simulate_print_a_summary_and_label_their_figures(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfd.plotting import check_figure, plot_result

    (tmp_path / "run.toml").write_text(template_text("toml"))
    assert main(["simulate", str(tmp_path / "run.toml"), "--out", str(tmp_path), "--limit", "-q", *SMALL]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "simulate.json").read_text())
    fit = summary["limit"]["ms_distance_fit"]
    # the printed table carries the fitted slope and its interval as stored, and the files written
    assert "nfd simulate: summary" in out and f"{fit['slope']:.2f}" in out and "expected" in out
    assert "95% interval" in out or "no interval" in out
    assert str(tmp_path / "simulate.png") in out and str(tmp_path / "simulate_n16.npz") in out
    # the mean-square distance is the mean over seeds of the per-network distance (steps k ≥ 1)
    lim = nfd.load(tmp_path / "solve.npz")
    r = nfd.load(tmp_path / "simulate_n32.npz")
    per_seed = np.mean((r.outputs[:, 1:] - lim.outputs[None, 1:]) ** 2, axis=1)
    run = next(x for x in summary["runs"] if x["width"] == 32)
    assert run["ms_distance_to_limit"] == pytest.approx(per_seed.mean(), rel=1e-6)
    assert run["ms_distance_to_limit_se"] == pytest.approx(per_seed.std(ddof=1) / np.sqrt(2), rel=1e-6)

    assert main(["solve", str(tmp_path / "run.toml"), "--out", str(tmp_path / "s"), "-q", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "nfd solve: summary" in out and "wall time" in out and str(tmp_path / "s" / "solve.npz") in out
    # the solve figure: a plain-words legend (not the class name) and labelled heat-map axes
    fig = plot_result(lim)
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert labels and not any("ParticleSolution" in t for t in labels)
    assert check_figure(fig) == []
    plt.close("all")


def test_progress_bar_starts_after_compilation(capsys):
    from nfd._cli import _Log, _Progress

    bar = _Progress("solve", _Log(quiet=False))
    import time as _t

    _t.sleep(0.2)  # stands for compilation + the first chunk
    bar(1, 4)
    assert bar.compile_s >= 0.2
    bar(4, 4)  # the bar's clock starts at the first report: its rate excludes compilation
    err = capsys.readouterr().err
    assert "compiled and ran the first 1/4 steps" in err and "step 4/4" in err
    assert bar.bar.format_dict["elapsed"] < 0.2


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("sklearn"):
            raise ModuleNotFoundError("No module named 'sklearn'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ValueError, match=r"nfd\[examples\]|\.\[examples\]"):
        make_data({"data": {"kind": "digits"}, "model": {}})
