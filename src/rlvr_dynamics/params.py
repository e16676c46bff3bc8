"""Notebook parameters: one spec per notebook, presets, validation with one-line errors.

Every notebook has a ``parameters`` cell (papermill) holding the common parameters ``preset``,
``seed``, ``device``, ``output_dir`` and its chapter's parameters. A chapter parameter left at
``None`` takes the preset's value; an explicit value overrides the preset. The chapter's
parameters are the fields of a frozen dataclass (its config), declared with :func:`parameter`
so that the help text and the allowed range live next to the field.

:meth:`NotebookSpec.resolve` validates everything and raises :class:`ParameterError` (a
``ValueError``) naming the parameter, the bad value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr_dynamics.devices import DEVICE_CHOICES, resolve_device

PRESETS = ("ci", "paper")
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
        def show(bound: float) -> str:
            return str(int(bound)) if self.kind == "int" else f"{bound:g}"

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
        """Parse a command-line string into this parameter's type."""
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
        if expected is float and not math.isfinite(value):
            raise ParameterError(f"parameter '{self.name}' = {value!r} is not finite ({self.describe_range()})")
        out_of_range = (self.low is not None and value < self.low) or (self.high is not None and value > self.high)
        if self.choices is not None and value not in self.choices:
            out_of_range = True
        if out_of_range:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is out of range: allowed {self.describe_range()}")
        return value


def parameter(help: str, kind: str, low: float | None = None, high: float | None = None, choices=None):
    """Declare a chapter-config dataclass field as a notebook parameter (no default: presets give it)."""
    return field(metadata={"parameter": Parameter("", kind, help, None, low, high, choices)})


def split_list(name: str, text: str, kind, allowed=None) -> list:
    """Parse the comma-separated list parameter ``name`` into values of ``kind`` (a ``ValueError``
    names the parameter and the bad item)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"parameter '{name}' = {text!r} is empty: give one value or a comma-separated list")
    values = []
    for item in items:
        try:
            value = kind(item)
        except ValueError:
            raise ValueError(f"parameter '{name}' = {text!r}: {item!r} is not a {kind.__name__}") from None
        if allowed is not None and value not in allowed:
            raise ValueError(f"parameter '{name}' = {text!r}: {item!r} is unknown: allowed "
                             f"{', '.join(repr(a) for a in allowed)}")
        values.append(value)
    return values


COMMON_PARAMETERS = (
    Parameter("preset", "str", "scale of the run: 'ci' (CPU-sized, the book) or 'paper' (the paper's settings)",
              "ci", choices=PRESETS),
    Parameter("seed", "int", "seed of every random draw (explicit torch.Generator, never global)", 0,
              low=0, high=2**63 - 1),
    Parameter("device", "str", "'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'", "auto"),
    Parameter("output_dir", "str", "folder for figures (PNG + SVG) and metrics.json; relative to the repository root",
              ""),
)


def check_output_dir(path: str | os.PathLike) -> Path:
    """The output folder must be creatable and writable: its nearest existing ancestor is a
    writable folder. Creates nothing."""
    target = Path(path).expanduser()
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ParameterError(f"parameter 'output_dir' = {str(path)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ParameterError(f"parameter 'output_dir' = {str(path)!r} is not writable ({str(probe)!r} denies writing)")
    return target


@dataclass(frozen=True)
class RunSettings:
    """The common parameters of a run, validated."""

    preset: str
    seed: int
    device: str
    output_dir: Path
    # When validation ran (time.perf_counter): metrics.json records the run time from here; not a parameter.
    started_at: float = field(default_factory=time.perf_counter, repr=False, compare=False)


@dataclass(frozen=True)
class NotebookSpec:
    """A notebook of the book: its file, its config dataclass and the config's presets.

    Attributes:
        name: short name used by ``rlvr-book run NAME``.
        title: the chapter title.
        source: the jupytext MyST file, relative to the repository root.
        config: frozen dataclass of the chapter parameters (fields declared with :func:`parameter`).
        presets: preset name → dict of every config field's value.
    """

    name: str
    title: str
    source: str
    config: type
    presets: Mapping[str, Mapping[str, Any]]

    def __post_init__(self):
        names = {f.name for f in dataclasses.fields(self.config)}
        for preset in PRESETS:
            given = set(self.presets.get(preset, {}))
            if given != names:
                raise TypeError(f"{self.name}: preset {preset!r} must set exactly {sorted(names)}, sets {sorted(given)}")

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        chapter = tuple(dataclasses.replace(f.metadata["parameter"], name=f.name) for f in dataclasses.fields(self.config))
        common = tuple(
            dataclasses.replace(p, default=f"build/outputs/{self.name}") if p.name == "output_dir" else p
            for p in COMMON_PARAMETERS
        )
        return common + chapter

    def parameter(self, name: str) -> Parameter:
        for param in self.parameters:
            if param.name == name:
                return param
        allowed = ", ".join(p.name for p in self.parameters)
        raise ParameterError(f"parameter '{name}' is unknown for notebook '{self.name}': allowed {allowed}")

    def resolve(self, values: Mapping[str, Any], *, strict: bool = False, check_device: bool = True):
        """Validate parameters; return ``(RunSettings, config)``.

        ``values`` may be a notebook's ``locals()``: only this spec's names are read (with
        ``strict=True`` an unknown name is an error, as on the command line). Missing common
        parameters take their defaults; chapter parameters that are missing or ``None`` take
        the preset's value.
        """
        if strict:
            for name in values:
                self.parameter(name)
        get = {p.name: values.get(p.name, p.default) for p in COMMON_PARAMETERS}
        preset = self.parameter("preset").validate(get["preset"] if get["preset"] is not None else "ci")
        seed = self.parameter("seed").validate(get["seed"])
        device = self.parameter("device").validate(get["device"])
        if check_device:
            try:
                resolve_device(device)
            except ValueError as error:
                raise ParameterError(str(error).replace("\n", " ")) from None
        elif device.split(":")[0] not in DEVICE_CHOICES:
            raise ParameterError(f"parameter 'device' = {device!r} is unknown: allowed {DEVICE_CHOICES} or 'cuda:N'")
        output_dir = self.parameter("output_dir").validate(get["output_dir"] or f"build/outputs/{self.name}")
        settings = RunSettings(preset, seed, device, check_output_dir(resolve_output_dir(output_dir)))
        chapter = {}
        for param in self.parameters[len(COMMON_PARAMETERS):]:
            value = values.get(param.name)
            chapter[param.name] = param.validate(self.presets[preset][param.name] if value is None else value)
        config = self.config(**chapter)
        check = getattr(config, "check", None)
        if check is not None:
            try:
                check()
            except ValueError as error:
                raise ParameterError(str(error)) from None
        return settings, config


def project_root() -> Path:
    """The repository root: the nearest folder above the working directory (or this package)
    holding both ``_toc.yml`` and ``pyproject.toml``."""
    for start in (Path.cwd(), Path(__file__).resolve()):
        for folder in (start, *start.parents):
            if (folder / "_toc.yml").is_file() and (folder / "pyproject.toml").is_file():
                return folder
    raise FileNotFoundError("no repository root (a folder with _toc.yml and pyproject.toml) above the working directory")


def resolve_output_dir(output_dir: str | os.PathLike) -> Path:
    """Absolute output folder: relative paths are taken from the repository root."""
    path = Path(output_dir).expanduser()
    return path if path.is_absolute() else project_root() / path
