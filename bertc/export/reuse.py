"""``resume=True`` for stages without a training loop: a finished output is kept instead of being built again.

An output counts as finished when it is a complete artifact (its manifest is written last, inside the staging
directory that is renamed into place) of the same stage, made with the same config from the same parent: the
sha256 of the parent's manifest when the parent is an artifact, its path otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

from bertc.artifact import check_output, is_artifact, manifest_digest, read_manifest
from bertc.errors import BertcError
from bertc.jsonio import to_jsonable

MODEL_FILES = {"onnx": "model.onnx", "pytorch": "model.safetensors", "pytorch-quantized": "model.safetensors"}


def is_up_to_date(out: Path | str, *, stage: str, config, parent: Path | str) -> bool:
    """Whether ``out`` is a complete ``stage`` artifact built from ``parent`` with ``config``."""
    out, parent = Path(out), Path(parent)
    if not is_artifact(out):
        return False
    try:
        manifest = read_manifest(out)
    except BertcError:  # another format version, or damaged: build it again
        return False
    model = manifest.get("model") or {}
    model_file = model.get("file") or MODEL_FILES.get(model.get("kind", "pytorch"), "")
    if manifest.get("stage") != stage or not model_file or not (out / model_file).is_file():
        return False
    if manifest.get("config") != json.loads(json.dumps(to_jsonable(config))):
        return False
    record = manifest.get("parent") or {}
    if is_artifact(parent):
        return record.get("manifest_sha256") == manifest_digest(parent)
    return record.get("path") == str(parent.absolute())


def output_to_build(out: Path | str, *, stage: str, config, src: Path, overwrite: bool,
                    resume: bool) -> tuple[Path, bool]:
    """``(out, True)`` when ``resume`` finds ``out`` already built from ``src`` with ``config``; otherwise ``out``
    checked for writing (``check_output``) and False: the stage builds it."""
    if resume and is_up_to_date(out, stage=stage, config=config, parent=src):
        return Path(out), True
    return check_output(out, overwrite, inputs=(src,)), False
