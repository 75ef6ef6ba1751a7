"""PyTorch artifacts: a classification model saved with its tokenizer and manifest, and loaded back exactly."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertc.artifact import is_artifact, load_tokenizer, read_manifest, staging_dir, write_manifest
from bertc.errors import BertcError
from bertc.imports.source import classifier_source, import_
from bertc.modeling import describe_model, load_classifier


@dataclass
class Artifact:
    path: Path
    model: Any
    tokenizer: Any
    manifest: dict


def save_artifact(out: Path | str, model, tokenizer, *, stage: str, config: Any, task: dict,
                  parent: Path | str | None = None, metrics: dict | None = None, extra: dict | None = None,
                  extra_files: dict[str, Path] | None = None, overwrite: bool = False) -> Path:
    """Write a PyTorch model artifact: safetensors weights, config, tokenizer and manifest."""
    out = Path(out)
    with staging_dir(out, overwrite) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, source in (extra_files or {}).items():
            shutil.copy2(source, tmp / name)
        write_manifest(tmp, stage=stage, config=config, parent=parent, model=describe_model(model),
                       task=task, metrics=metrics, extra=extra)
    return out


def load_model(path: Path | str, *, device: str = "cpu", attn_implementation: str | None = None,
               trust_remote_code: bool = False):
    """The one loader: a bertc (or plain transformers) classification model directory, safetensors only.

    Pruned models (per-layer head counts and FFN sizes recorded in config.json) are rebuilt with their
    smaller matrices before the weights are loaded, so they come back exactly as they were saved. A family bertc
    does not know and a base model without a classification head are refused saying so; a Hub id is checked and
    found in the Hub cache first (bertc.imports.source).
    """
    path = Path(path)
    if not path.is_dir():  # a Hub id: checked and found in the Hub cache
        path = classifier_source(path).path
    return load_classifier(path, device=device, attn_implementation=attn_implementation,
                           trust_remote_code=trust_remote_code)


def load_artifact(path: Path | str, *, device: str = "cpu", attn_implementation: str | None = None) -> Artifact:
    """A PyTorch artifact; or a fine-tuned transformers classifier (a directory or Hub id), imported in memory
    with the manifest `bertc import` would write (``manifest["source_model"]`` names it)."""
    path = Path(path)
    if not is_artifact(path):
        imported = import_(path, attn_implementation=attn_implementation)
        return Artifact(path=path, model=imported.model.to(device), tokenizer=imported.tokenizer,
                        manifest=imported.manifest)
    manifest = read_manifest(path)
    if manifest["model"].get("kind", "pytorch") != "pytorch":
        raise BertcError(f"{path} holds a {manifest['model']['kind']} model, not a PyTorch one; "
                         "pass the PyTorch artifact it was exported from")
    model = load_model(path, device=device, attn_implementation=attn_implementation)
    return Artifact(path=path, model=model, tokenizer=load_tokenizer(path), manifest=manifest)
