"""Verifiable math tasks the code generates, GSM8K-format jsonl, the answer extractor and the reward.

Two generated tasks (seeded, with disjoint train / validation splits):

* ``"arithmetic"``: ``"37+45="`` → ``"82"`` (sums of two numbers with ``digits`` digits);
* ``"word"``: GSM8K-style word problems whose reference answer ends with a ``#### n`` line, e.g.
  ``"Ava has 12 pens. She buys 7 more. How many pens does Ava have?"`` →
  ``"12+7=19\\n#### 19"``.

A real GSM8K file (``{"question": …, "answer": "… #### 72"}`` per line) is read by
:func:`read_gsm8k_jsonl`, which names the line of any malformed record instead of skipping it.
The reward of a completion is 1 when :func:`extract_answer` finds the reference number in it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

TASKS = ("arithmetic", "word")
"""The generated tasks: ``"arithmetic"`` (``a+b=``) and ``"word"`` (GSM8K format, ``#### n``)."""

PROMPT_TEMPLATES = {"arithmetic": "{question}", "word": "Q: {question}\nA: "}
"""How a question becomes the model's prompt: arithmetic prompts are the bare ``a+b=``."""

_FINAL_ANSWER = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


@dataclass(frozen=True)
class Problem:
    """One verifiable problem.

    Attributes:
        question: the question text (GSM8K ``question``).
        solution: the reference completion (GSM8K ``answer``: working, then ``#### n``; or just ``n``).
        answer: the reference number, as an exact fraction (GSM8K answers are integers).
        prompt: what the model is conditioned on.
    """

    question: str
    solution: str
    answer: Fraction
    prompt: str


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task '{task}' is unknown: allowed {', '.join(repr(t) for t in TASKS)}")


def parse_number(text: str) -> Fraction | None:
    """``"1,234"``, ``"$3.50"``, ``"-7"``, ``"19."`` → an exact :class:`Fraction`; ``None`` if not a number."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(completion: str) -> Fraction | None:
    """The number a completion answers with.

    The number after the last ``####`` marker when there is one (GSM8K's convention), otherwise
    the last number in the text (``"The answer is $1,234."`` → 1234). ``None`` when there is none.
    """
    marked = _FINAL_ANSWER.findall(completion)
    if marked:
        return parse_number(marked[-1])
    numbers = _NUMBER.findall(completion)
    return parse_number(numbers[-1]) if numbers else None


def correctness_reward(completions: list[str], answer: list[str], **_) -> list[float]:
    """The verifiable reward, in TRL's reward-function signature: 1.0 when the completion's
    extracted answer equals the reference ``answer`` column (a number as text), else 0.0."""
    if len(completions) != len(answer):
        raise ValueError(f"{len(completions)} completions but {len(answer)} reference answers")
    # None ≠ any number
    return [float(extract_answer(c) == Fraction(a)) for c, a in zip(completions, answer, strict=True)]


def _problem(task: str, question: str, solution: str, answer: int) -> Problem:
    return Problem(question, solution, Fraction(answer), PROMPT_TEMPLATES[task].format(question=question))


_NAMES = ("Ava", "Ben", "Cleo", "Dan", "Eli", "Fay", "Gus", "Ivy", "Jon", "Kim", "Leo", "Mia", "Ned", "Zoe")
_ITEMS = ("apples", "pens", "books", "coins", "cards", "shells", "stamps", "marbles")


def _word_problem(rng: np.random.Generator, high: int) -> tuple[str, str, int]:
    """One GSM8K-style problem with one operation: add, take away, or share equally (whole answers)."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    kind = rng.integers(3)
    if kind == 0:
        a, b = (int(v) for v in rng.integers(1, high, size=2))
        question = f"{name} has {a} {item}. {name} gets {b} more. How many {item} does {name} have now?"
        return question, f"{a}+{b}={a + b}", a + b
    if kind == 1:
        a, b = sorted(int(v) for v in rng.integers(1, high, size=2))[::-1]
        question = f"{name} has {a} {item} and gives away {b}. How many {item} are left?"
        return question, f"{a}-{b}={a - b}", a - b
    share, people = int(rng.integers(1, max(2, high // 4))), int(rng.integers(2, 6))
    question = f"{name} shares {share * people} {item} equally among {people} friends. How many does each friend get?"
    return question, f"{share * people}/{people}={share}", share


def generate_problems(task: str, count: int, seed: int, digits: int = 2) -> list[Problem]:
    """``count`` distinct problems of ``task`` drawn with ``seed`` (numbers below ``10**digits``).

    Distinct questions let :func:`train_validation_split` keep the splits disjoint.
    """
    _check_task(task)
    if count < 1:
        raise ValueError(f"count = {count}: at least one problem is needed")
    if not 1 <= digits <= 6:
        raise ValueError(f"digits = {digits} is out of range: allowed 1 ≤ digits ≤ 6")
    high = 10**digits
    capacity = high * high if task == "arithmetic" else 10**9
    if count > capacity // 2:
        raise ValueError(f"count = {count} distinct {task} problems with {digits} digits: at most {capacity // 2}")
    rng = np.random.default_rng(seed)
    problems: dict[str, Problem] = {}
    while len(problems) < count:
        if task == "arithmetic":
            a, b = (int(v) for v in rng.integers(0, high, size=2))
            problem = _problem(task, f"{a}+{b}=", str(a + b), a + b)
        else:
            question, working, value = _word_problem(rng, high)
            problem = _problem(task, question, f"{working}\n#### {value}", value)
        problems.setdefault(problem.question, problem)
    return list(problems.values())


def train_validation_split(problems: list[Problem], validation_size: int) -> tuple[list[Problem], list[Problem]]:
    """The last ``validation_size`` problems are held out; the rest train (no question in both)."""
    if not 1 <= validation_size < len(problems):
        raise ValueError(f"validation_size = {validation_size} is out of range: allowed 1 ≤ validation_size "
                         f"< {len(problems)} (the number of problems)")
    return problems[:-validation_size], problems[-validation_size:]


def write_gsm8k_jsonl(problems: list[Problem], path: str | os.PathLike) -> Path:
    """Write problems in GSM8K's format: one ``{"question", "answer"}`` object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as stream:
        for problem in problems:
            stream.write(json.dumps({"question": problem.question, "answer": problem.solution}) + "\n")
    return path


def read_gsm8k_jsonl(path: str | os.PathLike, task: str = "word") -> list[Problem]:
    """Read a local GSM8K-format jsonl file.

    Every line must be a JSON object with string fields ``question`` and ``answer``, the answer
    ending with a ``#### n`` line. A malformed line raises a ``ValueError`` naming the file and
    the line number — no line is skipped silently, and bytes that are not UTF-8 (a binary file)
    are such a line too. Blank lines are allowed.
    """
    _check_task(task)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset_path '{path}' is not a file: expected a GSM8K-format jsonl")
    problems = []
    with path.open("rb") as stream:  # decoded line by line, so an undecodable byte is reported with its line
        for number, raw in enumerate(stream, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{where}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at byte "
                                 f"{error.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object with 'question' and 'answer'")
            for key in ("question", "answer"):
                if not isinstance(record.get(key), str) or not record[key].strip():
                    raise ValueError(f"{where}: field '{key}' is missing or not a non-empty string")
            marked = _FINAL_ANSWER.findall(record["answer"])
            value = parse_number(marked[-1]) if marked else None
            if value is None:
                raise ValueError(f"{where}: the answer has no final '#### <number>' line")
            problems.append(Problem(record["question"], record["answer"], value,
                                    PROMPT_TEMPLATES[task].format(question=record["question"])))
    if not problems:
        raise ValueError(f"{path}: no problems in the file")
    return problems


def completion_target(problem: Problem) -> str:
    """What the supervised warm-up teaches the model to write after the prompt."""
    return problem.solution


def reward_dataset(problems: list[Problem]):
    """A :class:`datasets.Dataset` with the columns GRPOTrainer needs: ``prompt`` and ``answer``
    (the reference number as text, passed to :func:`correctness_reward`)."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [p.prompt for p in problems],
                              "answer": [str(p.answer) for p in problems]})
