"""Artifact directories: what every stage reads and writes.

An artifact is a directory holding the model (safetensors + config.json, or model.onnx), the tokenizer and
``bertc.json``, the manifest: stage, parent, the options used, metrics, the task (labels, columns, data) and
the environment. Outputs are built in a hidden sibling directory and renamed into place at the end, so a crash
never leaves something that looks finished and an existing output is replaced only with ``overwrite``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bertc.environment import environment
from bertc.errors import BertcError
from bertc.jsonio import to_jsonable

MANIFEST = "bertc.json"
# Families whose models take no token_type_ids (bertc.families says the same; tests/families checks they agree).
# Kept here, torch-free, so the ONNX serving path loads tokenizers without importing torch.
NO_TOKEN_TYPES = ("distilbert", "modernbert")
FORMAT_VERSION = 1
TRAINING_LOG = "train_log.jsonl"
MANIFEST_SECTIONS = ("model", "task")  # every reader needs them


def check_output(out: Path | str, overwrite: bool, inputs: tuple = ()) -> Path:
    """Fail before any work is done when ``out`` exists and may not be replaced, or is one of the stage's
    ``inputs`` (which ``--overwrite`` would otherwise delete)."""
    out = Path(out)
    if any(Path(src).absolute() == out.absolute() for src in inputs if src is not None):
        raise BertcError(f"--out {out} is an input of this stage; stages never write into their input, choose "
                         "another --out")
    if out.exists() and not overwrite:
        raise BertcError(f"output {out} already exists; choose another --out or pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise BertcError(f"output {out} exists and is not a directory; choose another --out")
    check_writable(out, "--out")
    return out


def check_writable(path: Path | str, flag: str) -> None:
    """Fail before any work when ``path`` could not be written: its nearest existing parent must be a directory
    this process can create files in (tried for real: permission bits do not tell for root or read-only mounts)."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BertcError(f"{flag} {path} is inside {parent}, which is a file; choose another location")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise BertcError(f"{flag} {path}: cannot write in {parent} ({err.strerror or err}); choose a writable "
                         "location") from None


def check_writable_file(path: Path | str, flag: str) -> None:
    """``check_writable`` for an output file (``--json``): an existing directory there is refused too, since
    writing would fail only after all the work."""
    if Path(path).is_dir():
        raise BertcError(f"{flag} {path} is a directory; pass a file name such as results.json")
    check_writable(path, flag)


@contextmanager
def staging_dir(out: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``out``; on success it replaces ``out`` in one rename.

    On failure the staging directory is removed and ``out`` is left exactly as it was.
    """
    out = check_output(out, overwrite).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.bertc-tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the artifact should get normal permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        check_output(out, overwrite)  # it may have appeared while we worked
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.bertc-old-", dir=out.parent))
        os.replace(out, old / "previous")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def is_artifact(path: Path | str) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: Path | str) -> dict:
    path = Path(path)
    file = path / MANIFEST
    if not path.exists():
        raise BertcError(f"{path} does not exist; pass a directory written by a bertc stage")
    if not file.is_file():
        raise BertcError(f"{path} is not a bertc artifact (no {MANIFEST}); pass a directory written by bertc, "
                         "e.g. the --out of `bertc finetune`")
    try:
        manifest = json.loads(file.read_text())
    except OSError as err:
        raise BertcError(f"cannot read {file} ({err.strerror or err}); check its permissions") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BertcError(f"{file} is not valid JSON ({err}); re-create the artifact") from err
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise BertcError(f"{file} has format_version {version!r}; this bertc reads version {FORMAT_VERSION}. "
                         "Re-create the artifact with this bertc version")
    damaged = [key for key in MANIFEST_SECTIONS if not isinstance(manifest.get(key), dict)]
    if damaged or not isinstance(manifest.get("task", {}).get("labels"), list):
        raise BertcError(f"{file} is damaged (no {', '.join(damaged) or 'task.labels'} section); re-create the "
                         "artifact")
    return manifest


def manifest_digest(path: Path | str) -> str:
    return hashlib.sha256((Path(path) / MANIFEST).read_bytes()).hexdigest()


def parent_record(parent: Path | str | None) -> dict | None:
    if parent is None:
        return None
    if not Path(parent).exists():  # a model named by its Hub id (bertc.imports): the id as given
        return {"path": str(parent), "stage": "source"}
    parent = Path(parent).absolute()
    if not is_artifact(parent):
        return {"path": str(parent), "stage": "source"}
    manifest = read_manifest(parent)
    return {"path": str(parent), "stage": manifest.get("stage"), "manifest_sha256": manifest_digest(parent)}


def lineage_of(parent: Path | str | None) -> list[dict]:
    """The chain of stages that produced an artifact, oldest first, ending with its parent."""
    record = parent_record(parent)
    if record is None:
        return []
    earlier = read_manifest(parent).get("lineage", []) if is_artifact(parent) else []
    return [*earlier, record]


def write_manifest(directory: Path, *, stage: str, config: Any, parent: Path | str | None, model: dict,
                   task: dict, metrics: dict | None = None, extra: dict | None = None) -> dict:
    manifest = {
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "parent": parent_record(parent),
        "lineage": lineage_of(parent),
        "config": to_jsonable(config),
        "model": to_jsonable(model),
        "task": to_jsonable(task),
        "metrics": to_jsonable(metrics or {}),
        "environment": environment(),
        **to_jsonable(extra or {}),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_tokenizer(path: Path | str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise BertcError(f"could not load a tokenizer from {path} ({str(err).splitlines()[0]}); "
                         "the directory needs tokenizer files such as tokenizer.json") from err
    if recorded_model_type(Path(path)) in NO_TOKEN_TYPES and "token_type_ids" in tokenizer.model_input_names:
        tokenizer.model_input_names = [name for name in tokenizer.model_input_names if name != "token_type_ids"]
    return tokenizer


def recorded_model_type(path: Path) -> str | None:
    """The model_type of a model directory (config.json) or an exported artifact (its manifest)."""
    for file, keys in ((path / "config.json", ("model_type",)), (path / MANIFEST, ("model", "model_type"))):
        try:
            value = json.loads(file.read_text())
            for key in keys:
                value = value[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, str):
            return value
    return None


