"""Optional: nfd's depth-L NNGP recursion vs neural-tangents' stax residual network built the same
way. neural-tangents 0.6.5 needs jax 0.4.30, so it runs in a separate virtualenv
(/tmp/nt-venv or $NFD_NT_PYTHON, see docs/kernels.md); the test is skipped when that is absent."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nfd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


def _nt_python():
    py = os.environ.get("NFD_NT_PYTHON", "/tmp/nt-venv/bin/python")
    if not os.path.exists(py):
        return None, f"no neural-tangents virtualenv at {py}"
    r = subprocess.run([py, "-c", "import neural_tangents"], capture_output=True, text=True)
    if r.returncode:
        return None, f"neural_tangents does not import in {py}"
    return py, None


@pytest.mark.slow
def test_matches_neural_tangents_stax_resnet():
    py, why = _nt_python()
    if py is None:
        pytest.skip(f"optional neural-tangents comparison skipped: {why}")
    from kernels import run_nt  # benchmarks/kernels.py

    X = np.random.default_rng(0).normal(size=(7, 4))
    for L in (3, 20):
        out, err = run_nt(py, X, L, 1.3)
        assert out is not None, err
        K, info = out
        # Same recursion, same closed-form arc-cosine kernel, both float64: round-off agreement.
        np.testing.assert_allclose(K, nfd.nngp_kernel(X, activation="relu", T=1.3, depth=L), rtol=1e-10, atol=1e-12)
        json.dumps(info)
