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
