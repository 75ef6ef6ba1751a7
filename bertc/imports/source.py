"""A fine-tuned transformers sequence classifier bertc did not make, checked and loaded as its artifact would be.

``classifier_source(src)`` finds SRC (a local directory, or a Hub id fetched into the Hub cache) and refuses,
before any data is read or anything is written, a model of a family bertc does not know, one without a
classification head (a base model saved with ``AutoModel``, such as the embedded MiniLM), a Hub id that cannot be
reached and pickle-only weights. ``import_(src)`` loads it with the manifest its artifact gets: stage "import",
the source as given, its labels from ``id2label`` in id order and a task with no recorded data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from bertc.artifact import FORMAT_VERSION, is_artifact, load_tokenizer
from bertc.errors import BertcError
from bertc.modeling import (
    check_max_length,
    check_weight_files,
    damaged,
    describe_model,
    detail,
    load_classifier,
    load_config,
    no_head_error,
    quiet_transformers,
    resolve_model_source,
    usable_positions,
    weight_files,
)

DEFAULT_MAX_LENGTH = 128
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]  # config, weights, tokenizer: never pickles
NO_LIMIT = 1_000_000  # tokenizers without a recorded limit report a huge model_max_length


@dataclass
class ClassifierSource:
    given: str  # SRC as the user gave it: a directory or a Hub id
    path: Path  # the local directory holding it (for a Hub id, its snapshot in the Hub cache)
    config: Any  # its transformers config

    def labels(self) -> list[str]:
        id2label = {int(k): str(v) for k, v in (self.config.id2label or {}).items()}
        return [id2label[i] for i in sorted(id2label)]

    def default_max_length(self) -> int:
        """The tokens the model reads: its tokenizer's recorded limit and its positions, at most 128."""
        limits = [DEFAULT_MAX_LENGTH, usable_positions(self.config)]
        try:
            recorded = json.loads((self.path / "tokenizer_config.json").read_text()).get("model_max_length")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, (int, float)) and 0 < recorded < NO_LIMIT:
            limits.append(int(recorded))
        return min(limits)

    def task(self, max_length: int | None = None) -> dict:
        """The task of a classifier known only by its labels: no recorded columns or data."""
        return {"labels": self.labels(), "text_column": None, "text_pair_column": None, "label_column": None,
                "max_length": max_length or self.default_max_length(), "train_data": None, "eval_data": None}


@dataclass
class Imported:
    model: Any
    tokenizer: Any
    manifest: dict  # what the artifact's bertc.json records (no environment or creation time)


def classifier_source(src: Path | str) -> ClassifierSource:
    """SRC found and checked: a known family, a classification head, safetensors weights. Raises BertcError."""
    given = str(src)
    local = Path(given).expanduser()
    if is_artifact(local):
        raise BertcError(f"{given} is already a bertc artifact; use it as it is")
    if local.exists() and not (local / "config.json").is_file():
        raise BertcError(f"{given} is not a bertc artifact or a transformers model directory (no bertc.json or "
                         "config.json); pass the --out of a bertc stage or a directory saved with save_pretrained")
    if not local.exists() and (given.startswith((".", "/", "~")) or given.count("/") > 1):
        raise BertcError(f"{given} does not exist: it is not a bertc artifact, a classifier directory or a Hub id; "
                         "pass an existing directory")
    path = Path(resolve_model_source(given))  # the embedded MiniLM by name, a directory, or a Hub id
    hub = not path.exists()
    if hub:
        path = hub_snapshot(given, ["config.json"])
    config = load_config(str(path))  # a family bertc does not know is refused here, before the weights come
    if hub:
        path = hub_snapshot(given, HUB_FILES)
    source = ClassifierSource(given=given, path=path, config=config)
    check_head(source)
    return source


def hub_snapshot(repo_id: str, patterns: list[str]) -> Path:
    """The Hub cache's copy of ``patterns`` of ``repo_id`` (fetched when online). Raises BertcError."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    quiet_transformers()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except (OSError, ValueError, EntryNotFoundError) as err:
        raise BertcError(f"model {repo_id} could not be reached on the Hugging Face Hub ({detail(err)}); pass a "
                         "local directory (a classifier saved with save_pretrained), or check the id and go online"
                         ) from err


def check_head(source: ClassifierSource) -> None:
    """Refuse a model whose weights lack the classification head its *ForSequenceClassification class needs."""
    import torch
    from transformers import AutoModelForSequenceClassification

    check_weight_files(source.path)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(source.config)
    prefix = model.base_model_prefix + "."
    head = {key for key in model.state_dict() if not key.startswith(prefix)}
    present = set()
    for file in weight_files(source.path):
        try:
            with safe_open(str(file), framework="pt") as weights:
                present.update(weights.keys())
        except (SafetensorError, OSError) as err:
            raise damaged(file, err) from err
    if missing := sorted(head - present):
        raise no_head_error(source.given, missing)


def import_(src: Path | str, *, max_length: int | None = None, attn_implementation: str | None = None,
            source: ClassifierSource | None = None) -> Imported:
    """The classifier SRC loaded, with the manifest its artifact records (``max_length``: default its limit)."""
    source = source or classifier_source(src)
    model = load_classifier(source.path, attn_implementation=attn_implementation)
    max_length = max_length or source.default_max_length()
    check_max_length(model, max_length)
    return Imported(model=model, tokenizer=load_tokenizer(source.path),
                    manifest=import_manifest(source, model, max_length))


def import_manifest(source: ClassifierSource, model, max_length: int) -> dict:
    return {"format_version": FORMAT_VERSION, "stage": "import", "source_model": source.given, "parent": None,
            "lineage": [], "config": {"max_length": max_length}, "model": describe_model(model),
            "task": source.task(max_length), "metrics": {}}


def describe_classifier(src: Path | str) -> tuple[Path, dict]:
    """The local directory of the classifier SRC and the manifest `bertc import` would give it, without loading
    its weights (the model is built on the meta device to describe its shape)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    source = classifier_source(src)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(source.config)
    return source.path, import_manifest(source, model, source.default_max_length())
