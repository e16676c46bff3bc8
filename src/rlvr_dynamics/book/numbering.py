"""One numbering: what the book displays as a number is the paper's number, or visibly the book's own.

Sphinx numbers labelled equations and sphinx-proof numbers theorem boxes by counting through the
book, so its "(9)" was the paper's (10) and its "Theorem 3" the paper's Theorem 4. The book
therefore lets neither count anything:

- **Theorem boxes** (``{prf:theorem}``, ``{prf:lemma}``, …) carry ``:nonumber:`` and a title that
  starts with the number the reader should see (``proof_title_format: "%t"`` in ``_config.yml``
  prints it right after the kind): the paper's own (``1 (Convergence and stagnation)`` →
  "Theorem 1 (Convergence and stagnation)"), the companion paper's (``1 of Yao et al. (…)``), or
  the book's own, ``B1``, ``B2``, … numbered through the book in order (``B3 (Closed forms …)`` →
  "Proposition B3 (Closed forms …)"). A title that starts with ``(`` is an unnumbered box.
- **Displayed equations** carry no Sphinx ``:label:``. Their number is a MathJax ``\\tag{…}``: the
  paper's equation number (``\\tag{10}``) or a book tag of two capitals and a number (``\\tag{TS4}``,
  TS for the two-stage chapter); rows of a tagged display end with ``\\cr``, since Sphinx wraps a
  block with ``\\\\`` in a ``split`` environment, where a tag is an error. A MyST target ``(label)=``
  on the line before the block makes it a link target, and prose refers to it as
  ``{ref}`(10) <label>```.
- **References** name what is displayed: ``{prf:ref}`` always with its text (``{prf:ref}`Lemma 1
  <tt-lemma1>```: an unnumbered box has no number Sphinx could print), ``{ref}`(TAG) <label>``` with
  the target's tag, and every "(n)", "eq. n", "Theorem n" or "(TS4)" written in prose, in box
  titles, in claim texts and in code comments names an equation or a result that exists: a paper
  equation or result, or a book tag or book result displayed somewhere in the book.

:func:`problems` checks all of it on the chapters' MyST sources (``tests/book/test_numbering.py``
runs it on the book); :func:`reference_names` gives, for every box and tagged display, the text a
link to it shows (used by :mod:`rlvr_dynamics.book.result_index`).
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Equation numbers of Suk & Duan (arXiv 2510.08539, main text): (7), (15) and (18) are displayed as
# their parts a and b; a reference may name the pair.
PAPER_EQUATIONS = frozenset({str(n) for n in range(1, 23) if n not in (7, 15, 18)} |
                            {"7a", "7b", "15a", "15b", "18a", "18b"})
EQUATION_PAIRS = frozenset({"7", "15", "18"})
PAPER_RESULTS: Mapping[str, frozenset[str]] = {
    "assumption": frozenset({"1", "2", "3"}),
    "lemma": frozenset({"1"}),
    "theorem": frozenset({"1", "2", "3", "4"}),
    "corollary": frozenset({"1"}),
}
COMPANION = "Yao et al."
# The companion paper's summary lists Lemma 1, Theorem 1, Proposition 1 (statement not in the summary) and Remarks 1–4.
COMPANION_RESULTS: Mapping[str, frozenset[str]] = {"lemma": frozenset({"1"}), "theorem": frozenset({"1"}),
                                                   "proposition": frozenset({"1"}),
                                                   "remark": frozenset({"1", "2", "3", "4"})}
KINDS = ("axiom", "theorem", "lemma", "algorithm", "definition", "remark", "conjecture", "corollary", "criterion",
         "example", "property", "observation", "proposition", "assumption", "notation")
BOOK_TAG = re.compile(r"[A-Z]{2}\d+")

_FENCE = re.compile(r"^(`{3,}|:{3,})\s*(\{([\w:-]+)\})?\s*(.*)$")
_OPTION = re.compile(r"^:([\w-]+):\s*(.*)$")
_TARGET = re.compile(r"^\(([\w.:-]+)\)=\s*$")
_TAG = re.compile(r"\\tag\*?\{([^{}]*)\}")
_ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")
_ROLE_TEXT = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)
_INLINE_MATH = re.compile(r"(?<!\\)\$[^$]+\$")
_INLINE_CODE = re.compile(r"`[^`]*`")
# "(10)", "(15a)": a parenthesised equation number not glued to a symbol (J_q(0), f^{(2)}).
_PAREN_NUMBER = re.compile(r"(?<![\w\\^_'′)\]}])\((\d{1,2}[ab]?)\)")
_PAREN_TAG = re.compile(r"\(([A-Z]{2}\d+)\)")
_PAREN_LABEL = re.compile(r"\(([a-z][a-z0-9]*(?:-[a-z0-9]+)+)\)")
_EQ_LIST = re.compile(r"\b[Ee]qs?\.\s*((?:\(?\d{1,2}[ab]?\)?)(?:\s*(?:[–,-]|and|or)\s*\(?\d{1,2}[ab]?\)?)*)")
_RESULT_MENTION = re.compile(r"\b(Theorem|Lemma|Corollary|Assumption|Proposition|Definition|Remark)s?"
                             r"\s+((?:B?\d+)(?:\s*(?:[–,-]|and)\s*B?\d+)*)\b")
_NUMBER = re.compile(r"B?\d{1,2}[ab]?")


@dataclass(frozen=True)
class Box:
    """A theorem-like box (``{prf:KIND} TITLE``) of a chapter."""

    chapter: str
    kind: str
    title: str
    label: str
    nonumber: bool
    line: int

    @property
    def scheme(self) -> str:
        """"paper", "companion", "book", "none" (a title opening with "(") or "invalid"."""
        if self.title.startswith("("):
            return "none"
        if re.match(rf"^\d+[a-z]? of {re.escape(COMPANION)}", self.title):
            return "companion"
        if re.match(r"^B\d+\b", self.title):
            return "book"
        if re.match(r"^\d+[a-z]?\b", self.title):
            return "paper"
        return "invalid"

    @property
    def number(self) -> str:
        """The number the box shows ("4", "B2"), "" for an unnumbered box."""
        match = re.match(r"^(B?\d+[a-z]?)\b", self.title)
        return match.group(1) if match and self.scheme in ("paper", "companion", "book") else ""

    @property
    def name(self) -> str:
        """How the book names it: "Theorem 4", "Theorem 1 of Yao et al.", "Proposition B2", "Definition"."""
        kind = self.kind.title()
        if self.scheme == "companion":
            return f"{kind} {self.number} of {COMPANION}"
        return f"{kind} {self.number}" if self.number else kind


@dataclass(frozen=True)
class Display:
    """A displayed equation: a ``{math}`` block or a ``$$`` block."""

    chapter: str
    tags: tuple[str, ...]
    target: str  # the MyST target right before it, or ""
    sphinx_label: str  # a :label: option (Sphinx would number it), or ""
    line: int
    split_rows: bool = False  # rows ended by \\: Sphinx wraps the block in a split environment


@dataclass
class Page:
    """What :func:`parse_page` finds in one MyST source."""

    chapter: str
    boxes: list[Box] = field(default_factory=list)
    displays: list[Display] = field(default_factory=list)
    roles: list[tuple[str, str, int]] = field(default_factory=list)  # (role, content, line)
    texts: list[tuple[str, int, str]] = field(default_factory=list)  # (text a reader sees, line, where)


def _code_texts(source: str) -> list[str]:
    """The string literals and comments of a code cell (claim texts, titles, comments)."""
    texts = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (tokenize.STRING, tokenize.COMMENT, getattr(tokenize, "FSTRING_MIDDLE", -1)):
                texts.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        texts.append(source)
    return texts


def parse_page(chapter: str, text: str) -> Page:
    """Boxes, displays, roles and the reader-visible texts of one MyST markdown source."""
    page = Page(chapter)
    lines = text.splitlines()
    front = 0
    if lines and lines[0].strip() == "---":  # jupytext front matter
        front = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0) + 1
    pending_target = ""
    i = front
    prose: list[tuple[str, int]] = []

    def take_prose(line: str, number: int) -> None:
        prose.append((line, number))

    while i < len(lines):
        line = lines[i]
        target = _TARGET.match(line.strip())
        if target:
            pending_target = target.group(1)
            i += 1
            continue
        fence = _FENCE.match(line)
        stripped = line.strip()
        if fence:
            marker, directive, argument = fence.group(1), fence.group(3) or "", fence.group(4)
            start = i
            # Options right after the opening line.
            options: dict[str, str] = {}
            j = i + 1
            while j < len(lines) and _OPTION.match(lines[j]):
                key, value = _OPTION.match(lines[j]).groups()
                options[key] = value
                j += 1
            # The closing fence: the same character, at least as long, nothing after it (a box holding
            # fenced blocks is fenced with more backticks than they are, as MyST requires).
            closing = re.compile(re.escape(marker[0]) + "{" + str(len(marker)) + ",}")
            end = j
            while end < len(lines) and not closing.fullmatch(lines[end].strip()):
                end += 1
            body = lines[j:end]
            if directive == "math":
                latex = "\n".join(body)
                page.displays.append(Display(chapter, tuple(_TAG.findall(latex)), pending_target,
                                             options.get("label", options.get("name", "")), start + 1,
                                             "\\\\" in latex and "nowrap" not in options))
                pending_target = ""
            elif directive == "code-cell":
                for snippet in _code_texts("\n".join(body)):
                    page.texts.append((snippet, start + 1, "code"))
            elif directive.startswith("prf:"):
                kind = directive.split(":", 1)[1]
                if kind != "proof":
                    page.boxes.append(Box(chapter, kind, argument.strip(), options.get("label", ""),
                                          "nonumber" in options, start + 1))
                    page.texts.append((argument, start + 1, "title"))
                inner = parse_page(chapter, "\n".join([""] * j + body))
                page.boxes += inner.boxes
                page.displays += inner.displays
                page.roles += inner.roles
                page.texts += inner.texts
                pending_target = ""
            elif directive in ("note", "admonition", "important", "tip", "warning", "list-table", "table"):
                inner = parse_page(chapter, "\n".join([""] * j + body))
                page.boxes += inner.boxes
                page.displays += inner.displays
                page.roles += inner.roles
                page.texts += inner.texts
            # other fences (```bash, ```python, {bibliography}, ...) are literal: not numbered text
            i = end + 1
            continue
        if stripped.startswith("$$"):
            start = i
            block = [stripped[2:]]
            if not (len(stripped) > 2 and stripped.endswith("$$")):
                i += 1
                while i < len(lines) and not lines[i].rstrip().endswith("$$"):
                    block.append(lines[i])
                    i += 1
                if i < len(lines):
                    block.append(lines[i].rstrip()[:-2])
            else:
                block = [stripped[2:-2]]
            rest = lines[i].rstrip() if i < len(lines) else ""
            label = re.search(r"\$\$\s*\(([\w:-]+)\)\s*$", rest)
            latex = "\n".join(block)
            page.displays.append(Display(chapter, tuple(_TAG.findall(latex)), pending_target,
                                         label.group(1) if label else "", start + 1, "\\\\" in latex))
            pending_target = ""
            i += 1
            continue
        if stripped:
            pending_target = ""
        take_prose(line, i + 1)
        i += 1
    # Prose: one paragraph at a time, so that inline maths spanning lines is removed whole.
    paragraph: list[tuple[str, int]] = []
    for line, number in prose + [("", 0)]:
        if line.strip():
            paragraph.append((line, number))
            continue
        if paragraph:
            joined = "\n".join(text for text, _ in paragraph)
            first = paragraph[0][1]
            for match in _ROLE.finditer(joined):
                page.roles.append((match.group(1), match.group(2), first))
            visible = _ROLE.sub(" ", joined)
            visible = _INLINE_MATH.sub(" ", visible)
            visible = _INLINE_CODE.sub(" ", visible)
            page.texts.append((visible, first, "prose"))
            paragraph = []
    return page


def _numbers(listing: str) -> list[str]:
    """"6–10" → 6 … 10; "15a, 15b" → both; "(6)–(7)" → 6, 7."""
    found = _NUMBER.findall(listing)
    if re.search(r"\d\)?\s*–\s*\(?\d", listing) and len(found) == 2 and found[0].isdigit() and found[1].isdigit():
        return [str(n) for n in range(int(found[0]), int(found[1]) + 1)]
    return found


def _known_equation(number: str) -> bool:
    return number in PAPER_EQUATIONS or number in EQUATION_PAIRS


def problems(sources: Mapping[str, str]) -> list[str]:
    """Every way the chapters' sources (name → MyST text, in book order) break the one numbering;
    an empty list when the numbers a reader sees are the paper's or visibly the book's."""
    pages = [parse_page(name, text) for name, text in sources.items()]
    found: list[str] = []
    boxes = [box for page in pages for box in page.boxes]
    displays = [display for page in pages for display in page.displays]
    by_label = {box.label: box for box in boxes if box.label}
    targets = {d.target: d for d in displays if d.target}

    # Boxes: never numbered by sphinx-proof; a title that says whose number it is.
    book_numbers = []
    for box in boxes:
        where = f"{box.chapter}.md:{box.line}"
        if box.kind not in KINDS:
            continue
        if not box.nonumber:
            found.append(f"{where}: {{prf:{box.kind}}} without :nonumber: (sphinx-proof would number it "
                         f"through the book)")
        if box.scheme == "invalid":
            found.append(f"{where}: title {box.title!r} does not start with a number (paper '4', companion "
                         f"'1 of {COMPANION}', book 'B1') or '(' (unnumbered)")
        elif box.scheme == "paper" and box.number not in PAPER_RESULTS.get(box.kind, ()):
            found.append(f"{where}: the paper has no {box.kind.title()} {box.number}")
        elif box.scheme == "companion" and box.number not in COMPANION_RESULTS.get(box.kind, ()):
            found.append(f"{where}: {COMPANION} have no {box.kind.title()} {box.number} in the summary")
        elif box.scheme == "book":
            book_numbers.append((int(box.number[1:]), where))
    expected = list(range(1, len(book_numbers) + 1))
    if [n for n, _ in book_numbers] != expected:
        found.append(f"the book's own results are not numbered B1 … B{len(book_numbers)} in book order: "
                     + ", ".join(f"B{n} ({where})" for n, where in book_numbers))
    book_results = {(box.kind, box.number) for box in boxes if box.scheme == "book"}

    # Displays: no Sphinx number; a tag that is the paper's or a book tag, each book tag once.
    book_tags: dict[str, str] = {}
    for page in pages:
        paper_tags: dict[str, int] = {}
        for display in page.displays:
            where = f"{display.chapter}.md:{display.line}"
            if display.sphinx_label:
                found.append(f"{where}: equation label {display.sphinx_label!r}: Sphinx would number it through "
                             f"the book; use a MyST target ({display.sphinx_label})= and \\tag{{…}}")
            if display.tags and display.split_rows:
                found.append(f"{where}: \\tag in a display whose rows end with \\\\: Sphinx wraps it in a split "
                             f"environment, where MathJax shows 'tag not allowed' — end the rows with \\cr")
            if display.target and len(display.tags) != 1:
                found.append(f"{where}: the equation target {display.target!r} needs exactly one \\tag")
            for tag in display.tags:
                if BOOK_TAG.fullmatch(tag):
                    if tag in book_tags:
                        found.append(f"{where}: book tag ({tag}) is displayed twice (also {book_tags[tag]})")
                    book_tags[tag] = where
                elif tag in PAPER_EQUATIONS:
                    if tag in paper_tags:
                        found.append(f"{where}: ({tag}) is displayed twice on this page (also line {paper_tags[tag]})")
                    paper_tags[tag] = display.line
                else:
                    found.append(f"{where}: \\tag{{{tag}}} is neither a paper equation nor a book tag like TS4")

    # References written as roles.
    for page in pages:
        for role, content, line in page.roles:
            where = f"{page.chapter}.md:{line}"
            titled = _ROLE_TEXT.match(content)
            text, label = (titled.group(1), titled.group(2)) if titled else ("", content.strip())
            if role in ("eq", "math:numref"):
                found.append(f"{where}: {{{role}}}`{content}` prints Sphinx's count, not the paper's number: "
                             f"use {{ref}}`(TAG) <{label}>`")
            elif role == "prf:ref":
                box = by_label.get(label)
                if not text:
                    found.append(f"{where}: {{prf:ref}}`{label}` without its text (an unnumbered box prints no "
                                 f"number): write {{prf:ref}}`{box.name if box else 'Theorem N'} <{label}>`")
                elif box is not None and box.number and box.name.split(f" of {COMPANION}")[0] not in text:
                    found.append(f"{where}: {{prf:ref}}`{content}` links {box.name} but says {text!r}")
            elif role == "ref" and label in targets:
                display = targets[label]
                tag = display.tags[0] if len(display.tags) == 1 else None
                if not text:
                    found.append(f"{where}: {{ref}}`{label}` to an equation needs its text: {{ref}}`({tag}) <{label}>`")
                elif tag is not None and f"({tag})" not in text:
                    found.append(f"{where}: {{ref}}`{content}` links equation ({tag}) but says {text!r}")

    # Numbers a reader reads in prose, titles, claim texts and comments.
    labels = set(by_label) | set(targets)
    for page in pages:
        for text, line, kind in page.texts:
            where = f"{page.chapter}.md:{line} ({kind})"
            for number in _PAREN_NUMBER.findall(text):
                if not _known_equation(number):
                    found.append(f"{where}: ({number}) names no equation of the paper")
            for listing in _EQ_LIST.findall(text):
                for number in _numbers(listing):
                    if not _known_equation(number):
                        found.append(f"{where}: eq. {number} is not an equation of the paper")
            for tag in _PAREN_TAG.findall(text):
                if tag not in book_tags:
                    found.append(f"{where}: ({tag}) is displayed nowhere in the book")
            for label in _PAREN_LABEL.findall(text):
                if label in labels:
                    found.append(f"{where}: ({label}) shows a label where the reader expects a number")
            for kind_word, listing in _RESULT_MENTION.findall(text):
                kind_name = kind_word.lower()
                for number in _numbers(listing):
                    if number.startswith("B"):
                        if (kind_name, number) not in book_results:
                            found.append(f"{where}: {kind_word} {number} is no box of the book")
                    elif number not in PAPER_RESULTS.get(kind_name, ()) and \
                            number not in COMPANION_RESULTS.get(kind_name, ()):
                        found.append(f"{where}: {kind_word} {number} is neither the paper's nor {COMPANION}'s")
    return found


def reference_names(sources: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """label → (role, text) for a link to every box and tagged display of the chapters: ("prf:ref",
    "Theorem 4") or ("ref", "(10)"); a link written ``{role}`TEXT <label>``` shows what is displayed."""
    names: dict[str, tuple[str, str]] = {}
    for name, text in sources.items():
        page = parse_page(name, text)
        for box in page.boxes:
            if box.label:
                names[box.label] = ("prf:ref", box.name if box.number else f"{box.kind.title()} {box.title}")
        for display in page.displays:
            if display.target and len(display.tags) == 1:
                names[display.target] = ("ref", f"({display.tags[0]})")
    return names


def link(label: str, names: Mapping[str, tuple[str, str]]) -> str:
    """The MyST role that links ``label`` with the text the reader sees displayed there."""
    role, text = names[label]
    return f"{{{role}}}`{text} <{label}>`"


def book_sources(root, names: Iterable[str] | None = None) -> dict[str, str]:
    """name → MyST source of the chapters (book order), read from ``root``."""
    from rlvr_dynamics.book.registry import NOTEBOOKS

    return {name: (root / NOTEBOOKS[name].source).read_text(encoding="utf-8") for name in (names or NOTEBOOKS)}
