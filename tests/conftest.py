"""Shared fixtures: tiny random-weight BERT/RoBERTa models and small labelled data, no downloads."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

# Before transformers is imported: it reads these once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each keeps to one thread, since two multi-threaded PyTorch processes
    # on the same cores stall each other (spinning OpenMP threads wait on each other's cores).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

from bertc.data.config import DataConfig  # noqa: E402
from bertc.finetune.config import FinetuneConfig  # noqa: E402
from bertc.finetune.finetune import finetune  # noqa: E402
from bertc.training.config import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SST2 = REPO.parent / "shared" / "data" / "sst2"

POSITIVE = ["good", "great", "fine", "lovely", "superb", "happy", "brilliant", "warm"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "sad", "terrible", "cold"]
FILLER = ["the", "movie", "film", "was", "a", "plot", "and", "very", "it", "is", "story", "acting", "really"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_sentence(rng: random.Random, label: int) -> str:
    words = rng.choices(FILLER, k=rng.randint(2, 8))
    words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
    return " ".join(words)


def write_tsv(path: Path, n: int, seed: int, pairs: bool = False) -> Path:
    """Labelled sentences; with ``pairs``, sentence pairs whose label is whether the second is positive (the first
    carries a random sentiment and its row number, so only the pair decides)."""
    rng = random.Random(seed)
    rows = ["sentence1\tsentence2\tlabel" if pairs else "sentence\tlabel"]
    for i in range(n):
        label = rng.randint(0, 1)
        first = f"{make_sentence(rng, rng.randint(0, 1))} {i}\t" if pairs else ""
        rows.append(f"{first}{make_sentence(rng, label)}\t{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def assert_one_line_error(result, *phrases: str) -> str:
    """A CLI result that failed as bad input should: exit 2, one line, no traceback, naming every phrase."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def tiny_tokenizer(directory: Path):
    from transformers import BertTokenizerFast

    vocab = SPECIAL + sorted(set(POSITIVE + NEGATIVE + FILLER)) + list("abcdefghijklmnopqrstuvwxyz'.,!?-")
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    directory.mkdir(parents=True, exist_ok=True)
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True), len(vocab)


def make_tiny_model_dir(directory: Path, model_type: str = "bert", seed: int = 0, **overrides) -> Path:
    """A tiny random-weight pretrained encoder directory (2 layers, 4 heads, hidden 32)."""
    import torch
    from transformers import AutoModel, BertConfig, RobertaConfig

    tokenizer, vocab_size = tiny_tokenizer(directory)
    kwargs = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=128)
    kwargs.update(overrides)
    config = (BertConfig if model_type == "bert" else RobertaConfig)(**kwargs)
    if model_type == "roberta":
        config.pad_token_id = 0
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-roberta"), "roberta")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A directory with train.tsv (240 rows), validation.tsv (60) and test.tsv (60), SST-2 layout."""
    directory = tmp_path_factory.mktemp("tiny-data")
    write_tsv(directory / "train.tsv", 240, seed=1)
    write_tsv(directory / "validation.tsv", 60, seed=2)
    write_tsv(directory / "test.tsv", 60, seed=3)
    return directory


def quick_train_config(**overrides):
    options = dict(epochs=1, batch_size=16, lr=5e-4, device="cpu", save_steps=1000, logging_steps=5, max_length=32)
    options.update(overrides)
    return TrainConfig(**options)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_bert_dir, tiny_data) -> Path:
    """A fine-tuned bertc artifact of the tiny BERT that has learned the tiny task (~90 steps, seconds)."""
    out = tmp_path_factory.mktemp("artifacts") / "tiny-finetuned"
    config = FinetuneConfig(data=DataConfig(train=str(tiny_data)), train=quick_train_config(epochs=6, lr=2e-3))
    return finetune(tiny_bert_dir, config, out)


@pytest.fixture
def sst2() -> Path:
    if not (SST2 / "test.tsv").is_file():
        pytest.skip(f"real SST-2 data not found at {SST2} (the ../shared/data/sst2 folder beside the checkout)")
    return SST2
