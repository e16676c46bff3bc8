"""Tests of rlvr_dynamics.bench.lm (``rlvr-book bench-lm``): its options are a real subcommand whose
presets are the Figure-2 experiment's; a bad one is one line and exit 2."""

from __future__ import annotations

import argparse

from rlvr_dynamics.bench import lm as bench
from rlvr_dynamics.book.cli import main
from rlvr_dynamics.lm import experiment


def test_the_options_and_their_defaults():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.steps, args.skip, args.device, args.preset) == (60, 5, "cpu", "ci")
    assert set(parser._option_string_actions["--preset"].choices) == set(experiment.PRESETS)


def test_an_unknown_preset_is_one_line_and_exit_2(capsys):
    try:
        code = main(["bench-lm", "--preset", "huge"])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "invalid choice: 'huge'" in err and len(err.splitlines()) == 1
