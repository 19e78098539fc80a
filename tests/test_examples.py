"""Every example script has a small configuration and a working ``--help``.

Each example exposes ``main(argv)``; ``SMALL`` holds size arguments that keep a run short on 2
CPU cores. ``tests/test_figures.py`` runs each example in-process at that size (sharing
compiled programs) and checks its result and its figure.  ``--help`` of every
script is run as a separate program, which checks the ``python examples/<name>.py`` entry point.
"""

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


# Running every example at its SMALL size, checking its result and its figure's style:
# tests/test_figures.py::test_example_figure_follows_the_style (one run per example, not two).


@pytest.mark.parametrize("name", sorted(set(SMALL) | set(SEPARATE)))
def test_example_help_runs_as_a_program(name):
    r = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--out" in r.stdout
