"""Tests of rlvr_dynamics.config: parameter fields, their validation and one-line errors, comma lists,
string options."""

from __future__ import annotations

import dataclasses
import math

import pytest

from rlvr_dynamics.config import Parameter, ParameterError, check_choice, parameter, split_list


def test_describe_range_by_kind():
    assert Parameter("n", "int", "", low=1, high=10).describe_range() == "1 ≤ n ≤ 10"
    assert Parameter("x", "float", "", low=0.5).describe_range() == "x ≥ 0.5"
    assert Parameter("x", "float", "", high=2.0).describe_range() == "x ≤ 2"
    assert Parameter("v", "str", "", choices=("a", "b")).describe_range() == "one of 'a', 'b'"
    assert Parameter("s", "str", "").describe_range() == "any str"


def test_coerce_parses_command_line_text_or_names_the_parameter():
    assert Parameter("n", "int", "").coerce("12") == 12
    assert Parameter("x", "float", "").coerce("1e-3") == 1e-3
    assert Parameter("b", "bool", "").coerce("True") is True and Parameter("b", "bool", "").coerce("0") is False
    for kind, text in (("int", "1.5"), ("float", "ten"), ("bool", "yes")):
        with pytest.raises(ParameterError, match=f"parameter 'p' = {text!r} is not a valid {kind}"):
            Parameter("p", kind, "").coerce(text)


@pytest.mark.parametrize("param, value, message", [
    (Parameter("n", "int", "", low=1, high=3), 4, "out of range: allowed 1 ≤ n ≤ 3"),
    (Parameter("n", "int", ""), True, "has type bool, expected int"),  # a bool is not an int here
    (Parameter("n", "int", ""), 2.0, "has type float, expected int"),
    (Parameter("x", "float", ""), math.nan, "is not finite"),
    (Parameter("x", "float", ""), "1", "has type str"),
    (Parameter("v", "str", "", choices=("a",)), "b", "out of range: allowed one of 'a'"),
])
def test_validate_rejects_with_one_line_naming_the_parameter(param, value, message):
    with pytest.raises(ParameterError, match=message) as error:
        param.validate(value)
    assert "\n" not in str(error.value) and f"'{param.name}'" in str(error.value)


def test_validate_accepts_ints_for_floats_as_floats():
    value = Parameter("x", "float", "", low=0.0).validate(3)
    assert value == 3.0 and isinstance(value, float)


def test_parameter_declares_a_field_with_its_metadata():
    @dataclasses.dataclass(frozen=True)
    class Config:
        steps: int = parameter("steps K", "int", low=1)

    (field,) = dataclasses.fields(Config)
    assert field.metadata["parameter"].help == "steps K" and field.metadata["parameter"].low == 1


@pytest.mark.parametrize("text, message", [
    ("1e-4,,3e-4", "item 2 of 3 is empty"),  # once read as two runs
    ("1e-4,3e-4,", "item 3 of 3 is empty"),  # a trailing comma
    (",1e-4", "item 1 of 2 is empty"),
    (" , ", "item 1 of 2 is empty"),
    ("1e-4, 3e-4", "item ' 3e-4' has surrounding spaces"),
])
def test_split_list_refuses_empty_items_and_spaces_instead_of_dropping_them(text, message):
    with pytest.raises(ValueError, match=message):
        split_list("rates", text, float)


def test_split_list_parses_and_names_the_bad_item():
    assert split_list("rates", "1e-4,3e-4", float) == [1e-4, 3e-4]
    with pytest.raises(ValueError, match="parameter 'rates' = ' ' is empty"):
        split_list("rates", " ", float)
    with pytest.raises(ValueError, match="'x' is not a float"):
        split_list("rates", "1,x", float)
    with pytest.raises(ValueError, match="'ppo' is unknown: allowed 'grpo'"):
        split_list("losses", "grpo,ppo", str, ("grpo",))


def test_split_list_keeps_values_within_a_closed_range():
    assert split_list("lengths", "2,4,64", int, within=(2, 64)) == [2, 4, 64]
    for text, bad in (("2,65", 65), ("1,4", 1)):
        with pytest.raises(ValueError, match=f"parameter 'lengths' = '{text}': {bad} is out of range: allowed "
                                             "2 ≤ value ≤ 64"):
            split_list("lengths", text, int, within=(2, 64))


def test_check_choice():
    assert check_choice("rule", "gap", ("gap", "grpo")) == "gap"
    with pytest.raises(ValueError, match="parameter 'rule' = 'ppo' is unknown: allowed 'gap', 'grpo'"):
        check_choice("rule", "ppo", ("gap", "grpo"))


@pytest.mark.parametrize("kind, text", [("int", " 5"), ("int", "5\n"), ("float", "0.1 "), ("bool", " true"),
                                        ("str", " grpo")])
def test_surrounding_whitespace_is_an_error_not_trimmed(kind, text):
    with pytest.raises(ParameterError, match="has surrounding whitespace"):
        Parameter("p", kind, "").coerce(text)


def test_a_displayed_float_bound_is_exact_and_passes_validation():
    """A bound shown rounded (0.0131762 for √(1.5625 · 4)/120…) was rejected when copied back."""
    bound = math.sqrt(2.5) / 120
    param = Parameter("alignment", "float", "", low=1e-6, high=bound)
    shown = param.describe_range().split("≤ ")[-1]
    assert param.validate(float(shown)) == bound
    assert Parameter("x", "float", "", high=2.0).describe_range() == "x ≤ 2"  # short where short is exact
