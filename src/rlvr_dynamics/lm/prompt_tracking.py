"""Theorem 1 per prompt on a language model: J_q(k) and M_q(k) on fixed validation prompts.

Figure 2 plots a batch average; Theorem 1 is a statement about one prompt: its log-odds gain is
bounded below through M_q(K) = Σ_k η_k [Δμ_q(k)]₊, the cumulative alignment of the update actually
applied with that prompt's own gap g⁺_q − g⁻_q. :class:`PromptTracker` measures both at every step
of a GRPO run, on ``len(problems)`` fixed prompts:

* at θ_k it samples ``samples`` completions of each prompt: Ĵ_q(k), and the completions whose
  scores estimate g⁺_q and g⁻_q (the conditional means of ∇log π over the correct and the
  incorrect ones);
* once the optimizer has applied u_k = θ_{k+1} − θ_k, the inner product
  η_k Δμ_q(k) = ⟨u_k, ḡ⁺_q − ḡ⁻_q⟩ (at θ_k) is one forward-mode derivative of every sampled
  sequence's log-probability along u_k (:func:`log_prob_derivatives`), averaged per outcome —
  no per-prompt backward pass and no second copy of the gradient.

A prompt whose samples are all correct or all wrong at step k has no estimate of one side of its
gap: its inner product is NaN there (it adds nothing to M_q).
"""

from __future__ import annotations

import contextlib

import pandas as pd
import torch

from rlvr_dynamics.lm.scoring import sample_completions, sequence_log_probs
from rlvr_dynamics.lm.task import Problem, correctness_reward


def _unflatten(flat: torch.Tensor, named: list[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A flat vector (P,) as a name → tensor dict shaped and typed like ``named``'s parameters."""
    total = sum(parameter.numel() for _, parameter in named)
    if flat.shape != (total,):  # checked first: a short vector would otherwise fail inside view_as
        raise ValueError(f"a flat vector of shape {tuple(flat.shape)} does not match {total} parameters")
    out, start = {}, 0
    for name, parameter in named:
        out[name] = flat[start:start + parameter.numel()].view_as(parameter).to(parameter.dtype)
        start += parameter.numel()
    return out


@contextlib.contextmanager
def _eager_attention(model):
    """The model with eager attention for the block: the CPU kernel of PyTorch's scaled-dot-product
    attention has no forward-mode derivative; eager attention computes the same function."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


def log_prob_derivatives(model, point: torch.Tensor, direction: torch.Tensor, prompt_ids, prompt_mask,
                         completion_ids, completion_mask, batch_size: int = 512, temperature: float = 1.0
                         ) -> torch.Tensor:
    """d/dε log π_{θ+εv}(o_i | q_i) at ε = 0, θ = ``point``, v = ``direction`` (both flat (P,), over the
    trainable parameters in ``model.named_parameters()`` order), for every row: ⟨v, ∇log π(o_i | q_i)⟩
    by forward-mode automatic differentiation (``torch.func.jvp``), ``batch_size`` rows at a time; π is
    the policy at ``temperature`` (the one sampled and trained).
    The model's own parameters are not changed.                                               # (B,)"""
    from torch.func import functional_call, jvp

    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    primals, tangents = _unflatten(point, named), _unflatten(direction, named)
    derivatives = []
    with _eager_attention(model), torch.no_grad():
        for start in range(0, prompt_ids.shape[0], batch_size):
            rows = slice(start, start + batch_size)

            def scores(parameters, rows=rows):
                call = lambda **inputs: functional_call(model, parameters, (), inputs)  # noqa: E731
                return sequence_log_probs(call, prompt_ids[rows], prompt_mask[rows], completion_ids[rows],
                                          completion_mask[rows], temperature)

            derivatives.append(jvp(scores, (primals,), (tangents,))[1].double())
    return torch.cat(derivatives)


def outcome_inner_products(derivatives: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """(12) per prompt, ⟨v, ḡ⁺_q − ḡ⁻_q⟩: the mean of ``derivatives`` (Q, S) over the correct samples minus
    the mean over the incorrect ones (``correct`` (Q, S) bool); NaN where a prompt lacks one outcome.  # (Q,)"""
    correct = correct.bool()
    n_plus, n_minus = correct.sum(-1), (~correct).sum(-1)
    plus = torch.where(correct, derivatives, 0.0).sum(-1) / n_plus.clamp(min=1)
    minus = torch.where(~correct, derivatives, 0.0).sum(-1) / n_minus.clamp(min=1)
    return torch.where((n_plus > 0) & (n_minus > 0), plus - minus, torch.nan)


class PromptTracker:
    """Ĵ_q(k) and η_k Δμ_q(k) of fixed prompts at every step of a run (see the module docstring).

    Call :meth:`sample` at θ_k (before the step), then :meth:`inner_products` with θ_k and the update
    u_k once it is applied; :meth:`sample` once more at the end gives Ĵ_q(K). ``records`` holds one
    row per (step, prompt): ``step``, ``prompt``, ``successes`` (of ``samples``) and, for the steps
    that were taken, ``inner`` = η_k Δμ_q(k) and ``step_length`` = η_k = ‖u_k‖.
    """

    def __init__(self, model, tokenizer, problems: list[Problem], samples: int, max_new_tokens: int,
                 temperature: float, generator: torch.Generator):
        if samples < 2:
            raise ValueError(f"tracked samples = {samples}: a prompt's gap needs at least 2 samples per step")
        if not problems:
            raise ValueError("no prompts to track")
        self.model, self.tokenizer, self.problems = model, tokenizer, problems
        self.samples, self.max_new_tokens, self.temperature = samples, max_new_tokens, temperature
        self.generator = generator
        self.records: list[dict] = []
        self._batch = None
        device = next(model.parameters()).device
        encoded = tokenizer([p.prompt for p in problems for _ in range(samples)], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
        self._prompt_ids, self._prompt_mask = encoded["input_ids"], encoded["attention_mask"]

    def sample(self, step: int) -> None:
        """Draw ``samples`` completions of every tracked prompt at the current parameters (step ``step``)."""
        model, tokenizer = self.model, self.tokenizer
        was_training = model.training
        model.eval()
        try:
            ids, mask = sample_completions(model, self._prompt_ids, self._prompt_mask, self.max_new_tokens,
                                           tokenizer.eos_token_id, tokenizer.pad_token_id, self.generator,
                                           self.temperature)  # (Q·S, L)
        finally:
            model.train(was_training)
        texts = tokenizer.batch_decode(ids * mask + tokenizer.pad_token_id * (1 - mask), skip_special_tokens=True)
        answers = [str(p.answer) for p in self.problems for _ in range(self.samples)]
        correct = torch.tensor(correctness_reward(texts, answers)).view(len(self.problems), self.samples) > 0.5
        self._batch = (step, ids, mask, correct)
        for prompt, successes in enumerate(correct.sum(-1).tolist()):
            self.records.append({"step": step, "prompt": prompt, "successes": successes})

    def inner_products(self, point: torch.Tensor, update: torch.Tensor) -> None:
        """η_k Δμ_q(k) = ⟨u_k, ḡ⁺_q − ḡ⁻_q⟩ at θ_k = ``point``, from the completions of the last :meth:`sample`."""
        if self._batch is None:
            raise RuntimeError("inner_products needs the completions of a sample() at the same step")
        step, ids, mask, correct = self._batch
        derivatives = log_prob_derivatives(self.model, point, update, self._prompt_ids, self._prompt_mask, ids, mask,
                                           temperature=self.temperature).view(correct.shape)  # (Q, S)
        inner = outcome_inner_products(derivatives, correct)
        length = float(update.norm())
        for record in self.records[-len(self.problems):]:
            record.update(inner=float(inner[record["prompt"]]), step_length=length)
        self._batch = None

    def frame(self) -> pd.DataFrame:
        """``records`` as a frame, with the success rate ``value`` = successes / samples."""
        frame = pd.DataFrame(self.records, columns=["step", "prompt", "successes", "inner", "step_length"])
        return frame.assign(value=frame["successes"] / self.samples)
