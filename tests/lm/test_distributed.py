"""Tests of the gap tracking across processes (rlvr_dynamics.lm.distributed, the process helpers of lm.grpo).

The end-to-end tests run ``python -m rlvr_dynamics.lm.distributed`` twice on the same seed and objective (GRPO, and
Dr. GRPO with the safe-step prompt weights): in one process, and in two under ``accelerate launch --multi_gpu
--num_processes 2`` (torchrun; DDP on CPU with gloo, since the run sets ``use_cpu``). ``accelerate launch --cpu
--num_processes 2`` would start a single process here: accelerate 1.15 launches several CPU processes only through
``mpirun`` (an MPI host file), which this machine lacks.

What differs between one and two processes, and why:

* **the completions, with TRL's own sampling.** TRL seeds each process's global RNG with seed + process index, and
  CPU ``torch.multinomial`` draws row after row, token after token: a row's completion depends on how many rows
  its process samples. Two processes of 16 rows therefore draw other completions than one process of 32 — other
  rewards, mixed prompts and gaps. The prompts are the same (TRL's ``RepeatSampler`` uses ``seed`` on every
  process and each process takes a contiguous half of the global batch), and so is everything at step 0 (the
  model, the validation accuracy: its generator is seeded with ``seed`` on every process). The runs here use
  **row-keyed sampling** (each token a function of seed, step, global row and position), so the completions are
  the same and every tracked number must agree;
* **rounding**, even then: each process pads its prompts and completions to its own longest row, DDP averages two
  half-batch gradients instead of taking one, the gap is summed from two shares, and gloo sums in its own order.
  Hence ~1e-7 relative differences, compared at 1e-5; counts and rewards are compared exactly;
* ``seconds``: each process's own clock.

Within the two-process run, the union check recomputes every step's gap from both processes' completions gathered
into one batch, the one-process way (``grpo.batch_gap``): it must equal the all-reduced gap every process holds.
These tests fail when the combination across processes is broken (each tried on a copy of the package first on
``PYTHONPATH``): with ``_all_reduce_sum`` returning its input (each process keeps its own half's counts and gap)
the records of the two processes differ and the union's mixed count (3) is not the tracked one (2); with the gap
summed but weighted by each process's own mixed count, the gap norm is 52.2 instead of 33.2; with the per-prompt
means taken over one process's prompts, prompt_alignment_mean is 12.18 instead of the alignment 8.51.
"""

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch

from rlvr_dynamics.lm import distributed, grpo

TIMEOUT = 180  # seconds per run; a pair takes about 20 s on 2 cores

EXACT = ("reward", "mixed_prompts", "mixed_fraction", "mean_scale_factor", "updating_fraction", "advantage_min",
         "advantage_max", "prompt_alignment_positive", "prompt_weight_min", "prompt_weight_max")
CLOSE = ("grad_norm", "gap_estimate", "gap_norm", "gradient_gap_cosine", "step_length", "alignment",
         "alignment_cosine", "prompt_alignment_mean", "prompt_gap_norm_mean")


def _environment() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    return env | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                  "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str], output) -> dict:
    done = subprocess.run(command, env=_environment(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-4000:]}"
    return json.loads(output.read_text())


VARIANTS = {
    "grpo": [],  # GRPO: per-sequence mean, advantages scaled by the group's std
    # Dr. GRPO with the safe-step prompt weights, normalised over every process's prompts
    "safe_step": ["--loss-type", "dr_grpo", "--scale-rewards", "none", "--prompt-weighting", "safe_step"],
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def runs(request, tmp_path_factory):
    """The one- and the two-process run of the same seed and objective (about 7 s and 12 s on 2 cores)."""
    folder = tmp_path_factory.mktemp(request.param)
    flags = VARIANTS[request.param]
    one = _run([sys.executable, "-m", "rlvr_dynamics.lm.distributed", "--output", str(folder / "one.json"), *flags],
               folder / "one.json")
    two = _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(_free_port()), "-m", "rlvr_dynamics.lm.distributed",
                "--output", str(folder / "two.json"), *flags], folder / "two.json")
    assert one["config"] == two["config"]
    return one, two


def test_two_processes_really_ran_and_hold_identical_records(runs):
    one, two = runs
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["records_identical_across_processes"] and two["parameter_spread_across_processes"] == 0
    assert one["records_identical_across_processes"] and one["parameter_spread_across_processes"] == 0


def test_the_all_reduced_gap_is_the_gap_of_the_union_of_both_batches(runs):
    """Every step: both processes' completions gathered into one batch give, the one-process way, the gap each
    process holds (to rounding), the same mixed prompts, mean reward and mean c_q as recorded; and the gap is the
    same on both processes, bit for bit."""
    _, two = runs
    checks = two["union_checks"]
    assert [c["step"] for c in checks] == [1, 2, 3]
    for check in checks:
        assert (check["rows"], check["prompts"]) == (32, 8)  # the global batch, not one process's half
        assert check["mixed_prompts"] == sum(check["mixed_by_process"]) == check["tracked"]["mixed_prompts"]
        assert check["reward"] == check["tracked"]["reward"]
        assert check["mean_scale_factor"] == pytest.approx(check["tracked"]["mean_scale_factor"], rel=1e-12)
        assert check["gap_relative_error"] < 1e-5, check
        assert check["gap_spread_across_processes"] == 0.0
        assert check["gap_norm"] == pytest.approx(check["tracked"]["gap_norm"], rel=1e-5)
    # the combination is exercised: some step has mixed prompts on both processes (shares with the global count)
    assert any(min(check["mixed_by_process"]) > 0 for check in checks)


def test_one_and_two_processes_track_the_same_numbers(runs):
    """With row-keyed sampling both runs draw the same completions: counts and rewards agree exactly, gradient
    quantities to rounding (module docstring)."""
    one, two = runs
    assert one["parameter_count"] == two["parameter_count"] == 139_968
    assert one["warmup_steps"] == two["warmup_steps"]
    assert [r["step"] for r in one["steps"]] == [r["step"] for r in two["steps"]] == [1, 2, 3]
    for a, b in zip(one["steps"], two["steps"], strict=True):
        assert a.keys() == b.keys()
        assert ("prompt_weight_min" in a) == (one["config"]["prompt_weighting"] == "safe_step")
        for key in EXACT:
            assert _same(a.get(key), b.get(key)), (a["step"], key, a.get(key), b.get(key))
        for key in CLOSE:
            assert _close(a[key], b[key], 1e-5), (a["step"], key, a[key], b[key])
    assert one["evals"][0] == two["evals"][0]  # step 0: the same model and the same validation generator
    assert [e["step"] for e in one["evals"]] == [e["step"] for e in two["evals"]] == [0, 3]
    assert one["evals"][-1]["accuracy"] == two["evals"][-1]["accuracy"]
    assert one["final_parameter_norm"] == pytest.approx(two["final_parameter_norm"], rel=1e-6)


def test_per_prompt_statistics_are_means_over_every_process(runs):
    """ḡ⁺ − ḡ⁻ is the mean over the mixed prompts of each prompt's own gap, so the mean of the per-prompt
    alignments equals the alignment: with the global gap, true in two processes only if the mean runs over both
    processes' prompts."""
    for run in runs:
        per_prompt = [r for r in run["steps"] if not math.isnan(r["prompt_alignment_mean"])]
        assert [r["step"] for r in per_prompt] == [2]  # per_prompt_every = 2
        for r in per_prompt:
            assert r["prompt_alignment_mean"] == pytest.approx(r["alignment"], rel=1e-5)


def _same(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def _close(a, b, rel) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return b == pytest.approx(a, rel=rel, abs=1e-12)


# --- the pieces, in one process -----------------------------------------------------------------------------------


def test_outcome_weights_of_two_shares_with_the_global_count_are_the_batch_weights_by_hand():
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])  # process 0 holds prompt 0, process 1 prompt 1; both mixed
    w_plus, w_minus, mixed = grpo.outcome_weights(rewards, groups)
    first = grpo.outcome_weights(rewards[:4], groups[:4], mixed_total=2)
    second = grpo.outcome_weights(rewards[4:], groups[4:], mixed_total=2)
    assert first[0].tolist() == [0.5, 0, 0, 0] and first[1].tolist() == pytest.approx([0, 1 / 6, 1 / 6, 1 / 6])
    assert second[0].tolist() == [0.25, 0.25, 0, 0] and second[1].tolist() == [0, 0, 0.25, 0.25]
    assert torch.cat([first[0], second[0]]).tolist() == w_plus.tolist()
    assert torch.cat([first[1], second[1]]).tolist() == pytest.approx(w_minus.tolist())
    # without the global count each share would be its own prompt's whole gap: twice too large
    assert grpo.outcome_weights(rewards[:4], groups[:4])[0].tolist() == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="mixed_total = 0 is less than this batch's 1 mixed prompts"):
        grpo.outcome_weights(rewards[:4], groups[:4], mixed_total=0)


def test_the_gaps_of_two_shares_sum_to_the_batch_gap(tiny_model, tokenizer, arithmetic, sample_batch):
    """What the all-reduce relies on: Σ over processes of each share's gap (weights with the global count) is the
    whole batch's gap (for any model and labelling: the rewards are set by hand)."""
    model = tiny_model
    train, _ = arithmetic
    prompts = [problem.prompt for problem in train[:4] for _ in range(4)]  # 4 groups of G = 4
    encoded, completion_ids, completion_mask = sample_batch(model, tokenizer, prompts, seed=1, length=5)
    batch = {"prompt_ids": encoded["input_ids"], "prompt_mask": encoded["attention_mask"],
             "completion_ids": completion_ids, "completion_mask": completion_mask}
    rewards = torch.tensor([1.0, 0, 0, 1] + [0.0, 0, 0, 1] + [1.0, 1, 1, 1] + [0.0, 1, 1, 0])
    groups = torch.arange(16) // 4
    params = [p for p in model.parameters() if p.requires_grad]
    w_plus, w_minus, mixed = grpo.outcome_weights(rewards, groups)
    assert len(mixed) == 3
    whole = grpo.batch_gap(model, batch, w_plus - w_minus, params)
    shares = []
    for rows in (slice(0, 8), slice(8, 16)):  # process 0: prompts 0, 1 (both mixed); process 1: 2 (not), 3
        share_plus, share_minus, _ = grpo.outcome_weights(rewards[rows], groups[rows], mixed_total=3)
        shares.append(grpo.batch_gap(model, {k: v[rows] for k, v in batch.items()}, share_plus - share_minus,
                                     params))
    torch.testing.assert_close(shares[0] + shares[1], whole, rtol=1e-5, atol=1e-7)
    assert float((shares[0] - whole).norm() / whole.norm()) > 0.1  # one share alone is not the gap


def test_the_process_helpers_are_the_identity_in_one_process():
    tensor = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert grpo._all_reduce_sum(tensor) is tensor and grpo._all_reduce_sum(3) == 3
    assert grpo._all_gather(tensor) is tensor
    assert grpo._global_means(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])) == [1.5, 0.5]
    assert grpo._global_means(torch.zeros(0)) is None


def test_keyed_sampling_draws_from_the_softmax_and_ignores_the_batch_split():
    scores = torch.tensor([[2.0, 0.0, -1.0]]).expand(3000, 3)  # (B, V): one distribution, 3000 rows
    tokens = distributed.keyed_token_choice(scores, seed=0, call=0, first_row=0, position=0)
    frequencies = torch.bincount(tokens, minlength=3).double() / 3000
    probabilities = torch.softmax(scores[0].double(), -1)
    assert ((frequencies - probabilities).abs() <= 4 * (probabilities * (1 - probabilities) / 3000).sqrt()).all()
    hot = distributed.keyed_token_choice(scores[:8], 0, 0, 0, 0, temperature=0.25)  # sharper: mostly token 0
    assert (hot == 0).sum() >= (tokens[:8] == 0).sum()
    # rows 0–7 in one call = rows 0–3 and 4–7 as two processes' calls
    varied = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    whole = distributed.keyed_token_choice(varied, 1, 2, 0, 3)
    halves = torch.cat([distributed.keyed_token_choice(varied[:4], 1, 2, 0, 3),
                        distributed.keyed_token_choice(varied[4:], 1, 2, 4, 3)])
    assert whole.tolist() == halves.tolist()
    assert distributed.keyed_token_choice(varied, 1, 3, 0, 3).tolist() != whole.tolist()  # another step, others


# --- hostile input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("completions, generations, processes, message", [
    (32, 4, 3, "completions_per_step = 32 is not divisible by the 3 processes"),
    (32, 4, 16, "completions_per_step / processes = 2 is not a multiple of num_generations = 4"),
    (24, 4, 4, "completions_per_step / processes = 6 is not a multiple of num_generations = 4"),
    (32, 4, 0, "processes = 0: must be ≥ 1"),
])
def test_a_batch_that_does_not_split_into_whole_groups_is_refused(completions, generations, processes, message):
    with pytest.raises(ValueError, match=message) as error:
        grpo.per_process_batch_size(completions, generations, processes)
    assert "\n" not in str(error.value)


def test_the_batch_splits_into_equal_shares_of_whole_groups():
    assert grpo.per_process_batch_size(32, 4, 1) == 32
    assert grpo.per_process_batch_size(32, 4, 2) == 16
    assert grpo.per_process_batch_size(256, 8, 8) == 32


@pytest.mark.parametrize("value", ["two", "0", "-2", "1.5"])
def test_a_world_size_in_the_environment_that_is_not_a_count_is_refused(monkeypatch, value):
    monkeypatch.setenv("WORLD_SIZE", value)
    with pytest.raises(ValueError, match=f"WORLD_SIZE='{value}' in the environment is not a number of processes"):
        grpo.world_size()


def test_the_world_size_comes_from_the_launchers_environment(monkeypatch):
    for name in grpo.WORLD_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert grpo.world_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert grpo.world_size() == 4


def test_build_trainer_refuses_a_world_that_does_not_divide_the_batch(monkeypatch, tokenizer, tiny_model, arithmetic,
                                                                       tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "3")
    train, validation = arithmetic
    config = grpo.GRPORunConfig(steps=1, completions_per_step=32, num_generations=4)
    with pytest.raises(ValueError, match="^completions_per_step = 32 is not divisible by the 3 processes"):
        grpo.build_trainer(tiny_model, tokenizer, train, validation, config, 0, "cpu", str(tmp_path))


@pytest.mark.parametrize("argv, message", [
    (["--completions", "30"], "error: num_generations = 4 does not divide completions_per_step = 30: every prompt"),
    (["--steps", "0"], "error: steps = 0: must be ≥ 1"),
    ([], "error: completions_per_step = 32 is not divisible by the 3 processes"),
])
def test_the_entry_point_refuses_bad_settings_in_one_line(monkeypatch, capsys, tmp_path, argv, message):
    """Bad settings exit with 2 and one line, before the warm-up and without writing the output."""
    monkeypatch.setenv("WORLD_SIZE", "3")  # as under a launcher of 3 processes (no process group is started)
    output = tmp_path / "run.json"
    assert distributed.main(["--output", str(output), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not output.exists()
