"""One language-model experiment from data to GRPO runs: problems (generated or a local GSM8K
jsonl), the model (built in code or loaded from a local folder), the supervised warm-up (cached
by a key of everything that determines it, the ``lm`` source included) and the GRPO runs of
:func:`rlvr_dynamics.lm.grpo.run_grpo` from one warmed-up checkpoint, in worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from rlvr_dynamics.config import parameter, split_list
from rlvr_dynamics.files import cache_folder, check_fields, write_bytes_atomic
from rlvr_dynamics.lm import grpo
from rlvr_dynamics.lm import model as lm_model
from rlvr_dynamics.lm import task as lm_task
from rlvr_dynamics.lm.warmup import WarmupConfig, WarmupResult, supervised_warmup


@dataclass(frozen=True)
class LMExperimentConfig:
    """A language-model experiment (Section 5.2): task, model, supervised warm-up and the GRPO runs
    from one warmed-up checkpoint. The Figure-2 chapter's parameters (with its claim threshold) and
    the language-model comparison of the two-stage chapter."""

    task: str = parameter("generated task: 'arithmetic' (a+b=) or 'word' (GSM8K format, '#### n')", "str",
                          choices=lm_task.TASKS)
    digits: int = parameter("digits of the numbers in generated problems", "int", low=1, high=6)
    problems: int = parameter("generated problems (train + validation)", "int", low=16, high=10_000_000)
    validation_size: int = parameter("held-out validation problems (the last ones)", "int", low=8, high=1_000_000)
    dataset_path: str = parameter("local GSM8K-format jsonl to use instead of generated problems ('' : generate)",
                                  "str")
    model_name_or_path: str = parameter("local Hugging Face model folder ('' : a fresh Qwen2-architecture model)",
                                        "str")
    model_preset: str = parameter("size of the fresh model: 'ci' (≈0.14 M parameters) or 'gpu' (≈25 M)", "str",
                                  choices=tuple(lm_model.MODEL_PRESETS))
    warmup_target: float = parameter("supervised warm-up stops at this sampled validation accuracy (0: no warm-up)",
                                     "float", low=0.0, high=0.95)
    warmup_max_steps: int = parameter("most warm-up steps", "int", low=1, high=1_000_000)
    warmup_batch_size: int = parameter("warm-up problems per step", "int", low=1, high=65_536)
    warmup_learning_rate: float = parameter("warm-up AdamW learning rate", "float", low=1e-7, high=1.0)
    loss_types: str = parameter("TRL loss_type of each run, comma-separated (grpo, dr_grpo, dapo, bnpo)", "str")
    scale_rewards: str = parameter("TRL scale_rewards of each run, or one for all (group, batch, none)", "str")
    learning_rates: str = parameter("GRPO learning rate of each run, or one for all", "str")
    advantage_filters: str = parameter("completions that update in each run: 'all' (GRPO), 'negative' (GRPO-N) "
                                       "or 'positive'; one or a comma list", "str")
    prompt_weightings: str = parameter("per-prompt weighting of each run: 'none' or 'safe_step' (the Many-prompts "
                                       "chapter's rule; needs scale_rewards 'none'); one or a comma list", "str")
    optimizer: str = parameter("GRPO optimizer of each run: 'adamw' (the paper's runs) or 'sgd'; one or a comma "
                               "list", "str")
    lr_schedules: str = parameter("learning-rate schedule of each run after the warm-up: 'constant' or 'cosine' "
                                  "(to 0 at the run's last step); one or a comma list", "str")
    lr_warmup_steps: int = parameter("linear learning-rate warm-up steps of every run", "int", low=0,
                                     high=1_000_000)
    importance_sampling_levels: str = parameter("importance ratio of each run: 'token' (GRPO) or 'sequence' (GSPO); "
                                                "one or a comma list", "str")
    num_iterations: int = parameter("optimizer steps on each generated batch, every run (1: on-policy; > 1 turns the "
                                    "gap tracking off)", "int", low=1, high=64)
    epsilon: float = parameter("clip range of the token-level ratio, [1 − epsilon, 1 + epsilon_high] (acts only when "
                               "num_iterations > 1)", "float", low=1e-6, high=0.99)
    epsilon_high: float = parameter("upper clip range of the token-level ratio (0: the same as epsilon)", "float",
                                    low=0.0, high=10.0)
    sequence_epsilon: float = parameter("clip range of the sequence-level (GSPO) ratio, [1 − sequence_epsilon, 1 + "
                                        "sequence_epsilon_high] (GSPO's paper: 3e-4)", "float", low=1e-6, high=0.99)
    sequence_epsilon_high: float = parameter("upper clip range of the sequence-level ratio (GSPO's paper: 4e-4; 0: the "
                                             "same as sequence_epsilon)", "float", low=0.0, high=10.0)
    steps: int = parameter("GRPO steps of each run", "int", low=1, high=1_000_000)
    run_steps: str = parameter("steps of each run, comma list ('' : every run takes 'steps')", "str")
    grpo_seeds: int = parameter("GRPO seeds: every run is repeated from the same checkpoint with this many seeds",
                                "int", low=1, high=64)
    tracked_prompts: int = parameter("validation prompts tracked at every step for Theorem 1 per prompt (0: none)",
                                     "int", low=0, high=4096)
    tracked_samples: int = parameter("completions per tracked prompt and step", "int", low=2, high=4096)
    tracked_runs: str = parameter("runs (1-based, comma list) whose first GRPO seed tracks prompts ('' : none)",
                                  "str")
    completions_per_step: int = parameter("completions per GRPO step (prompts × num_generations)", "int", low=2,
                                          high=1_000_000)
    num_generations: int = parameter("G, completions per prompt (≥ 2, divides completions_per_step)", "int",
                                     low=1, high=4096)
    max_completion_length: int = parameter("longest completion in tokens", "int", low=1, high=32_768)
    temperature: float = parameter("sampling temperature (training and validation)", "float", low=0.01, high=10.0)
    per_prompt_every: int = parameter("steps between per-prompt gap measurements", "int", low=1, high=1_000_000)
    eval_every: int = parameter("steps between validation-accuracy checks", "int", low=1, high=1_000_000)
    eval_problems: int = parameter("validation problems in each check", "int", low=1, high=1_000_000)
    eval_samples: int = parameter("sampled completions per validation problem", "int", low=1, high=1024)
    pass_problems: int = parameter("validation problems whose correct counts (for pass@k) are recorded at every "
                                   "check (0: none)", "int", low=0, high=1_000_000)
    pass_samples: int = parameter("sampled completions per pass@k problem", "int", low=1, high=65_536)
    workers: int = parameter("GRPO runs executed at once in separate processes (CPU threads are split)", "int",
                             low=1, high=64)

    def check(self) -> None:
        if self.validation_size >= self.problems:
            raise ValueError(f"parameter 'validation_size' = {self.validation_size} is out of range: allowed "
                             f"validation_size < problems = {self.problems}")
        if self.pass_problems > self.validation_size:
            raise ValueError(f"parameter 'pass_problems' = {self.pass_problems} is out of range: allowed "
                             f"pass_problems ≤ validation_size = {self.validation_size}")
        if self.eval_problems > self.validation_size:
            raise ValueError(f"parameter 'eval_problems' = {self.eval_problems} is out of range: allowed "
                             f"eval_problems ≤ validation_size = {self.validation_size}")
        # The local model and data are read here, before the notebook's kernel starts, so that a bad
        # file is a one-line error naming the parameter rather than a traceback from inside the run.
        if self.model_name_or_path:
            if not (Path(self.model_name_or_path) / "config.json").is_file():
                raise ValueError(f"parameter 'model_name_or_path' = {self.model_name_or_path!r} is not a local "
                                 "model folder (no config.json); nothing is downloaded")
            try:
                lm_model.check_model_folder(self.model_name_or_path)
            except (ValueError, OSError) as error:
                raise ValueError(f"parameter 'model_name_or_path' = {self.model_name_or_path!r}: {error}") from None
        if self.dataset_path:
            if not Path(self.dataset_path).is_file():
                raise ValueError(f"parameter 'dataset_path' = {self.dataset_path!r} is not a file: expected a "
                                 "GSM8K-format jsonl")
            try:  # every line (GSM8K's 7.5 k problems read in well under a second)
                problems = lm_task.read_gsm8k_jsonl(self.dataset_path, task="word")
            except (ValueError, OSError) as error:
                raise ValueError(f"parameter 'dataset_path' = {self.dataset_path!r}: {error}") from None
            _check_dataset_size(self, len(problems))
        self.run_configs()  # validates the lists and every run's GRPO settings

    def _clip_range(self, level: str) -> dict[str, float | None]:
        """The clip range of a run with importance-sampling ``level``: (epsilon, epsilon_high) at token level,
        (sequence_epsilon, sequence_epsilon_high) at sequence level (an upper value of 0 means the lower one)."""
        low, high = ((self.epsilon, self.epsilon_high) if level == "token"
                     else (self.sequence_epsilon, self.sequence_epsilon_high))
        return {"epsilon": low, "epsilon_high": high or None}

    def run_configs(self) -> list[grpo.GRPORunConfig]:
        """One :class:`GRPORunConfig` per run (lists of length 1 are broadcast)."""
        loss_types = split_list("loss_types", self.loss_types, str, grpo.LOSS_TYPES)
        scales = split_list("scale_rewards", self.scale_rewards, str, grpo.SCALE_REWARDS)
        rates = split_list("learning_rates", self.learning_rates, float)
        filters = split_list("advantage_filters", self.advantage_filters, str, grpo.ADVANTAGE_FILTERS)
        weightings = split_list("prompt_weightings", self.prompt_weightings, str, grpo.PROMPT_WEIGHTINGS)
        optimizers = split_list("optimizer", self.optimizer, str, tuple(grpo.OPTIMIZERS))
        schedules = split_list("lr_schedules", self.lr_schedules, str, tuple(grpo.LR_SCHEDULES))
        levels = split_list("importance_sampling_levels", self.importance_sampling_levels, str, grpo.IMPORTANCE_LEVELS)
        lengths = split_list("run_steps", self.run_steps, int) if self.run_steps else [self.steps]
        lists = (("loss_types", loss_types), ("scale_rewards", scales), ("learning_rates", rates),
                 ("advantage_filters", filters), ("prompt_weightings", weightings), ("optimizer", optimizers),
                 ("lr_schedules", schedules), ("importance_sampling_levels", levels), ("run_steps", lengths))
        runs = max(len(values) for _, values in lists)
        for name, values in lists:
            if len(values) not in (1, runs):
                raise ValueError(f"parameter '{name}' has {len(values)} values for {runs} runs: give 1 or {runs}")
        for rate in rates:
            if not 0 < rate <= 1:
                raise ValueError(f"parameter 'learning_rates' = {self.learning_rates!r}: {rate} is out of range: "
                                 "allowed 0 < learning rate ≤ 1")
        for length in lengths:
            if not 1 <= length <= 1_000_000:
                raise ValueError(f"parameter 'run_steps' = {self.run_steps!r}: {length} is out of range: allowed "
                                 "1 ≤ steps ≤ 1000000")
        tracked = self.tracked_run_numbers()
        if any(number > runs for number in tracked):
            raise ValueError(f"parameter 'tracked_runs' = {self.tracked_runs!r}: there are only {runs} runs")
        configs = []
        for index in range(runs):
            pick = lambda values, index=index: values[index if len(values) > 1 else 0]  # noqa: E731
            config = grpo.GRPORunConfig(
                loss_type=pick(loss_types), scale_rewards=pick(scales), learning_rate=pick(rates),
                advantage_filter=pick(filters), prompt_weighting=pick(weightings),
                steps=pick(lengths), completions_per_step=self.completions_per_step,
                num_generations=self.num_generations, max_completion_length=self.max_completion_length,
                temperature=self.temperature, optimizer=pick(optimizers), lr_schedule=pick(schedules),
                lr_warmup_steps=self.lr_warmup_steps, importance_sampling_level=pick(levels),
                num_iterations=self.num_iterations, **self._clip_range(pick(levels)),
                tracking="measured" if self.num_iterations == 1 else "off",  # the tracking assumes one update a batch
                tracked_prompts=self.tracked_prompts if index + 1 in tracked else 0,
                tracked_samples=self.tracked_samples,
                per_prompt_every=self.per_prompt_every, eval_every=self.eval_every,
                eval_problems=self.eval_problems, eval_samples=self.eval_samples,
                pass_problems=self.pass_problems, pass_samples=self.pass_samples)
            try:
                config.check()
            except ValueError as error:
                raise ValueError(f"run {index + 1}: {error}") from None
            configs.append(config)
        return configs

    def tracked_run_numbers(self) -> list[int]:
        """The runs (1-based) whose first GRPO seed tracks prompts: none without tracked prompts."""
        if not self.tracked_runs or not self.tracked_prompts:
            return []
        numbers = split_list("tracked_runs", self.tracked_runs, int)
        if any(number < 1 for number in numbers):
            raise ValueError(f"parameter 'tracked_runs' = {self.tracked_runs!r}: runs are numbered from 1")
        if self.tracked_prompts > self.validation_size:
            raise ValueError(f"parameter 'tracked_prompts' = {self.tracked_prompts} is out of range: allowed "
                             f"tracked_prompts ≤ validation_size = {self.validation_size}")
        return numbers

    def warmup_config(self) -> WarmupConfig:
        return WarmupConfig(target_accuracy=self.warmup_target, max_steps=self.warmup_max_steps,
                            batch_size=self.warmup_batch_size, learning_rate=self.warmup_learning_rate,
                            eval_every=25, eval_problems=min(128, self.eval_problems), eval_samples=2,
                            max_new_tokens=self.max_completion_length)


_CI = dict(task="arithmetic", digits=2, problems=4500, validation_size=500, dataset_path="", model_name_or_path="",
           model_preset="ci", warmup_target=0.35, warmup_max_steps=3000, warmup_batch_size=256,
           warmup_learning_rate=3e-3, loss_types="grpo,dr_grpo", scale_rewards="group,none", learning_rates="3e-4",
           advantage_filters="all", prompt_weightings="none", optimizer="adamw", lr_schedules="constant",
           lr_warmup_steps=0, importance_sampling_levels="token", num_iterations=1, epsilon=0.2, epsilon_high=0.0,
           sequence_epsilon=3e-4, sequence_epsilon_high=4e-4,
           steps=250, run_steps="", grpo_seeds=1, tracked_prompts=0, tracked_samples=32,
           tracked_runs="", completions_per_step=256, num_generations=8, max_completion_length=8,
           temperature=1.0, per_prompt_every=10, eval_every=25, eval_problems=256, eval_samples=4, pass_problems=0,
           pass_samples=256, workers=2)


PRESETS = {
    # The Figure-2 chapter's ci run: ≈ 3 min on 2 CPU cores: a 0.14 M-parameter model, two runs of 250 steps
    # from one warm-up.
    "ci": _CI,
    # The GPU setting (≈ 5 min on one H200, to be measured: make gpu-check): the 25 M-parameter model on the ci
    # task — two-digit sums, answers of at most 4 tokens, all 5000 the generator allows — which a 0.14 M model
    # learns to 0.35 in a few hundred warm-up steps, so the warm-up reaches 0.3 in minutes (the earlier
    # GSM8K-style word problems with 32-token answers stood at 0.004 after 200 steps); then three runs of 300
    # steps with 21 validation points of 512 problems × 8 samples each (standard error ≤ 0.008), so GRPO has
    # from 0.3 to 1 to move in. Qwen2.5 on GSM8K: set model_name_or_path and dataset_path (see the chapter).
    "paper": dict(_CI, problems=5000, validation_size=1000, model_preset="gpu", warmup_target=0.3,
                  warmup_max_steps=4000, warmup_learning_rate=1e-3, loss_types="grpo,dr_grpo,grpo",
                  scale_rewards="group,none,group", learning_rates="1e-4,1e-4,3e-4", steps=300,
                  completions_per_step=512, per_prompt_every=20, eval_every=15, eval_problems=512, eval_samples=8,
                  workers=1),
}


def load_problems(config: LMExperimentConfig, seed: int) -> tuple[list[lm_task.Problem], list[lm_task.Problem]]:
    """``(train, validation)``: from ``dataset_path`` when given, else generated with ``seed``."""
    if config.dataset_path:
        problems = lm_task.read_gsm8k_jsonl(config.dataset_path, task="word")
        _check_dataset_size(config, len(problems))
    else:
        problems = lm_task.generate_problems(config.task, config.problems, seed, config.digits)
    return lm_task.train_validation_split(problems, config.validation_size)


def _check_dataset_size(config: LMExperimentConfig, size: int) -> None:
    if config.validation_size >= size:
        raise ValueError(f"parameter 'validation_size' = {config.validation_size}: the dataset "
                         f"'{config.dataset_path}' has only {size} problems")


def lm_source_digest(folder: Path = Path(__file__).parent) -> str:
    """Digest of the language-model stack's source (every module of :mod:`rlvr_dynamics.lm`, in
    ``folder``): the code that generates the problems, builds, scores and warms up the model."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def warmup_cache_key(config: LMExperimentConfig, seed: int, device) -> str | None:
    """The key of the warmed-up checkpoint: everything that determines it (task, data size, model
    preset, warm-up settings, seed, device type, torch and transformers versions, and the source of
    the ``lm`` package, so that an edit there never reuses a stale checkpoint). ``None`` — not
    cached — when the model or the data come from local files (their content is not hashed)."""
    if config.model_name_or_path or config.dataset_path or config.warmup_target <= 0:
        return None
    fields = dict(task=config.task, digits=config.digits, problems=config.problems,
                  validation_size=config.validation_size, model_preset=config.model_preset,
                  warmup=dataclasses.asdict(config.warmup_config()), seed=seed,
                  device=torch.device(device).type, torch=torch.__version__,
                  transformers=metadata.version("transformers"), lm_source=lm_source_digest())
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


_ENTRY_FIELDS = {"steps": int, "reached_target": bool, "history": list, "parameter_count": int, "digests": dict}


def _file_digests(folder: Path) -> dict[str, str]:
    """The sha256 of every file under ``folder``, by relative path."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def read_warmup_entry(entry: Path) -> tuple[WarmupResult, int]:
    """``(warm-up result, parameter count)`` of a warm-up cache entry, once it is checked whole.

    ``warmup.json`` must hold the fields :func:`prepare_model` writes, and ``model/`` exactly the
    files whose sha256 it records (a truncated weights file loads as garbage or not at all, so
    the bytes are compared; an entry from before the digests were recorded does not pass).
    Otherwise a one-line ``ValueError`` says which file is wrong.
    """
    try:
        record = json.loads((entry / "warmup.json").read_bytes())
    except FileNotFoundError:
        raise ValueError("warmup.json is missing") from None
    except OSError as error:
        raise ValueError(f"warmup.json: {error.strerror}") from None
    except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not text
        raise ValueError(f"warmup.json is not valid JSON: {getattr(error, 'msg', 'not UTF-8')}") from None
    if not isinstance(record, dict):
        raise ValueError("warmup.json: not a JSON object")
    check_fields(record, _ENTRY_FIELDS, "warmup.json")
    history = record["history"]
    if not all(isinstance(h, list) and len(h) == 2 and all(isinstance(v, (int, float)) for v in h) for h in history):
        raise ValueError("warmup.json: field 'history' is not a list of [step, accuracy] pairs")
    model = entry / "model"
    if not model.is_dir():
        raise ValueError("model/ is missing")
    found = _file_digests(model)
    for name in sorted(set(found) | set(record["digests"])):
        if name not in found:
            raise ValueError(f"model/{name} is missing")
        if name not in record["digests"]:
            raise ValueError(f"model/{name} is not recorded in warmup.json")
        if found[name] != record["digests"][name]:
            raise ValueError(f"model/{name} differs from its sha256 in warmup.json")
    try:
        lm_model.check_model_folder(model)  # also an entry whose recorded files are not a model
    except (ValueError, OSError) as error:
        raise ValueError(f"model/: {error}") from None
    result = WarmupResult(record["steps"], record["reached_target"], [(int(s), float(a)) for s, a in history])
    return result, record["parameter_count"]


def prepare_model(config: LMExperimentConfig, train, validation, seed: int, device, folder: str | Path,
                  progress: bool = False, cache: bool = True) -> tuple[Path, WarmupResult | None, int]:
    """Load or build the model, warm it up to the target, and save it to ``folder``.

    Every GRPO run then starts from this folder through :func:`lm_model.load_model` — the same
    code that loads a real model. Returns ``(folder, warm-up result or None, parameter count)``.

    With ``cache`` the warmed-up checkpoint is also kept under the cache folder
    (:func:`rlvr_dynamics.files.cache_folder`), keyed by :func:`warmup_cache_key`, and a later call with the same
    key copies it instead of training again (the warm-up is deterministic on CPU, so the copy is
    what a rerun would produce). The cache entry is written to a temporary folder and renamed,
    so an interrupted warm-up leaves nothing behind; an entry damaged since (see
    :func:`read_warmup_entry`) is reported on stderr, discarded and computed again.
    """
    folder = Path(folder)
    key = warmup_cache_key(config, seed, device) if cache else None
    entry = None
    if key is not None:
        entry = cache_folder() / "lm-warmup" / key
        if entry.exists():
            try:
                result, count = read_warmup_entry(entry)
            except ValueError as error:
                print(f"warm-up cache entry {entry} is damaged ({error}): discarding it and warming up again",
                      file=sys.stderr)
                shutil.rmtree(entry, ignore_errors=True)
            else:
                if folder.exists():
                    shutil.rmtree(folder)
                shutil.copytree(entry / "model", folder)
                return folder, result, count
    if config.model_name_or_path:
        model, tokenizer = lm_model.load_model(config.model_name_or_path, device)
    else:
        tokenizer = lm_model.byte_tokenizer()
        model = lm_model.build_model(config.model_preset, tokenizer, seed, device)
    result = None
    if config.warmup_target > 0:
        generator = torch.Generator(device=device).manual_seed(seed)
        result = supervised_warmup(model, tokenizer, train, validation, config.warmup_config(), generator, progress)
    lm_model.save_model(model, tokenizer, folder)
    count = lm_model.parameter_count(model)
    if entry is not None and result is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=entry.parent))
        try:
            shutil.copytree(folder, staging / "model")
            (staging / "warmup.json").write_text(json.dumps(
                {"steps": result.steps, "reached_target": result.reached_target,
                 "history": [list(h) for h in result.history], "parameter_count": count,
                 "digests": _file_digests(staging / "model")}))
            os.replace(staging, entry)
        except OSError:  # another process filled the entry first, or the disk refused: keep going uncached
            shutil.rmtree(staging, ignore_errors=True)
    return folder, result, count


def _run_one(job) -> grpo.GRPORun:
    folder, train, validation, run_config, seed, device, threads, progress = job
    if threads:
        torch.set_num_threads(threads)  # this is a worker process of its own
    model, tokenizer = lm_model.load_model(folder, device)
    return grpo.run_grpo(model, tokenizer, train, validation, run_config, seed, device, progress)


def run_all(config: LMExperimentConfig, folder: str | Path, train, validation, seed: int, device,
            progress: bool = False) -> list[grpo.GRPORun]:
    """Every run of the chapter, each from the checkpoint in ``folder``, with the same ``seed``.

    With ``workers > 1`` (CPU only) the runs execute in that many spawned processes, the CPU
    threads split between them (tiny models leave cores idle; this is ≈1.7× faster on 2 cores).
    Each process also keeps TRL's global seeding out of the caller's interpreter.
    """
    return run_seeds(config, folder, train, validation, [seed], device, progress)[seed]


def grpo_seed_list(seed: int, count: int) -> list[int]:
    """The GRPO seeds of a book ``seed``: count·seed + i, i < count — disjoint across book seeds, the first
    at seed 0 is 0. The warm-up and the problems stay seeded by the book's seed, so every GRPO seed
    starts from the same cached checkpoint."""
    return [count * seed + index for index in range(count)]


def run_cache_keys(folder: str | Path, train, validation, runs: list[tuple[grpo.GRPORunConfig, int]], device,
                   threads: int) -> list[str | None]:
    """The key of each GRPO run (settings, seed) of ``runs`` from the checkpoint in ``folder``: everything that
    determines it — the checkpoint's files, the training and validation problems in their order, the run's
    settings, its seed, the device type and CPU threads, the torch, transformers and trl versions and the source
    of the ``lm`` package (the code that trains). ``None`` — not cached — where ``folder`` is not a checkpoint
    folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return [None] * len(runs)
    problems = [[repr(problem) for problem in problems] for problems in (train, validation)]
    shared = dict(checkpoint=_file_digests(folder), problems=hashlib.sha256(json.dumps(problems).encode()).hexdigest(),
                  device=torch.device(device).type, threads=threads, lm_source=lm_source_digest(),
                  versions={name: metadata.version(name) for name in ("torch", "transformers", "trl")})
    return [hashlib.sha256(json.dumps(dict(shared, run=dataclasses.asdict(run_config), seed=seed),
                                      sort_keys=True).encode()).hexdigest()[:24] for run_config, seed in runs]


def _cached_run(key: str | None) -> grpo.GRPORun | None:
    """The run cached under ``key``, or None; an entry that cannot be read is reported on stderr and removed."""
    entry = None if key is None else cache_folder() / "lm-runs" / f"{key}.pkl"
    if entry is None or not entry.is_file():
        return None
    try:
        run = pickle.loads(entry.read_bytes())
        if not isinstance(run, grpo.GRPORun):
            raise TypeError(f"holds a {type(run).__name__}")
    except Exception as error:  # noqa: BLE001 — any damage: train again
        print(f"GRPO run cache entry {entry} is damaged ({error}): training it again", file=sys.stderr)
        entry.unlink(missing_ok=True)
        return None
    return run


def run_seeds(config: LMExperimentConfig, folder: str | Path, train, validation, seeds: list[int], device,
              progress: bool = False, cache: bool = True) -> dict[int, list[grpo.GRPORun]]:
    """Every run of ``config`` once per GRPO seed of ``seeds`` (GRPO seed → runs, in run order), all from
    the checkpoint in ``folder`` and in one pool of ``workers`` processes (as :func:`run_all`); the
    prompts of ``tracked_runs`` are tracked at the first seed only, and those runs start first (the
    slowest).

    With ``cache`` every finished run is also kept under the cache folder, keyed by :func:`run_cache_keys`, and a
    later call that asks for the same run gets it from there instead of training again — as the warm-up
    (:func:`prepare_model`): a run on the CPU is deterministic (``tests/lm``), so the copy is what training again
    would give. The book's second execution of a chapter (nbval) then re-checks its analysis in minutes."""
    import concurrent.futures
    import multiprocessing

    configs = config.run_configs()
    jobs = []
    for position, seed in enumerate(seeds):
        for index, run_config in enumerate(configs):
            if position and run_config.tracked_prompts:
                run_config = dataclasses.replace(run_config, tracked_prompts=0)
            jobs.append((seed, index, run_config))
    jobs.sort(key=lambda job: job[2].tracked_prompts == 0)  # stable: tracked runs first
    workers = min(config.workers, len(jobs)) if str(device) == "cpu" else 1
    threads = max(1, torch.get_num_threads() // workers) if workers > 1 else 0
    keys = (run_cache_keys(folder, train, validation, [(c, s) for s, _, c in jobs], device,
                           threads or torch.get_num_threads()) if cache else [None] * len(jobs))
    results = [_cached_run(key) for key in keys]
    missing = [position for position, run in enumerate(results) if run is None]
    arguments = [(str(folder), train, validation, jobs[p][2], jobs[p][0], str(device), threads, progress)
                 for p in missing]
    if workers == 1:  # (with more, a pool even for one missing run: _run_one sets the threads of its process)
        trained = [_run_one(job) for job in arguments]
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            trained = list(pool.map(_run_one, arguments))
    for position, run in zip(missing, trained, strict=True):
        results[position] = run
        if keys[position] is not None:
            with contextlib.suppress(OSError):  # a full or read-only disk: keep going uncached
                write_bytes_atomic(cache_folder() / "lm-runs" / f"{keys[position]}.pkl", pickle.dumps(run))
    runs = {seed: [None] * len(configs) for seed in seeds}
    for (seed, index, _), run in zip(jobs, results, strict=True):
        runs[seed][index] = run
    return runs


def run_label(run: grpo.GRPORun) -> str:
    c = run.config
    label = f"{c.loss_type} / {c.scale_rewards} / lr {c.learning_rate:g}"
    label = label if c.optimizer == "adamw" else f"{label} / {c.optimizer}"
    label = label if c.lr_schedule == "constant" else f"{label} / {c.lr_schedule}"
    label = label if c.prompt_weighting == "none" else f"{label} / {c.prompt_weighting} weights"
    label = label if c.importance_sampling_level == "token" else f"{label} / GSPO"
    return label if c.advantage_filter == "all" else f"{label} / {c.advantage_filter} only"
