"""Declaring a chapter's configuration: dataclass fields that are also notebook parameters.

A chapter config is a frozen dataclass whose fields are declared with :func:`parameter`, so that
the help text and the allowed range live next to the field; the book's machinery
(:mod:`rlvr_dynamics.book.params`) reads them to validate a run and to list the parameters.
Also here: comma-separated list parameters (:func:`split_list`) and string options
(:func:`check_choice`). This module imports nothing of the package, so every layer may use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


class ParameterError(ValueError):
    """A bad notebook parameter: the message is one line naming it."""


@dataclass(frozen=True)
class Parameter:
    """One notebook parameter.

    Attributes:
        name: the variable in the ``parameters`` cell.
        kind: ``"int"``, ``"float"``, ``"str"`` or ``"bool"``.
        help: one line for ``rlvr-book list``.
        default: the value in the parameters cell (``None``: take the preset's).
        low, high: inclusive bounds for numbers (``None``: unbounded).
        choices: the allowed values for strings.
    """

    name: str
    kind: str
    help: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None

    def describe_range(self) -> str:
        def show(bound: float) -> str:  # exact: a bound the reader copies must pass validation
            if self.kind == "int":
                return str(int(bound))
            short = f"{bound:g}"
            return short if float(short) == bound else repr(float(bound))

        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.low is not None and self.high is not None:
            return f"{show(self.low)} ≤ {self.name} ≤ {show(self.high)}"
        if self.low is not None:
            return f"{self.name} ≥ {show(self.low)}"
        if self.high is not None:
            return f"{self.name} ≤ {show(self.high)}"
        return f"any {self.kind}"

    def coerce(self, text: str) -> Any:
        """Parse a command-line string into this parameter's type (surrounding whitespace is an error:
        Python's ``int(" 5 ")`` would accept it silently)."""
        _check_no_surrounding_space(self.name, text)
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
            if self.kind == "bool":
                lowered = text.strip().lower()
                if lowered not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                return lowered in ("true", "1")
            return text
        except ValueError:
            raise ParameterError(
                f"parameter '{self.name}' = {text!r} is not a valid {self.kind} ({self.describe_range()})"
            ) from None

    def validate(self, value: Any) -> Any:
        """Check type and range; return the value (ints accepted for floats, as floats)."""
        expected = _TYPES[self.kind]
        ok_type = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok_type = float(value), True
        if not ok_type:
            raise ParameterError(
                f"parameter '{self.name}' = {value!r} has type {type(value).__name__}, expected {self.kind}"
                f" ({self.describe_range()})"
            )
        if expected is str:
            _check_no_surrounding_space(self.name, value)
        if expected is float and not math.isfinite(value):
            raise ParameterError(f"parameter '{self.name}' = {value!r} is not finite ({self.describe_range()})")
        out_of_range = (self.low is not None and value < self.low) or (self.high is not None and value > self.high)
        if self.choices is not None and value not in self.choices:
            out_of_range = True
        if out_of_range:
            raise ParameterError(
                f"parameter '{self.name}' = {value!r} is out of range: allowed {self.describe_range()}")
        return value


def parameter(help: str, kind: str, low: float | None = None, high: float | None = None, choices=None):
    """Declare a chapter-config dataclass field as a notebook parameter (no default: presets give it)."""
    return field(metadata={"parameter": Parameter("", kind, help, None, low, high, choices)})


def _check_no_surrounding_space(name: str, text: str) -> None:
    if text != text.strip():
        raise ParameterError(f"parameter '{name}' = {text!r} has surrounding whitespace: write {text.strip()!r}")


def split_list(name: str, text: str, kind, allowed=None, within: tuple[float, float] | None = None) -> list:
    """Parse the comma-separated list parameter ``name`` (``"1e-4,3e-4"``) into values of ``kind``.
    Strict: an empty item (``"1e-4,,3e-4"``, a trailing comma) or an item with surrounding spaces is
    an error rather than dropped or trimmed, as is a value not in ``allowed`` or outside the closed range
    ``within`` = (low, high); a ``ValueError`` names the parameter and the bad item."""
    if not text.strip():
        raise ValueError(f"parameter '{name}' = {text!r} is empty: give one value or a comma-separated list")
    items = text.split(",")
    values = []
    for position, item in enumerate(items, start=1):
        if not item.strip():
            raise ValueError(f"parameter '{name}' = {text!r}: item {position} of {len(items)} is empty "
                             "(no empty items or trailing commas)")
        if item != item.strip():
            raise ValueError(f"parameter '{name}' = {text!r}: item {item!r} has surrounding spaces "
                             f"(write {','.join(i.strip() for i in items)!r})")
        try:
            value = kind(item)
        except ValueError:
            raise ValueError(f"parameter '{name}' = {text!r}: {item!r} is not a {kind.__name__}") from None
        if allowed is not None and value not in allowed:
            raise ValueError(f"parameter '{name}' = {text!r}: {item!r} is unknown: allowed "
                             f"{', '.join(repr(a) for a in allowed)}")
        if within is not None and not within[0] <= value <= within[1]:
            raise ValueError(f"parameter '{name}' = {text!r}: {value} is out of range: allowed "
                             f"{within[0]} ≤ value ≤ {within[1]}")
        values.append(value)
    return values


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """A documented string option: ``value`` must be one of ``choices`` (a ``ValueError`` names
    the option, the value and the allowed ones)."""
    if value not in choices:
        raise ValueError(f"parameter '{name}' = {value!r} is unknown: allowed {', '.join(map(repr, choices))}")
    return value
