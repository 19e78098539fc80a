"""Optional: nfd's depth-L NNGP recursion vs neural-tangents' stax residual network built the same
way. neural-tangents 0.6.5 needs jax 0.4.30, so it runs in a separate virtualenv whose python
$NFD_NT_PYTHON names (``.ci/run`` builds one at ``.ci/.nt-venv``, see tests/README.md).  The test is
skipped, with that reason, only when the variable is unset; a set variable whose interpreter is
missing or cannot import neural_tangents is a failure, not a skip."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nfd

# float64 throughout (round-off comparisons / the Γ/C recursion): 64-bit on for this file only
pytestmark = pytest.mark.usefixtures("x64")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


def _nt_python():
    py = os.environ.get("NFD_NT_PYTHON")
    if not py:
        pytest.skip("NFD_NT_PYTHON is unset: no neural-tangents virtualenv to compare with "
                    "(.ci/run builds one; see tests/README.md)")
    assert os.path.exists(py), f"NFD_NT_PYTHON={py} does not exist"
    r = subprocess.run([py, "-c", "import neural_tangents"], capture_output=True, text=True)
    assert r.returncode == 0, f"neural_tangents does not import in NFD_NT_PYTHON={py}:\n{r.stderr[-2000:]}"
    return py


@pytest.mark.slow
def test_matches_neural_tangents_stax_resnet():
    py = _nt_python()
    from kernels import run_nt  # benchmarks/kernels.py

    X = np.random.default_rng(0).normal(size=(7, 4))
    for L in (3, 20):
        out, err = run_nt(py, X, L, 1.3)
        assert out is not None, err
        K, info = out
        # Same recursion, same closed-form arc-cosine kernel, both float64: round-off agreement.
        np.testing.assert_allclose(K, nfd.nngp_kernel(X, activation="relu", T=1.3, depth=L), rtol=1e-10, atol=1e-12)
        json.dumps(info)
