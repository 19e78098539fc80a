"""Every example script runs (at a small size) and writes its figure.

Each example exposes ``main(argv)``; it is run in-process (sharing compiled programs) with size
arguments that keep the whole file to about two minutes on 2 CPU cores.  ``--help`` of every
script is run as a separate program, which checks the ``python examples/<name>.py`` entry point.
"""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SMALL = {
    "quickstart": ["--depth", "2", "--steps", "4", "--seeds", "2"],
    "gia_vs_exact": ["--depths", "2", "--steps", "3", "--width", "16", "--seeds", "2", "--particles", "256"],
    "two_layer_depth_aware": ["--depths", "2", "4", "--width", "16", "--seeds", "2", "--steps", "3"],
    "gamma_c": ["--depths", "2", "--steps", "3", "--width", "16", "--seeds", "2", "--particles", "256"],
    "mean_ode": ["--depths", "2", "4", "--seeds", "2", "--steps", "3", "--grid", "8", "--particles", "32"],
    "nngp_digits": ["--train", "40", "--test", "40", "--Ts", "1", "--widths", "16", "--seeds", "2",
                    "--depth", "2"],
    "lr_transfer": ["--depths", "2", "--width", "16", "--seeds", "2", "--particles", "128", "--steps", "4",
                    "--grid", "2", "--scan", "3", "--iterations", "2"],
}

# examples that launch processes and write no figure: run by their own test file
SEPARATE = {"multihost": "tests/test_multihost.py"}


def _scripts():
    return sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_every_example_has_a_small_configuration():
    assert set(_scripts()) == set(SMALL) | set(SEPARATE), "add new examples to SMALL (and remove deleted ones)"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _numbers(obj, path=""):
    """(path, value) of every float in the example's returned results."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, float):
        yield path, obj


@pytest.mark.parametrize("name", sorted(SMALL))
def test_example_runs_and_writes_its_figure(name, tmp_path):
    import matplotlib.pyplot as plt

    out = tmp_path / f"{name}.png"
    res = _load(name).main([*SMALL[name], "--out", str(out)])
    plt.close("all")
    assert out.exists() and out.stat().st_size > 5000
    nums = list(_numbers(res))
    # every reported number is finite: a NaN (e.g. a standard error of one seed, a fit through one
    # point) is a result the example should not report at all, never a success
    assert nums, "the example returned no numbers"
    bad = [(p, x) for p, x in nums if not math.isfinite(x)]
    assert not bad, f"non-finite results: {bad[:10]}"


@pytest.mark.parametrize("name", sorted(set(SMALL) | set(SEPARATE)))
def test_example_help_runs_as_a_program(name):
    r = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--out" in r.stdout
