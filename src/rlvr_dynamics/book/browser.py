"""Open every page of the built book in headless Chromium and check what a reader would see.

The book folder is served on ``127.0.0.1`` (an ephemeral port); Debian's ``chromium`` is driven
through Playwright (``executable_path``: Playwright's own browser download is never used). On
every page:

- every request goes to the local server: any other host is blocked and reported;
- the maths is typeset: MathJax's start-up promise resolves, every ``.math`` element holds an
  ``mjx-container``, no ``mjx-merror``, and no raw TeX is left in the visible text;
- every ``<img>`` loads (``naturalWidth > 0``), and no local request fails or answers ≥ 400;
- no console error or uncaught page error, except the harmless ones named in
  :data:`KNOWN_HARMLESS_ERRORS`;
- a full-page screenshot is saved.

After the visit every internal link is resolved: its file must exist and its ``#anchor`` must be
an ``id`` (or ``<a name>``) of the target page.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

# Console or page errors that are known and harmless, with why. Matched as substrings.
KNOWN_HARMLESS_ERRORS = {
    "Identifier 'THEBE_JS_URL' has already been declared":
        "Sphinx 7.4 writes sphinx-thebe's inline configuration script twice (fixed in Sphinx 8); thebe is off",
}
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("install it with `sudo apt-get install chromium` (Debian/Ubuntu; `make browser` does this) "
                "or point RLVR_CHROMIUM at a Chromium or Chrome binary")
VIEWPORT = {"width": 1280, "height": 900}

# Runs in the page once it has loaded: waits for MathJax and the images, then reports.
_INSPECT_PAGE = r"""
async () => {
  const report = {mathjax: false, mathErrors: [], untypeset: 0, rawTex: [], brokenImages: [], images: 0};
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
    report.mathjax = true;
  }
  report.maths = document.querySelectorAll('mjx-container').length;
  report.mathErrors = Array.from(document.querySelectorAll('mjx-merror'))
    .map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 5);
  report.untypeset = Array.from(document.querySelectorAll('.math'))
    .filter(e => !e.querySelector('mjx-container') && !e.closest('mjx-container')).length;
  // Raw TeX left in visible text: delimiters or commands outside code, scripts and typeset maths.
  const skip = 'script, style, pre, code, textarea, mjx-container, .highlight, .cell_output';
  const tex = new RegExp(/\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|/.source
    + /\\(frac|mathbb|mathcal|boldsymbol|left|right|sum|int|operatorname|mathrm|lVert|rVert)\b/.source);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    const match = node.nodeValue.match(tex);
    if (match) report.rawTex.push(node.nodeValue.trim().slice(0, 80));
  }
  const images = Array.from(document.images);
  report.images = images.length;
  for (const img of images) img.loading = 'eager';
  await Promise.all(images.map(img => img.complete ? null :
    new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done);
                          setTimeout(done, 10000); })));
  report.brokenImages = images.filter(img => !img.complete || img.naturalWidth === 0)
    .map(img => img.getAttribute('src'));
  report.links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  report.ids = Array.from(document.querySelectorAll('[id]')).map(e => e.id)
    .concat(Array.from(document.querySelectorAll('a[name]')).map(a => a.getAttribute('name')));
  return report;
}
"""


def find_chromium() -> str | None:
    """The Chromium binary: ``$RLVR_CHROMIUM``, else the first of :data:`CHROMIUM_NAMES` on PATH."""
    explicit = os.environ.get("RLVR_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def site_pages(html_root: Path) -> list[str]:
    """Every HTML page of a built book (relative paths), leaving out Sphinx's asset folders (``_*``)."""
    return sorted(path.relative_to(html_root).as_posix() for path in Path(html_root).rglob("*.html")
                  if not any(part.startswith("_") for part in path.relative_to(html_root).parts[:-1]))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would drown the test output
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a browser closing a tab mid-transfer is not an error
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (ephemeral port) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class PageReport:
    """What one page showed: counts, the screenshot, and every problem found (empty: the page is fine)."""

    page: str
    problems: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # errors matched by a known harmless one
    maths: int = 0
    images: int = 0
    links: int = 0
    screenshot: Path | None = None
    seconds: float = 0.0


@dataclass
class SiteReport:
    pages: list[PageReport]
    link_problems: list[str]
    seconds: float

    @property
    def problems(self) -> list[str]:
        return [f"{p.page}: {problem}" for p in self.pages for problem in p.problems] + self.link_problems


def _harmless(message: str, harmless: dict[str, str]) -> bool:
    return any(known in message for known in harmless)


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])


def _ids_of(path: Path) -> set[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser.ids


def _local_path(url: str, base: str) -> str | None:
    """The site-relative file a local URL points at (``None``: not on the local server)."""
    if not url.startswith(base):
        return None
    path = unquote(urlparse(url).path).lstrip("/")
    return path + "index.html" if path == "" or path.endswith("/") else path


def check_links(html_root: Path, links: dict[str, list[str]], ids: dict[str, set[str]], base: str) -> list[str]:
    """Every internal link (page → absolute URLs) must name an existing file and, for an HTML
    target, an existing anchor; ``ids`` holds the anchors of pages already seen."""
    problems = []
    for page, urls in links.items():
        for url in sorted(set(urls)):
            if urlparse(url).scheme not in ("http", "https"):
                continue  # mailto:, javascript:, data:
            target, fragment = urldefrag(url)
            local = _local_path(target, base)
            if local is None:
                continue  # a link to another site: never fetched by the reader's browser
            file = Path(html_root) / local
            if not file.is_file():
                problems.append(f"{page}: broken link {url.removeprefix(base)}: {local} does not exist")
                continue
            if fragment and file.suffix == ".html":
                anchors = ids.get(local)
                if anchors is None:
                    anchors = ids[local] = _ids_of(file)
                if unquote(fragment) not in anchors:
                    problems.append(f"{page}: broken anchor {url.removeprefix(base)}: no id '{fragment}' in {local}")
    return problems


def check_site(
    html_root: Path,
    screenshot_dir: Path | None = None,
    pages: Sequence[str] | None = None,
    chromium: str | None = None,
    harmless: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> SiteReport:
    """Open ``pages`` (default: every page) of the book at ``html_root`` in headless Chromium and
    report every problem; save a full-page PNG of each into ``screenshot_dir`` if given."""
    from playwright.sync_api import sync_playwright

    html_root = Path(html_root)
    harmless = KNOWN_HARMLESS_ERRORS if harmless is None else harmless
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError(f"no Chromium found: {INSTALL_HINT}")
    pages = list(pages) if pages is not None else site_pages(html_root)
    if screenshot_dir is not None:
        Path(screenshot_dir).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    reports, links, ids = [], {}, {}
    with serve(html_root) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS))
        try:
            context = browser.new_context(viewport=VIEWPORT, service_workers="block")
            context.set_default_timeout(timeout_s * 1000)
            for page_name in pages:
                redirect = _redirect_target(html_root / page_name)
                report, links[page_name], anchors = _visit(context, base, page_name, redirect, screenshot_dir,
                                                           harmless)
                reports.append(report)
                if redirect is None:  # a redirect's anchors are its target's
                    ids[page_name] = anchors
        finally:
            browser.close()
        link_problems = check_links(html_root, links, ids, base)
    return SiteReport(reports, link_problems, time.perf_counter() - started)


def _redirect_target(path: Path) -> str | None:
    """The URL of a ``<meta http-equiv="refresh" content="0; url=...">`` page, else ``None``."""
    match = re.search(r"""<meta[^>]+http-equiv=["']refresh["'][^>]+content=["'][^"']*url=([^"'\s]+)""",
                      path.read_text(encoding="utf-8", errors="replace"), flags=re.IGNORECASE)
    return match.group(1) if match else None


def _visit(context, base, page_name, redirect, screenshot_dir, harmless) -> tuple[PageReport, list[str], set[str]]:
    """Open one page; return its report, the URLs it links to and its anchors."""
    report = PageReport(page_name)
    started = time.perf_counter()
    page = context.new_page()
    problems = report.problems

    def route(request_route):
        url = request_route.request.url
        if url.startswith(base) or url.startswith(("data:", "blob:")):
            request_route.continue_()
        else:
            problems.append(f"request leaving 127.0.0.1 (blocked): {url}")
            request_route.abort()

    def on_response(response):
        if response.url.startswith(base) and response.status >= 400:
            problems.append(f"HTTP {response.status} for {response.url.removeprefix(base)}")

    def on_failed(request):
        if request.url.startswith(base):
            problems.append(f"request failed: {request.url.removeprefix(base)} ({request.failure})")

    def on_console(message):
        if message.type == "error" and _harmless(message.text, harmless):
            report.ignored.append(f"console error: {message.text}")
        elif message.type == "error":
            if "Failed to load resource" in message.text:
                return  # the failed request itself is reported above, with its URL
            problems.append(f"console error: {message.text}")

    def on_page_error(error):
        text = f"page error: {error.name}: {error.message}"
        (report.ignored if _harmless(text, harmless) else problems).append(text)

    page.route("**/*", route)
    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    try:
        page.goto(base + page_name, wait_until="load")
        if redirect is not None:  # index.html: a meta refresh to the first page; inspect where it lands
            page.wait_for_url(urljoin(base + page_name, redirect), wait_until="load")
        found = page.evaluate(_INSPECT_PAGE)
        if screenshot_dir is not None:
            report.screenshot = Path(screenshot_dir) / (page_name.replace("/", "__").removesuffix(".html") + ".png")
            page.screenshot(path=str(report.screenshot), full_page=True)
    except Exception as error:  # a timeout or a crash is a problem of this page, not of the run
        problems.append(f"could not be inspected: {type(error).__name__}: {str(error).splitlines()[0]}")
        found = {}
    finally:
        page.close()
    for message in found.get("mathErrors", []):
        problems.append(f"MathJax error: {message}")
    if found.get("untypeset"):
        problems.append(f"{found['untypeset']} maths elements not typeset"
                        + ("" if found.get("mathjax") else " (MathJax did not load)"))
    for snippet in found.get("rawTex", [])[:5]:
        problems.append(f"raw TeX in the text: {snippet!r}")
    for source in found.get("brokenImages", []):
        problems.append(f"image not loaded: {source}")
    report.maths, report.images = found.get("maths", 0), found.get("images", 0)
    report.links = len(found.get("links", []))
    report.seconds = time.perf_counter() - started
    return report, found.get("links", []), set(found.get("ids", []))
