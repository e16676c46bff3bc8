"""The registry of the book's notebooks: name → file, chapter module, config dataclass and presets
(book order).

A notebook's spec is built on first use from its chapter module ``rlvr_dynamics.chapters.NAME``
(the config class named here and the module's ``PRESETS``), so a notebook that asks for its own spec
imports its own chapter and no other: what a notebook executes — and so the cache key of its
execution (:func:`rlvr_dynamics.book.runner.code_dependencies`) — is its own chapter's code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from rlvr_dynamics.book.params import NotebookSpec, Variation
from rlvr_dynamics.config import ParameterError

CHAPTERS_PACKAGE = "rlvr_dynamics.chapters"
# name: (chapter title, its config class in chapters/NAME.py, the presets at which the chapter's
# empirical findings were measured). The source is notebooks/NAME.md. Book order.
_CHAPTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gradient_gap": ("Problem set-up and the Gradient Gap", "GradientGapConfig", ("ci",)),
    "trajectory_theory": ("Trajectory-level theory: Lemma 1, Theorems 1–2, Corollary 1", "TrajectoryConfig", ("ci",)),
    "token_theory": ("Token-level theory: response length, Theorems 3–4 and length normalization", "TokenConfig",
                     ("ci",)),
    "figure1": ("REINFORCE on contextual bandits", "Figure1Config", ("ci", "paper")),
    "figure2": ("GRPO on language models: the cumulative gap, the clock and accuracy", "Figure2Config", ("ci",)),
    "two_stage": ("Two-stage dynamics and negative-only gradients (GRPO-N)", "TwoStageConfig", ("ci",)),
    "many_prompts": ("Many prompts: conflicting gaps, stalls and prompt-adaptive updates", "ManyPromptsConfig",
                     ("ci",)),
    "boundary": ("The capability boundary: pass@k, GSPO and GSPO-N", "BoundaryConfig", ("ci",)),
    "performance": ("Appendix: performance", "PerformanceConfig", ("ci",)),
}

# name: (what the `paper` preset changes, the hardware it wants and its time; two variations worth trying),
# shown in the chapter's "Rerun this chapter" box (rlvr_dynamics.book.rerun). Every parameter is validated.
_RERUN: dict[str, tuple[str, tuple[Variation, ...]]] = {
    "gradient_gap": (
        "500 bandits and 64 token policies (V = 5, T = 7: every response enumerated), ten times the Monte-Carlo "
        "samples. A CPU is enough.",
        (Variation({"vocab_size": 5, "max_length": 7},
                   "The paper preset's token policies: the identity checked on 5⁷ ≈ 78 000 enumerated responses "
                   "instead of 4⁵ = 1 024."),
         Variation({"theta_scale": 3.0},
                   "More peaked random policies push J towards 0 and 1, where the factor J(1 − J) of the identity "
                   "is small: compare the gap alignments and GRPO's effective step with the page's."))),
    "trajectory_theory": (
        "Runs of 2 000 steps, a 121-point step-size sweep, 41 × 41 phase diagrams and five Section-5.1 problems "
        "of 2 000 steps. A CPU is enough.",
        (Variation({"alignment": 0.005},
                   "Half the gap alignment Δμ of the Theorem-2 instance: its step-size window narrows; compare "
                   "where the sweep's runs start to collapse with the bound the chapter prints."),
         Variation({"initial_value": 0.1},
                   "Start the Theorem-2 instance at J₀ = 0.1 instead of 0.3, further from success."))),
    "token_theory": (
        "Lengths up to T = 1 024 (512 for the majority verifier), 16 instances, 100 exact steps, and sampled "
        "training up to T = 256 with 32 seeds per setting: long on a CPU; `device auto` uses a GPU when there is "
        "one.",
        (Variation({"verifier": "contains"},
                   "A verifier that accepts the answer token anywhere in the response instead of at its end: "
                   "does the length law of the safe step still hold?"),
         Variation({"verifier": "majority"},
                   "A verifier for which every token counts (more than half must be the answer token); its cost "
                   "grows like T², so its lengths stop at majority_longest_length."))),
    "figure1": (
        "The paper's 20 seeds and a 16-point step-size sweep, with the NumPy cross-check over all 2 000 steps; the "
        "main run is the paper's workload at both presets (1.4 s in the engine on 2 cores, see the performance "
        "appendix). A CPU is enough.",
        (Variation({"step_size": 1.0, "fallback": "nearest"},
                   "Ten times the paper's step size α, drawing the nearest context when the band is empty: "
                   "overshooting steps and the Figure-1 panels far from the safe regime."),
         Variation({"band_low": 0.0, "band_high": 1.0},
                   "No curriculum band: every pool context can be drawn, including those already solved or "
                   "hopeless, whose J(1 − J) gives tiny steps."))),
    "figure2": (
        "The same design — AdamW with warm-up and cosine, AdamW at a 20× smaller constant rate, SGD — on the 25 M-"
        "parameter model, warmed up on the same two-digit sums, runs of 200–300 steps with 512 completions and "
        "validation points of 4 096 samples, three GRPO seeds: a GPU (`device auto` picks CUDA; `.ci/gpu-figure2` "
        "records it). With `-p model_name_or_path` and `-p dataset_path`, Qwen2.5 on GSM8K from local files "
        "(nothing is downloaded).",
        (Variation({"optimizer": "sgd", "learning_rates": "0.1,0.3,1.0", "lr_schedules": "constant"},
                   "Three SGD runs at constant rates ten times apart: the update is the gradient in every run, so "
                   "only the step length differs, the setting in which the cumulative gap has its best chance."),
         Variation({"start_accuracy": 0.0, "temperature": 1.0, "warmup_target": 0.35},
                   "The warm-up's own operating point, sampled at temperature 1: a narrower accuracy range, the "
                   "setting of the chapter's first version."))),
    "two_stage": (
        "512 seeds, runs of 10 000 steps, a finer grid of π_O(0), a ten-fold Monte-Carlo check and 500 GRPO steps "
        "on the language model. A CPU is enough for the bandit; the language model prefers a GPU.",
        (Variation({"reward_model": "bernoulli", "group_size": 4},
                   "A noisy verifier (a reward of 1 with probability r) and smaller groups: the two stages blur; "
                   "compare the switch and takeover times."),
         Variation({"scale_rewards": "none"},
                   "Dr. GRPO's unscaled advantages instead of GRPO's division by the group's standard deviation."))),
    "many_prompts": (
        "32 prompts of lengths up to 16, 32 evaluation and 8 tuning problems per regime, runs of 2 000 steps and "
        "long runs of 20 000, a ten-point step-size grid, and 300 language-model steps at three GRPO seeds. A CPU "
        "is enough for the exact models; the language model prefers a GPU.",
        (Variation({"lengths": "2"},
                   "Every prompt a one-token bandit prompt: do the stalls and the rules' ranking survive without "
                   "length differences?"),
         Variation({"prompts_per_step": 1, "band_low": 0.1, "band_high": 0.9},
                   "One prompt per step, as in Figure 1's REINFORCE, for the band and uniform selections: the "
                   "curriculum then decides every step."))),
    "boundary": (
        "32 problems per variant, runs of 3 000 sampled steps, and 400 language-model steps per variant with 64 hard "
        "problems × 512 samples for pass@k at three GRPO seeds. A CPU is enough for the exact model; the language "
        "model prefers a GPU.",
        (Variation({"answer_rule": "random"},
                   "Answers independent of the prompt features: no parameter solves every prompt, so the prompts "
                   "compete; compare how far each variant's pass@k at large k falls below the base model's."),
         Variation({"inner_steps": 1},
                   "One update per sampled batch: GSPO's update is then GRPO's (Proposition B13) and GSPO-N's is "
                   "GRPO-N's; compare their curves with the page's."))),
    "performance": (
        "The page reads the committed benchmark records: both presets show the same page; GPU records appear "
        "when `make gpu-check` runs on a CUDA machine.",
        (Variation({}, "Time the bandit engine on your machine (about 3 min on 2 cores) and see it as a new "
                       "column of the tables.", before=".venv/bin/rlvr-book bench --output data/benchmarks/mine.json"),
         Variation({}, "Time gradient-gap tracking in GRPO on your machine (about 2 min on 2 cores).",
                   before=".venv/bin/rlvr-book bench-lm --output data/benchmarks/lm/mine.json"))),
}


class _Registry(Mapping[str, NotebookSpec]):
    """The notebooks in book order; a spec is built (its chapter module imported) on first access."""

    def __init__(self, chapters: Mapping[str, tuple[str, str, tuple[str, ...]]]) -> None:
        self._chapters = dict(chapters)
        self._specs: dict[str, NotebookSpec] = {}

    def __getitem__(self, name: str) -> NotebookSpec:
        if name not in self._specs:
            title, config, findings_measured_at = self._chapters[name]
            module = importlib.import_module(f"{CHAPTERS_PACKAGE}.{name}")
            paper_note, variations = _RERUN[name]
            self._specs[name] = NotebookSpec(name, title, f"notebooks/{name}.md", getattr(module, config),
                                             module.PRESETS, findings_measured_at, variations, paper_note)
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._chapters)

    def __len__(self) -> int:
        return len(self._chapters)


NOTEBOOKS: Mapping[str, NotebookSpec] = _Registry(_CHAPTERS)


def notebook_spec(name: str) -> NotebookSpec:
    """The spec of notebook ``name``; a :class:`ParameterError` lists the known ones."""
    if name not in _CHAPTERS:
        raise ParameterError(f"notebook '{name}' is unknown: allowed {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[name]


def resolve_parameters(name: str, values: Mapping[str, Any]):
    """Validate a notebook's parameters (its ``locals()``): ``(RunSettings, config)``."""
    return notebook_spec(name).resolve(values)
