"""Tests of rlvr_dynamics.lm.model: the tokenizer built in code, seeded models and local loading."""

import json
import re

import pytest
import torch

from rlvr_dynamics.lm import model as lm_model


def test_byte_tokenizer_round_trips_and_pads_left(tokenizer):
    text = "37+45=82 Ünï €\n#### 9"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))  # token id = byte value
    assert tokenizer.decode(ids) == text
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, len(tokenizer)) == (256, 257, 258)
    batch = tokenizer(["1+2=", "123+45="], padding=True, add_special_tokens=False)
    assert batch["input_ids"][0][:3] == [256] * 3 and batch["attention_mask"][0] == [0, 0, 0, 1, 1, 1, 1]


def test_build_model_is_seeded_and_leaves_the_global_rng_alone(tokenizer):
    state = torch.random.get_rng_state()
    a, b = (lm_model.build_model("ci", tokenizer, seed=5) for _ in range(2))
    c = lm_model.build_model("ci", tokenizer, seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    assert a.config.model_type == "qwen2" and 100_000 < lm_model.parameter_count(a) < 200_000
    with pytest.raises(ValueError, match="model preset 'huge' is unknown"):
        lm_model.build_model("huge", tokenizer, seed=0)


def test_saved_model_loads_from_a_local_folder_with_identical_outputs(tiny_model, tokenizer, tmp_path):
    folder = lm_model.save_model(tiny_model, tokenizer, tmp_path / "model")
    loaded, loaded_tokenizer = lm_model.load_model(folder)
    ids = torch.tensor([list(b"12+34=")])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, tiny_model(ids).logits)
    assert loaded_tokenizer("7+8=")["input_ids"] == tokenizer("7+8=")["input_ids"]
    assert loaded_tokenizer.padding_side == "left"


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a local model folder"):
        lm_model.load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        lm_model.load_model(tmp_path / "empty")


def _edit_config(folder, change):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}) if isinstance(change, dict) else change)


@pytest.mark.parametrize("damage, message", [
    (lambda f: _edit_config(f, {"model_type": "t5"}),  # an encoder-decoder: no causal-LM class
     r"config.json names model_type 't5', which transformers \S+ cannot load as a causal language model "
     r"\(causal language models here: e\.g\. qwen2, llama, gpt2; \d+ in all\)"),
    (lambda f: _edit_config(f, {"model_type": "no-such-arch"}),
     r"config.json names model_type 'no-such-arch', which transformers \S+ does not know"),
    (lambda f: _edit_config(f, '{"model_type": "qwen2",'), r"config.json: not valid JSON \(.*line 1\)"),
    (lambda f: (f / "config.json").write_bytes(b"\xff\xfe\x00"), r"config.json: not valid JSON \(not UTF-8\)"),
    (lambda f: _edit_config(f, {"model_type": None}), r"config.json: no 'model_type'"),
    (lambda f: _edit_config(f, "[1, 2]"), r"config.json: no 'model_type'"),
    (lambda f: (f / "model.safetensors").unlink(), r"model: no weights \(none of model.safetensors, "),
    (lambda f: [(f / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")],
     r"model: no tokenizer \(none of tokenizer.json, "),
])
def test_a_model_folder_that_cannot_load_is_named_before_loading(tiny_model, tokenizer, tmp_path, damage, message):
    folder = lm_model.save_model(tiny_model, tokenizer, tmp_path / "model")
    assert lm_model.check_model_folder(folder) == "qwen2"
    damage(folder)
    with pytest.raises(ValueError, match=message) as error:
        lm_model.check_model_folder(folder)
    assert str(error.value).startswith(str(folder)) and "\n" not in str(error.value)
    with pytest.raises(ValueError, match=re.escape(str(error.value))):  # load_model checks first
        lm_model.load_model(folder)


def test_the_architecture_check_is_transformers_own_mapping(tiny_model, tokenizer, tmp_path):
    """Any causal-LM type transformers registers passes (llama here), not only the qwen2 we build."""
    folder = lm_model.save_model(tiny_model, tokenizer, tmp_path / "model")
    _edit_config(folder, {"model_type": "llama"})
    assert lm_model.check_model_folder(folder) == "llama"
