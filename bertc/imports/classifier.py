"""`bertc import`: a fine-tuned transformers classifier (a directory or a Hub id) as a PyTorch bertc artifact.

The stage every other one runs implicitly when given such a model (``bertc.torch_artifact.load_artifact``), made
explicit: the artifact records the source as given (``source_model``), its labels from ``id2label`` and a task
with no recorded data, so later stages take their data from the command line.
"""

from __future__ import annotations

from pathlib import Path

from bertc.artifact import check_output, is_artifact, read_manifest
from bertc.imports.config import ImportConfig
from bertc.imports.source import classifier_source, import_
from bertc.jsonio import to_jsonable
from bertc.torch_artifact import save_artifact


def import_classifier(src: Path | str, config: ImportConfig, out: Path | str, *, overwrite: bool = False,
                      resume: bool = False) -> Path:
    """The classifier ``src`` as an artifact at ``out``. With ``resume`` an ``out`` already imported from ``src``
    with this config is kept as it is."""
    if resume and is_artifact(out):
        manifest = read_manifest(out)
        if manifest.get("stage") == "import" and manifest.get("source_model") == str(src) and \
                manifest.get("config") == to_jsonable(config):
            return Path(out)
    out = check_output(out, overwrite, inputs=(src,))
    source = classifier_source(src)
    imported = import_(src, max_length=config.max_length, source=source)
    manifest = imported.manifest
    save_artifact(out, imported.model, imported.tokenizer, stage="import", config=config, task=manifest["task"],
                  parent=src if Path(src).exists() else None,  # a Hub id is no parent directory
                  extra={"source_model": source.given}, overwrite=overwrite)
    return out
