"""Sequence log-probabilities, seeded sampling and sampled accuracy for a causal LM.

Prompts are left padded (``prompt_mask`` is 0 on the padding); completions are right padded
(``completion_mask`` is 1 up to and including the first end-of-text token). Position ids are
computed from the attention mask, so a padded batch scores exactly like each prompt alone
(tested).
"""

from __future__ import annotations

import torch

from rlvr_dynamics.lm.task import Problem, correctness_reward


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding gets 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, L)


def completion_token_log_probs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                               temperature: float = 1.0) -> torch.Tensor:
    """log π(o_t | q, o_<t) for every completion token, zero on padding; π samples at ``temperature``
    (softmax of logits / temperature, the policy TRL trains and samples).        # (B, L_o)

    Shapes: ``prompt_ids``/``prompt_mask`` (B, L_q), ``completion_ids``/``completion_mask`` (B, L_o).
    """
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, L_q + L_o)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=positions_from_mask(attention_mask), use_cache=False).logits
    completion_logits = logits[:, prompt_ids.shape[1] - 1:-1].float() / temperature  # predict o_t  (B, L_o, V)
    token_log_probs = torch.log_softmax(completion_logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    return token_log_probs * completion_mask


def sequence_log_probs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                       temperature: float = 1.0) -> torch.Tensor:
    """log π(o | q) = Σ_t log π(o_t | q, o_<t), the score whose gradient is ∇ log π in eq. (7). # (B,)"""
    return completion_token_log_probs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                      temperature).sum(-1)


@torch.no_grad()
def sample_completions(model, prompt_ids, prompt_mask, max_new_tokens: int, eos_token_id: int,
                       pad_token_id: int, generator: torch.Generator, temperature: float = 1.0,
                       with_entropy: bool = False):
    """Sample one completion per prompt row with a KV cache and an explicit ``generator``.

    Returns ``(completion_ids, completion_mask)``, both (B, ``max_new_tokens``): the mask is 1 up
    to and including the first end-of-text token (TRL's convention), padding after it. With
    ``with_entropy`` also the entropy (nats) of the sampling distribution at every position (B, L),
    zero on padding.
    """
    from transformers import DynamicCache

    if temperature <= 0:
        raise ValueError(f"temperature = {temperature}: must be > 0")
    batch = prompt_ids.shape[0]
    attention_mask = prompt_mask.clone()
    positions = positions_from_mask(attention_mask)
    cache = DynamicCache()
    tokens, entropies = [], []
    finished = torch.zeros(batch, dtype=torch.bool, device=prompt_ids.device)
    step_ids, step_positions = prompt_ids, positions
    for _ in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=attention_mask, position_ids=step_positions,
                       past_key_values=cache, use_cache=True).logits[:, -1].float()  # (B, V)
        probabilities = torch.softmax(logits / temperature, dim=-1)
        if with_entropy:
            log_probabilities = torch.log_softmax(logits / temperature, dim=-1)
            entropies.append(-(probabilities * log_probabilities).sum(-1))
        token = torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)  # (B,)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        tokens.append(token)
        finished |= token == eos_token_id
        if bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        step_ids, step_positions = token.unsqueeze(-1), step_positions[:, -1:] + 1
    completion_ids = torch.stack(tokens, dim=1)  # (B, L_o)
    is_eos = completion_ids == eos_token_id
    # 1 up to and including the first EOS: the count of EOS strictly before position t is zero.
    completion_mask = ((is_eos.long().cumsum(-1) - is_eos.long()) == 0).long()
    pad = max_new_tokens - completion_ids.shape[1]
    if pad:
        completion_ids = torch.nn.functional.pad(completion_ids, (0, pad), value=pad_token_id)
        completion_mask = torch.nn.functional.pad(completion_mask, (0, pad), value=0)
    if not with_entropy:
        return completion_ids, completion_mask
    entropy = torch.nn.functional.pad(torch.stack(entropies, dim=1), (0, pad)) * completion_mask  # (B, L)
    return completion_ids, completion_mask, entropy


def sampled_accuracy(model, tokenizer, problems: list[Problem], samples_per_problem: int, max_new_tokens: int,
                     generator: torch.Generator, batch_size: int = 512, temperature: float = 1.0) -> torch.Tensor:
    """The sampled value J_q = P(reward 1) of every problem, estimated from ``samples_per_problem``
    completions at ``temperature`` (the policy's own value, not greedy accuracy).          # (Q,)"""
    return sampled_accuracy_and_entropy(model, tokenizer, problems, samples_per_problem, max_new_tokens, generator,
                                        batch_size, temperature)[0]


def sampled_accuracy_and_entropy(model, tokenizer, problems: list[Problem], samples_per_problem: int,
                                 max_new_tokens: int, generator: torch.Generator, batch_size: int = 512,
                                 temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sampled_accuracy` and, from the same samples, the policy's mean per-token entropy
    along its own completions (nats; the diversity measure of Yao et al.'s Figure 2).  # (Q,), (Q,)"""
    rewards, entropies = _sampled_rewards(model, tokenizer, problems, samples_per_problem, max_new_tokens, generator,
                                          batch_size, temperature, with_entropy=True)
    return rewards.mean(-1), entropies.mean(-1)


def correct_counts(model, tokenizer, problems: list[Problem], samples: int, temperature: float,
                   generator: torch.Generator, max_completion_length: int, batch_size: int = 512) -> torch.Tensor:
    """The number c_q of correct completions among ``samples`` drawn for each problem at ``temperature``.  # (Q,) long

    The samples and their verification are :func:`sampled_accuracy`'s (the same sampler, the same draws from
    ``generator`` for the same ``batch_size``: c_q / samples is its Ĵ_q), without the entropies. pass@k for
    k ≤ samples: :func:`rlvr_dynamics.theory.boundary.pass_at_k_unbiased` (c_q, samples, ks)."""
    if not problems:
        raise ValueError("problems is empty: nothing to count")
    rewards, _ = _sampled_rewards(model, tokenizer, problems, samples, max_completion_length, generator, batch_size,
                                  temperature, with_entropy=False)
    return rewards.sum(-1).round().long()


def _sampled_rewards(model, tokenizer, problems: list[Problem], samples_per_problem: int, max_new_tokens: int,
                     generator: torch.Generator, batch_size: int, temperature: float, with_entropy: bool
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The reward (1 correct, 0 not) of ``samples_per_problem`` completions of every problem, sampled in batches
    of ``batch_size`` rows, and with ``with_entropy`` each one's mean per-token entropy.   # (Q, S), (Q, S) or None"""
    if samples_per_problem < 1:
        raise ValueError(f"samples_per_problem = {samples_per_problem}: must be ≥ 1")
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size}: must be ≥ 1")
    device = next(model.parameters()).device
    prompts = [p.prompt for p in problems for _ in range(samples_per_problem)]
    answers = [str(p.answer) for p in problems for _ in range(samples_per_problem)]
    was_training = model.training
    model.eval()
    rewards, entropies = [], []
    try:
        for start in range(0, len(prompts), batch_size):
            encoded = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                                add_special_tokens=False).to(device)
            sampled = sample_completions(
                model, encoded["input_ids"], encoded["attention_mask"], max_new_tokens,
                tokenizer.eos_token_id, tokenizer.pad_token_id, generator, temperature, with_entropy=with_entropy)
            completion_ids, completion_mask = sampled[0], sampled[1]
            if with_entropy:
                entropies.append(sampled[2].sum(-1) / completion_mask.sum(-1).clamp(min=1))
            texts = tokenizer.batch_decode(
                completion_ids * completion_mask + tokenizer.pad_token_id * (1 - completion_mask),
                skip_special_tokens=True)
            rewards += correctness_reward(texts, answers[start:start + batch_size])
    finally:
        model.train(was_training)
    shape = (len(problems), samples_per_problem)
    return (torch.tensor(rewards, dtype=torch.float64).view(shape),
            torch.cat(entropies).double().view(shape) if with_entropy else None)


def accuracy_standard_error(values: torch.Tensor, samples_per_problem: int) -> float:
    """Standard error of the sampled accuracy mean_q Ĵ_q on a fixed set of problems, from each problem's
    ``samples_per_problem`` draws (``values`` (Q,): the Ĵ_q): √(Σ_q Ĵ_q(1 − Ĵ_q)/(S − 1)) / Q, the unbiased
    within-problem binomial variance (NaN for one sample per problem: no within-problem variance to estimate).
    It is the noise of one evaluation point, the problems held fixed across the run."""
    if samples_per_problem < 2:
        return float("nan")
    values = values.double()
    return float((values * (1 - values) / (samples_per_problem - 1)).sum().sqrt() / values.numel())


def temperature_for_accuracy(model, tokenizer, problems: list[Problem], target: float, samples_per_problem: int,
                             max_new_tokens: int, generator: torch.Generator, low: float = 1.0, high: float = 8.0,
                             iterations: int = 10) -> tuple[float, float]:
    """The sampling temperature at which the model's sampled accuracy on ``problems`` is ``target``: bisection on
    [``low``, ``high``] (accuracy falls as the temperature rises and flattens the distribution), ``iterations``
    halvings, each point ``samples_per_problem`` draws per problem from ``generator``. Returns
    ``(temperature, its sampled accuracy)``; a ``ValueError`` when ``target`` is not between the accuracies at
    the two ends (the model is then too weak, or too sure, for the target)."""
    def accuracy(temperature: float) -> float:
        return float(sampled_accuracy(model, tokenizer, problems, samples_per_problem, max_new_tokens, generator,
                                      temperature=temperature).mean())

    if not 0 < target < 1:
        raise ValueError(f"target accuracy {target}: must lie strictly between 0 and 1")
    at_low, at_high = accuracy(low), accuracy(high)
    if not at_high <= target <= at_low:
        raise ValueError(f"target accuracy {target} is not between the sampled accuracy {at_low:.3f} at temperature "
                         f"{low:g} and {at_high:.3f} at {high:g}")
    best = (low, at_low) if abs(at_low - target) <= abs(at_high - target) else (high, at_high)
    for _ in range(iterations):
        middle = (low + high) / 2
        value = accuracy(middle)
        if abs(value - target) < abs(best[1] - target):
            best = (middle, value)
        if value > target:
            low = middle
        else:
            high = middle
    return best
