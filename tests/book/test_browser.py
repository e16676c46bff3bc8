"""The browser check fails where a reader would see a broken page (tiny hand-written sites).

Each site is served on 127.0.0.1 and opened in headless Chromium by :mod:`rlvr_dynamics.book.browser`,
the same code that checks every page of the built book (tests/test_built_book.py). A clean site
passes; a page pointing at a CDN, a missing image, a broken link or anchor, raw TeX, a script
error each make it fail.
"""

import base64

import pytest

from rlvr_dynamics.book import browser

# A 2×2 red PNG: a real image the browser decodes.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")
FIGURE = ('<figure><img src="{src}" alt="{alt}"><figcaption><p><span class="caption-number">Fig. 1 </span>'
          'A red square.</p></figcaption></figure>')
CLAIMS = '<table class="claims-table"><tr><th>claim</th><th>holds</th></tr><tr><td>a</td><td>yes</td></tr></table>'
# Display maths as MathJax leaves it: a container as wide as the column around a wider formula.
WIDE_MATHS = ('<div class="math"{style}><mjx-container display="true" style="display:block;overflow:hidden">'
              '<mjx-math style="display:inline-block;width:{width}px;height:20px">x</mjx-math></mjx-container></div>')
CLEAN = {
    "index.html": '<html><body><h1 id="top">Home</h1>' + FIGURE.format(src="pic.png", alt="A red square")
                  + '<a href="other.html#section">other</a> <a href="#top">top</a>'
                  '<a href="https://example.org/paper">a link elsewhere is not a request</a></body></html>',
    "other.html": '<html><body><h2 id="section">Section</h2><a href="index.html">home</a>'
                  + WIDE_MATHS.format(style=' style="overflow-x:auto"', width=300) + '</body></html>',
    # A chapter: its claims table, and an equation too wide for a phone that scrolls there.
    "notebooks/chapter.html": '<html><body>' + CLAIMS + '<pre>short output</pre>'
                              + WIDE_MATHS.format(style=' style="overflow-x:auto"', width=800) + '</body></html>',
}
BROKEN = {
    "a page pointing at a CDN": (
        {"index.html": '<html><head><script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js">'
                       '</script></head><body><p><span class="math notranslate nohighlight">\\(x^2\\)</span></p>'
                       '</body></html>'},
        ["request leaving 127.0.0.1 (blocked): https://cdn.jsdelivr.net/", "maths elements not typeset"]),
    "a missing image": (
        {"index.html": '<html><body><img src="_images/figure1.png" alt="missing"></body></html>'},
        ["image not loaded: _images/figure1.png", "HTTP 404 for _images/figure1.png"]),
    "a broken link": (
        {"index.html": '<html><body><a href="notebooks/nowhere.html">gone</a></body></html>'},
        ["broken link notebooks/nowhere.html: notebooks/nowhere.html does not exist"]),
    "a broken anchor": (
        {"index.html": '<html><body><a href="other.html#no-such-section">moved</a></body></html>',
         "other.html": '<html><body><h2 id="section">Section</h2></body></html>'},
        ["broken anchor other.html#no-such-section"]),
    "raw TeX left in the text": (
        {"index.html": '<html><body><p>the gap $\\boldsymbol g^+ - \\boldsymbol g^-$ unrendered</p></body></html>'},
        ["raw TeX in the text"]),
    "a script error": (
        {"index.html": '<html><body><script>undefinedFunction()</script></body></html>'},
        ["page error: ReferenceError: undefinedFunction is not defined"]),
    "a console error": (
        {"index.html": '<html><body><script>console.error("theme failed")</script></body></html>'},
        ["console error: theme failed"]),
    "a figure without a caption": (
        {"index.html": '<html><body><img src="pic.png" alt="A red square"></body></html>'},
        ["at 1400 px: figure without a numbered caption: pic.png", "at 420 px: figure without a numbered caption"]),
    "a figure whose alt text is its hashed file name": (
        {"index.html": '<html><body>' + FIGURE.format(src="pic.png", alt="../_images/57b8f8bb3a803f23f4e4.png")
                       + '</body></html>'},
        ["at 1400 px: figure whose alt text is a file name or empty: pic.png"]),
    "an overflowing output block": (
        {"index.html": '<html><body><pre>' + "claim  holds  worst margin  " * 12 + '</pre></body></html>'},
        ["at 1400 px: block overflows sideways: 'claim holds"]),
    "display maths clipped on a phone": (
        {"index.html": '<html><body>' + WIDE_MATHS.format(style="", width=800) + '</body></html>'},
        ["at 420 px: display maths clipped (neither fits nor scrolls)"]),
    "display maths too wide for a laptop": (
        {"index.html": '<html><body>' + WIDE_MATHS.format(style=' style="overflow-x:auto"', width=1600)
                       + '</body></html>'},
        ["at 1400 px: display maths wider than the column"]),
    "display maths running into its tag": (
        {"index.html": '<html><body><div class="math"><mjx-container display="true" style="display:block;'
                       'position:relative;width:400px"><mjx-math><mjx-mtable><mjx-table style="display:inline-block;'
                       'width:390px;height:20px">x = y</mjx-table><mjx-labels style="position:absolute;right:0;top:0;'
                       'width:40px;height:20px">(10)</mjx-labels></mjx-mtable></mjx-math></mjx-container></div>'
                       '</body></html>'},
        ["at 1400 px: display maths runs into its number '(10)'"]),
    "a stderr block": (
        {"index.html": '<html><body><div class="output stderr"><pre>UserWarning: careful</pre></div></body></html>'},
        ["at 1400 px: 1 stderr output block(s)", "at 420 px: 1 stderr output block(s)"]),
    "a chapter without its claims table": (
        {"index.html": '<html><body><pre>claims: see the appendix</pre></body></html>'},
        ["at 1400 px: no claims table (table.claims-table) on a chapter page"]),
}


def make_site(folder, pages):
    folder.mkdir()
    for name, html in pages.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(html, encoding="utf-8")
    (folder / "pic.png").write_bytes(PNG)
    return folder


HARMLESS_PAGE = "harmless.html"  # raises only the error KNOWN_HARMLESS_ERRORS names


def case_page(case):
    return "case-" + case.replace(" ", "-") + ".html"


@pytest.fixture(scope="module")
def checked_site(tmp_path_factory, chromium):
    """One site: the clean pages plus one page per broken case (links between case pages are
    relative to the site root, as in the book). One browser session checks them all."""
    folder = tmp_path_factory.mktemp("browser")
    known = next(iter(browser.KNOWN_HARMLESS_ERRORS))
    pages = {**CLEAN, HARMLESS_PAGE: f'<html><body><script>throw new SyntaxError("{known}")</script></body></html>'}
    for case, (case_pages, _) in BROKEN.items():
        pages[case_page(case)] = case_pages["index.html"]
        pages.update({name: html for name, html in case_pages.items() if name != "index.html"})
    site = make_site(folder / "site", pages)

    def chapter(page):  # as in the book (notebooks/*), and the case page that lacks its table
        return browser.is_chapter(page) or page == case_page("a chapter without its claims table")

    report = browser.check_site(site, screenshot_dir=folder / "shots", chromium=chromium, chapter=chapter)
    return {page.page: page for page in report.pages}, report


def test_a_clean_page_passes_and_gets_a_screenshot(checked_site):
    pages, _ = checked_site
    for name in CLEAN:
        assert pages[name].problems == [], name
        for screenshot in pages[name].screenshots.values():
            assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert set(pages[name].screenshots) == {"laptop", "phone"}
    assert pages["index.html"].images == 1 and pages["index.html"].links == 3
    assert pages["index.html"].counts()["phone"]["captioned"] == 1
    chapter = pages["notebooks/chapter.html"].counts()
    assert chapter["laptop"]["claimsTables"] == 1 and chapter["laptop"]["scrolling"] == 0
    assert chapter["phone"]["scrolling"] == 1  # too wide for 420 px, and it scrolls: allowed


def test_the_check_fails_on_each_broken_page(checked_site):
    """(One test for all cases, so that a machine without Chromium prints one skip line.)"""
    _, report = checked_site
    undetected = []
    for case, (_, expected) in BROKEN.items():
        problems = "\n".join(p for p in report.problems if p.startswith(case_page(case) + ":"))
        undetected += [f"{case}: expected {fragment!r} among:\n{problems or '(no problem reported)'}"
                       for fragment in expected if fragment not in problems]
    assert undetected == [], "\n".join(undetected)


def test_known_harmless_errors_are_named_and_only_those_are_ignored(checked_site):
    pages, _ = checked_site
    known = next(iter(browser.KNOWN_HARMLESS_ERRORS))
    assert pages[HARMLESS_PAGE].problems == []
    assert any(known in ignored for ignored in pages[HARMLESS_PAGE].ignored)
    assert pages[case_page("a console error")].problems == ["console error: theme failed"]


def test_absolute_paths_are_found_in_pages_and_notebooks(tmp_path):
    site = make_site(tmp_path / "site", {
        "index.html": '<p>output in build/outputs/figure1 and <a href="https://example.org/home/x">a link</a></p>',
        "notebooks/a.html": "<pre>saved to /tmp/rlvr-out/figure1.png</pre>",
        "_sources/notebooks/a.ipynb": '{"metadata": {"papermill": {"input_path": "/srv/checkout/notebooks/a.ipynb"}}}',
        "_sources/notebooks/b.ipynb": '{"source": "x = 1"}',
        "book/c.html": f"<p>{tmp_path}/project/src</p>",
    })
    found = browser.absolute_paths(site, known=[tmp_path])
    assert found[:2] == ["_sources/notebooks/a.ipynb: /srv/checkout/notebooks/a.ipynb",
                         f"book/c.html: {tmp_path}"]
    assert "notebooks/a.html: /tmp/rlvr-out/figure1.png" in found
    assert not any(line.startswith(("index.html", "_sources/notebooks/b.ipynb")) for line in found)


def test_site_pages_leave_out_asset_folders(tmp_path):
    site = make_site(tmp_path / "site", {**CLEAN, "_static/x.html": "<html></html>", "book/a.html": "<html></html>"})
    assert browser.site_pages(site) == ["book/a.html", "index.html", "notebooks/chapter.html", "other.html"]
