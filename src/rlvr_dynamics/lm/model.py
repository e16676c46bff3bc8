"""The byte-level tokenizer built in code, the Qwen2-architecture model presets, and local loading.

No weights or tokenizers are downloaded: the default model is a small Qwen2-architecture causal
LM initialised from a seed, with a byte-level tokenizer (every UTF-8 byte is a token, plus a pad
and an end-of-text token). :func:`load_model` reads a local Hugging Face folder instead — the
same code path loads the small model saved to disk, or Qwen2.5 on a GPU machine.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"

WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
"""The weights of a Hugging Face folder (one file, or an index of shards)."""

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")
"""Any of these lets ``AutoTokenizer`` build a tokenizer from a local folder."""


def byte_tokenizer():
    """A byte-level :class:`~transformers.PreTrainedTokenizerFast`: 256 byte tokens, then
    ``<|pad|>`` (id 256) and ``<|endoftext|>`` (id 257). Left padding, as generation needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: byte for byte, char in _byte_to_char().items()}  # token id = byte value
    vocab[PAD_TOKEN], vocab[EOS_TOKEN] = 256, 257
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([PAD_TOKEN, EOS_TOKEN])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN,
                                   padding_side="left", model_max_length=4096)


def _byte_to_char() -> dict[int, str]:
    """GPT-2's byte → printable-character map (what the ByteLevel pre-tokenizer emits): printable
    bytes stand for themselves, the other 68 bytes for the characters 256, 257, … in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


@dataclass(frozen=True)
class ModelSpec:
    """A Qwen2-architecture causal LM, initialised from a seed (sizes of ``Qwen2Config``)."""

    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    intermediate_size: int
    max_positions: int = 512


MODEL_PRESETS = {
    # ≈0.14 M parameters: trains on 2 CPU cores in minutes.
    "ci": ModelSpec(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=256),
    # ≈25 M parameters: for a GPU (the same code; minutes on an H100).
    "gpu": ModelSpec(hidden_size=512, layers=8, heads=8, kv_heads=4, intermediate_size=1536),
}
"""Model sizes by name: ``"ci"`` (CPU) and ``"gpu"``."""


def build_model(spec: ModelSpec | str, tokenizer, seed: int, device: str | torch.device = "cpu"):
    """A freshly initialised ``Qwen2ForCausalLM`` of ``spec`` (a preset name or a :class:`ModelSpec`).

    Initialisation uses a private generator seeded with ``seed`` (the global RNG is restored),
    so the same seed gives the same weights.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if isinstance(spec, str):
        if spec not in MODEL_PRESETS:
            raise ValueError(f"model preset '{spec}' is unknown: allowed {', '.join(MODEL_PRESETS)}")
        spec = MODEL_PRESETS[spec]
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
        intermediate_size=spec.intermediate_size, max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id, use_cache=True)
    with torch.random.fork_rng(devices=[]):  # transformers initialises through the global RNG
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.to(device)


@contextlib.contextmanager
def _no_progress_bars():
    """transformers' own progress bars off for the block, restored after (no global change)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_model(model_name_or_path: str | os.PathLike, device: str | torch.device = "cpu"):
    """``(model, tokenizer)`` from a local Hugging Face folder (``config.json``, weights, tokenizer).

    Offline by design: the folder is first checked by :func:`check_model_folder` (a path that is
    not a folder with a ``config.json`` raises a ``FileNotFoundError`` naming it; no download is
    attempted). The tokenizer is set to left padding, with the end-of-text token as pad when the
    model has none.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(model_name_or_path)
    check_model_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left", local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with _no_progress_bars():  # a bar's timings on stderr would make reruns differ
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def check_model_folder(model_name_or_path: str | os.PathLike) -> str:
    """The ``model_type`` of a local folder that :func:`load_model` can read, checked without loading it.

    ``config.json`` must parse and name an architecture that transformers loads as a causal LM
    (its own ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``), and weights and a tokenizer must be present.
    Otherwise a one-line ``FileNotFoundError`` (no ``config.json``) or ``ValueError`` naming the file,
    raised here rather than as transformers' later guess (e.g. a missing tokenizer surfaces as a
    request for sentencepiece or tiktoken).
    """
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    folder = Path(model_name_or_path)
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"model_name_or_path '{folder}' is not a local model folder (no config.json): "
                                "save one with save_model() or download it on a machine with network access")
    try:
        config = json.loads(path.read_bytes())
    except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for a binary file
        reason = f"{error.msg}, line {error.lineno}" if isinstance(error, json.JSONDecodeError) else "not UTF-8"
        raise ValueError(f"{path}: not valid JSON ({reason})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise ValueError(f"{path}: no 'model_type' naming the architecture")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        why = "cannot load as a causal language model" if model_type in CONFIG_MAPPING_NAMES else "does not know"
        examples = ", ".join(t for t in ("qwen2", "llama", "gpt2") if t in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        raise ValueError(f"{path} names model_type {model_type!r}, which transformers {transformers.__version__} "
                         f"{why} (causal language models here: e.g. {examples}; "
                         f"{len(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)} in all)")
    if not any((folder / name).is_file() for name in WEIGHTS_FILES):
        raise ValueError(f"{folder}: no weights (none of {', '.join(WEIGHTS_FILES)})")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(f"{folder}: no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    return model_type


def save_model(model, tokenizer, folder: str | os.PathLike) -> Path:
    """Save ``model`` and ``tokenizer`` as a Hugging Face folder that :func:`load_model` reads."""
    folder = Path(folder)
    with _no_progress_bars():
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())
