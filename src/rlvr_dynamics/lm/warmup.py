"""Supervised warm-up: teach a fresh model the answer format until it reaches a target accuracy.

GRPO needs groups with both correct and incorrect completions; a randomly initialised model
gets none right. The warm-up minimises the cross-entropy of the reference completion (plus the
end-of-text token) given the prompt, and stops on a *validation accuracy target* rather than a
step count: small models learn addition abruptly (the accuracy jumps within a few hundred
steps), so a fixed count would overshoot or undershoot by a lot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlvr_dynamics.lm.scoring import completion_token_log_probs, sampled_accuracy
from rlvr_dynamics.lm.task import Problem, completion_target


@dataclass(frozen=True)
class WarmupConfig:
    """Hyperparameters of the supervised warm-up.

    Attributes:
        target_accuracy: stop once the sampled validation accuracy reaches this.
        max_steps: give up after this many steps (the result says whether the target was reached).
        batch_size: problems per step.
        learning_rate: AdamW learning rate.
        eval_every: steps between accuracy checks.
        eval_problems: validation problems in each check.
        eval_samples: sampled completions per validation problem.
        max_new_tokens: completion length cap when sampling.
    """

    target_accuracy: float = 0.35
    max_steps: int = 6000
    batch_size: int = 64
    learning_rate: float = 3e-3
    eval_every: int = 100
    eval_problems: int = 128
    eval_samples: int = 2
    max_new_tokens: int = 8


@dataclass
class WarmupResult:
    """What the warm-up did: steps taken, whether it reached the target, the accuracy checks."""

    steps: int
    reached_target: bool
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, sampled validation accuracy)

    @property
    def final_accuracy(self) -> float:
        return self.history[-1][1] if self.history else float("nan")


def encode_supervised(tokenizer, problems: list[Problem], device) -> tuple[torch.Tensor, ...]:
    """Left-padded prompts and right-padded targets (reference completion + end-of-text)."""
    prompts = tokenizer([p.prompt for p in problems], return_tensors="pt", padding=True, add_special_tokens=False)
    targets = [tokenizer(completion_target(p), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
               for p in problems]
    length = max(len(t) for t in targets)
    target_ids = torch.full((len(problems), length), tokenizer.pad_token_id, dtype=torch.long)
    target_mask = torch.zeros((len(problems), length), dtype=torch.long)
    for row, target in enumerate(targets):
        target_ids[row, :len(target)] = torch.tensor(target)
        target_mask[row, :len(target)] = 1
    return (prompts["input_ids"].to(device), prompts["attention_mask"].to(device), target_ids.to(device),
            target_mask.to(device))


def supervised_warmup(model, tokenizer, train: list[Problem], validation: list[Problem], config: WarmupConfig,
                      generator: torch.Generator, progress: bool = False) -> WarmupResult:
    """Train ``model`` in place until its sampled validation accuracy reaches the target.

    ``generator`` (on the model's device) draws the batches and the validation samples.
    """
    from tqdm import tqdm

    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    checked = validation[:config.eval_problems]
    result = WarmupResult(steps=0, reached_target=False)
    model.train()
    for step in tqdm(range(1, config.max_steps + 1), disable=not progress, desc="warm-up"):
        rows = torch.randint(len(train), (config.batch_size,), generator=generator, device=device).tolist()
        prompt_ids, prompt_mask, target_ids, target_mask = encode_supervised(tokenizer, [train[i] for i in rows],
                                                                             device)
        token_log_probs = completion_token_log_probs(model, prompt_ids, prompt_mask, target_ids, target_mask)
        loss = -token_log_probs.sum() / target_mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result.steps = step
        if step % config.eval_every == 0 or step == config.max_steps:
            accuracy = float(sampled_accuracy(model, tokenizer, checked, config.eval_samples, config.max_new_tokens,
                                              generator).mean())
            result.history.append((step, accuracy))
            if accuracy >= config.target_accuracy:
                result.reached_target = True
                break
    model.train()
    return result
