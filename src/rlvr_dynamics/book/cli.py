"""``rlvr-book``: list, run (with parameters) and execute the notebooks, build the book, re-record references.

Bad input (unknown notebook or parameter, wrong type, out-of-range value, an output path that
cannot be used, a repeated parameter or option, sizes that need more memory than the machine has)
prints one line naming it and exits with code 2, before anything is written. Ctrl-C, SIGTERM and
SIGHUP, at any moment, print one line last and exit with 128 + the signal's number
(:mod:`rlvr_dynamics.book.interrupt`). A damaged file the command reads, or an output it cannot
write (a full disk, a closed pipe), is one line and exit 1; messages survive any stdout encoding.

The heavy modules (torch, through the notebook registry) are imported after the Ctrl-C handler
is in place, so that even start-up is interrupted cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
from pathlib import Path

from rlvr_dynamics.book import interrupt

USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (its own usage dump is several lines), where an
    option given twice is an error instead of the last one silently winning."""

    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)

    def add_argument(self, *names, **options):
        action = options.get("action")
        if names and names[0].startswith("-") and action in (None, "store", "store_true"):
            options["action"] = _StoreTrueOnce if action == "store_true" else _StoreOnce
            if action == "store_true":
                options.setdefault("default", False)
        return super().add_argument(*names, **options)


class _StoreOnce(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        seen = getattr(namespace, "_given", set())
        if self.dest in seen:
            parser.error(f"argument {'/'.join(self.option_strings)}: given twice (give it once)")
        namespace._given = seen | {self.dest}
        setattr(namespace, self.dest, values)


class _StoreTrueOnce(_StoreOnce):
    def __init__(self, option_strings, dest, default=False, required=False, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, required=required, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, True, option_string)


def _format_value(value) -> str:
    return "None (preset)" if value is None else repr(value)


def command_list(_args) -> int:
    from rlvr_dynamics.book.params import PRESETS
    from rlvr_dynamics.book.registry import NOTEBOOKS

    for spec in NOTEBOOKS.values():
        print(f"{spec.name}: {spec.title}  [{spec.source}]")
        header = ("parameter", "type", "default", *PRESETS, "allowed")
        rows = []
        for param in spec.parameters:
            presets = [repr(spec.presets[p][param.name]) if param.name in spec.presets[p] else "-" for p in PRESETS]
            rows.append((param.name, param.kind, _format_value(param.default), *presets, param.describe_range()))
        widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            print("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        for param in spec.parameters:
            print(f"    {param.name}: {param.help}")
        print()
    return 0


def _collect_parameters(spec, args) -> dict:
    from rlvr_dynamics.book.params import check_output_dir
    from rlvr_dynamics.config import ParameterError

    values, texts = {}, {}
    for key, text in args.parameter or []:
        if key in texts:
            raise ParameterError(f"parameter '{key}' given twice: {texts[key]!r} and {text!r} (give it once)")
        texts[key] = text
        values[key] = text if key == "output_dir" else spec.parameter(key).coerce(text)
    for key, option, value in (("preset", "--preset", args.preset), ("output_dir", "--output-dir", args.output_dir)):
        if value is not None and key in texts:
            raise ParameterError(f"parameter '{key}' given twice: -p {key} {texts[key]!r} and {option} {value!r} "
                                 "(give it once)")
        if value is not None:
            values[key] = value
    preset = values.get("preset", "ci")
    # Relative output folders are taken from the working directory on the command line; an empty one is
    # an error here (inside a notebook '' means its default folder).
    output_dir = values.get("output_dir", f"runs/{spec.name}-{preset}")
    values["output_dir"] = str(check_output_dir(output_dir, relative_to=Path.cwd()).resolve())
    return values


def check_output_file(path: str, option: str) -> Path:
    """A JSON file a command will write (``--output``): its folder must be creatable and writable and the
    path not a folder — checked before any work."""
    from rlvr_dynamics.book.params import check_output_dir, check_path_text
    from rlvr_dynamics.config import ParameterError

    target = Path(check_path_text(path, option)).expanduser()
    folder = check_output_dir(os.fspath(target.parent), parameter=option, relative_to=Path.cwd())
    if (folder / target.name).is_dir():
        raise ParameterError(f"parameter '{option}' = {path!r} is a folder: give a file")
    return folder / target.name


def command_run(args) -> int:
    from rlvr_dynamics.book.registry import notebook_spec
    from rlvr_dynamics.book.runner import execute_notebook
    from rlvr_dynamics.config import ParameterError

    spec = notebook_spec(args.name)
    values = _collect_parameters(spec, args)
    settings, config = spec.resolve(values, strict=True)
    output_dir = settings.output_dir
    created = [folder for folder in (output_dir, *output_dir.parents) if not folder.exists()]  # deepest first
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ParameterError(
            f"parameter 'output_dir' = {str(output_dir)!r} cannot be created: {error.strerror}") from None
    print(f"running {spec.name} (preset {settings.preset}, seed {settings.seed}, device {settings.device}) ...")

    def remove_created() -> None:  # folders this run made and left empty go again
        for folder in created:
            with contextlib.suppress(OSError):  # not empty: it holds results, keep it (and its parents)
                folder.rmdir()

    def stopped() -> _Interrupted:
        remove_created()
        return _Interrupted(f"{spec.name} {interrupt.how()}: files in {output_dir} are complete (earlier or new), "
                            "none half-written; run it again to finish")

    try:
        executed = execute_notebook(spec, values, output_dir / f"{spec.name}.ipynb")
    except KeyboardInterrupt:
        raise stopped() from None
    except Exception as error:  # papermill reports the failing cell; keep the last line
        if interrupt.requested():  # the kernel died because a stop signal stopped it
            raise stopped() from None
        remove_created()
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        print(f"rlvr-book: {spec.name} failed: {lines[-1] if lines else type(error).__name__}", file=sys.stderr)
        return 1
    if interrupt.requested():  # pressed as the run ended, and swallowed by a library on the way
        raise stopped()
    figures = sorted(p.name for p in output_dir.iterdir() if p.suffix in (".png", ".svg"))
    print(f"executed notebook: {executed}")
    print(f"metrics:           {output_dir / 'metrics.json'}")
    print(f"figures ({len(figures)}):      {output_dir}: {', '.join(figures)}")
    return 0


def command_execute_all(args) -> int:
    from rlvr_dynamics.book.registry import notebook_spec
    from rlvr_dynamics.book.runner import execute_all

    for name in args.names:
        notebook_spec(name)  # an unknown name is a one-line error before anything runs
    execute_all(args.preset, force=args.force, names=args.names or None, jobs=args.jobs)
    return 0


def command_build(args) -> int:
    import subprocess

    from rlvr_dynamics.book.runner import build_book

    try:
        index = build_book(args.preset, force=args.force, jobs=args.jobs)
    except subprocess.CalledProcessError as error:
        if interrupt.requested():
            raise KeyboardInterrupt from None  # Ctrl-C stopped Sphinx
        print(f"rlvr-book: the strict book build failed (exit {error.returncode}): see its warnings above",
              file=sys.stderr)
        return 1
    print(f"\nThe book: {index}")
    return 0


def command_re_record(args) -> int:
    from rlvr_dynamics.book import reference
    from rlvr_dynamics.book.registry import NOTEBOOKS, notebook_spec
    from rlvr_dynamics.book.runner import book_parameters, build_dir
    from rlvr_dynamics.config import ParameterError
    from rlvr_dynamics.files import project_root, read_json

    root = project_root()
    names = args.names or list(NOTEBOOKS)
    sources = {}
    for name in names:
        spec = notebook_spec(name)  # an unknown name is a one-line error before anything is written
        metrics = build_dir(root) / "outputs" / name / "metrics.json"
        if not metrics.is_file():
            raise ParameterError(f"no book execution of {name!r} at {metrics}: run `make book` first")
        recorded = read_json(metrics).get("parameters", {})
        book = book_parameters(spec, "ci", root)  # references are of the book as CI builds it
        if any(recorded.get(key) != book[key] for key in ("preset", "seed", "device")):
            raise ParameterError(f"{metrics} is not the book's ci execution (preset {recorded['preset']!r}, "
                                 f"seed {recorded['seed']}, device {recorded['device']!r}): run `make book`")
        sources[name] = metrics
    for name, metrics in sources.items():
        print(f"re-recorded {name}: {reference.record(root, name, metrics)}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    from rlvr_dynamics.bench import bandit as bench_bandit
    from rlvr_dynamics.bench import lm as bench_lm
    from rlvr_dynamics.book import preset_timings
    from rlvr_dynamics.book.params import PRESETS

    parser = OneLineParser(prog="rlvr-book", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    commands.add_parser("list", help="every notebook with its parameters, types, defaults and presets")
    run = commands.add_parser("run", help="execute one notebook with parameters (papermill)")
    run.add_argument("name", help="notebook name (see `rlvr-book list`)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                     help="set a parameter (once per parameter; a repeat is an error)")
    run.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)} (default ci)")
    run.add_argument("--output-dir", default=None, help="output folder (default runs/NAME-PRESET)")
    execute = commands.add_parser("execute-all", help="execute every notebook for the book (cached)")
    execute.add_argument("names", nargs="*", help="only these notebooks")
    build = commands.add_parser("build", help="execute (cached) and build the HTML book strictly")
    for sub in (execute, build):
        sub.add_argument("--preset", default="ci", choices=PRESETS)
        sub.add_argument("--force", action="store_true", help="ignore the cache")
        sub.add_argument("--jobs", type=int, default=1, choices=range(1, 17), metavar="N",
                         help="notebooks executed at a time (1 to 16; each kernel gets one thread)")
    re_record = commands.add_parser(
        "re-record", help="after a deliberate change: copy the book's figure data (build/outputs, from "
        "`make book`) to the committed references data/reference/NAME.json")
    re_record.add_argument("names", nargs="*", help="only these notebooks")
    robustness = commands.add_parser(
        "robustness", help="execute chapters at several seeds and record, per claim, at how many it held and its "
        "worst margin (data/robustness/NAME.json); exit 1 if an enforced claim failed at some seed")
    robustness.add_argument("names", nargs="*", help="only these notebooks (default: every chapter)")
    robustness.add_argument("--seeds", default="0-9", help="seeds: a range and/or a comma list, e.g. 0-9 or 1,4,7")
    robustness.add_argument("--preset", default="ci", choices=PRESETS)
    robustness.add_argument("--jobs", type=int, default=1, choices=range(1, 17), metavar="N",
                            help="runs executed at a time (1 to 16; each kernel gets one thread)")
    robustness.add_argument("--output", default=None, help="folder of the tables (default data/robustness)")
    bench_bandit.add_arguments(commands.add_parser(
        "bench", help="time the batched bandit engine against per-run loops", description=bench_bandit.__doc__))
    bench_lm.add_arguments(commands.add_parser(
        "bench-lm", help="time GRPO steps with and without gradient-gap tracking",
        description=bench_lm.__doc__.split("\n\n")[0]))
    preset_timings.add_arguments(commands.add_parser(
        "bench-presets", help="time every chapter at a preset (paper by default), each in its own process",
        description=preset_timings.__doc__.split("\n\n")[0]))
    return parser


def command_robustness(args) -> int:
    from rlvr_dynamics.book import robustness
    from rlvr_dynamics.book.params import check_output_dir
    from rlvr_dynamics.book.registry import NOTEBOOKS, notebook_spec

    specs = [notebook_spec(name) for name in args.names or list(NOTEBOOKS)]  # unknown names: one line, nothing run
    seeds = robustness.parse_seeds(args.seeds)
    output = check_output_dir(args.output, "--output", relative_to=Path.cwd()) if args.output is not None else None
    failed = robustness.run(specs, seeds, args.preset, args.jobs, output)
    for line in failed:
        print(f"rlvr-book: {line}", file=sys.stderr)
    return 1 if failed else 0


def command_bench(args) -> int:
    from rlvr_dynamics.bench import bandit as bench_bandit

    check_output_file(args.output, "--output")  # before minutes of timing, not after
    return bench_bandit.run(args, args.command_line)


def _check_bench_options(args) -> None:
    """A benchmark's ``--output`` and ``--device``, checked before any timing."""
    from rlvr_dynamics.config import ParameterError
    from rlvr_dynamics.devices import resolve_device

    check_output_file(args.output, "--output")
    try:
        resolve_device(args.device)
    except ValueError as error:
        raise ParameterError(str(error).replace("parameter 'device'", "parameter '--device'")) from None


def command_bench_presets(args) -> int:
    from rlvr_dynamics.book import preset_timings

    _check_bench_options(args)
    return preset_timings.run(args, args.command_line)


def command_bench_lm(args) -> int:
    from rlvr_dynamics.bench import lm as bench_lm
    from rlvr_dynamics.config import ParameterError

    _check_bench_options(args)
    if args.steps < 1 or not 0 <= args.skip < args.steps:
        raise ParameterError(f"parameters '--steps' = {args.steps} and '--skip' = {args.skip}: allowed "
                             "0 ≤ skip < steps")
    return bench_lm.run(args, args.command_line)


class _Interrupted(Exception):
    """A stop signal ended a command; the message says what is left on disk."""


def main(argv: list[str] | None = None) -> int:
    """The console script (``argv`` None) exits the process at once after a stop signal; a call with
    ``argv`` returns 128 + the signal's number instead."""
    console = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    _tolerant_streams()
    previous_handlers = interrupt.install()
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # a full device or a closed pipe shows here, not as a traceback at exit
        return code
    except OSError as error:
        if interrupt.requested():
            return _stopped(argv, error, console)
        return _cannot_write(error, console)
    except (Exception, KeyboardInterrupt) as error:
        if not isinstance(error, (_Interrupted, KeyboardInterrupt)) and not interrupt.requested():
            raise
        return _stopped(argv, error, console)
    finally:  # the console script is done: a signal now would only cut its exit short
        interrupt.restore(signal.SIG_IGN if console else previous_handlers)


def _stopped(argv: list[str], error: BaseException, console: bool) -> int:
    command = " ".join(argv[:2] if argv[:1] == ["run"] else argv[:1])
    message = str(error) if isinstance(error, _Interrupted) else (  # (any other error: the signal stopped a child)
        f"{command} {interrupt.how()}: every file written so far is whole; run it again to finish")
    return interrupt.finish(f"rlvr-book: {message}", exit_process=console)


def _tolerant_streams() -> None:
    """Characters the terminal's encoding lacks (≤, π, …) are escaped instead of ending the command."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")


_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EPIPE, errno.EIO, errno.EROFS}


def _cannot_write(error: OSError, console: bool) -> int:
    """One line for an error of the system: "cannot write" for an output that cannot be written (no space
    left, a closed pipe, a vanished terminal); any other (a missing file) as it is."""
    where = f" ({error.filename})" if error.filename else ""
    line = (f"cannot write{where}: {error.strerror}" if error.errno in _WRITE_ERRORS
            else f"{error.strerror}{where}" if error.strerror else str(error))
    with contextlib.suppress(OSError):
        print(f"rlvr-book: error: {line}", file=sys.stderr)
        sys.stderr.flush()
    if console:  # the interpreter would try stdout's buffer again at exit and print a traceback
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return 1


def _dispatch(argv: list[str]) -> int:
    from rlvr_dynamics.config import ParameterError
    from rlvr_dynamics.files import DamagedFileError

    args = make_parser().parse_args(argv)
    args.command_line = " ".join(["rlvr-book", *argv])  # recorded by the benchmarks
    import rlvr_dynamics.book.registry  # noqa: F401  (imports torch, whose import a KeyboardInterrupt would abort)

    interrupt.arm()
    handlers = {"list": command_list, "run": command_run, "execute-all": command_execute_all, "build": command_build,
                "re-record": command_re_record, "robustness": command_robustness, "bench": command_bench,
                "bench-lm": command_bench_lm, "bench-presets": command_bench_presets}
    try:
        code = handlers[args.command](args)
    except ParameterError as error:
        print(f"rlvr-book: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except DamagedFileError as error:
        print(f"rlvr-book: error: {error}: delete it and run the command again", file=sys.stderr)
        return 1
    if interrupt.requested():
        raise KeyboardInterrupt  # swallowed on the way out of a library
    return code


if __name__ == "__main__":
    sys.exit(main())
