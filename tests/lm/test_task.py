"""Tests of rlvr_dynamics.lm.task: the answer extractor, the reward, generated problems and GSM8K jsonl."""

import json
from fractions import Fraction

import pytest

from rlvr_dynamics.lm import task as lm_task


@pytest.mark.parametrize("text, expected", [
    ("#### 72", 72), ("Natalia sold 48/2 = 24 clips.\n#### 72", 72), ("#### 1,234", 1234),
    ("so 12+7=19\n#### 19", 19), ("The answer is $42.", 42), ("-7", -7), ("3.50 dollars", Fraction(7, 2)),
    ("first 3 then #### 5 and #### 6", 6), ("82", 82), ("8 2", 2), ("no number", None), ("", None),
    ("#### -3", -3),
])
def test_extract_answer(text, expected):
    assert lm_task.extract_answer(text) == (None if expected is None else Fraction(expected))


def test_correctness_reward_compares_numbers_exactly():
    rewards = lm_task.correctness_reward(["82", " 82<junk", "#### 1,000", "81", "", "7/2"], ["82", "82", "1000", "82",
                                                                                            "0", "3.5"])
    assert rewards == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]  # "7/2" reads as the last number 2
    with pytest.raises(ValueError, match="2 completions but 1 reference"):
        lm_task.correctness_reward(["1", "2"], ["1"])


@pytest.mark.parametrize("task", lm_task.TASKS)
def test_generated_problems_are_seeded_distinct_and_correct(task):
    first = lm_task.generate_problems(task, 300, seed=3)
    assert first == lm_task.generate_problems(task, 300, seed=3)
    assert first != lm_task.generate_problems(task, 300, seed=4)
    assert len({p.question for p in first}) == 300
    assert all(lm_task.extract_answer(p.solution) == p.answer for p in first)
    if task == "arithmetic":
        assert all(sum(int(x) for x in p.question[:-1].split("+")) == p.answer for p in first)
        assert all(p.prompt == p.question for p in first)
    else:
        assert all(p.solution.splitlines()[-1] == f"#### {p.answer}" for p in first)
        assert all(p.prompt.startswith("Q: ") and p.prompt.endswith("\nA: ") for p in first)
    train, validation = lm_task.train_validation_split(first, 50)
    assert len(train) == 250 and len(validation) == 50
    assert not {p.question for p in train} & {p.question for p in validation}


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="task 'algebra' is unknown"):
        lm_task.generate_problems("algebra", 10, 0)
    with pytest.raises(ValueError, match="at most 50"):
        lm_task.generate_problems("arithmetic", 51, 0, digits=1)
    with pytest.raises(ValueError, match="validation_size = 10 is out of range"):
        lm_task.train_validation_split(lm_task.generate_problems("arithmetic", 10, 0), 10)


def test_gsm8k_jsonl_round_trip(tmp_path):
    problems = lm_task.generate_problems("word", 20, seed=1)
    path = lm_task.write_gsm8k_jsonl(problems, tmp_path / "gsm8k.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(records[0]) == {"question", "answer"}
    assert lm_task.read_gsm8k_jsonl(path) == problems


@pytest.mark.parametrize("lines, message", [
    (['{"question": "q", "answer": "#### 1"}', "{not json", ""], ":2: not valid JSON"),
    (['{"question": "q", "answer": "#### 1"}', "", '["a list"]'], ":3: expected a JSON object"),
    (['{"question": "q"}'], ":1: field 'answer' is missing"),
    (['{"question": "", "answer": "#### 1"}'], ":1: field 'question' is missing or not a non-empty string"),
    (['{"question": "q", "answer": 5}'], ":1: field 'answer'"),
    (['{"question": "q", "answer": "#### 1"}', '{"question": "q", "answer": "the answer is 3"}'],
     ":2: the answer has no final '#### <number>' line"),
    (["", "  "], "no problems in the file"),
])
def test_malformed_jsonl_names_the_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        lm_task.read_gsm8k_jsonl(path)


def test_missing_jsonl_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset_path .* is not a file"):
        lm_task.read_gsm8k_jsonl(tmp_path / "absent.jsonl")


GOOD_LINE = b'{"question": "q", "answer": "#### 1"}\n'


@pytest.mark.parametrize("content, line, byte", [
    (b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00\x00\n\x00\x01", 1, "0xff at byte 9"),  # a binary file
    (GOOD_LINE * 2 + '{"question": "café", "answer": "#### 1"}\n'.encode("latin-1"), 3, "0xe9 at byte 18"),
])
def test_undecodable_bytes_name_the_file_and_line(tmp_path, content, line, byte):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        lm_task.read_gsm8k_jsonl(path)
    assert str(error.value) == f"{path}:{line}: not valid UTF-8 (byte {byte} of the line)"
