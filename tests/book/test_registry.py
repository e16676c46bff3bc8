"""Every notebook follows the parameter contract of DESIGN.md."""

import ast
import importlib
import re

import jupytext
import pytest

from rlvr_dynamics.book.params import COMMON_PARAMETERS, PRESETS
from rlvr_dynamics.book.registry import NOTEBOOKS, notebook_spec, resolve_parameters
from rlvr_dynamics.config import ParameterError
from rlvr_dynamics.files import project_root


def parameters_cell(name):
    notebook = jupytext.read(project_root() / NOTEBOOKS[name].source)
    cells = [c for c in notebook.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name}: exactly one cell tagged 'parameters'"
    assignments = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign), f"{name}: the parameters cell holds only assignments"
        assignments[node.targets[0].id] = ast.literal_eval(node.value)
    return assignments


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_parameters_cell_matches_the_spec(name):
    spec = notebook_spec(name)
    cell = parameters_cell(name)
    assert list(cell) == [p.name for p in spec.parameters]
    for param in spec.parameters:
        assert cell[param.name] == param.default, param.name
    for common in COMMON_PARAMETERS:
        assert common.name in cell


@pytest.mark.parametrize("name", list(NOTEBOOKS))
@pytest.mark.parametrize("preset", PRESETS)
def test_presets_resolve_and_validate(name, preset, tmp_path):
    # (the memory check is off: whether a preset fits is the machine's question, tested in test_params)
    settings, config = NOTEBOOKS[name].resolve({"preset": preset, "output_dir": str(tmp_path), "device": "cpu"},
                                               check_device=False)
    assert settings.preset == preset
    for key, value in NOTEBOOKS[name].presets[preset].items():
        assert getattr(config, key) == value


def test_explicit_parameter_overrides_preset(tmp_path):
    _, config = resolve_parameters("gradient_gap", {"preset": "paper", "bandit_arms": 5, "output_dir": str(tmp_path)})
    assert (config.bandit_arms == 5
            and config.bandit_instances == NOTEBOOKS["gradient_gap"].presets["paper"]["bandit_instances"])


@pytest.mark.parametrize("values, name", [
    ({"seed": True}, "seed"), ({"seed": 2.0}, "seed"), ({"bandit_dim": 0}, "bandit_dim"),
    ({"theta_scale": float("nan")}, "theta_scale"), ({"preset": "big"}, "preset"), ({"device": "gpu"}, "device"),
    ({"output_dir": 3}, "output_dir"),
])
def test_validation_cell_raises_value_error_naming_the_parameter(values, name, tmp_path):
    values = {"output_dir": str(tmp_path), **values}
    with pytest.raises(ValueError, match=f"parameter '{name}'"):
        resolve_parameters("gradient_gap", values)


def test_validation_ignores_notebook_locals_but_cli_is_strict(tmp_path):
    resolve_parameters("gradient_gap", {"output_dir": str(tmp_path), "np": object(), "_": 1})
    with pytest.raises(ParameterError, match="unknown"):
        notebook_spec("gradient_gap").resolve({"output_dir": str(tmp_path), "typo": 1}, strict=True)


# ----------------------------------------------------------------------------------------------
# Thin notebooks: the notebook narrates and calls its chapter module
# ----------------------------------------------------------------------------------------------

MAX_CELL_LINES = 25


def thinness_problems(text: str) -> list[str]:
    """What keeps a notebook's MyST source from being thin: more code lines than other lines (counting
    as the before-stop hook does: every line inside a code cell is code, every other line is not), a
    function or class defined in it, a code cell over 25 lines (the parameters cell, a list of the
    chapter's parameters for papermill, excepted). A cell's leading YAML block (``---`` … ``---``: tags,
    a figure's caption and alt text) is metadata: neither code nor prose."""
    cells, current, other, metadata = [], None, 0, False
    for line in text.splitlines():
        if current is None and line.startswith("```{code-cell}"):
            current = []
        elif current is not None and line.startswith("```"):
            cells.append(current)
            current = None
        elif current is not None and line == "---" and (metadata or not current):
            metadata = not metadata
        elif current is not None and not metadata:
            current.append(line)
        elif current is None:
            other += 1
    code = sum(len(cell) for cell in cells)
    problems = [f"{code} code lines > {other} other lines"] if code > other else []
    for cell in cells:
        source = "\n".join(line for line in cell if not line.startswith(":tags:"))
        defined = [n.name for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        problems += [f"defines {name}: move it to the chapter module" for name in defined]
        if ":tags: [parameters]" not in cell and len(cell) > MAX_CELL_LINES:
            problems.append(f"a code cell of {len(cell)} lines starting {cell[0]!r}")
    return problems


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebooks_are_thin(name):
    assert thinness_problems((project_root() / NOTEBOOKS[name].source).read_text(encoding="utf-8")) == []


def test_the_thinness_check_catches_a_thick_notebook():
    parameters = "```{code-cell} ipython3\n:tags: [parameters]\n" + "x = None\n" * 30 + "```\n"
    helper = "```{code-cell} ipython3\ndef margin(x):\n    return x\n```\n"
    long_cell = "```{code-cell} ipython3\n" + "y = 1\n" * 26 + "```\n"
    prose = "Some prose.\n" * 100
    assert thinness_problems(prose + parameters) == []  # a long parameters cell is allowed
    assert thinness_problems(prose + helper) == ["defines margin: move it to the chapter module"]
    assert thinness_problems(prose + long_cell) == ["a code cell of 26 lines starting 'y = 1'"]
    assert thinness_problems("Prose.\n" + long_cell)[0] == "26 code lines > 1 other lines"
    figure = ("```{code-cell} ipython3\n---\ntags: [hide-input]\nmystnb:\n  figure:\n    caption: >-\n"
              + "      A long caption.\n" * 30 + "---\nchapter.show(fig, 'f')\n```\n")
    assert thinness_problems("Prose.\n" + figure) == []  # a figure's caption is not code
    assert thinness_problems("Prose.\n" + figure.replace("chapter.show", "y = 1\n" * 25 + "chapter.show")) == [
        "26 code lines > 1 other lines", "a code cell of 26 lines starting 'y = 1'"]


# ----------------------------------------------------------------------------------------------
# Numbers in prose come from the run
# ----------------------------------------------------------------------------------------------

_NOT_PROSE = [
    r"```\{code-cell\}.*?\n```",  # code cells
    r"`{3,4}\{math\}.*?\n`{3,4}",  # display maths
    r"\$\$.*?\$\$",
    r"\$[^$\n]+\$",  # inline maths
    r"\{[\w:-]+\}`[^`]*`",  # roles: {glue:text}`x:.2f`, {eq}`label`, {cite:p}`key`
    r"`[^`\n]*`",  # code spans
    r"\A---\n.*?\n---\n",  # front matter
    r"Sections?[ -]\d+(?:\.\d+)?(?:[–-]\d+(?:\.\d+)?)?",  # the paper's section numbers
]


def typed_decimals(text: str) -> list[str]:
    """Decimal numbers and percentages typed in a notebook's prose (outside code, maths and roles)."""
    for pattern in _NOT_PROSE:
        text = re.sub(pattern, " ", text, flags=re.S | re.M)
    return re.findall(r"(?<![\w.])\d*\.\d+(?:[eE][-+]?\d+)?(?![\w.])|(?<![\w.])\d+(?:\.\d+)?\s?%", text)


def test_typed_decimals_finds_numbers_in_prose_only():
    text = ("The fit has R² of about 0.85 ($\\eta = 0.1$, `alpha=0.3`) and {glue:text}`r2:.2f`;\n"
            "```{code-cell} ipython3\nx = 0.5\n```\nSection 5.1 reports 95% intervals and 1e-3, 2.5·10⁹.\n")
    assert typed_decimals(text) == ["0.85", "95%", "2.5"]


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_numbers_in_prose_are_constants_of_the_set_up(name):
    """Every decimal typed in a chapter's prose is one of its chapter module's SETUP_NUMBERS (a constant
    of the set-up, whose value the test checks); measured numbers are glued from the run."""
    module = importlib.import_module(f"rlvr_dynamics.chapters.{name}")
    constants = getattr(module, "SETUP_NUMBERS", {})
    for typed in typed_decimals((project_root() / NOTEBOOKS[name].source).read_text(encoding="utf-8")):
        assert typed in constants, f"{name}: {typed!r} is typed in the prose: glue it from the run"
        value = float(typed.rstrip("% ")) / (100 if typed.endswith("%") else 1)
        assert value == pytest.approx(float(constants[typed]), rel=1e-12), f"{name}: {typed} ≠ {constants[typed]}"
