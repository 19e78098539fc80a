"""mkdocs hook: show Sphinx cross-reference roles in docstrings as code (linked when possible).

The package's docstrings use ``:func:`name``` and ``:class:`~nfd.X``` (read by ``help()`` and
Sphinx-aware tools); mkdocstrings renders Markdown, which leaves the role text in the page
(":class:" before the code). This hook removes the role, shortens ``~a.b.C`` to ``C`` as Sphinx
does, and links the name to its entry when the page documents it (``id="nfd.X"``).
"""

import re

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj|py:\w+):<code>(~?)([\w.]+)</code>")


def on_page_content(html, page, config, files):  # noqa: ARG001 (mkdocs hook signature)
    ids = set(re.findall(r'id="([\w.]+)"', html))

    def repl(m):
        tilde, name = m.groups()
        shown = name.rsplit(".", 1)[-1] if tilde else name
        for target in (name, f"nfd.{name}"):
            if target in ids:
                return f'<a href="#{target}"><code>{shown}</code></a>'
        return f"<code>{shown}</code>"

    return _ROLE.sub(repl, html)
