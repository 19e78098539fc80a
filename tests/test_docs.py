"""The documentation builds with warnings treated as errors (``mkdocs build --strict``)."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing():
    out = []
    for m in NEEDED:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except ModuleNotFoundError:
            out.append(m)
    return out


def test_nav_pages_exist():
    nav = re.findall(r":\s*([\w\-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), flags=re.M)
    assert nav, "mkdocs.yml has no nav pages"
    missing = [p for p in nav if not (ROOT / "docs" / p).exists()]
    assert not missing, f"nav lists pages that do not exist: {missing}"


@pytest.mark.skipif(bool(_missing()), reason=f"mkdocs toolchain not installed ({', '.join(_missing())}); "
                    "pip install -e '.[test]' installs it")
def test_docs_build_strict(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    # the reference really was generated from docstrings
    for name in ("simulate", "solve_particles", "limit_loss_fn", "plot_rates"):
        assert name in api
