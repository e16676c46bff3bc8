"""Checks of the built HTML book (marker ``built_book``; ``make test`` runs them after the build).

The book must read offline: no page loads a script, stylesheet, image or frame from outside the
book folder, MathJax is served from the book's own files, every local resource exists, and the
executed notebooks' figures are in the pages. A missing build is a failure, not a skip.
"""

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from rlvr_dynamics.params import project_root

pytestmark = pytest.mark.built_book

ROOT = project_root()
HTML = ROOT / "build" / "site" / "_build" / "html"
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
