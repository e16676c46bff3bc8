"""GRPO with gap tracking in several processes: the launchable check and the multi-GPU memory estimate.

``python -m rlvr_dynamics.lm.distributed --output run.json`` trains the tiny ``ci`` model (warmed up first, so that
groups have both outcomes) for a few TRL GRPO steps with tracking ``"measured"`` and writes the step records. The
same command under a launcher runs it in N processes (DDP; on CPU with the gloo backend)::

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        -m rlvr_dynamics.lm.distributed --output run-2.json

(``--multi_gpu`` selects accelerate's torchrun launcher; the run itself is on CPU — ``build_trainer`` sets
``use_cpu`` — so it needs no GPU. ``accelerate launch --cpu --num_processes 2`` starts **one** process unless
accelerate is given an MPI host file: accelerate 1.15's multi-CPU launch goes through ``mpirun``.)

Two things make runs in 1 and N processes comparable:

* **row-keyed sampling** (``--sampling keyed``, the default): TRL samples with the global RNG seeded with
  seed + process index, and CPU ``torch.multinomial`` draws row after row, token after token, so the completion of
  a row depends on how many rows its process samples. :func:`key_sampling_by_row` makes each sampled token a
  function of (seed, step, global row, position) only — Gumbel-max on the same distribution — so a row draws the
  same completion whatever the number of processes, and every tracked number agrees to rounding;
* **the union check** (:func:`union_gap_check`): at every step, before the optimizer step, every process's
  completions are gathered and the gap is recomputed from their union the one-process way
  (:func:`~rlvr_dynamics.lm.grpo.batch_gap` on the whole batch), next to the all-reduced gap the tracker holds.

:func:`zero3_memory_per_gpu` estimates the memory per GPU of a DeepSpeed ZeRO-3 run (``data/multi-gpu/``).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rlvr_dynamics.lm import grpo
from rlvr_dynamics.lm import model as lm_model
from rlvr_dynamics.lm import task as lm_task
from rlvr_dynamics.lm.warmup import WarmupConfig, supervised_warmup

SAMPLING = ("keyed", "trl")
"""How training completions are drawn: ``"keyed"`` (:func:`key_sampling_by_row`, the same completions in any
number of processes) or ``"trl"`` (TRL's own: each process's global RNG, seed + process index)."""


def _rank() -> int:
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_rank() if initialized else 0


def _seed_of(*key: int) -> int:
    """A 56-bit seed from integers (a hash, so nearby keys give unrelated streams)."""
    return int.from_bytes(hashlib.blake2b(",".join(map(str, key)).encode(), digest_size=7).digest(), "little")


def keyed_token_choice(scores: torch.Tensor, seed: int, call: int, first_row: int, position: int,
                       temperature: float = 1.0) -> torch.Tensor:
    """One sampled token per row, a function of (seed, call, global row, position) only.      (B, V) → (B,)

    Gumbel-max: argmax_v (s_v / T + G_v) with G_v = −log(−log U_v) is distributed as softmax(s / T); the uniforms
    U come from a generator seeded with the row's key, not from a shared stream."""
    choices = []
    for row in range(scores.shape[0]):
        generator = torch.Generator().manual_seed(_seed_of(seed, call, first_row + row, position))
        uniform = torch.rand(scores.shape[1], generator=generator, dtype=torch.float64).clamp(1e-300, 1 - 1e-16)
        gumbel = -torch.log(-torch.log(uniform))  # (V,)
        choices.append(torch.argmax(scores[row].double().cpu() / temperature + gumbel))
    return torch.stack(choices).to(scores.device)


def key_sampling_by_row(model, seed: int) -> None:
    """Make ``model.generate`` (TRL's sampling of training completions) draw each token by
    :func:`keyed_token_choice`: a logits processor keeps only the keyed token, so the sampler's own draw (from the
    process's global RNG) picks it with probability 1. The key's call number counts ``generate`` calls (one per
    training step); the global row is the process index × the local batch + the local row, the rows of TRL's
    per-process split of the batch. Sampling settings other than the temperature (top-k, top-p, min-p) raise."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class _Keyed(LogitsProcessor):
        def __init__(self, call: int, first_row: int, prompt_width: int, temperature: float):
            self.call, self.first_row, self.prompt_width, self.temperature = call, first_row, prompt_width, temperature

        def __call__(self, input_ids, scores):
            chosen = keyed_token_choice(scores, seed, self.call, self.first_row,
                                        input_ids.shape[1] - self.prompt_width, self.temperature)
            kept = torch.full_like(scores, -math.inf)
            return kept.scatter(1, chosen.unsqueeze(1), 0.0)

    original, calls = model.generate, itertools.count()

    def generate(*args, **kwargs):
        config = kwargs.get("generation_config") or model.generation_config
        if (config.top_k not in (None, 0) or (config.top_p is not None and config.top_p < 1)
                or config.min_p is not None):
            raise ValueError("keyed sampling supports the temperature only (top_k 0, top_p 1, no min_p)")
        input_ids = kwargs["input_ids"]  # (B, L_q): this process's rows
        processor = _Keyed(next(calls), _rank() * input_ids.shape[0], input_ids.shape[1], config.temperature or 1.0)
        kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), processor])
        return original(*args, **kwargs)

    model.generate = generate


def _gather_objects(value) -> list:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    values = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def _spread(tensor: torch.Tensor) -> float:
    """max over the entries of (largest − smallest value across processes); 0 in one process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0.0
    high, low = tensor.clone(), tensor.clone()
    torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
    torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
    return float((high - low).abs().max())


def union_batch(parts: list[dict], pad_token_id: int) -> dict:
    """The processes' batches as one: prompts left-padded and completions right-padded to common widths."""
    def padded(key, width, value, left):
        return torch.cat([torch.nn.functional.pad(p[key], (width - p[key].shape[1], 0) if left else
                                                  (0, width - p[key].shape[1]), value=value) for p in parts])
    prompt_width = max(p["prompt_ids"].shape[1] for p in parts)
    completion_width = max(p["completion_ids"].shape[1] for p in parts)
    return {"prompt_ids": padded("prompt_ids", prompt_width, pad_token_id, True),
            "prompt_mask": padded("prompt_mask", prompt_width, 0, True),
            "completion_ids": padded("completion_ids", completion_width, pad_token_id, False),
            "completion_mask": padded("completion_mask", completion_width, 0, False),
            "gap_rewards": torch.cat([p["gap_rewards"] for p in parts]),
            "gap_groups": torch.cat([p["gap_groups"] for p in parts])}


def union_gap_check(trainer, checks: list[dict]):
    """A callback that, before every optimizer step, recomputes the step's numbers from the union of every
    process's completions the one-process way and appends them to ``checks``, beside what the tracker recorded:
    ḡ⁺ − ḡ⁻ by :func:`~rlvr_dynamics.lm.grpo.batch_gap` on the whole batch (its own forward, at θ_k), the mixed
    prompts (and each process's), the mean reward and mean c_q; and the spread of the tracker's gap across
    processes."""
    from transformers import TrainerCallback

    keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "gap_rewards", "gap_groups")

    class _UnionCheck(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            local = {k: trainer._buffered_inputs[0][k].detach().cpu() for k in keys}
            parts = _gather_objects(local)
            batch = union_batch(parts, trainer.processing_class.pad_token_id)
            rewards, groups = batch["gap_rewards"], batch["gap_groups"]
            w_plus, w_minus, mixed = grpo.outcome_weights(rewards, groups)
            grouped = rewards[torch.argsort(groups, stable=True)].view(-1, trainer.num_generations)
            record = trainer._pending
            check = {"step": state.global_step + 1, "rows": len(rewards), "prompts": len(torch.unique(groups)),
                     "mixed_prompts": len(mixed), "reward": float(rewards.mean()),
                     "mixed_by_process": [len(grpo.outcome_weights(part["gap_rewards"], part["gap_groups"])[2])
                                          for part in parts],
                     "mean_scale_factor": float(grpo.reward_scale_factors(grouped, trainer.run_config.scale_rewards)
                                                .mean()),
                     "tracked": {k: record.get(k) for k in ("mixed_prompts", "reward", "mean_scale_factor",
                                                            "gap_norm")}}
            tracked_gap = trainer._gaps[0] if trainer._gaps is not None else None
            if len(mixed) and tracked_gap is not None:
                model = trainer.model  # the module itself, not its DDP wrapper
                params = [p for p in model.parameters() if p.requires_grad]
                device = params[0].device
                union = grpo.batch_gap(model, {k: v.to(device) for k, v in batch.items()}, w_plus - w_minus, params,
                                       trainer.run_config.temperature)
                check.update(gap_norm=float(union.norm()),
                             gap_relative_error=float((union - tracked_gap).norm() / union.norm()),
                             gap_spread_across_processes=_spread(tracked_gap))
            checks.append(check)

    return _UnionCheck()


def _flat_parameters(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])


def _without_seconds(records: list[dict]) -> str:
    return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in records], sort_keys=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlvr_dynamics.lm.distributed", description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="the JSON file the main process writes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--completions", type=int, default=32, help="completions per step (all processes)")
    parser.add_argument("--num-generations", type=int, default=4, help="G, completions per prompt")
    parser.add_argument("--max-completion-length", type=int, default=6)
    parser.add_argument("--eval-problems", type=int, default=16)
    parser.add_argument("--per-prompt-every", type=int, default=2)
    parser.add_argument("--loss-type", default="grpo", help=f"one of {', '.join(grpo.LOSS_TYPES)}")
    parser.add_argument("--scale-rewards", default="group", help=f"one of {', '.join(grpo.SCALE_REWARDS)}")
    parser.add_argument("--prompt-weighting", default="none", help=f"one of {', '.join(grpo.PROMPT_WEIGHTINGS)}")
    parser.add_argument("--sampling", choices=SAMPLING, default="keyed")
    parser.add_argument("--no-union-check", dest="union_check", action="store_false")
    return parser


def run(args: argparse.Namespace) -> dict | None:
    """One run (in every process); the main process's result dict, ``None`` on the others."""
    config = grpo.GRPORunConfig(loss_type=args.loss_type, scale_rewards=args.scale_rewards,
                                prompt_weighting=args.prompt_weighting,
                                learning_rate=1e-3, steps=args.steps, completions_per_step=args.completions,
                                num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                                tracking="measured", per_prompt_every=args.per_prompt_every, eval_every=args.steps,
                                eval_problems=args.eval_problems, eval_samples=4)
    config.check()
    grpo.per_process_batch_size(config.completions_per_step, config.num_generations, grpo.world_size())
    tokenizer = lm_model.byte_tokenizer()
    policy = lm_model.build_model("ci", tokenizer, args.seed, "cpu")
    problems = lm_task.generate_problems("arithmetic", 50, seed=args.seed, digits=1)  # one-digit sums: all 50
    train, validation = lm_task.train_validation_split(problems, args.eval_problems)
    warm = supervised_warmup(policy, tokenizer, train, validation,  # to mixed groups: some right, some wrong
                             WarmupConfig(target_accuracy=0.15, max_steps=400, batch_size=64, eval_every=25,
                                          eval_problems=args.eval_problems, eval_samples=4),
                             torch.Generator().manual_seed(args.seed))
    if args.sampling == "keyed":
        key_sampling_by_row(policy, args.seed)
    checks: list[dict] = []
    configure = (lambda trainer: trainer.add_callback(union_gap_check(trainer, checks))) if args.union_check else None
    started = time.perf_counter()
    result = grpo.run_grpo(policy, tokenizer, train, validation, config, args.seed, "cpu", configure=configure)
    steps, evals = result.steps.to_dict("records"), result.evals.to_dict("records")
    every = _gather_objects((_without_seconds(steps), json.dumps(evals, sort_keys=True)))
    parameters = _flat_parameters(policy)
    summary = {"processes": grpo.world_size(), "seed": args.seed, "sampling": args.sampling,
               "parameter_count": lm_model.parameter_count(policy), "warmup_steps": warm.steps,
               "config": asdict(config), "steps": steps, "evals": evals, "union_checks": checks,
               "records_identical_across_processes": all(e == every[0] for e in every),
               "parameter_spread_across_processes": _spread(parameters),
               "final_parameter_norm": float(parameters.norm()), "seconds": time.perf_counter() - started}
    return summary if _rank() == 0 else None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        summary = run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if summary is not None:
        output = Path(args.output)
        scratch = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        scratch.write_text(json.dumps(summary, indent=1, default=float, allow_nan=True))
        scratch.replace(output)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Memory per GPU under DeepSpeed ZeRO-3

GIB = 2**30

QWEN25_7B_PARAMETERS = 7_615_616_512
"""Parameters of Qwen2.5-7B(-Instruct): hidden 3584, 28 layers, 28 query and 4 key-value heads of 128, MLP 18944,
vocabulary 152064, input and output embeddings untied (the test counts a meta-device ``Qwen2ForCausalLM``)."""


@dataclass(frozen=True)
class GPUMemory:
    """Bytes on each GPU (:func:`zero3_memory_per_gpu`); activations and communication buffers not included."""

    weights: float  # bf16 parameters, sharded: 2P/N
    gradients: float  # bf16 gradients, sharded: 2P/N
    optimizer: float  # fp32 master weights + Adam's two moments, sharded: 12P/N
    tracker: float  # the gap tracker's float64 vectors, whole on every GPU
    vllm: float  # what vLLM reserves on a training GPU (colocate mode)
    capacity: float  # the GPU's memory

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.tracker + self.vllm

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity


def zero3_memory_per_gpu(parameters: int, gpus: int, tracking: str = "off", vllm_gpu_memory_utilization: float = 0.0,
                         capacity: float = 80 * GIB) -> GPUMemory:
    """Bytes per training GPU for a model of P = ``parameters`` under ZeRO-3 on N = ``gpus`` (bf16 mixed precision,
    AdamW): bf16 weights 2P/N, bf16 gradients 2P/N, fp32 master weights and two Adam moments 12P/N — all sharded —
    plus the tracker's vectors and vLLM's reservation, which are not:

    * ``tracking="measured"`` keeps θ_k and ḡ⁺ − ḡ⁻ as whole float64 vectors, 8P bytes each (16P), on every GPU
      (and briefly two more during the update's alignment). The tracker flattens whole parameters and gradients,
      which ZeRO-3 shards (each GPU holds 1/N): it runs in one process or under DDP only, and refuses DeepSpeed;
      under ZeRO-3 it would need the parameters gathered (``deepspeed.zero.GatheredParameters``) or sharded inner
      products. ``"estimate"`` and ``"off"`` add nothing (the gradient's norm is one number);
    * ``vllm_gpu_memory_utilization``: the fraction of each GPU that vLLM reserves for its weights and KV cache in
      ``vllm_mode="colocate"``; 0 in ``"server"`` mode, where vLLM has GPUs of its own.
    """
    if isinstance(parameters, bool) or not isinstance(parameters, int) or parameters < 1:
        raise ValueError(f"parameters = {parameters!r}: must be a positive integer")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus = {gpus!r}: must be a positive integer")
    if tracking not in grpo.TRACKING:
        raise ValueError(f"tracking '{tracking}' is unknown: allowed {', '.join(repr(t) for t in grpo.TRACKING)}")
    if not 0 <= vllm_gpu_memory_utilization < 1:
        raise ValueError(f"vllm_gpu_memory_utilization = {vllm_gpu_memory_utilization}: must be in [0, 1)")
    if not capacity > 0 or math.isinf(capacity):
        raise ValueError(f"capacity = {capacity}: must be a positive number of bytes")
    return GPUMemory(weights=2 * parameters / gpus, gradients=2 * parameters / gpus, optimizer=12 * parameters / gpus,
                     tracker=16.0 * parameters if tracking == "measured" else 0.0,
                     vllm=vllm_gpu_memory_utilization * capacity, capacity=capacity)


MEMORY_CASES = (
    ("colocate: 8 training GPUs, vLLM at 0.3 of each", 8, "off", 0.3),
    ("server: 7 training GPUs (vLLM on the 8th)", 7, "off", 0.0),
    ("server, tracking `\"measured\"` (not supported: DDP only)", 7, "measured", 0.0),
)
"""The README's cases for Qwen2.5-7B on 8 × 80 GiB: (setup, training GPUs, tracking, vLLM fraction)."""


def memory_table(parameters: int = QWEN25_7B_PARAMETERS, capacity: float = 80 * GIB) -> str:
    """The README's memory table (GiB per training GPU) for :data:`MEMORY_CASES`."""
    lines = ["| setup | weights (bf16) | gradients (bf16) | master + Adam (fp32) | tracker (fp64, whole) | vLLM | "
             f"total | fits {capacity / GIB:g} GiB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for setup, gpus, tracking, fraction in MEMORY_CASES:
        m = zero3_memory_per_gpu(parameters, gpus, tracking, fraction, capacity)
        cells = [f"{value / GIB:.1f}" for value in (m.weights, m.gradients, m.optimizer, m.tracker, m.vllm, m.total)]
        lines.append(f"| {setup} | {' | '.join(cells)} | {'yes' if m.fits else '**no**'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
