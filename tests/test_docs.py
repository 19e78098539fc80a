"""The documentation site: it builds with every warning an error (``mkdocs build --strict``), and in a
real headless browser (Debian's ``chromium``) every page renders its mathematics with the KaTeX
shipped in ``docs/assets/katex`` (no network), every internal link and image resolves, and nothing is
fetched from another host. Screenshots of the home page and the NFD solver page are saved to
``$NFD_TEST_ARTIFACTS`` (default ``tests/artifacts/``).

Without chromium the browser tests skip, unless ``NFD_REQUIRE_BROWSER=1`` (set by CI), where a
missing browser fails. ``.ci/install-chromium.sh`` installs it on Debian/Ubuntu.
"""

import functools
import html
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

# one worker builds this file's module fixtures (pytest-xdist, --dist loadgroup in pyproject.toml)
pytestmark = pytest.mark.xdist_group("docs")

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
PAPERS = {  # arXiv id -> a word of the title; every paper nfd implements (docs/references.md)
    "2512.21075": "Feature Learning Dynamics",
    "2310.02244": "Tensor Programs VI",
    "2509.10167": "Hidden Width",
    "2309.16620": "Depthwise Hyperparameter Transfer",
}


def _missing():
    out = []
    for m in NEEDED:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except ModuleNotFoundError:
            out.append(m)
    return out


needs_mkdocs = pytest.mark.skipif(
    bool(_missing()), reason=f"mkdocs toolchain not installed ({', '.join(_missing())}); "
    "pip install -e '.[test]' installs it")


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_nav_pages_exist():
    nav = re.findall(r":\s*([\w\-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), flags=re.M)
    assert nav, "mkdocs.yml has no nav pages"
    missing = [p for p in nav if not (ROOT / "docs" / p).exists()]
    assert not missing, f"nav lists pages that do not exist: {missing}"


def test_link_validation_is_strict():
    """Every link check of mkdocs is a warning, and strict mode turns warnings into errors."""
    cfg = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^strict:\s*true\s*$", cfg, flags=re.M)
    block = re.search(r"^validation:\n((?:[ \t]+.*\n?)+)", cfg, flags=re.M)
    assert block, "mkdocs.yml has no validation: block"
    levels = dict(re.findall(r"^\s+(\w+):\s*(\w+)", block.group(1), flags=re.M))
    for key in ("omitted_files", "not_found", "absolute_links", "unrecognized_links", "anchors"):
        assert levels.get(key) == "warn", f"validation.{key} is {levels.get(key)!r}, not 'warn'"


def test_docs_reference_no_development_paths():
    """Readers have the package and its docs, not the development workspace."""
    bad = re.compile(r"\.\./shared|shared/|notes/|/work/")
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
            for p in sorted((ROOT / "docs").glob("*.md"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert not hits, "docs point to development-only paths:\n" + "\n".join(hits)


def test_papers_cited_with_arxiv_ids():
    refs = (ROOT / "docs" / "references.md").read_text()
    for arxiv, title in PAPERS.items():
        assert f"arXiv:{arxiv}" in refs and title in refs, f"references.md lacks {title} (arXiv:{arxiv})"
        assert f"https://arxiv.org/abs/{arxiv}" in refs
    # every page that implements a paper links to its reference entry
    for page in ("index.md", "nfd_solver.md", "gamma_c.md", "mean_ode.md", "kernels.md"):
        assert "references.md#" in (ROOT / "docs" / page).read_text(), f"{page} cites no paper"


def test_quickstart_is_the_same_in_readme_and_docs():
    """One quickstart: the first Python block of docs/getting-started.md is the README's (which
    tests/test_readme.py runs)."""
    readme = _python_blocks((ROOT / "README.md").read_text())[0]
    docs = _python_blocks((ROOT / "docs" / "getting-started.md").read_text())[0]
    assert docs.strip() == readme.strip()


def test_plot_snippet_saves_every_figure(tmp_path, monkeypatch):
    """The "Plot it" snippet of docs/getting-started.md runs after the quickstart, as written,
    and saves every figure it draws, with every panel drawn on (titles or labels, data)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    blocks = _python_blocks((ROOT / "docs" / "getting-started.md").read_text())
    plot = next(b for b in blocks if "nfd.plotting" in b)
    # run as written (the same shapes as tests/test_readme.py, so one compilation serves both)
    small = lambda code: code.replace("print(", "(lambda *a: None)(")
    saved = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (saved.append(fig), real_savefig(fig, *a, **k))[1])
    monkeypatch.chdir(tmp_path)
    plt.close("all")
    ns: dict = {}
    exec(compile(small(blocks[0]), "quickstart", "exec"), ns)
    exec(compile(small(plot), "plot-it", "exec"), ns)
    figs = [plt.figure(n) for n in plt.get_fignums()]
    try:
        assert figs, "the snippet draws no figure"
        unsaved = [f for f in figs if f not in saved]
        assert not unsaved, f"{len(unsaved)} of {len(figs)} figures drawn by the snippet are never saved"
        for f in figs:
            panels = [ax for ax in f.axes if ax.get_label() != "<colorbar>"]
            for ax in panels:
                assert ax.lines or ax.images or ax.collections or ax.patches, "an empty panel"
                assert ax.get_title() or ax.get_xlabel(), "a panel without title or axis label"
        assert (tmp_path / "figure.png").stat().st_size > 20000
    finally:
        plt.close("all")


# ---------------------------------------------------------------------------------------------
# the built site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if _missing():
        pytest.skip(f"mkdocs toolchain not installed ({', '.join(_missing())}); "
                    "pip install -e '.[test]' installs it")
    out = tmp_path_factory.mktemp("docs") / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return out


def test_docs_build_strict(site):
    assert (site / "api" / "index.html").exists()
    api = (site / "api" / "index.html").read_text()
    # the reference really was generated from docstrings
    for name in ("simulate", "solve_particles", "limit_loss_fn", "plot_rates"):
        assert name in api
    # the renderer ships with the site, and no page loads anything from another host
    for f in ("assets/katex/katex.min.js", "assets/katex/katex.min.css",
              "assets/katex/fonts/KaTeX_Main-Regular.woff2", "assets/javascripts/katex-init.js"):
        assert (site / f).exists(), f
    for page in site.rglob("*.html"):
        ext = re.findall(r"<(?:script|link|img)\b[^>]*?(?:src|href)=\"((?:https?:)?//[^\"]+)\"", page.read_text())
        assert not ext, f"{page.relative_to(site)} loads {ext}"


def _chromium():
    for name in (os.environ.get("NFD_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def chromium():
    exe = _chromium()
    if exe is None:
        msg = ("no headless browser: Debian's chromium is not installed "
               "(bash .ci/install-chromium.sh, or set NFD_CHROMIUM)")
        if os.environ.get("NFD_REQUIRE_BROWSER"):
            pytest.fail(msg + "; NFD_REQUIRE_BROWSER is set, so this is a failure")
        pytest.skip(msg + "; set NFD_REQUIRE_BROWSER=1 to make this a failure")
    return exe


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the browser closed a connection early (a cancelled request): not a site error
        super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def served(site):
    """The built site on http://127.0.0.1:<port>/ (file:// URLs would block some scripts)."""
    dirs = [p.relative_to(site).parent for p in site.rglob("index.html")]
    pages = sorted("/" if d == Path(".") else f"/{d.as_posix()}/" for d in dirs if "assets" not in d.parts)
    harness = (Path(__file__).parent / "_docs_harness.html").read_text()
    (site / "_harness.html").write_text(harness.replace("__PAGES__", json.dumps(pages)))
    server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pages
    server.shutdown()
    server.server_close()


def _run_chromium(exe, *args, timeout=180):
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--mute-audio", f"--user-data-dir={profile}", *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def rendered(chromium, served):
    base, pages = served
    dom = _run_chromium(chromium, "--virtual-time-budget=60000", "--dump-dom", base + "/_harness.html")
    m = re.search(r'<pre id="out">(.*?)</pre>', dom, flags=re.S)
    assert m, dom[-2000:]
    data = json.loads(html.unescape(m.group(1)))
    assert data["done"], data.get("error")
    assert [p["path"] for p in data["pages"]] == pages
    return base, data["pages"]


def test_every_page_renders_its_mathematics(rendered):
    """Formulas rendered by KaTeX on every page; no raw TeX, stray $…$ or Sphinx roles in the prose."""
    _, pages = rendered
    by_path = {p["path"]: p for p in pages}
    assert len(pages) >= 12, [p["path"] for p in pages]
    for p in pages:
        where = p["path"]
        assert p["katexLib"], f"{where}: KaTeX did not load"
        assert not p["unrendered"], f"{where}: formulas left unrendered: {p['unrendered'][:3]}"
        assert not p["katexErrors"], f"{where}: KaTeX errors: {p['katexErrors'][:3]}"
        assert not p["overflow"], f"{where}: display formulas wider than the page at 1280 px: {p['overflow']}"
        for raw in ("$$", "\\(", "\\)", "\\[", "\\]", "\\frac", "\\sqrt", "\\mathbb"):
            assert raw not in p["text"], f"{where}: raw TeX {raw!r} in the visible text"
        stray = re.findall(r"\$[^$\s][^$\n]{0,60}\$", p["text"])
        if where != "/api/":  # prose of the docs pages (the API page shows docstrings as written)
            stray += re.findall(r"\S{0,20}(?:[_^]\{|\^-\d)\S{0,20}", p["text"])  # TeX-like sub/superscripts
        assert not stray, f"{where}: unconverted inline maths {stray[:3]}"
        roles = re.findall(r"\S*:(?:func|class|meth|mod|attr|exc):\S*", p["text"])
        assert not roles, f"{where}: Sphinx roles shown as text: {roles[:3]}"
        bad_fonts = [f for f in p["fonts"] if f["status"] == "error"]
        assert not bad_fonts, f"{where}: fonts failed to load: {bad_fonts}"
    # the pages whose subject is mathematics really show formulas, display ones included
    for path in ("/nfd_solver/", "/gamma_c/", "/mean_ode/", "/kernels/"):
        assert by_path[path]["katex"] >= 5 and by_path[path]["katexDisplay"] >= 1, (path, by_path[path]["katex"])


def test_every_internal_link_and_image_resolves(rendered):
    base, pages = rendered
    ids = {p["path"]: set(p["ids"]) for p in pages}
    status: dict = {}
    problems = []
    for p in pages:
        for im in p["images"]:
            if not im["ok"]:
                problems.append(f"{p['path']}: image {im['src']} did not load")
        for res in p["resources"]:
            if not res.startswith(base):
                problems.append(f"{p['path']}: fetched {res} from another host")
        for href in p["links"]:
            if not href.startswith(base):
                continue  # external (arXiv, ...): not reachable from the test machine
            url, _, frag = href.partition("#")
            if url not in status:
                try:
                    with urllib.request.urlopen(url, timeout=30) as r:
                        status[url] = r.status
                except urllib.error.HTTPError as e:
                    status[url] = e.code
            if status[url] != 200:
                problems.append(f"{p['path']}: link {href} -> HTTP {status[url]}")
                continue
            path = urllib.parse.urlparse(url).path
            if frag and path in ids and urllib.parse.unquote(frag) not in ids[path]:
                problems.append(f"{p['path']}: link {href}: no element with id {frag!r}")
    assert not problems, "\n".join(problems[:30])


def _artifacts():
    d = Path(os.environ.get("NFD_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_screenshots(chromium, served, rendered):
    """Screenshots of the home page and the NFD solver page (test artefacts; look at them)."""
    base, _ = served
    out = _artifacts()
    for name, path, height in (("docs_home.png", "/", 1400), ("docs_nfd_solver.png", "/nfd_solver/", 2600)):
        f = out / name
        if f.exists():
            f.unlink()
        _run_chromium(chromium, "--virtual-time-budget=10000", "--hide-scrollbars",
                      f"--window-size=1280,{height}", f"--screenshot={f}", base + path)
        assert f.exists() and f.stat().st_size > 20000, f
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
