"""Notebook parameters: one spec per notebook, presets, validation with one-line errors.

Every notebook has a ``parameters`` cell (papermill) holding the common parameters ``preset``,
``seed``, ``device``, ``output_dir`` and its chapter's parameters. A chapter parameter left at
``None`` takes the preset's value; an explicit value overrides the preset. The chapter's
parameters are the fields of a frozen dataclass (its config), declared with :func:`parameter`
so that the help text and the allowed range live next to the field (:mod:`rlvr_dynamics.config`).

:meth:`NotebookSpec.resolve` validates everything and raises :class:`ParameterError` (a
``ValueError``) naming the parameter, the bad value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr_dynamics.config import Parameter, ParameterError
from rlvr_dynamics.devices import DEVICE_CHOICES, resolve_device
from rlvr_dynamics.files import project_root

PRESETS = ("ci", "paper")


COMMON_PARAMETERS = (
    Parameter("preset", "str", "scale of the run: 'ci' (CPU-sized, the book) or 'paper' (the paper's settings)",
              "ci", choices=PRESETS),
    Parameter("seed", "int", "seed of every random draw (explicit torch.Generator, never global)", 0,
              low=0, high=2**63 - 1),
    Parameter("device", "str", "'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'", "auto"),
    Parameter("output_dir", "str", "folder for figures (PNG + SVG) and metrics.json; relative to the repository root; "
              "'' : runs/NAME-PRESET (the book's own results, build/outputs/NAME, are written by the book alone)", ""),
)


NAME_MAX = 255  # bytes in one folder name (Linux file systems), when os.pathconf cannot say
PATH_MAX = 4096  # bytes in a whole path


def check_output_dir(path: str | os.PathLike, parameter: str = "output_dir", relative_to: Path | None = None) -> Path:
    """The absolute output folder ``path`` names (relative paths are taken from ``relative_to``, default
    the repository root), once it is sure to be creatable and writable; creates nothing.

    Every problem is a one-line :class:`ParameterError` naming ``parameter``: an empty or whitespace-only
    value or surrounding whitespace, a NUL byte, a name that is not valid UTF-8 (the run could not record
    it), a folder name over 255 bytes or a path over 4096, a symlink loop, a file where a folder should be,
    and a nearest existing folder that denies writing."""
    text = check_path_text(path, parameter)
    shown = f"parameter '{parameter}' = {text!r}"
    target = Path(text).expanduser()
    if not target.is_absolute():
        target = (relative_to or project_root()) / target
    name_max = _name_max(target)
    too_long = next((part for part in target.parts if len(part.encode("utf-8")) > name_max), None)
    if too_long is not None:
        raise ParameterError(f"parameter '{parameter}': the folder name {too_long[:40]!r}… has "
                             f"{len(too_long.encode('utf-8'))} bytes, more than the file system's {name_max}")
    if len(os.fsencode(target)) >= PATH_MAX:
        raise ParameterError(f"parameter '{parameter}': the path has {len(os.fsencode(target))} bytes, more than "
                             f"the {PATH_MAX - 1} a path may have")
    try:
        resolved = target.resolve()
    except RuntimeError:  # Python 3.11: "Symlink loop from ..."
        raise ParameterError(f"{shown} goes through a symbolic-link loop") from None
    except OSError as error:
        raise ParameterError(f"{shown} cannot be used: {error.strerror}") from None
    probe = resolved
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file, not a folder" if probe == resolved else f"lies below {str(probe)!r}, a file"
        raise ParameterError(f"{shown} {what}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ParameterError(f"{shown} is not writable ({str(probe)!r} denies writing)")
    return target


def check_path_text(path: str | os.PathLike, parameter: str) -> str:
    """The path as text, once it is not empty or whitespace, has no surrounding whitespace or NUL byte and
    is valid UTF-8 (a one-line :class:`ParameterError` naming ``parameter`` otherwise)."""
    text = os.fspath(path)
    shown = f"parameter '{parameter}' = {text!r}"
    if not text.strip():
        raise ParameterError(f"{shown} is empty: give a path")
    if text != text.strip():
        raise ParameterError(f"{shown} has surrounding whitespace: write {text.strip()!r}")
    if "\0" in text:
        raise ParameterError(f"{shown} contains a NUL byte")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParameterError(f"{shown} is not valid UTF-8: metrics.json and the notebook could not record it") from None
    return text


def _name_max(path: Path) -> int:
    """The file system's longest folder name, asked of the nearest existing folder above ``path``."""
    for folder in path.parents:
        try:
            if folder.is_dir():
                return int(os.pathconf(folder, "PC_NAME_MAX"))
        except (OSError, ValueError):  # a component too long to look up, or no answer: keep climbing
            continue
    return NAME_MAX


def check_memory(estimated_bytes: int, device) -> None:
    """Refuse a run whose estimated peak memory exceeds what ``device`` has available now (a one-line
    :class:`ParameterError` with both numbers), before it starts rather than deep inside it."""
    import psutil
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        available, _ = torch.cuda.mem_get_info(device)
        where = f"free on {device}"
    else:
        available = psutil.virtual_memory().available
        where = "available on this machine"
    if estimated_bytes > available:
        raise ParameterError(f"these sizes need an estimated {_gib(estimated_bytes)} of memory, more than the "
                             f"{_gib(available)} {where}: reduce them (see `rlvr-book list`)")


def _gib(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


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
class Variation:
    """A rerun of a chapter worth trying, shown in its "Rerun this chapter" box
    (:mod:`rlvr_dynamics.book.rerun`).

    Attributes:
        parameters: the parameters to set (``rlvr-book run NAME -p KEY VALUE``), each validated
            against the chapter's spec; may be empty when ``before`` is what changes.
        why: one sentence: what the reader will see and why it is worth the time.
        before: an optional command to run first (e.g. a benchmark that adds a record).
    """

    parameters: Mapping[str, Any]
    why: str
    before: str = ""


@dataclass(frozen=True)
class NotebookSpec:
    """A notebook of the book: its file, its config dataclass and the config's presets.

    Attributes:
        name: short name used by ``rlvr-book run NAME``.
        title: the chapter title.
        source: the jupytext MyST file, relative to the repository root.
        config: frozen dataclass of the chapter parameters (fields declared with
            :func:`rlvr_dynamics.config.parameter`).
        presets: preset name → dict of every config field's value.
        findings_measured_at: the presets at whose settings the chapter's empirical findings were
            measured (:meth:`enforces_findings`).
        variations: two reruns worth trying (:class:`Variation`), shown in the chapter's "Rerun this
            chapter" box; every parameter they set is validated here.
        paper_note: what the ``paper`` preset changes, the hardware it wants and how long it takes
            (or that the book has not timed it), for the same box.
    """

    name: str
    title: str
    source: str
    config: type
    presets: Mapping[str, Mapping[str, Any]]
    findings_measured_at: tuple[str, ...] = ("ci",)
    variations: tuple[Variation, ...] = ()
    paper_note: str = ""

    def __post_init__(self):
        names = {f.name for f in dataclasses.fields(self.config)}
        for preset in PRESETS:
            given = set(self.presets.get(preset, {}))
            if given != names:
                raise TypeError(
                    f"{self.name}: preset {preset!r} must set exactly {sorted(names)}, sets {sorted(given)}")
        unknown = set(self.findings_measured_at) - set(PRESETS)
        if unknown:
            raise TypeError(f"{self.name}: findings_measured_at names unknown presets {sorted(unknown)}")
        for variation in self.variations:
            if not variation.why or not (variation.parameters or variation.before):
                raise TypeError(f"{self.name}: a variation needs parameters (or a command to run first) and a why")
            for key, value in variation.parameters.items():
                if key == "output_dir":
                    raise TypeError(f"{self.name}: a variation sets no output_dir (the command chooses one)")
                self.parameter(key).validate(value)  # ParameterError: unknown name or bad value

    def enforces_findings(self, config: Any) -> bool:
        """The book's one rule for empirical findings: a finding the prose states is enforced (a
        broken one fails the run) when the run's config is that of a preset at which the findings
        were measured, and only recorded otherwise. Facts — identities, theorems, implementation
        checks — are enforced under every parameter."""
        return any(config == self.config(**self.presets[preset]) for preset in self.findings_measured_at)

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        chapter = tuple(dataclasses.replace(f.metadata["parameter"], name=f.name)
                        for f in dataclasses.fields(self.config))
        return COMMON_PARAMETERS + chapter

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
        torch_device = None
        if check_device:
            try:
                torch_device = resolve_device(device)
            except ValueError as error:
                raise ParameterError(str(error).replace("\n", " ")) from None
        elif device.split(":")[0] not in DEVICE_CHOICES:
            raise ParameterError(f"parameter 'device' = {device!r} is unknown: allowed {DEVICE_CHOICES} or 'cuda:N'")
        output_dir = self.parameter("output_dir").validate(get["output_dir"]) if get["output_dir"] else ""
        settings = RunSettings(preset, seed, device, check_output_dir(output_dir or self.default_output_dir(preset)))
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
        estimate = getattr(config, "estimated_peak_bytes", None)
        if estimate is not None and torch_device is not None:
            check_memory(estimate(), torch_device)
        return settings, config

    def default_output_dir(self, preset: str) -> str:
        """Where a run that names no output folder writes (a papermill run, a reader's rerun in Jupyter):
        a folder of its own, never the book's ``build/outputs/NAME``."""
        return f"runs/{self.name}-{preset}"
