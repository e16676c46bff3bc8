"""The rlvr-book command line: listing, bad input (one line, exit 2, outputs untouched), a real run."""

import json
import os

import pytest

from rlvr_dynamics.book.cli import main
from rlvr_dynamics.book.registry import NOTEBOOKS

BAD_INPUT = [
    # (kind of bad input, arguments of rlvr-book, text the one-line error must contain)
    ("name", ["run", "no_such_notebook"], "notebook 'no_such_notebook' is unknown"),
    ("name", ["run", "gradient_gap", "-p", "no_such_parameter", "1"], "parameter 'no_such_parameter' is unknown"),
    ("type", ["run", "gradient_gap", "-p", "seed", "abc"], "parameter 'seed' = 'abc' is not a valid int"),
    ("type", ["run", "gradient_gap", "-p", "seed", "1.5"], "parameter 'seed' = '1.5' is not a valid int"),
    ("range", ["run", "gradient_gap", "-p", "seed", "-1"], "parameter 'seed' = -1 is out of range"),
    ("range", ["run", "gradient_gap", "-p", "vocab_size", "99"], "parameter 'vocab_size' = 99 is out of range"),
    ("range", ["run", "gradient_gap", "-p", "bandit_arms", "1"], "parameter 'bandit_arms' = 1 is out of range"),
    ("nan", ["run", "gradient_gap", "-p", "theta_scale", "nan"], "parameter 'theta_scale' = nan is not finite"),
    ("nan", ["run", "gradient_gap", "-p", "theta_scale", "inf"], "parameter 'theta_scale' = inf is not finite"),
    ("range", ["run", "gradient_gap", "-p", "theta_scale", "-0.5"], "parameter 'theta_scale' = -0.5 is out of range"),
    ("type", ["run", "gradient_gap", "-p", "theta_scale", "big"],
     "parameter 'theta_scale' = 'big' is not a valid float"),
    ("preset", ["run", "gradient_gap", "--preset", "huge"], "parameter 'preset' = 'huge' is out of range"),
    ("name", ["run", "gradient_gap", "-p", "device", "tpu"], "parameter 'device' = 'tpu' is unknown"),
    ("inconsistent", ["run", "gradient_gap", "-p", "vocab_size", "12", "-p", "max_length", "12"],
     "parameters 'vocab_size' = 12 and 'max_length' = 12"),
    ("inconsistent", ["run", "gradient_gap", "-p", "preset", "ci", "--preset", "paper"],
     "parameter 'preset' given twice"),
    # Figure 1 (Section 5.1): sizes, band, step size, options
    ("range", ["run", "figure1", "-p", "dim", "0"], "parameter 'dim' = 0 is out of range"),
    ("range", ["run", "figure1", "-p", "arms", "1"], "parameter 'arms' = 1 is out of range"),
    ("range", ["run", "figure1", "-p", "pool_size", "0"], "parameter 'pool_size' = 0 is out of range"),
    ("range", ["run", "figure1", "-p", "eval_size", "-5"], "parameter 'eval_size' = -5 is out of range"),
    ("range", ["run", "figure1", "-p", "step_size", "0"], "parameter 'step_size' = 0.0 is out of range"),
    ("range", ["run", "figure1", "-p", "step_size", "-0.1"], "parameter 'step_size' = -0.1 is out of range"),
    ("nan", ["run", "figure1", "-p", "step_size", "inf"], "parameter 'step_size' = inf is not finite"),
    ("nan", ["run", "figure1", "-p", "step_size", "nan"], "parameter 'step_size' = nan is not finite"),
    ("inconsistent", ["run", "figure1", "-p", "band_low", "0.9", "-p", "band_high", "0.5"], "parameter 'band'"),
    ("inconsistent", ["run", "figure1", "-p", "band_low", "0.5", "-p", "band_high", "0.5"], "parameter 'band'"),
    ("range", ["run", "figure1", "-p", "band_high", "1.5"], "parameter 'band_high' = 1.5 is out of range"),
    ("range", ["run", "figure1", "-p", "band_low", "-0.1"], "parameter 'band_low' = -0.1 is out of range"),
    ("name", ["run", "figure1", "-p", "fallback", "random"], "parameter 'fallback' = 'random' is out of range"),
    ("name", ["run", "figure1", "-p", "eta_reading", "both"], "parameter 'eta_reading' = 'both' is out of range"),
    ("name", ["run", "figure1", "-p", "dtype", "float16"], "parameter 'dtype' = 'float16' is out of range"),
    ("range", ["run", "figure1", "-p", "reference_steps", "5000"],
     "parameter 'reference_steps' = 5000 is out of range"),
    ("name", ["run", "figure1", "-p", "device", "cuda:x"], "parameter 'device'"),
    # Figure 2 (Section 5.2): GRPO on a language model
    ("name", ["run", "figure2", "-p", "loss_types", "ppo"], "parameter 'loss_types' = 'ppo': 'ppo' is unknown"),
    ("name", ["run", "figure2", "-p", "loss_types", "grpo,cispo"], "'cispo' is unknown"),
    ("name", ["run", "figure2", "-p", "scale_rewards", "std"], "parameter 'scale_rewards' = 'std': 'std' is unknown"),
    ("inconsistent", ["run", "figure2", "-p", "learning_rates", "1e-4,2e-4"],
     "parameter 'learning_rates' has 2 values for 3 runs"),
    ("type", ["run", "figure2", "-p", "learning_rates", "fast"],
     "parameter 'learning_rates' = 'fast': 'fast' is not a float"),
    ("range", ["run", "figure2", "-p", "learning_rates", "0,3e-4,0.1"], "0.0 is out of range"),
    ("inconsistent", ["run", "figure2", "-p", "num_generations", "1"], "num_generations = 1: GRPO needs at least 2"),
    ("inconsistent", ["run", "figure2", "-p", "num_generations", "3"],
     "num_generations = 3 does not divide completions_per_step = 256"),
    ("name", ["run", "figure2", "-p", "optimizer", "lion"], "parameter 'optimizer' = 'lion': 'lion' is unknown"),
    ("name", ["run", "figure2", "-p", "lr_schedules", "linear"], "parameter 'lr_schedules' = 'linear': 'linear' is"),
    ("range", ["run", "figure2", "-p", "run_steps", "0"], "parameter 'run_steps' = '0': 0 is out of range"),
    ("name", ["run", "figure2", "-p", "task", "calculus"], "parameter 'task' = 'calculus' is out of range"),
    ("name", ["run", "figure2", "-p", "model_preset", "7b"], "parameter 'model_preset' = '7b' is out of range"),
    ("path", ["run", "figure2", "-p", "model_name_or_path", "/no/such/model"],
     "parameter 'model_name_or_path' = '/no/such/model'"),
    ("path", ["run", "figure2", "-p", "dataset_path", "/no/such.jsonl"],
     "parameter 'dataset_path' = '/no/such.jsonl' is not a file"),
    ("range", ["run", "figure2", "-p", "validation_size", "5000"],
     "parameter 'validation_size' = 5000 is out of range"),
    ("range", ["run", "figure2", "-p", "eval_problems", "600"], "parameter 'eval_problems' = 600 is out of range"),
    ("range", ["run", "figure2", "-p", "warmup_target", "0.99"], "parameter 'warmup_target' = 0.99 is out of range"),
    ("range", ["run", "figure2", "-p", "temperature", "0"], "parameter 'temperature' = 0.0 is out of range"),
    ("name", ["run", "figure2", "-p", "advantage_filters", "all,sideways"], "'sideways' is unknown"),
    ("name", ["run", "figure2", "-p", "prompt_weightings", "hardest"], "'hardest' is unknown"),
    ("inconsistent", ["run", "figure2", "-p", "prompt_weightings", "safe_step", "-p", "scale_rewards", "group"],
     "needs scale_rewards 'none'"),
    # Many prompts: sizes, lists, band, the comparison's budget
    ("range", ["run", "many_prompts", "-p", "chain_prompts", "1"], "parameter 'chain_prompts' = 1 is out of range"),
    ("range", ["run", "many_prompts", "-p", "vocab_size", "2"], "parameter 'vocab_size' = 2 is out of range"),
    ("range", ["run", "many_prompts", "-p", "lengths", "2,1"], "1 is out of range"),
    ("type", ["run", "many_prompts", "-p", "lengths", "long"], "'long' is not a int"),
    ("range", ["run", "many_prompts", "-p", "step_size_grid", "10,-1"], "-1.0 is out of range"),
    ("nan", ["run", "many_prompts", "-p", "bandit_step_size", "nan"],
     "parameter 'bandit_step_size' = nan is not finite"),
    ("inconsistent", ["run", "many_prompts", "-p", "prompts_per_step", "20"],
     "parameter 'prompts_per_step' = 20 is out of range"),
    ("inconsistent", ["run", "many_prompts", "-p", "band_low", "0.9", "-p", "band_high", "0.1"],
     "band_low must not exceed band_high"),
    ("range", ["run", "many_prompts", "-p", "seeds", "1"], "parameter 'seeds' = 1 is out of range"),
    # The capability boundary: sizes, k, the LM's budget
    ("range", ["run", "boundary", "-p", "seeds", "1"], "parameter 'seeds' = 1 is out of range"),
    ("inconsistent", ["run", "boundary", "-p", "largest_k", "1000"],
     "parameter 'largest_k' = 1000 is not a power of 2"),
    ("name", ["run", "boundary", "-p", "answer_rule", "parity"], "parameter 'answer_rule' = 'parity' is out of range"),
    ("range", ["run", "boundary", "-p", "lengths", "2,1"], "1 is out of range"),
    ("range", ["run", "boundary", "-p", "inner_steps", "0"], "parameter 'inner_steps' = 0 is out of range"),
    ("inconsistent", ["run", "boundary", "-p", "record_every", "5000"],
     "parameter 'record_every' = 5000 is out of range"),
    ("range", ["run", "boundary", "-p", "lm_pass_problems", "600"],
     "parameter 'lm_pass_problems' = 600 is out of range"),
    ("nan", ["run", "boundary", "-p", "step_size", "nan"], "parameter 'step_size' = nan is not finite"),
    ("name", ["run", "two_stage", "-p", "reward_model", "gaussian"],
     "parameter 'reward_model' = 'gaussian' is out of range"),
    ("name", ["run", "two_stage", "-p", "scale_rewards", "batch"],
     "parameter 'scale_rewards' = 'batch' is out of range"),
    ("range", ["run", "two_stage", "-p", "high_actions", "9"], "parameter 'high_actions' = 9 is out of range"),
    ("inconsistent", ["run", "two_stage", "-p", "high_reward", "1.0"],
     "rewards must satisfy low_reward < high_reward < optimal_reward"),
    ("inconsistent", ["run", "two_stage", "-p", "initial_high", "0.99"], "leaves no mass for the low-reward actions"),
    ("range", ["run", "two_stage", "-p", "initial_optimal_grid", "0.01,0.7"], "0.7 is out of range"),
    ("type", ["run", "two_stage", "-p", "initial_optimal_grid", "rare"], "'rare' is not a float"),
    ("range", ["run", "two_stage", "-p", "group_size_grid", "2,1"], "1 is out of range"),
    ("range", ["run", "two_stage", "-p", "high_reward_grid", "0.3,1.2"], "1.2 is out of range"),
    ("range", ["run", "two_stage", "-p", "group_size", "1"], "parameter 'group_size' = 1 is out of range"),
    ("nan", ["run", "two_stage", "-p", "step_size", "nan"], "parameter 'step_size' = nan is not finite"),
    # Trajectory-level theory
    ("range", ["run", "trajectory_theory", "-p", "alignment", "0.02"], "parameter 'alignment' = 0.02 is out of range"),
    ("range", ["run", "trajectory_theory", "-p", "alignment", "0"], "parameter 'alignment' = 0.0 is out of range"),
    ("range", ["run", "trajectory_theory", "-p", "sweep_points", "59"],
     "parameter 'sweep_points' = 59 is out of range"),
    ("range", ["run", "trajectory_theory", "-p", "initial_value", "1.0"],
     "parameter 'initial_value' = 1.0 is out of range"),
    ("type", ["run", "trajectory_theory", "-p", "steps", "five"], "parameter 'steps' = 'five' is not a valid int"),
    ("range", ["run", "trajectory_theory", "-p", "bandit_seeds", "0"], "parameter 'bandit_seeds' = 0 is out of range"),
    ("name", ["run", "token_theory", "-p", "verifier", "parity"], "parameter 'verifier' = 'parity' is out of range"),
    ("range", ["run", "token_theory", "-p", "alignment", "0.05"], "parameter 'alignment' = 0.05 is out of range"),
    ("range", ["run", "token_theory", "-p", "vocab_size", "2"], "parameter 'vocab_size' = 2 is out of range"),
    ("range", ["run", "token_theory", "-p", "group_size", "1"], "parameter 'group_size' = 1 is out of range"),
    ("nan", ["run", "token_theory", "-p", "initial_value", "nan"], "parameter 'initial_value' = nan is not finite"),
    ("range", ["run", "token_theory", "-p", "longest_length", "8"], "parameter 'longest_length' = 8 is out of range"),
    # NaN and infinity inside list parameters
    ("nan", ["run", "figure2", "-p", "learning_rates", "1e-4,nan,0.1"],
     "parameter 'learning_rates' = '1e-4,nan,0.1': nan"),
    ("nan", ["run", "two_stage", "-p", "initial_optimal_grid", "nan,0.02"], "parameter 'initial_optimal_grid'"),
    # local files that are not what they claim to be
    ("path", ["run", "figure2", "-p", "model_name_or_path", "/etc/hostname"], "is not a local model folder"),
    ("path", ["run", "figure2", "-p", "dataset_path", "/etc"], "parameter 'dataset_path' = '/etc' is not a file"),
    # an output folder nobody may write (not even root: /proc/1 refuses new entries)
    ("unwritable", ["run", "gradient_gap", "--output-dir", "/proc/1/rlvr-out"],
     "parameter 'output_dir' = '/proc/1/rlvr-out'"),
    # the other subcommands
    ("name", ["execute-all", "no_such_notebook"], "notebook 'no_such_notebook' is unknown"),
    ("preset", ["execute-all", "--preset", "big"], "argument --preset: invalid choice: 'big'"),
    ("preset", ["build", "--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    ("name", ["re-record", "no_such_notebook"], "notebook 'no_such_notebook' is unknown"),
    ("name", ["no-such-command"], "argument command: invalid choice: 'no-such-command'"),
    ("range", ["bench", "--baseline-runs", "0"], "--baseline-runs = 0 is out of range"),
    # Output paths ({tmp} is the test's folder, holding a symlink loop `loop` and a file `a_file`): one line
    # naming the parameter, before anything is created (the test checks {tmp} and the working folder)
    ("output path", ["run", "gradient_gap", "--output-dir", "{tmp}/loop/out"], "goes through a symbolic-link loop"),
    ("output path", ["run", "gradient_gap", "--output-dir", "{tmp}/" + "x" * 300],
     "has 300 bytes, more than the file system's 255"),
    ("output path", ["run", "gradient_gap", "--output-dir", "{tmp}/" + "/".join(["d" * 200] * 21)],
     "more than the 4095 a path may have"),
    ("output path", ["run", "gradient_gap", "--output-dir", os.fsdecode(b"{tmp}/bad\xff")], "is not valid UTF-8"),
    ("output path", ["run", "gradient_gap", "--output-dir", ""], "parameter 'output_dir' = '' is empty"),
    ("output path", ["run", "gradient_gap", "-p", "output_dir", ""], "parameter 'output_dir' = '' is empty"),
    ("output path", ["run", "gradient_gap", "--output-dir", "   "], "parameter 'output_dir' = '   ' is empty"),
    ("output path", ["bench", "--output", ""], "parameter '--output' = '' is empty"),
    ("output path", ["bench", "--output", "{tmp}/a_file/bench.json"], "a file"),
    ("output path", ["run", "gradient_gap", "--output-dir", " {tmp}/out"], "has surrounding whitespace"),
    ("output path", ["run", "gradient_gap", "--output-dir", "{tmp}/a_file"], "is a file, not a folder"),
    ("output path", ["robustness", "performance", "--seeds", "0", "--output", "{tmp}/a_file/x"], "a file"),
    ("output path", ["bench", "--output", "/proc/1/bench.json"], "parameter '--output' = '/proc/1' is not writable"),
    ("output path", ["bench", "--output", "{tmp}"], "is a folder: give a file"),
    ("output path", ["bench-lm", "--output", "{tmp}/loop/lm.json"], "symbolic-link loop"),
    # A repeated parameter or option: an error, not the last one silently winning
    ("repeat", ["run", "gradient_gap", "-p", "seed", "1", "-p", "seed", "2"], "parameter 'seed' given twice"),
    ("repeat", ["run", "gradient_gap", "-p", "output_dir", "{tmp}/a", "--output-dir", "{tmp}/b"],
     "parameter 'output_dir' given twice"),
    ("repeat", ["run", "gradient_gap", "--preset", "ci", "--preset", "paper"], "argument --preset: given twice"),
    ("repeat", ["run", "gradient_gap", "-p", "preset", "ci", "--preset", "ci"], "parameter 'preset' given twice"),
    ("repeat", ["execute-all", "--jobs", "1", "--jobs", "2"], "argument --jobs: given twice"),
    ("repeat", ["build", "--force", "--force"], "argument --force: given twice"),
    ("repeat", ["robustness", "--seeds", "1", "--seeds", "2"], "argument --seeds: given twice"),
    ("repeat", ["bench-lm", "--device", "cpu", "--device", "cpu"], "argument --device: given twice"),
    # Surrounding whitespace and loose spelling: an error, not trimmed or recorded verbatim
    ("whitespace", ["run", "gradient_gap", "-p", "device", " CPU\n"], "parameter 'device' = ' CPU\\n' has surrounding"),
    ("whitespace", ["run", "gradient_gap", "-p", "seed", " 1"], "parameter 'seed' = ' 1' has surrounding whitespace"),
    ("whitespace", ["run", "figure1", "-p", "step_size", "0.1 "], "has surrounding whitespace"),
    ("whitespace", ["run", "figure2", "-p", "loss_types", "grpo, dr_grpo"], "item ' dr_grpo' has surrounding spaces"),
    ("device", ["run", "gradient_gap", "-p", "device", "CPU"], "parameter 'device' = 'CPU' is unknown"),
    ("device", ["run", "gradient_gap", "-p", "device", "cuda:99"], "parameter 'device' = 'cuda:99':"),
    ("device", ["bench-lm", "--device", "tpu"], "parameter '--device' = 'tpu' is unknown"),
    ("device", ["bench-lm", "--device", "cuda:99"], "parameter '--device' = 'cuda:99':"),
    # List parameters: no empty item, no trailing comma (once: dropped silently)
    ("list", ["run", "figure2", "-p", "learning_rates", "1e-4,,3e-4"], "item 2 of 3 is empty"),
    ("list", ["run", "figure2", "-p", "loss_types", "grpo,"], "item 2 of 2 is empty"),
    ("list", ["run", "two_stage", "-p", "group_size_grid", ",2,4"], "item 1 of 3 is empty"),
    ("list", ["run", "two_stage", "-p", "initial_optimal_grid", "0.01,0.02,"], "item 3 of 3 is empty"),
    # Figure 2's local data and model, opened and checked before the kernel starts
    ("data", ["run", "figure2", "-p", "dataset_path", "{tmp}/binary.jsonl"],
     "binary.jsonl:1: not valid UTF-8 (byte 0xff"),
    ("data", ["run", "figure2", "-p", "dataset_path", "{tmp}/latin1.jsonl"], "latin1.jsonl:3: not valid UTF-8"),
    ("data", ["run", "figure2", "-p", "dataset_path", "{tmp}/empty.jsonl"], "empty.jsonl: no problems in the file"),
    ("data", ["run", "figure2", "-p", "model_name_or_path", "{tmp}/t5"], "config.json names model_type 't5'"),
    ("data", ["run", "figure2", "-p", "model_name_or_path", "{tmp}/broken"], "config.json: not valid JSON"),
    # Sizes each in range that together need more memory than the machine has: refused with the estimate
    ("memory", ["run", "gradient_gap", "-p", "bandit_instances", "100000", "-p", "bandit_arms", "10000",
                "-p", "bandit_dim", "1000"], "these sizes need an estimated"),
    # bench-lm's other options, checked before the warm-up
    ("range", ["bench-lm", "--steps", "5", "--skip", "5"], "allowed 0 ≤ skip < steps"),
    # bench's GPU-only record needs a GPU; bench-presets checks every chapter and shortening before running any
    ("device", ["bench", "--gpu-only"], "--gpu-only: no CUDA device here"),
    ("device", ["bench-presets", "--device", "tpu"], "parameter '--device' = 'tpu' is unknown"),
    ("name", ["bench-presets", "figure3"], "notebook 'figure3' is unknown"),
    ("range", ["bench-presets", "--timeout-minutes", "0"], "--timeout-minutes = 0.0 is out of range"),
    ("name", ["bench-presets", "-s", "figure1", "colour", "red"], "'colour'"),
    ("range", ["bench-presets", "-s", "figure1", "steps", "0"], "parameter 'steps' = 0 is out of range"),
    ("inconsistent", ["bench-presets", "-s", "figure1", "device", "cpu"], "'device' is set by bench-presets itself"),
    ("repeat", ["bench-presets", "-s", "figure1", "steps", "5", "-s", "figure1", "steps", "6"], "given twice"),
    ("output path", ["bench-presets", "--output", "{tmp}"], "is a folder: give a file"),
]


@pytest.fixture
def earlier_output(tmp_path):
    """An output folder holding the results of an earlier run."""
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "metrics.json").write_text('{"earlier": true}\n')
    (folder / "figure.png").write_bytes(b"\x89PNG earlier")
    return folder


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


BAD_INPUT_KINDS = {"type", "range", "nan", "name", "preset", "path", "unwritable", "inconsistent", "output path",
                   "repeat", "whitespace", "device", "list", "data", "memory"}


def test_the_bad_input_table_covers_every_kind():
    assert {kind for kind, _, _ in BAD_INPUT} == BAD_INPUT_KINDS
    assert len(BAD_INPUT) >= 20
    assert {arguments[0] for _, arguments, _ in BAD_INPUT} >= {"run", "execute-all", "build", "bench", "bench-lm",
                                                               "bench-presets", "re-record", "robustness"}


def hostile_files(folder):
    """What the table's {tmp} cases point at: a symlink loop, a file, bad jsonl files, bad model folders."""
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "a_file").write_text("not a folder")
    (folder / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    (folder / "latin1.jsonl").write_bytes(b'{"question": "q", "answer": "#### 1"}\n' * 2
                                          + b'{"question": "caf\xe9", "answer": "#### 1"}\n')
    (folder / "empty.jsonl").write_bytes(b"")
    for name, config in (("t5", '{"model_type": "t5"}'), ("broken", '{"model_type": ')):
        (folder / name).mkdir()
        (folder / name / "config.json").write_text(config)


def tree(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("kind, arguments, message", BAD_INPUT, ids=[f"{k}: {' '.join(a)}" for k, a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(kind, arguments, message, earlier_output, tmp_path,
                                                          monkeypatch, capsys):
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    hostile_files(hostile)
    working = tmp_path / "working"  # a relative or empty output folder would land here
    working.mkdir()
    monkeypatch.chdir(working)
    arguments = [argument.replace("{tmp}", str(hostile)) for argument in arguments]
    before, hostile_before = snapshot(earlier_output), tree(hostile)
    if arguments[0] == "run" and "--output-dir" not in arguments and "output_dir" not in arguments:
        arguments = [*arguments, "--output-dir", str(earlier_output)]
    try:
        code = main(arguments)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert message in lines[0]
    assert captured.out == ""
    assert snapshot(earlier_output) == before
    assert tree(hostile) == hostile_before and tree(working) == [], "something was created"


def test_the_bad_input_table_by_kind():
    """The closing note's count: bad-input cases per kind."""
    counts = {}
    for kind, _, _ in BAD_INPUT:
        counts[kind] = counts.get(kind, 0) + 1
    assert sum(counts.values()) == len(BAD_INPUT) and min(counts.values()) >= 1


def test_every_displayed_bound_is_accepted_as_typed(capsys):
    """A bound `rlvr-book list` shows (e.g. alignment ≤ √(L_o+G_o²)/120) passes validation when copied back."""
    assert main(["list"]) == 0
    for spec in NOTEBOOKS.values():
        for param in spec.parameters:
            if param.kind == "float" and param.high is not None:
                shown = param.describe_range().rsplit("≤ ", 1)[1]
                assert param.validate(param.coerce(shown)) == param.high, (spec.name, param.name, shown)
    capsys.readouterr()


def test_output_dir_below_a_file_is_rejected(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = main(["run", "gradient_gap", "--output-dir", str(blocker / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "parameter 'output_dir'" in err[0]
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere: permission bits do not apply")
def test_unwritable_output_dir_is_rejected(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code = main(["run", "gradient_gap", "--output-dir", str(locked / "out")])
    assert code == 2 and "not writable" in capsys.readouterr().err


def test_usage_errors_exit_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run"])
    assert stop.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_list_shows_every_parameter_with_type_default_and_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for spec in NOTEBOOKS.values():
        assert f"{spec.name}: {spec.title}" in out
        section = lines[next(i for i, line in enumerate(lines) if line.startswith(f"{spec.name}: ")):]
        for param in spec.parameters:  # the first row of that name within this notebook's section
            row = next(line for line in section if line.strip().startswith(param.name + " "))
            assert param.kind in row
            for preset in ("ci", "paper"):
                if param.name in spec.presets[preset]:
                    assert repr(spec.presets[preset][param.name]) in row


# The Gradient-Gap chapter at a tiny scale, for tests that execute it for real.
SMALL_GRADIENT_GAP = ["-p", "bandit_instances", "3", "-p", "bandit_arms", "7", "-p", "token_instances", "3",
                      "-p", "vocab_size", "3", "-p", "max_length", "4", "-p", "mc_max_samples", "10000",
                      "-p", "mc_repeats", "1000", "-p", "sampled_groups", "20"]


def test_run_writes_figures_and_metrics_with_explicit_overrides(tmp_path, capsys):
    """A real papermill execution at a tiny scale: explicit parameters override the preset."""
    out = tmp_path / "run"
    arguments = ["run", "gradient_gap", "--output-dir", str(out), "-p", "device", "cpu", "-p", "seed", "3",
                 *SMALL_GRADIENT_GAP]
    assert main(arguments) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert str(out / "metrics.json") in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"]["bandit_arms"] == 7 and metrics["parameters"]["bandit_dim"] == 10  # preset value
    assert metrics["seed"] == 3 and metrics["device"] == "cpu"
    assert metrics["claims"] and all(claim["holds"] for claim in metrics["claims"])
    for figure in metrics["figures"]:
        assert (out / figure).stat().st_size > 1000
    assert {f.rsplit(".", 1)[1] for f in metrics["figures"]} == {"png", "svg"}
    assert (out / "gradient_gap.ipynb").is_file()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def complete_outputs(folder):
    """Every visible file in ``folder`` is whole: PNGs decode, SVGs and JSON parse."""
    import xml.etree.ElementTree as ElementTree

    from PIL import Image

    names = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue  # a temporary file only a hard kill mid-write can leave; never read as a result
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif path.suffix == ".svg":
            ElementTree.parse(path)
        elif path.suffix in (".json", ".ipynb"):
            json.loads(path.read_text())
        names.append(path.name)
    return names


def test_an_interrupted_run_leaves_whole_files_and_the_next_run_completes(earlier_output):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) during start-up, then as soon
    as the run has written a figure, then a hard kill of the run and its kernel: Ctrl-C ends with
    exit 130 and one line, printed last, with no traceback; every file left is whole, the earlier
    metrics.json is intact, a figure never has its PNG without its SVG, no executed notebook and
    no temporary file appears (only SIGKILL may leave one); a fourth run then completes."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    earlier_metrics = (earlier_output / "metrics.json").read_bytes()
    (earlier_output / "figure.png").unlink()  # (the fixture's placeholder is not a real PNG)
    command = [str(Path(sys.executable).parent / "rlvr-book"), "run", "gradient_gap",
               "--output-dir", str(earlier_output),
               *SMALL_GRADIENT_GAP]  # ≈ 11 s to the first figure (kernel and imports), 5 s more to finish
    for when, signal_name in (("start-up", "SIGINT"), ("figure", "SIGINT"), ("figure", "SIGKILL")):
        started = time.time_ns()
        # A shell without job control starts background jobs with SIGINT ignored, and children keep
        # that: give the run the default disposition a terminal's foreground job has.
        run = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 300
        if when == "start-up":  # in the middle of importing torch (where a KeyboardInterrupt once aborted)
            maps = Path(f"/proc/{run.pid}/maps")
            while (maps.exists() and "libtorch" not in maps.read_text(errors="replace")
                   and run.poll() is None and time.monotonic() < deadline):
                time.sleep(0.005)
            if not maps.exists():
                time.sleep(0.5)  # (no /proc: the imports take seconds)
        while (when == "figure" and not [p for p in earlier_output.glob("*.png") if p.stat().st_mtime_ns > started]
               and run.poll() is None and time.monotonic() < deadline):
            time.sleep(0.01)
        assert run.poll() is None, "the run ended before it could be interrupted"
        os.killpg(run.pid, getattr(signal, signal_name))
        _, err = run.communicate(timeout=120)
        if signal_name == "SIGINT":
            assert run.returncode == 130, err
            last = err.strip().splitlines()[-1]
            expected = ("rlvr-book: run gradient_gap interrupted:" if when == "start-up"
                        else "rlvr-book: gradient_gap interrupted:")
            assert last.startswith(expected), err
            assert "Traceback" not in err, err
            assert not list(earlier_output.glob(".*.tmp")), "Ctrl-C left a temporary file"
        else:
            assert run.returncode == -signal.SIGKILL
        left = complete_outputs(earlier_output)
        assert (earlier_output / "metrics.json").read_bytes() == earlier_metrics, "metrics.json replaced mid-run"
        assert "gradient_gap.ipynb" not in left, "the executed notebook appears only when the run completed"
        figures = {name.rsplit(".", 1)[0] for name in left if name.endswith((".png", ".svg"))}
        assert all(f"{stem}.png" in left and f"{stem}.svg" in left for stem in figures), left
        assert figures or when == "start-up", left

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    metrics = json.loads((earlier_output / "metrics.json").read_text())
    assert set(metrics["figures"]) <= set(complete_outputs(earlier_output))
    assert all(claim["holds"] for claim in metrics["claims"])


@pytest.mark.parametrize("command, signal_name, code, said", [
    (["execute-all", "--jobs", "2", "token_theory", "figure1", "performance"], "SIGINT", 130, "interrupted"),
    (["build", "--jobs", "2"], "SIGTERM", 143, "stopped by SIGTERM"),
])
def test_a_stop_signal_during_execute_all_or_build_stops_every_kernel_and_starts_no_other(
        tmp_path, command, signal_name, code, said):
    """Two notebooks executing (``--jobs 2``), others queued: Ctrl-C (to the process group, as a terminal
    sends it) or SIGTERM (to rlvr-book alone, as kill sends it) ends with 128 + the signal and one line,
    printed last, with no traceback; both kernels are gone, a queued notebook never starts, no executed
    notebook or provenance record is written, no scratch folder is left."""
    import shutil
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    real_root = Path(__file__).resolve().parents[2]
    root = tmp_path / "project"
    root.mkdir()
    for name in ("_toc.yml", "_config.yml", "pyproject.toml"):
        shutil.copy2(real_root / name, root / name)
    for folder in ("book", "notebooks"):
        shutil.copytree(real_root / folder, root / folder)

    def kernels():  # papermill starts each kernel in the notebooks folder of the project it runs
        found = []
        for process in psutil.process_iter(["cmdline", "cwd"]):
            if (process.info["cwd"] == str(root / "notebooks")
                    and "ipykernel_launcher" in " ".join(process.info["cmdline"] or [])):
                found.append(process)
        return found

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command = [str(Path(sys.executable).parent / "rlvr-book"), *command]  # longest first: performance waits
    run = subprocess.Popen(command, cwd=root, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                           env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 120
    while len(kernels()) < 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # both kernels are past start-up and executing cells
    assert run.poll() is None and len(kernels()) == 2, "two notebooks should be executing"
    if signal_name == "SIGINT":
        os.killpg(run.pid, signal.SIGINT)
    else:
        os.kill(run.pid, getattr(signal, signal_name))
    out, err = run.communicate(timeout=60)
    assert run.returncode == code, err
    assert err.strip().splitlines()[-1].startswith(f"rlvr-book: {command[1]} {said}:"), err
    assert "Traceback" not in err, err
    assert not kernels(), "a kernel outlived rlvr-book"
    assert "[execute]  performance" not in out and "[done]" not in out, out
    executed = root / "build" / "executed"
    assert not list(executed.glob("*.ipynb")), list(executed.iterdir())
    assert not list((root / "build").rglob("provenance.json"))
    assert list(scratch.iterdir()) == [], "a scratch folder or a kernel's connection file was left behind"


def rlvr_book():
    import sys
    from pathlib import Path

    return str(Path(sys.executable).parent / "rlvr-book")


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_list_survives_a_stdout_encoding_without_its_characters(encoding):
    import subprocess

    run = subprocess.run([rlvr_book(), "list"], capture_output=True, env={**os.environ, "PYTHONIOENCODING": encoding},
                         timeout=120)
    assert run.returncode == 0 and run.stderr == b"", run.stderr.decode(errors="replace")
    assert b"\\u2264" in run.stdout  # ≤, escaped rather than a UnicodeEncodeError traceback


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_list_to_a_full_device_is_one_line_and_exit_1():
    import subprocess

    with open("/dev/full", "w") as full:
        run = subprocess.run([rlvr_book(), "list"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == ["rlvr-book: error: cannot write: No space left on device"], run.stderr


def test_a_missing_file_is_one_line_and_not_called_a_write_error(monkeypatch, capsys):
    """Other errors of the system keep their own words: only a full disk or a closed pipe is "cannot write"."""
    from rlvr_dynamics.book import runner

    def missing(*args, **kwargs):
        raise FileNotFoundError("build/executed/figure1.ipynb is missing: run `rlvr-book execute-all` first")

    monkeypatch.setattr(runner, "build_book", missing)
    assert main(["build"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "rlvr-book: error: build/executed/figure1.ipynb is missing: run `rlvr-book execute-all` first"]


def test_a_damaged_result_is_named_in_one_line(tmp_path, monkeypatch, capsys):
    """re-record reads build/outputs/NAME/metrics.json: garbage there is one line naming it, exit 1."""
    import rlvr_dynamics.files

    metrics = tmp_path / "build" / "outputs" / "figure1" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_bytes(b'{"parameters": {"seed": 0,')
    monkeypatch.setattr(rlvr_dynamics.files, "project_root", lambda: tmp_path)
    assert main(["re-record", "figure1"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{metrics} is damaged: not valid JSON (line 1" in lines[0], lines


def kernel_processes(pid):
    import psutil

    try:
        return [child for child in psutil.Process(pid).children(recursive=True)
                if "ipykernel_launcher" in " ".join(child.cmdline())]
    except psutil.Error:
        return []


@pytest.mark.parametrize("signal_name, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_end_a_run_like_ctrl_c(signal_name, code, tmp_path):
    """What `kill`, `timeout`, a cancelled CI job (SIGTERM) and a closed terminal (SIGHUP) send, once the run
    has written a figure: one line, printed last, no traceback, exit 128 + the signal; the kernel is gone,
    no scratch folder is left in TMPDIR, every file left is whole."""
    import signal
    import subprocess
    import time

    import psutil

    output, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    run = subprocess.Popen([rlvr_book(), "run", "gradient_gap", "--output-dir", str(output), *SMALL_GRADIENT_GAP],
                           start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "TMPDIR": str(scratch)})
    deadline, kernels = time.monotonic() + 300, []
    while not list(output.glob("*.png")) and run.poll() is None and time.monotonic() < deadline:
        kernels = kernel_processes(run.pid) or kernels
        time.sleep(0.01)
    assert run.poll() is None and kernels, "the run ended (or never started its kernel) before the signal"
    os.kill(run.pid, getattr(signal, signal_name))  # to rlvr-book alone, as kill and timeout send it
    _, err = run.communicate(timeout=120)
    assert run.returncode == code, err
    assert err.strip().splitlines()[-1].startswith(f"rlvr-book: gradient_gap stopped by {signal_name}:"), err
    assert "Traceback" not in err, err
    assert not [kernel for kernel in kernels if kernel.is_running() and kernel.status() != psutil.STATUS_ZOMBIE]
    assert list(scratch.iterdir()) == [], "a scratch folder or a kernel's connection file was left behind"
    left = complete_outputs(output)
    assert "gradient_gap.ipynb" not in left and not list(output.glob(".*.tmp"))


def test_sigterm_during_bench_is_one_line_and_writes_nothing(tmp_path):
    import signal
    import subprocess
    import time

    result = tmp_path / "bench.json"
    run = subprocess.Popen([rlvr_book(), "bench", "--output", str(result)], start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # past the imports, timing
    assert run.poll() is None
    os.kill(run.pid, signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("rlvr-book: bench stopped by SIGTERM:"), err
    assert "Traceback" not in err and not result.exists()


def test_an_output_file_may_exist_already_or_be_relative(tmp_path, monkeypatch):
    from rlvr_dynamics.book.cli import check_output_file

    (tmp_path / "bench.json").write_text("{}")  # an earlier benchmark: replaced, not refused
    assert check_output_file(str(tmp_path / "bench.json"), "--output") == tmp_path / "bench.json"
    monkeypatch.chdir(tmp_path)
    assert check_output_file("new/lm.json", "--output") == tmp_path / "new" / "lm.json"
    assert check_output_file("lm.json", "--output") == tmp_path / "lm.json"


def test_a_run_that_fails_leaves_no_empty_folder_behind(tmp_path, monkeypatch, capsys):
    """A failure inside the kernel: one line, exit 1, and the output folder this run created is gone again
    (an existing folder, with earlier results, stays)."""
    from rlvr_dynamics.book import runner

    def failing(spec, parameters, output_notebook, root=None):
        raise RuntimeError("PapermillExecutionError\nValueError: a cell failed")

    monkeypatch.setattr(runner, "execute_notebook", failing)
    fresh = tmp_path / "fresh" / "deeper"
    assert main(["run", "performance", "--output-dir", str(fresh)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["rlvr-book: performance failed: ValueError: a cell failed"]
    assert not (tmp_path / "fresh").exists()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    assert main(["run", "performance", "--output-dir", str(earlier)]) == 1
    assert earlier.is_dir()
