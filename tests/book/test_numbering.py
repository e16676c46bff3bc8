"""One numbering: every number the book displays or writes is the paper's, the companion paper's, or
visibly the book's own (B1, B2, … for boxes; TS4-style tags for equations). The check runs on the
book's sources and is shown failing on each kind of mismatch it exists for."""

from __future__ import annotations

import pytest

from rlvr_dynamics.book import numbering
from rlvr_dynamics.files import project_root

ROOT = project_root()


def book_sources() -> dict[str, str]:
    sources = {name: (ROOT / "book" / f"{name}.md").read_text(encoding="utf-8") for name in ("intro", "notation")}
    sources.update(numbering.book_sources(ROOT))
    return sources


def test_the_book_has_one_numbering():
    found = numbering.problems(book_sources())
    assert not found, "\n".join(found)


def test_the_book_numbers_its_own_boxes_and_tags_its_displays():
    """Every box is unnumbered for sphinx-proof; the paper's results keep their numbers; the book's own
    are B1 … Bn; the displayed equations carry the paper's numbers."""
    pages = [numbering.parse_page(name, text) for name, text in book_sources().items()]
    boxes = [box for page in pages for box in page.boxes]
    assert boxes and all(box.nonumber for box in boxes)
    names = {box.label: box.name for box in boxes}
    assert names["tok-thm4"] == "Theorem 4"  # was "Theorem 3 (… (paper Theorem 4))"
    assert names["ts-theorem1"] == "Theorem 1 of Yao et al."  # was "Theorem 4"
    assert names["f1-closed-forms"].startswith("Proposition B")
    tags = {display.target: display.tags for page in pages for display in page.displays if display.target}
    assert tags["gg-identity"] == ("10",)  # was displayed as (9)
    assert tags["gg-alignment"] == ("11",)
    assert tags["ts-expected-update"] == ("TS4",)


GOOD = """# A chapter

```{prf:theorem} 1 (Convergence)
:label: good-theorem
:nonumber:

Under (15a), (15b) holds.
```

````{prf:proposition} B1 (A closed form)
:label: good-prop
:nonumber:

(good-eq)=
```{math}
a = b \\tag{10}
```
````

```{prf:lemma} 1 of Yao et al. (Logit update)
:label: good-lemma
:nonumber:
```

(good-book-eq)=
$$
c = d \\tag{TS4}
$$

By {ref}`(10) <good-eq>`, {ref}`(TS4) <good-book-eq>`, {prf:ref}`Theorem 1 <good-theorem>` and
{prf:ref}`Proposition B1 <good-prop>`, eqs. 6–10 and eq. 7b hold; Theorems 1–4 and Corollary 1 say so.

```{code-cell} ipython3
chapter.check("Identity (10) and (TS4) at every step", margins)  # eq. (15a) too
```
"""


def test_a_good_page_passes_and_its_links_show_the_displayed_numbers():
    assert numbering.problems({"good": GOOD}) == []
    names = numbering.reference_names({"good": GOOD})
    assert names == {"good-theorem": ("prf:ref", "Theorem 1"), "good-prop": ("prf:ref", "Proposition B1"),
                     "good-lemma": ("prf:ref", "Lemma 1 of Yao et al."), "good-eq": ("ref", "(10)"),
                     "good-book-eq": ("ref", "(TS4)")}
    assert numbering.link("good-eq", names) == "{ref}`(10) <good-eq>`"
    assert numbering.link("good-prop", names) == "{prf:ref}`Proposition B1 <good-prop>`"


def test_parse_page_finds_nested_displays_and_the_texts_a_reader_sees():
    page = numbering.parse_page("good", GOOD)
    assert [(d.tags, d.target) for d in page.displays] == [(("10",), "good-eq"), (("TS4",), "good-book-eq")]
    assert [box.line for box in page.boxes] == [3, 10, 20]
    kinds = {kind for _, _, kind in page.texts}
    assert kinds == {"prose", "title", "code"}
    code = [text for text, _, kind in page.texts if kind == "code"]
    assert any("Identity (10)" in text for text in code) and any("eq. (15a)" in text for text in code)
    # maths and inline code are not prose: "(2)" inside them is no equation number
    prose = numbering.parse_page("p", "Here $f^{(2)}$ and `g(2)` are symbols.\n")
    assert all("(2)" not in text for text, _, _ in prose.texts)
    assert numbering.problems({"p": "Here $f^{(2)}$ and `g(2)`, J_q(0) and (1 − 1/n) are no numbers.\n"}) == []


BAD_CASES = {
    "numbered by sphinx-proof": ("```{prf:theorem} 4 (Failure)\n:label: x\n```\n", "without :nonumber:"),
    "a paper number the paper lacks": ("```{prf:theorem} 5 (Failure)\n:label: x\n:nonumber:\n```\n",
                                       "the paper has no Theorem 5"),
    "a companion result the summary lacks": ("```{prf:lemma} 3 of Yao et al. (x)\n:label: x\n:nonumber:\n```\n",
                                             "have no Lemma 3"),
    "a title without a number": ("```{prf:definition} The instances\n:label: x\n:nonumber:\n```\n",
                                 "does not start with a number"),
    "book numbers out of order": ("```{prf:remark} B2 (x)\n:label: x\n:nonumber:\n```\n\n"
                                  "```{prf:remark} B1 (y)\n:label: y\n:nonumber:\n```\n", "B1 … B2 in book order"),
    "an equation numbered by Sphinx": ("```{math}\n:label: gg-identity\na = b\n```\n", "Sphinx would number it"),
    "a tag that is no equation": ("$$\na = b \\tag{23}\n$$\n", "neither a paper equation nor a book tag"),
    "a book tag displayed twice": ("$$\na \\tag{TS1}\n$$\n\n$$\nb \\tag{TS1}\n$$\n", "displayed twice"),
    "a tag Sphinx puts in a split environment": ("$$\n\\begin{aligned} a \\\\ b \\end{aligned} \\tag{3}\n$$\n",
                                                 "end the rows with \\cr"),
    "a target without a tag": ("(x)=\n```{math}\na = b\n```\n", "needs exactly one \\tag"),
    "Sphinx's equation count in prose": ("(x)=\n$$\na \\tag{9}\n$$\n\nSee {eq}`x`.\n", "prints Sphinx's count"),
    "a link that names another number": ("(x)=\n$$\na \\tag{9}\n$$\n\nSee {ref}`(10) <x>`.\n",
                                         "links equation (9) but says '(10)'"),
    "a link to an equation without its number": ("(x)=\n$$\na \\tag{9}\n$$\n\nSee {ref}`x`.\n", "needs its text"),
    "a box link without its text": ("```{prf:theorem} 4 (x)\n:label: t\n:nonumber:\n```\n\nBy {prf:ref}`t`.\n",
                                    "without its text"),
    "a box link with another number": ("```{prf:theorem} 4 (x)\n:label: t\n:nonumber:\n```\n\n"
                                       "By {prf:ref}`Theorem 3 <t>`.\n", "links Theorem 4 but says"),
    "a prose number the paper lacks": ("The bound (23) holds.\n", "(23) names no equation"),
    "an eq. the paper lacks": ("As eqs. 20–24 show.\n", "eq. 23 is not an equation"),
    "a book tag displayed nowhere": ("Check (TS9) here.\n", "(TS9) is displayed nowhere"),
    "a result the paper lacks": ("As Proposition 3 shows.\n", "Proposition 3 is neither"),
    "a book result that is no box": ("As Proposition B4 shows.\n", "Proposition B4 is no box"),
    "a claim text naming a label": ("(f2-grpo-direction)=\n$$\na \\tag{LM1}\n$$\n\n```{code-cell} ipython3\n"
                                    "chapter.check(\"(f2-grpo-direction): holds\", m)\n```\n",
                                    "(f2-grpo-direction) shows a label"),
    "a claim text with a wrong number": ("```{code-cell} ipython3\nchapter.check(\"Identity (25) holds\", m)\n```\n",
                                         "(25) names no equation"),
}


@pytest.mark.parametrize("case", BAD_CASES, ids=list(BAD_CASES))
def test_each_mismatch_is_caught(case):
    source, message = BAD_CASES[case]
    found = numbering.problems({"bad": source})
    assert any(message in problem for problem in found), found


def test_the_book_numbering_of_before_fails():
    """The numbering the issue found: sphinx-proof counting boxes, Sphinx counting equations."""
    before = ("```{prf:theorem} Catastrophic failure at the token level (paper Theorem 4)\n:label: tok-thm4\n```\n\n"
              "```{math}\n:label: gg-identity\n\\nabla J = J(1-J)(g^+ - g^-)\n```\n\n"
              "The identity {eq}`gg-identity` and {prf:ref}`tok-thm4`.\n")
    found = numbering.problems({"before": before})
    assert len(found) == 5, found
