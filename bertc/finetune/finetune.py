"""`bertc finetune`: a pretrained encoder (or an existing artifact) trained on labelled data."""

from __future__ import annotations

from pathlib import Path

from bertc.artifact import check_output, is_artifact, load_artifact, save_artifact
from bertc.data.config import DataConfig
from bertc.data.prepare import PreparedData, prepare_data
from bertc.errors import BertcError
from bertc.finetune.config import FinetuneConfig
from bertc.inference import TorchPredictor, score_dataset
from bertc.modeling import load_pretrained_classifier
from bertc.training.trainer import check_device, is_main_process, remove_work_dir, train_model, work_dir_for


def task_record(config: DataConfig, data: PreparedData, labels: list, max_length: int) -> dict:
    def where(path):
        return str(Path(path).absolute()) if path is not None and Path(path).exists() else path

    return {"labels": labels, "text_column": data.train.columns.get("text"),
            "text_pair_column": data.train.columns.get("pair"), "label_column": data.train.columns.get("label"),
            "max_length": max_length, "train_data": where(config.train), "eval_data": where(config.eval),
            "data": data.report}


def starting_model(config: FinetuneConfig, labels: list):
    """The model to train and its tokenizer: an existing bertc artifact, or a pretrained encoder."""
    if config.model is not None and is_artifact(config.model):
        artifact = load_artifact(config.model)
        known = [str(label) for label in artifact.manifest["task"]["labels"]]
        if known != [str(label) for label in labels]:
            raise BertcError(f"{config.model} was trained on labels {known}, the data has "
                             f"{[str(x) for x in labels]}; fine-tune from the pretrained model instead")
        return artifact.model, artifact.tokenizer
    return load_pretrained_classifier(config.model, [str(label) for label in labels],
                                      trust_remote_code=config.trust_remote_code)


def describe_data(data: PreparedData) -> None:
    from bertc.console import console

    report = data.report
    for split in ("train", "eval"):
        cleaning = report.get(f"{split}_cleaning")
        line = f"{split}: {report[f'{split}_examples']} examples from {report[f'{split}_source']}"
        if cleaning is not None:
            line += (f" (cleaning dropped {cleaning.empty_text} empty, {cleaning.missing_label} unlabelled, "
                     f"{cleaning.duplicates} duplicate rows; {cleaning.conflicting_texts} texts have conflicting "
                     "labels)")
        if split == "train" and report.get("augmented_examples"):
            line += f", {report['augmented_examples']} of them augmented"
        console.print(line, soft_wrap=True)
    console.print(f"labels: {', '.join(map(str, data.labels))}", soft_wrap=True)


def finetune(config: FinetuneConfig, out: Path | str, *, overwrite: bool = False, resume: bool = False) -> Path:
    from transformers import set_seed

    out = check_output(out, overwrite, inputs=(config.model,))
    check_device(config.train)
    data = prepare_data(config.data)
    set_seed(config.train.seed)
    model, tokenizer = starting_model(config, data.labels)
    if is_main_process():
        describe_data(data)
    label2id = {label: i for i, label in enumerate(data.labels)}
    work_dir = work_dir_for(out)
    result = train_model(model, tokenizer, data, label2id, config.train, work_dir, resume=resume,
                         description="fine-tuning")
    if not is_main_process():
        return out
    predictor = TorchPredictor(result.model, tokenizer, data.labels, config.train.max_length,
                               config.train.eval_batch_size, result.metrics["device"])
    metrics = {"eval": score_dataset(predictor, data.eval), "training": result.metrics}
    extra = {"distributed": result.distributed} if result.distributed else None
    save_artifact(out, result.model.cpu(), tokenizer, stage="finetune", config=config,
                  task=task_record(config.data, data, data.labels, config.train.max_length),
                  parent=config.model if config.model and Path(config.model).exists() else None,
                  metrics=metrics, extra=extra, extra_files={"train_log.jsonl": result.log_file},
                  overwrite=overwrite)
    remove_work_dir(work_dir)
    return out
