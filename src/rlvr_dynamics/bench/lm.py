"""Overhead of gradient-gap tracking in TRL GRPO (``make bench-lm`` / ``rlvr-book bench-lm``).

One configuration (the Figure-2 chapter's ``ci`` run: 32 prompts × 8 completions, AdamW), one
warmed-up checkpoint, one seed; three runs of ``--steps`` GRPO steps with tracking ``off``,
``estimate`` (the paper's estimate (a): the norm of the gradient TRL already computed) and
``measured`` ((a) plus (b): one extra forward and backward every step for the batch gap
ḡ⁺ − ḡ⁻, each prompt's own gap every 10 steps, and the update's alignment). Reports seconds per
step, mean and median (the first ``--skip`` steps excluded; the median step carries the batch gap
alone), and the overhead of each against ``off``. Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from rlvr_dynamics.files import package_versions, write_json_atomic
from rlvr_dynamics.lm import experiment, grpo
from rlvr_dynamics.lm import model as lm_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rlvr-book bench-lm``."""
    parser.add_argument("--steps", type=int, default=60, help="GRPO steps per tracking mode (default 60)")
    parser.add_argument("--skip", type=int, default=5, help="first steps left out of the mean (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--preset", default="ci", choices=experiment.PRESETS,
                        help="the Figure-2 experiment's preset (default ci)")
    parser.add_argument("--output", default="build/bench/lm.json", help="JSON file to write")


def run(args: argparse.Namespace, command: str) -> int:
    """``rlvr-book bench-lm``: time, print, write ``args.output``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = experiment.LMExperimentConfig(**experiment.PRESETS[args.preset])
    train, validation = experiment.load_problems(config, seed=0)
    started = time.perf_counter()
    folder, warmup, parameters = experiment.prepare_model(config, train, validation, 0, args.device,
                                                      Path(args.output).with_suffix("") / "warm_model")
    warmup_seconds = time.perf_counter() - started
    base = replace(config.run_configs()[0], steps=args.steps, eval_every=args.steps, eval_problems=16, eval_samples=1)
    rows = {}
    for tracking in grpo.TRACKING:
        model, tokenizer = lm_model.load_model(folder, args.device)
        result = grpo.run_grpo(model, tokenizer, train, validation, replace(base, tracking=tracking), 0, args.device)
        seconds = result.steps["seconds"].iloc[args.skip:]
        rows[tracking] = {"seconds_per_step": float(seconds.mean()), "seconds_per_step_median": float(seconds.median())}
        print(f"tracking {tracking:>8}: {rows[tracking]['seconds_per_step']:.4f} s/step "
              f"(median {rows[tracking]['seconds_per_step_median']:.4f})", flush=True)
    for tracking in ("estimate", "measured"):
        rows[tracking]["overhead"] = rows[tracking]["seconds_per_step"] / rows["off"]["seconds_per_step"] - 1
        rows[tracking]["overhead_median"] = (rows[tracking]["seconds_per_step_median"]
                                             / rows["off"]["seconds_per_step_median"] - 1)
        print(f"overhead of {tracking}: {100 * rows[tracking]['overhead']:+.1f}% (mean step), "
              f"{100 * rows[tracking]['overhead_median']:+.1f}% (median step)")
    print(f"(measured: the median step carries the batch gap alone; the mean also carries each prompt's own gap, "
          f"every {base.per_prompt_every} steps; goal for the batch gap: ≤ +25%)")
    payload = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
               "cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "preset": args.preset,
               "parameters": parameters, "steps": args.steps, "skip": args.skip, "warmup_seconds": warmup_seconds,
               "warmup_steps": warmup.steps if warmup else 0, "config": base.__dict__, "tracking": rows,
               "versions": package_versions(), "command": command}
    print(f"wrote {write_json_atomic(args.output, payload)}")
    return 0
