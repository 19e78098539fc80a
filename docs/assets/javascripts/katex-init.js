// Render the mathematics that pymdownx.arithmatex (generic mode) leaves in the page:
// <span class="arithmatex">\(...\)</span> for inline and <div class="arithmatex">\[...\]</div>
// for display formulas. Uses the KaTeX shipped in assets/katex (no network access needed).
(function () {
  function strip(tex) {
    tex = tex.trim();
    var pairs = [["\\(", "\\)", false], ["\\[", "\\]", true], ["$$", "$$", true]];
    for (var i = 0; i < pairs.length; i++) {
      var p = pairs[i];
      if (tex.length >= p[0].length + p[1].length && tex.indexOf(p[0]) === 0 &&
          tex.lastIndexOf(p[1]) === tex.length - p[1].length) {
        return [tex.slice(p[0].length, tex.length - p[1].length), p[2]];
      }
    }
    return [tex, null];
  }
  function render(root) {
    if (typeof katex === "undefined") { return; }
    var nodes = (root || document).querySelectorAll(".arithmatex");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      if (el.querySelector(".katex")) { continue; }          // already rendered
      var parsed = strip(el.textContent);
      var display = parsed[1] === null ? el.tagName === "DIV" : parsed[1];
      katex.render(parsed[0], el, { displayMode: display, throwOnError: false });
    }
  }
  if (typeof document$ !== "undefined") {                     // Material's page observable
    document$.subscribe(function () { render(document); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { render(document); });
  } else {
    render(document);
  }
})();
