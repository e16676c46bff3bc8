"""Every notebook follows the parameter contract of DESIGN.md."""

import ast

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
    settings, config = resolve_parameters(name, {"preset": preset, "output_dir": str(tmp_path), "device": "cpu"})
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
    chapter's parameters for papermill, excepted)."""
    cells, current, other = [], None, 0
    for line in text.splitlines():
        if current is None and line.startswith("```{code-cell}"):
            current = []
        elif current is not None and line.startswith("```"):
            cells.append(current)
            current = None
        elif current is not None:
            current.append(line)
        else:
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
