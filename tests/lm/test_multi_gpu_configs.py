"""Tests of the multi-GPU files (data/multi-gpu/), the README's Qwen2.5-7B commands and the ZeRO-3 memory estimate.

Nothing here runs on a GPU or with vLLM (neither is on the CI machine): the files are checked against the fields
that accelerate and TRL themselves read, the ``GRPOConfig`` is built (with ``use_cpu=True``, since transformers
refuses ``bf16`` without a GPU at construction; vLLM is needed only when the trainer starts), and the README's
``trl grpo`` commands go through TRL's own parser."""

import dataclasses
import importlib
import math
import shlex
from pathlib import Path

import pytest
import yaml

from rlvr_dynamics.lm import distributed, grpo
from rlvr_dynamics.lm import task as lm_task
from rlvr_dynamics.lm.distributed import GIB, QWEN25_7B_PARAMETERS, zero3_memory_per_gpu

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = ROOT / "data" / "multi-gpu" / "accelerate-zero3.yaml"
SETTINGS = ROOT / "data" / "multi-gpu" / "grpo-qwen2.5-7b.yaml"


def _unknown_accelerate_keys(config: dict) -> list[str]:
    """Keys accelerate would not read: top level against ``ClusterConfig``, ``deepspeed_config`` against the
    options of ``accelerate launch`` (accelerate sets each of them as that option)."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    fields = {f.name for f in dataclasses.fields(ClusterConfig)}
    options = {action.dest for action in launch_command_parser()._actions}
    return ([k for k in config if k not in fields]
            + [f"deepspeed_config.{k}" for k in config.get("deepspeed_config", {}) if k not in options])


def _unknown_grpo_keys(values: dict) -> list[str]:
    from trl import GRPOConfig

    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    return [k for k in values if k not in fields]


def test_the_accelerate_config_is_deepspeed_zero3_on_8_gpus_in_bf16():
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    raw = yaml.safe_load(ACCELERATE.read_text())
    assert _unknown_accelerate_keys(raw) == []
    config = ClusterConfig.from_yaml_file(str(ACCELERATE))  # what `accelerate launch --config_file` does
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.deepspeed_config["zero_stage"] == 3
    assert (config.mixed_precision, config.num_processes, config.num_machines, config.use_cpu) == ("bf16", 8, 1, False)
    offload = config.deepspeed_config["offload_optimizer_device"], config.deepspeed_config["offload_param_device"]
    assert offload == ("none", "none")


def test_a_misspelled_accelerate_key_is_caught():
    raw = yaml.safe_load(ACCELERATE.read_text())
    raw["deepspeed_config"]["zero_stag"] = raw["deepspeed_config"].pop("zero_stage")
    raw["num_process"] = raw.pop("num_processes")
    assert _unknown_accelerate_keys(raw) == ["num_process", "deepspeed_config.zero_stag"]


def test_every_grpo_setting_is_a_grpo_config_field_and_they_build_a_config(tmp_path):
    from trl import GRPOConfig

    values = yaml.safe_load(SETTINGS.read_text())
    assert _unknown_grpo_keys(values) == []
    with grpo._trl_deprecations_silenced():
        config = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, **values)
    assert config.use_vllm and config.vllm_mode in ("colocate", "server") and config.vllm_mode == "colocate"
    assert 0 < config.vllm_gpu_memory_utilization < 1
    assert config.loss_type in grpo.LOSS_TYPES and config.scale_rewards in grpo.SCALE_REWARDS  # the book's variants
    assert (config.loss_type, config.scale_rewards, config.beta) == ("dr_grpo", "none", 0.0)
    assert str(config.lr_scheduler_type.value) == "cosine" and config.warmup_steps == 0.03  # < 1: a ratio
    assert config.bf16 and config.activation_checkpointing
    assert config.steps_per_generation == config.gradient_accumulation_steps == 4  # TRL's default: one generation
    # the global step: per process × processes × accumulation, whole groups in 8 and in 7 processes (server mode)
    for processes, completions in ((8, 512), (7, 448)):
        total = config.per_device_train_batch_size * processes * config.gradient_accumulation_steps
        assert total == completions and total % config.num_generations == 0


def test_a_misspelled_grpo_setting_is_caught():
    values = yaml.safe_load(SETTINGS.read_text())
    values["vllm_gpu_memory_utilisation"] = values.pop("vllm_gpu_memory_utilization")
    values["warmup_ratio"] = 0.03  # transformers 5 removed it: warmup_steps < 1 is the ratio
    assert _unknown_grpo_keys(values) == ["vllm_gpu_memory_utilisation", "warmup_ratio"]


def _readme_commands(program: str) -> list[list[str]]:
    """The commands of ``program`` (e.g. "trl grpo") in the README's Multi-GPU section's bash blocks, as the argument
    lists after it."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Multi-GPU: Qwen2.5-7B with accelerate + DeepSpeed ZeRO-3 and vLLM", 1)[1].split("\n## ")[0]
    blocks = [block.split("```")[0] for block in section.split("```bash\n")[1:]]
    commands = []
    for command in "\n".join(blocks).replace("\\\n", " ").splitlines():
        if program in command and not command.lstrip().startswith("#"):
            words = shlex.split(command.rstrip("& "))
            at = next(i for i in range(len(words)) if " ".join(words[i:i + 2]) == program)
            commands.append(words[at + 2:])
    return commands


def test_the_readme_trl_grpo_commands_parse_with_trls_own_parser():
    """TRL's ``trl grpo`` splits the arguments as its parser does: the script's own, then the rest for
    ``accelerate launch`` (with ``--accelerate_config`` turned into ``--config_file``)."""
    from accelerate.commands.launch import launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument
    from trl.scripts.grpo import make_parser

    commands = _readme_commands("trl grpo")
    assert len(commands) == 2
    for argv in commands:
        with grpo._trl_deprecations_silenced():
            *parsed, config_left, cli_left = make_parser().parse_args_and_config(
                [*argv, "--use_cpu", "true"], return_remaining_strings=True, separate_remaining_strings=True)
        script, training, model, _ = parsed
        assert config_left == []
        assert script.reward_funcs == ["rlvr_dynamics.lm.task.correctness_reward"]
        assert model.model_name_or_path == "/models/Qwen2.5-7B-Instruct" and script.dataset_name == "/data/gsm8k-grpo"
        assert training.use_vllm and training.per_device_train_batch_size == 16
        launch = launch_command_parser().parse_args([*resolve_accelerate_config_argument(cli_left), "train.py"])
        assert Path(launch.config_file).resolve() == ACCELERATE
        processes = launch.num_processes or yaml.safe_load(ACCELERATE.read_text())["num_processes"]
        assert (training.vllm_mode, processes) in (("colocate", 8), ("server", 7))


def test_the_readme_vllm_server_command_parses():
    from trl.scripts.vllm_serve import make_parser

    (argv,) = _readme_commands("trl vllm-serve")
    (arguments, left) = make_parser().parse_args_and_config(argv, return_remaining_strings=True)
    assert left == [] and arguments.model == "/models/Qwen2.5-7B-Instruct"
    assert arguments.port == yaml.safe_load(SETTINGS.read_text())["vllm_server_port"]


def test_the_readme_dataset_recipe_gives_what_trls_script_loads_and_the_reward_reads(tmp_path):
    from datasets import load_dataset

    problems = lm_task.generate_problems("word", 5, seed=0)
    lm_task.reward_dataset(problems).to_json(str(tmp_path / "train.jsonl"))
    train = load_dataset(str(tmp_path))["train"]  # TRL's script: load_dataset(dataset_name)[dataset_train_split]
    assert train.column_names == ["prompt", "answer"] and len(train) == 5
    path = _readme_commands("trl grpo")[0]
    path = path[path.index("--reward_funcs") + 1]
    module, name = path.rsplit(".", 1)  # how TRL's script imports it
    reward = getattr(importlib.import_module(module), name)
    completions = [f"... #### {problem.answer}" for problem in problems]
    assert reward(completions, answer=train["answer"]) == [1.0] * 5


# --- memory ------------------------------------------------------------------------------------------------------


def test_memory_per_gpu_by_hand():
    # P = 10⁶ on 4 GPUs: bf16 weights 2·10⁶/4 = 500 000 B, bf16 gradients 500 000 B, fp32 master + Adam
    # 12·10⁶/4 = 3 000 000 B; the tracker's θ_k and gap in float64, whole: 2 · 8 · 10⁶ = 16 000 000 B;
    # vLLM at 0.25 of a 40 MB GPU: 10 000 000 B. Total 30 000 000 B ≤ 40 000 000 B.
    m = zero3_memory_per_gpu(1_000_000, 4, "measured", 0.25, capacity=40_000_000)
    assert (m.weights, m.gradients, m.optimizer, m.tracker, m.vllm) == (500_000, 500_000, 3_000_000, 16_000_000,
                                                                       10_000_000)
    assert m.total == 30_000_000 and m.fits
    # one GPU, no tracking, no vLLM: the 16 bytes per parameter of mixed-precision Adam
    alone = zero3_memory_per_gpu(1_000_000, 1, capacity=15_999_999)
    assert alone.total == 16_000_000 and alone.tracker == alone.vllm == 0 and not alone.fits
    assert zero3_memory_per_gpu(1_000_000, 1, "estimate").tracker == 0  # (a) reads one number


def test_memory_of_qwen25_7b_on_8_gpus_by_hand():
    # P = 7 615 616 512: 2P/8 = 1 903 904 128 B = 1.77 GiB; 12P/8 = 11 423 424 768 B = 10.64 GiB;
    # vLLM 0.3 · 80 GiB = 24 GiB: 1.77 + 1.77 + 10.64 + 24 = 38.19 GiB.
    m = zero3_memory_per_gpu(QWEN25_7B_PARAMETERS, 8, "off", 0.3)
    assert (m.weights, m.optimizer) == (1_903_904_128, 11_423_424_768)
    assert m.total / GIB == pytest.approx(38.185, abs=1e-3) and m.fits
    # the tracker's 16P = 121 849 864 192 B = 113.5 GiB alone exceeds an 80 GiB GPU
    measured = zero3_memory_per_gpu(QWEN25_7B_PARAMETERS, 7, "measured")
    assert measured.tracker == 121_849_864_192 and not measured.fits


def test_the_7b_parameter_count_is_qwen2_5_7b_s_architecture():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False)
    with torch.device("meta"):  # no memory: shapes only
        model = Qwen2ForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == QWEN25_7B_PARAMETERS


def test_the_readme_memory_table_is_the_functions():
    table = distributed.memory_table()
    assert table in (ROOT / "README.md").read_text()
    assert "| 38.2 | yes |" in table and "| 129.7 | **no** |" in table


@pytest.mark.parametrize("change, message", [
    (dict(parameters=0), "parameters = 0: must be a positive integer"),
    (dict(parameters=1.5e9), "parameters = 1500000000.0: must be a positive integer"),
    (dict(parameters=True), "parameters = True: must be a positive integer"),
    (dict(gpus=0), "gpus = 0: must be a positive integer"),
    (dict(gpus=2.0), "gpus = 2.0: must be a positive integer"),
    (dict(tracking="full"), "tracking 'full' is unknown"),
    (dict(vllm_gpu_memory_utilization=1.0), "vllm_gpu_memory_utilization = 1.0: must be in"),
    (dict(vllm_gpu_memory_utilization=-0.1), "vllm_gpu_memory_utilization = -0.1: must be in"),
    (dict(vllm_gpu_memory_utilization=math.nan), "vllm_gpu_memory_utilization = nan: must be in"),
    (dict(capacity=0), "capacity = 0: must be a positive number of bytes"),
    (dict(capacity=math.inf), "capacity = inf: must be a positive number of bytes"),
    (dict(capacity=math.nan), "capacity = nan: must be a positive number of bytes"),
])
def test_memory_estimate_refuses_bad_input_in_one_line(change, message):
    arguments = dict(parameters=1000, gpus=2, tracking="off", vllm_gpu_memory_utilization=0.0,
                     capacity=80 * GIB) | change
    with pytest.raises(ValueError, match=message) as error:
        zero3_memory_per_gpu(**arguments)
    assert "\n" not in str(error.value)
