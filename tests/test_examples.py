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
                    "--grid", "3", "--scan", "3", "--iterations", "2"],
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


def _finite_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, float):
        yield obj


# Running every example at its SMALL size, checking its result and its figure's style:
# tests/test_figures.py::test_example_figure_follows_the_style (one run per example, not two).


@pytest.mark.parametrize("name", sorted(set(SMALL) | set(SEPARATE)))
def test_example_help_runs_as_a_program(name):
    r = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--out" in r.stdout
