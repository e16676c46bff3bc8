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

Every page is opened at each width of :data:`VIEWPORTS` (a laptop, 1400 px, and a phone, 420 px), and
the layout is measured as a reader sees it (:data:`_INSPECT_LAYOUT`):

- every figure image of the content sits in a ``<figure>`` whose ``<figcaption>`` carries a number
  (``.caption-number``), and its alt text describes it (not empty, not its file name or a hash);
- at the laptop width, no code or output block overflows sideways, and every display equation fits
  its column without running into its number; at the phone width a display equation too wide for the
  column must scroll, never be clipped;
- no stderr output block (a warning or a traceback printed into the page);
- a chapter page (:func:`is_chapter`) shows its claims as an HTML table (``table.claims-table``).

:func:`absolute_paths` finds paths of the building machine in the pages and in the notebooks a reader
can download.

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
from collections.abc import Callable, Iterator, Sequence
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
VIEWPORTS = {"laptop": {"width": 1400, "height": 900}, "phone": {"width": 420, "height": 860}}
WIDE = "laptop"  # the viewport at which nothing may overflow; links and anchors are collected there
# An absolute path of a Unix machine (a home, a temporary or a build folder), not part of a URL.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/%-])/(?:home|root|tmp|work|Users|private|var/folders|mnt|srv|opt|build)/"
                           r"[\w.@+-]+(?:/[\w.@+-]+)*")

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


# Runs in the page after _INSPECT_PAGE, at each viewport: figures, overflow, maths, stderr, claims tables.
_INSPECT_LAYOUT = r"""
(wide) => {
  const root = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const report = {figures: 0, captioned: 0, uncaptioned: [], badAlt: [], overflowing: [], displayMaths: 0,
                  tooWide: [], clipped: [], intoNumber: [], scrolling: 0, stderr: 0, claimsTables: 0};
  const name = src => (src || '').split('/').pop();
  for (const img of root.querySelectorAll('img')) {
    if (img.closest('nav, header, .navbar, .bd-sidebar-primary, .bd-sidebar-secondary')) continue;
    report.figures++;
    const figure = img.closest('figure');
    if (figure && figure.querySelector('figcaption .caption-number')) report.captioned++;
    else report.uncaptioned.push(name(img.getAttribute('src')));
    const alt = (img.getAttribute('alt') || '').trim();
    const altName = name(alt);
    if (!alt || altName === name(img.getAttribute('src')) || /^[0-9a-f]{16,}(\.\w+)?$/.test(altName)
        || /\.(png|svg|jpe?g|gif)$/i.test(alt))
      report.badAlt.push(name(img.getAttribute('src')));
  }
  const snippet = el => (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 60);
  if (wide) {
    for (const el of root.querySelectorAll('pre, table')) {  // code, printed output, HTML tables
      if (el.closest('mjx-container')) continue;
      const right = el.getBoundingClientRect().right, column = root.getBoundingClientRect().right;
      if (el.scrollWidth > el.clientWidth + 1 || right > column + 1) report.overflowing.push(snippet(el));
    }
  }
  const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  for (const container of root.querySelectorAll('mjx-container[display="true"]')) {
    report.displayMaths++;
    const maths = container.querySelector('mjx-math') || container;
    const need = maths.getBoundingClientRect().width, box = container.parentElement || container;
    const column = root.getBoundingClientRect();
    let scroller = null;
    for (let el = container; el && el !== root; el = el.parentElement) {
      if (scrolls(el)) { scroller = el; break; }
      if (el.matches('div.math')) break;
    }
    const fits = need <= container.clientWidth + 1 && maths.getBoundingClientRect().right <= column.right + 1;
    if (!fits && wide) report.tooWide.push(snippet(box));
    else if (!fits && scroller === null) report.clipped.push(snippet(box));
    else if (!fits) report.scrolling++;
    // The number: MathJax's \tag label (mjx-labels beside the formula's mjx-table), or Sphinx's span.eqno.
    const labels = container.querySelector('mjx-labels'), table = container.querySelector('mjx-mtable > mjx-table');
    const number = labels && table ? labels : box.querySelector('.eqno');
    if (wide && number) {
      const a = (labels && table ? table : maths).getBoundingClientRect(), b = number.getBoundingClientRect();
      if (a.right > b.left + 1 && a.left < b.right && a.bottom > b.top && a.top < b.bottom)
        report.intoNumber.push(snippet(number));
    }
  }
  report.stderr = root.querySelectorAll('div.output.stderr, div.stderr').length;
  report.claimsTables = root.querySelectorAll('table.claims-table').length;
  return report;
}
"""


def is_chapter(page: str) -> bool:
    """Whether a page is a chapter (an executed notebook), which must show its claims table."""
    return page.startswith("notebooks/")


def absolute_paths(html_root: Path, known: Sequence[str | os.PathLike] = ()) -> list[str]:
    """Paths of the building machine in the built book: in every page (``.html``) and every notebook a
    reader can download (``.ipynb``), as ``file: path``. ``known``: further absolute paths to look for
    (the project root), found whatever folder they are in."""
    patterns = [ABSOLUTE_PATH] + [re.compile(re.escape(str(path).rstrip("/")) + r"\b") for path in known]
    found = []
    for file in sorted(Path(html_root).rglob("*")):
        if file.suffix not in (".html", ".ipynb") or not file.is_file():
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        hits = sorted({match.group(0) for pattern in patterns for match in pattern.finditer(text)})
        found += [f"{file.relative_to(html_root).as_posix()}: {hit}" for hit in hits[:3]]
    return found


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
    screenshots: dict[str, Path] = field(default_factory=dict)  # viewport name → full-page PNG
    layout: dict[str, dict] = field(default_factory=dict)  # viewport name → what _INSPECT_LAYOUT measured
    seconds: float = 0.0

    @property
    def screenshot(self) -> Path | None:
        """The screenshot at the laptop width."""
        return self.screenshots.get(WIDE)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per viewport, the numbers the layout check measured (lists counted)."""
        return {name: {key: len(value) if isinstance(value, list) else value for key, value in found.items()}
                for name, found in self.layout.items()}


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
    viewports: Sequence[str] = tuple(VIEWPORTS),
    chapter: Callable[[str], bool] = is_chapter,
) -> SiteReport:
    """Open ``pages`` (default: every page) of the book at ``html_root`` in headless Chromium at each of
    ``viewports`` and report every problem; save a full-page PNG of each into ``screenshot_dir`` if
    given. ``chapter`` says which pages must show a claims table."""
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
            contexts = {}
            for name in viewports:
                contexts[name] = browser.new_context(viewport=VIEWPORTS[name], service_workers="block")
                contexts[name].set_default_timeout(timeout_s * 1000)
            for page_name in pages:
                redirect = _redirect_target(html_root / page_name)
                report, links[page_name], anchors = _visit(contexts, base, page_name, redirect, screenshot_dir,
                                                           harmless, chapter(page_name))
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


def _visit(contexts, base, page_name, redirect, screenshot_dir, harmless,
           chapter: bool) -> tuple[PageReport, list[str], set[str]]:
    """Open one page at every viewport; return its report, the URLs it links to and its anchors."""
    report = PageReport(page_name)
    started = time.perf_counter()
    found, problems = {}, []
    for viewport, context in contexts.items():
        page_found, layout = _open(context, base, page_name, redirect, viewport, screenshot_dir, harmless, problems,
                                   report)
        found = found or page_found
        if layout is not None:
            report.layout[viewport] = layout
            problems += _layout_problems(layout, viewport, VIEWPORTS[viewport]["width"], chapter and not redirect)
    report.problems = list(dict.fromkeys(problems))  # an error seen at both widths is one problem
    for message in found.get("mathErrors", []):
        report.problems.append(f"MathJax error: {message}")
    if found.get("untypeset"):
        report.problems.append(f"{found['untypeset']} maths elements not typeset"
                               + ("" if found.get("mathjax") else " (MathJax did not load)"))
    for snippet in found.get("rawTex", [])[:5]:
        report.problems.append(f"raw TeX in the text: {snippet!r}")
    for source in found.get("brokenImages", []):
        report.problems.append(f"image not loaded: {source}")
    report.maths, report.images = found.get("maths", 0), found.get("images", 0)
    report.links = len(found.get("links", []))
    report.seconds = time.perf_counter() - started
    return report, found.get("links", []), set(found.get("ids", []))


def _layout_problems(layout: dict, viewport: str, width: int, chapter: bool) -> list[str]:
    """What a reader at ``width`` px would see wrong, from one :data:`_INSPECT_LAYOUT` report."""
    at = f"at {width} px: "
    problems = [f"{at}figure without a numbered caption: {source}" for source in layout["uncaptioned"][:5]]
    problems += [f"{at}figure whose alt text is a file name or empty: {source}" for source in layout["badAlt"][:5]]
    problems += [f"{at}block overflows sideways: {text!r}" for text in layout["overflowing"][:5]]
    problems += [f"{at}display maths wider than the column: {text!r}" for text in layout["tooWide"][:5]]
    problems += [f"{at}display maths clipped (neither fits nor scrolls): {text!r}" for text in layout["clipped"][:5]]
    problems += [f"{at}display maths runs into its number {text!r}" for text in layout["intoNumber"][:5]]
    if layout["stderr"]:
        problems.append(f"{at}{layout['stderr']} stderr output block(s)")
    if chapter and not layout["claimsTables"]:
        problems.append(f"{at}no claims table (table.claims-table) on a chapter page")
    return problems


def _open(context, base, page_name, redirect, viewport, screenshot_dir, harmless, problems,
          report) -> tuple[dict, dict | None]:
    """Load one page in one viewport's context: what _INSPECT_PAGE and _INSPECT_LAYOUT found (empty
    and ``None`` if it could not be inspected); requests, console and page errors go to ``problems``."""
    page = context.new_page()

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
        layout = page.evaluate(_INSPECT_LAYOUT, viewport == WIDE)
        if screenshot_dir is not None:
            stem = page_name.replace("/", "__").removesuffix(".html")
            width = VIEWPORTS[viewport]["width"]
            report.screenshots[viewport] = Path(screenshot_dir) / (stem + ("" if viewport == WIDE else f"@{width}")
                                                                   + ".png")
            page.screenshot(path=str(report.screenshots[viewport]), full_page=True)
    except Exception as error:  # a timeout or a crash is a problem of this page, not of the run
        problems.append(f"could not be inspected: {type(error).__name__}: {str(error).splitlines()[0]}")
        found, layout = {}, None
    finally:
        page.close()
    return found, layout
