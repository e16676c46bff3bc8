"""Tests of .ci/gpu-check (make gpu-check): its rlvr-book commands parse and pass their checks here (so the
lent GPU's minutes are not spent on a typo), they fit its 8-minute budget, and without CUDA it stops at once."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

from rlvr_dynamics.book import preset_timings
from rlvr_dynamics.book.cli import make_parser
from rlvr_dynamics.files import project_root

SCRIPT = project_root() / ".ci" / "gpu-check"


def steps() -> list[tuple[int, list[str]]]:
    """Each ``step LIMIT ARGUMENTS...`` line of the script (continuations joined): (limit, arguments)."""
    text = re.sub(r"\\\n\s*", " ", SCRIPT.read_text())
    found = []
    for line in text.splitlines():
        words = shlex.split(line.replace('"$out', '"OUT'), comments=True)
        if words[:1] == ["step"] and words[1].isdigit():
            found.append((int(words[1]), words[2:]))
    return found


def test_every_step_is_a_valid_command_and_the_limits_fit_eight_minutes():
    found = steps()
    assert [arguments[0] for _, arguments in found] == ["bench", "bench-lm", "bench-presets"]
    assert sum(limit for limit, _ in found) <= 8 * 60
    parser = make_parser()
    for _, arguments in found:
        args = parser.parse_args(arguments)
        if args.command == "bench-presets":
            shortened = preset_timings.check(args)  # the chapters exist, each shortening is a valid parameter
            assert set(shortened) <= set(args.names) and args.device == "cuda"
        else:
            assert args.output.startswith("OUT/")


def test_without_cuda_it_stops_at_once_in_one_line(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("gpu-check: no CUDA device here (the CPU records come from make bench and "
                                     "rlvr-book bench-presets)")
    assert not list(tmp_path.rglob("*.json"))
