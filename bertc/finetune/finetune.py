"""`bertc finetune`: a pretrained encoder (or an existing artifact) trained on labelled data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bertc.artifact import check_output, is_artifact
from bertc.console import console
from bertc.data.prepare import PreparedData, prepare_data, task_record
from bertc.errors import BertcError
from bertc.finetune.config import FinetuneConfig
from bertc.finetune.search import search_training
from bertc.inference.evaluation import score_dataset
from bertc.inference.pytorch import TorchPredictor
from bertc.modeling import check_max_length, load_pretrained_classifier
from bertc.torch_artifact import load_artifact, save_artifact
from bertc.training.trainer import TrainResult, check_device, train_model
from bertc.training.workdir import cleaned_up_on_failure, is_main_process, remove_work_dir, work_dir_for


def finetune(src: Path | str | None, config: FinetuneConfig, out: Path | str, *, overwrite: bool = False,
             resume: bool = False) -> Path:
    """Fine-tune ``src`` on ``config.data`` and write the artifact ``out``.

    ``src`` is a pretrained encoder that gets a new classification head (None or "minilm": the embedded
    all-MiniLM-L6-v2; a model directory; a Hub id), or a bertc artifact of the same labels, trained further.
    With ``config.search``, trials of the training options run first (``bertc.finetune.search``) and the model
    trains with the best one's; the manifest's ``search`` records every trial.
    """
    from transformers import set_seed

    source = None if src is None else str(src)
    out = check_output(out, overwrite, inputs=(source,))
    check_device(config.train)
    data = prepare_data(config.data)
    set_seed(config.train.seed)  # before the new classification head is initialised
    model, tokenizer = starting_model(source, data.labels, trust_remote_code=config.trust_remote_code)
    check_max_length(model, config.train.max_length)
    if is_main_process():
        describe_data(data)
    work_dir = work_dir_for(out)
    with cleaned_up_on_failure(work_dir, resume=resume):
        search = None
        if config.search:  # the final model trains on all rows with the best trial's options
            search = search_training(model, tokenizer, data, config, work_dir, resume=resume)
            config = dataclasses.replace(config, train=search.train)
        result = finetune_(model, tokenizer, data, config, work_dir, resume=resume)
        if not is_main_process():
            return out
        predictor = TorchPredictor(result.model, tokenizer, data.labels, config.train.max_length,
                                   config.train.eval_batch_size, result.metrics["device"])
        metrics = {"eval": score_dataset(predictor, data.eval), "training": result.metrics}
        extra = {"source_model": source}  # as given: a Hub id or None (the embedded model) is no parent artifact
        if result.distributed:
            extra["distributed"] = result.distributed
        if search:
            extra["search"] = search.record
        save_artifact(out, result.model.cpu(), tokenizer, stage="finetune", config=config,
                      task=task_record(config.data, data, data.labels, config.train.max_length),
                      parent=source if source and Path(source).exists() else None, metrics=metrics, extra=extra,
                      extra_files={"train_log.jsonl": result.log_file}, overwrite=overwrite)
    remove_work_dir(work_dir)
    return out


def finetune_(model, tokenizer, data: PreparedData, config: FinetuneConfig, work_dir: Path, *,
              resume: bool = False) -> TrainResult:
    """Train ``model`` in place on ``data`` (already prepared: ``config.data`` is not read again) with
    ``config.train``; its outputs are ``data.labels`` in order. Checkpoints go to ``work_dir``, so a killed run
    continues with ``resume``."""
    if model.config.num_labels != len(data.labels):
        raise BertcError(f"the model has {model.config.num_labels} outputs but the data has {len(data.labels)} "
                         f"labels ({', '.join(map(str, data.labels))}); give it a head with one output per label")
    label2id = {label: i for i, label in enumerate(data.labels)}
    return train_model(model, tokenizer, data, label2id, config.train, work_dir, resume=resume,
                       description="fine-tuning")


def starting_model(source: str | None, labels: list, *, trust_remote_code: bool = False):
    """The model to train and its tokenizer: an existing bertc artifact, or a pretrained encoder."""
    if source is not None and is_artifact(source):
        artifact = load_artifact(source)
        known = [str(label) for label in artifact.manifest["task"]["labels"]]
        if known != [str(label) for label in labels]:
            raise BertcError(f"{source} was trained on labels {known}, the data has "
                             f"{[str(x) for x in labels]}; fine-tune from the pretrained model instead")
        return artifact.model, artifact.tokenizer
    return load_pretrained_classifier(source, [str(label) for label in labels], trust_remote_code=trust_remote_code)


def describe_data(data: PreparedData) -> None:
    report = data.report
    for split in ("train", "eval"):
        cleaning = report.get(f"{split}_cleaning")
        line = f"{split}: {report[f'{split}_examples']} examples from {report[f'{split}_source']}"
        if cleaning is not None:
            line += f" (cleaning dropped {cleaning.empty_text} empty, {cleaning.missing_label} unlabelled"
            if split == "train":  # evaluation data keeps its duplicates: it is scored as given
                line += f", {cleaning.duplicates} duplicate"
            line += f" rows; {cleaning.conflicting_texts} texts have conflicting labels)"
        if split == "train" and report.get("augmented_examples"):
            line += f", {report['augmented_examples']} of them augmented"
        console.print(line, soft_wrap=True)
    console.print(f"labels: {', '.join(map(str, data.labels))}", soft_wrap=True)
