"""Checks of the built HTML book (marker ``built_book``; ``make test`` runs them after the build).

The book must read offline: no page loads a script, stylesheet, image or frame from outside the
book folder, MathJax is served from the book's own files, every local resource exists, and the
executed notebooks' figures are in the pages. A missing build is a failure, not a skip.
"""

import json
import re
import shutil
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from rlvr_dynamics.book import appendix, browser
from rlvr_dynamics.files import project_root

pytestmark = pytest.mark.built_book

ROOT = project_root()
HTML = ROOT / "build" / "site" / "_build" / "html"
SCREENSHOTS = ROOT / "build" / "screenshots"
LOADING = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src", "video": "src",
           "audio": "src", "embed": "src", "object": "data"}


class Resources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.loaded: list[tuple[str, str]] = []  # (tag, url) the browser fetches when rendering
        self.images = 0
        self.error_outputs = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and attrs.get("rel") in ("canonical", "next", "prev", "index", "search"):
            return  # navigation hints, not fetched
        if tag in LOADING and attrs.get(LOADING[tag]):
            self.loaded.append((tag, attrs[LOADING[tag]]))
        if tag == "img":
            self.images += 1
        if "output_error" in (attrs.get("class") or "") or "traceback" in (attrs.get("class") or ""):
            self.error_outputs += 1


def pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return files


def parse(page: Path) -> Resources:
    parser = Resources()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_the_book_was_built():
    assert (HTML / "index.html").is_file(), f"no book at {HTML}: run `make site` first"


@pytest.mark.parametrize("page", pages())
def test_page_exists_and_loads_nothing_from_outside(page):
    html = HTML / f"{page}.html"
    assert html.is_file(), f"{page} was not rendered"
    parsed = parse(html)
    for tag, url in parsed.loaded:
        parts = urlparse(url)
        assert not parts.scheme or parts.scheme == "data", f"{page}: <{tag}> loads {url} from outside the book"
        assert not url.startswith("//"), f"{page}: <{tag}> loads {url} from outside the book"
        if parts.scheme != "data":
            target = (html.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{page}: <{tag}> {url} does not exist in the book"
    assert parsed.error_outputs == 0, f"{page}: a cell output is an error"


def test_mathjax_is_served_from_the_book():
    parsed = parse(HTML / "notebooks" / "gradient_gap.html")
    mathjax = [url for tag, url in parsed.loaded if tag == "script" and "mathjax" in url.lower()]
    assert mathjax, "no MathJax script on a page full of maths"
    for url in mathjax:
        assert not urlparse(url).scheme, url
        assert (HTML / "notebooks" / urlparse(url).path).resolve().is_file()


def test_notebook_figures_are_rendered():
    parsed = parse(HTML / "notebooks" / "gradient_gap.html")
    assert parsed.images >= 2, "the executed notebook's figures are missing from the page"


def test_no_launch_buttons():
    """No Binder / Colab / JupyterHub / live-code buttons. (sphinx-thebe's inline config keeps a
    Binder repository name as a constant; it is never fetched with thebe off, so only buttons and
    links are checked.)"""
    text = (HTML / "notebooks" / "gradient_gap.html").read_text(encoding="utf-8").lower()
    for marker in ('href="https://mybinder', 'href="https://colab', "launch-buttons", "thebe-launch-button"):
        assert marker not in text, marker


@pytest.fixture(scope="module")
def browser_report(chromium):
    """Every page of the built book opened in headless Chromium; screenshots and a summary
    (``report.json``: per-page counts and seconds) in build/screenshots/."""
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    report = browser.check_site(HTML, screenshot_dir=SCREENSHOTS, chromium=chromium)
    summary = {"seconds": round(report.seconds, 1), "problems": report.problems,
               "pages": [{"page": p.page, "maths": p.maths, "images": p.images, "links": p.links,
                          "seconds": round(p.seconds, 2), "ignored": p.ignored, "layout": p.counts()}
                         for p in report.pages]}
    (SCREENSHOTS / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return report


def test_every_page_reads_correctly_in_a_real_browser(browser_report):
    visited = [p.page for p in browser_report.pages]
    assert visited == browser.site_pages(HTML)
    assert {f"{page}.html" for page in pages()} <= set(visited), "a page of the table of contents was not visited"
    assert browser_report.problems == [], "\n".join(browser_report.problems)
    for page in browser_report.pages:
        assert set(page.screenshots) == set(browser.VIEWPORTS), page.page
        for screenshot in page.screenshots.values():
            assert screenshot.stat().st_size > 5_000, f"{page.page}: empty screenshot {screenshot.name}"


def test_no_path_of_the_building_machine_in_any_page_or_notebook():
    """Neither the pages nor the notebooks a reader can download name a folder of the machine that built them."""
    assert browser.absolute_paths(HTML, known=[ROOT]) == []


def test_every_chapter_figure_is_numbered_and_every_chapter_shows_its_claims_table(browser_report):
    for page in browser_report.pages:
        if browser.is_chapter(page.page):
            for viewport, counts in page.counts().items():
                assert counts["claimsTables"] == 1, f"{page.page} at {viewport}"
                assert counts["captioned"] == counts["figures"] == page.images, f"{page.page} at {viewport}"


def test_the_browser_sees_the_maths_and_figures_of_every_chapter(browser_report):
    by_page = {p.page: p for p in browser_report.pages}
    for page in pages():
        seen = by_page[f"{page}.html"]
        if 'class="math' in (HTML / f"{page}.html").read_text(encoding="utf-8"):
            assert seen.maths > 0, f"{page}: no typeset maths"
        elif page not in ("book/reproducibility", "book/result_index"):  # the generated tables have no maths
            raise AssertionError(f"{page}: a chapter without maths")
        if page.startswith("notebooks/") and page != "notebooks/performance":
            figures = len(re.findall(r"<img ", (HTML / f"{page}.html").read_text(encoding="utf-8")))
            assert seen.images == figures >= 1, f"{page}: {seen.images} images loaded of {figures}"


def test_the_browser_check_fails_on_a_broken_copy_of_a_chapter(tmp_path, chromium):
    """The same check on a copy of the book whose gradient_gap page loads MathJax from a CDN,
    shows a deleted figure and links to a page and an anchor that do not exist."""
    copy = tmp_path / "html"
    shutil.copytree(HTML, copy)
    page = copy / "notebooks" / "gradient_gap.html"
    text = page.read_text(encoding="utf-8")
    text, mathjax = re.subn(r'src="[^"]*_static/mathjax/[^"]*"',
                            'src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"', text)
    image = re.search(r'<img [^>]*src="\.\./(_images/[^"]+)"', text).group(1)
    (copy / image).unlink()
    text, links = re.subn(r'(<a [^>]*href=")\.\./book/notation\.html"', r'\1../book/no-such-page.html"', text,
                          count=1)
    text, anchors = re.subn(r'(<a [^>]*href=")\.\./book/intro\.html#[^"]+"', r'\1../book/intro.html#no-such-anchor"',
                            text, count=1)
    text, captions = re.subn(r'<span class="caption-number">', '<span class="no-number">', text)
    text, tables = re.subn(r'(class="[^"]*)\bclaims-table\b', r'\1plain-table', text)
    assert mathjax and links and anchors and captions and tables, "the page no longer has what this test breaks"
    page.write_text(text, encoding="utf-8")
    problems = "\n".join(browser.check_site(copy, pages=["notebooks/gradient_gap.html"], chromium=chromium).problems)
    for expected in ("request leaving 127.0.0.1 (blocked): https://cdn.jsdelivr.net/", "maths elements not typeset",
                     f"image not loaded: ../{image}", "broken link book/no-such-page.html",
                     "broken anchor book/intro.html#no-such-anchor", "at 1400 px: figure without a numbered caption",
                     "at 420 px: no claims table (table.claims-table) on a chapter page"):
        assert expected in problems, f"expected {expected!r} among:\n{problems}"


def test_the_appendix_lists_every_figure_and_claim_of_the_runs():
    """The generated appendix agrees with the metrics.json files the book was built from."""
    runs = appendix.load_metrics(ROOT / "build" / "outputs")
    html = (HTML / "book" / "reproducibility.html").read_text(encoding="utf-8")
    text = unescape(re.sub(r"<[^>]+>", "", html))  # the highlighted commands are split into spans
    claims = sum(len(metrics["claims"]) for metrics in runs.values())
    assert f"{claims} checked claims" in html
    table = html[html.index('id="every-claim-checked-in-the-book"'):]
    body = table[table.index("<tbody"):table.index("</tbody>")]
    assert len(re.findall(r"<tr[ >]", body)) == claims
    for name, metrics in runs.items():
        # each row links to the chapter's claims section (the label above its heading)
        link = f'href="../notebooks/{name}.html#{appendix.claims_label(name)}"'
        assert body.count(link) == len(metrics["claims"]), name
        for figure in metrics["figures"]:
            assert (f"<code class=\"docutils literal notranslate\">"
                    f"<span class=\"pre\">{figure.rsplit('.', 1)[0]}</span>") in html
        assert f"rlvr-book run {name} --preset ci -p seed 0 -p device cpu" in text
