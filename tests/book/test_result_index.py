"""The result index is true: every function and test it names exists, every label is defined in
its chapter, every implementation's docstring opens with the result's number, and the page the book
renders from it links every result to where it is stated."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from rlvr_dynamics.book import result_index
from rlvr_dynamics.book.registry import NOTEBOOKS
from rlvr_dynamics.files import project_root

ROOT = project_root()
SOURCES = {name: (ROOT / spec.source).read_text(encoding="utf-8") for name, spec in NOTEBOOKS.items()}
IDS = [f"{r.number} {r.implementation.rsplit('.', 1)[1]}" for r in result_index.RESULTS]


def resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def defined_tests(path: Path) -> set[str]:
    """``name`` and ``Class::name`` of every test function in a test file."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{item.name}" for item in node.body if isinstance(item, ast.FunctionDef)}
    return names


@pytest.mark.parametrize("result", result_index.RESULTS, ids=IDS)
def test_the_implementation_exists_and_its_docstring_opens_with_the_result(result):
    implementation = resolve(result.implementation)
    first_line = (inspect.getdoc(implementation) or "").splitlines()[0]
    assert result.mark in first_line, f"{result.implementation}: {first_line!r} does not name {result.mark!r}"


@pytest.mark.parametrize("result", result_index.RESULTS, ids=IDS)
def test_the_test_exists(result):
    path, _, name = result.test.partition("::")
    assert name in defined_tests(ROOT / "tests" / path), f"no test {result.test}"


@pytest.mark.parametrize("result", result_index.RESULTS, ids=IDS)
def test_the_chapter_states_it_under_its_label(result):
    assert result.chapter in NOTEBOOKS
    if result.label:
        assert result.label in result_index.label_kinds({result.chapter: SOURCES[result.chapter]})


def test_every_paper_result_of_the_theory_chapters_is_indexed():
    """The paper's numbered results that the book states all have a home."""
    numbers = " ".join(r.number for r in result_index.RESULTS)
    for number in ("(2)", "(3)", "(4)", "(5)", "(8)", "(9)", "(10)", "(11)", "(12)", "(13)", "(15a)", "(15b)",
                   "(16)", "(17)", "(18a)", "(19)", "(20)", "(21)", "(22)", "Theorem 1(a)", "Theorem 2", "Theorem 4",
                   "Corollary 1", "Assumption 2", "Assumption 3", "Yao et al. Lemma 1", "Yao et al. Theorem 1"):
        assert number in numbers, number


def test_the_page_links_each_result_to_its_statement():
    titles = {name: spec.title for name, spec in NOTEBOOKS.items()}
    page = result_index.render_page(result_index.RESULTS, SOURCES, titles)
    assert page.count("\n- **") == len(result_index.RESULTS)  # one item per result
    assert page.count("\n## ") == len({r.chapter for r in result_index.RESULTS})  # one section per chapter
    assert "(identity ∇J = J(1 − J)(g⁺ − g⁻)" not in page  # statements are escaped text, not code
    # links show the paper's numbers, not a count of Sphinx's
    assert "{ref}`(11) <gg-alignment>`" in page and "{prf:ref}`Theorem 4 <tok-thm4>`" in page
    assert "{prf:ref}`Proposition B5 <f1-closed-forms>`" in page and "{eq}" not in page
    assert ("Code: `policy_gradient_from_gap` in `theory/gaps.py`. Test: `test_identity_on_random_token_policies` "
            "in `theory/test_gaps.py`.") in page


def test_a_wrong_entry_is_caught(tmp_path):
    """What each check catches: a missing function, a missing test, an undefined label, a docstring
    that does not name the result."""
    bad = result_index.Result("eq. (10)", "(99)", "x", "gradient_gap", "gg-nowhere",
                              "rlvr_dynamics.theory.gaps.gradient_gap", "theory/test_gaps.py::test_nowhere")
    with pytest.raises(AssertionError, match="does not name"):
        test_the_implementation_exists_and_its_docstring_opens_with_the_result(bad)
    with pytest.raises(AssertionError, match="no test"):
        test_the_test_exists(bad)
    with pytest.raises(AssertionError):
        test_the_chapter_states_it_under_its_label(bad)
    with pytest.raises(AttributeError):
        resolve("rlvr_dynamics.theory.gaps.no_such_function")
