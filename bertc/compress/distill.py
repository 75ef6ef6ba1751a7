"""`bertc distill`: train a student on a teacher's soft labels (and, optionally, its internals).

The student (``--student``) is an artifact (e.g. a pruned one) or a fine-tuned classifier with the teacher's labels,
a pretrained encoder that gets a fresh head for them (``minilm``: the embedded MiniLM; a model directory; a Hub id),
or a copy of the teacher keeping some of its layers (``--student-layers``). It may differ from the teacher in
tokenizer, depth, width and family (see :mod:`bertc.compress.distillation` for what each loss then does). Training
is :func:`bertc.compress.distillation.distill_`, which recovery after pruning uses too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertc.artifact import check_output, is_artifact, parent_record
from bertc.compress.config import DistillConfig
from bertc.compress.distillation import distill_
from bertc.compress.flops import compare_sizes, size_report
from bertc.data.prepare import check_model_labels, prepare_data, task_record
from bertc.data.transfer import read_unlabeled, transfer_texts
from bertc.errors import BertcError
from bertc.imports.source import classifier_source, import_
from bertc.inference.evaluation import score_dataset
from bertc.inference.pytorch import TorchPredictor
from bertc.modeling import (
    check_max_length,
    encoder_layers,
    every_other_layer,
    load_pretrained_classifier,
    make_student,
)
from bertc.torch_artifact import Artifact, load_artifact, save_artifact
from bertc.training.trainer import check_device
from bertc.training.workdir import cleaned_up_on_failure, is_main_process, remove_work_dir, work_dir_for


@dataclass
class Student:
    model: Any
    tokenizer: Any
    layer_map: list[int]  # the teacher layer each student layer learns from
    record: dict  # what the student was, for the manifest: its kind (artifact, classifier, pretrained, carved)
    parent: Path | str | None  # the student when it is an artifact or classifier; None: the output descends from
    # the teacher


def distill(src: Path | str, config: DistillConfig, out: Path | str, *, overwrite: bool = False,
            resume: bool = False) -> Path:
    """Distil the artifact ``src`` (the teacher) into a student and write it to ``out``."""
    from transformers import set_seed

    src, out = Path(src), check_output(out, overwrite, inputs=(src, config.student))
    check_device(config.train)
    teacher = load_artifact(src)
    set_seed(config.train.seed)  # before a pretrained student's fresh classification head is initialised
    chosen = choose_student(teacher, config)
    student, tokenizer, layer_map = chosen.model, chosen.tokenizer, chosen.layer_map
    check_max_length(student, config.train.max_length, "the student")
    check_max_length(teacher.model, config.train.max_length, "the teacher")
    data_config, data_source = config.data.resolve(teacher.manifest)
    if data_config is None:
        raise BertcError(f"distillation needs training data ({data_source}); pass --train")
    data = prepare_data(data_config)
    labels = teacher.manifest["task"]["labels"]
    check_model_labels(data, labels)
    extra, transfer = transfer_set(config, teacher, data)

    set_seed(config.train.seed)
    work_dir = work_dir_for(out)
    with cleaned_up_on_failure(work_dir, resume=resume):
        result = distill_(student, teacher.model, tokenizer, data, {label: i for i, label in enumerate(labels)},
                          config.train, config.loss, layer_map=layer_map, work_dir=work_dir, resume=resume,
                          teacher_tokenizer=teacher.tokenizer, extra=extra or None)
        if not is_main_process():
            return out
        max_length = config.train.max_length
        predictor = TorchPredictor(result.model, tokenizer, labels, max_length, config.train.eval_batch_size,
                                   result.metrics["device"])
        metrics = {"eval": {**score_dataset(predictor, data.eval), "data": data.eval.source},
                   "training": result.metrics}
        before, after = size_report(teacher.model, max_length), size_report(result.model, max_length)
        compression = {"technique": "distill", "teacher": parent_record(src), "layer_map": layer_map,
                       "student": chosen.record, "data": data_source, "transfer": transfer, "before": before,
                       "after": after,
                       "ratios": compare_sizes(before, after)}
        save_artifact(out, result.model.cpu(), tokenizer, stage="distill", config=config,
                      task=task_record(data_config, data, labels, max_length), parent=chosen.parent or src,
                      metrics=metrics, extra={"compression": compression},
                      extra_files={"train_log.jsonl": result.log_file}, overwrite=overwrite)
    remove_work_dir(work_dir)
    return out


def transfer_set(config: DistillConfig, teacher: Artifact, data) -> tuple[list[str], dict]:
    """The texts the teacher labels besides the training rows (``--unlabeled``, ``--augment-copies``), and what
    the transfer set holds, for the manifest. Unlabeled texts are read first, so a file without texts stops the run
    before any work."""
    options = config.transfer
    record = {"labelled": len(data.train), "unlabeled": 0, "augmented": 0}
    if not options.active:
        return [], record
    if data.train.pairs is not None:
        raise BertcError("--unlabeled and --augment-copies add single texts, but this task reads sentence pairs; "
                         "leave them out")
    train = list(data.train.texts)
    unlabeled = dict.fromkeys(set(read_unlabeled(options)) - set(train))  # as transfer_texts keeps them
    extra = transfer_texts(options, teacher.tokenizer, teacher.model, train)
    record.update(unlabeled=len(unlabeled), augmented=len(extra) - len(unlabeled))
    return extra, record


def choose_student(teacher: Artifact, config: DistillConfig) -> Student:
    """The student model, its tokenizer, the teacher layer each of its layers learns from, and its record."""
    teacher_layers = len(encoder_layers(teacher.model))
    if config.student is not None:
        model, tokenizer, record, manifest = load_student(config.student, teacher.manifest["task"]["labels"])
        layer_map = list(config.layer_map or default_layer_map(model, manifest, teacher.path, teacher_layers))
        parent = config.student if record["kind"] in ("artifact", "classifier") else None
    else:
        if config.student_layers is not None and config.student_layers > teacher_layers:
            raise BertcError(f"--student-layers {config.student_layers} is more than the teacher's {teacher_layers} "
                             f"layers; pass 1 to {teacher_layers}")
        layer_map = list(config.layer_map or every_other_layer(teacher_layers, config.student_layers))
        check_layer_map(layer_map, teacher_layers, len(layer_map))
        model, tokenizer = make_student(teacher.model, layer_map), teacher.tokenizer
        record, parent = {"kind": "carved", "layers": layer_map}, None
    check_layer_map(layer_map, teacher_layers, len(encoder_layers(model)))
    return Student(model=model, tokenizer=tokenizer, layer_map=layer_map, record=record, parent=parent)


def load_student(source: str, labels: list) -> tuple[Any, Any, dict, dict | None]:
    """The student ``source`` names (model, tokenizer, record, manifest): a bertc artifact or a fine-tuned
    classifier, which must predict the teacher's ``labels``, or else a pretrained encoder given a fresh head for
    them (None manifest)."""
    if is_artifact(source):
        artifact = load_artifact(source)
        model, tokenizer, manifest, kind = artifact.model, artifact.tokenizer, artifact.manifest, "artifact"
    else:
        try:
            found = classifier_source(source)
        except BertcError:  # no classification head, or no classifier at all: a pretrained encoder, or an error
            model, tokenizer = load_pretrained_classifier(source, [str(label) for label in labels])
            return model, tokenizer, {"kind": "pretrained", "source": source}, None
        imported = import_(source, source=found)
        model, tokenizer, manifest, kind = imported.model, imported.tokenizer, imported.manifest, "classifier"
    check_same_labels(labels, manifest["task"]["labels"], source)
    return model, tokenizer, {"kind": kind, **parent_record(source)}, manifest


def check_same_labels(teacher_labels: list, student_labels: list, student: str) -> None:
    """A student must predict the teacher's labels, in the same order, to learn from its soft labels."""
    expected, found = [str(label) for label in teacher_labels], [str(label) for label in student_labels]
    if expected != found:
        raise BertcError(f"the teacher predicts labels {expected} but the student {student} predicts {found}; "
                         "distil into a student trained on the same task, or a pretrained encoder (it gets a "
                         "fresh head with the teacher's labels)")


def default_layer_map(student, manifest: dict | None, teacher: Path, teacher_layers: int) -> list[int]:
    """The teacher layers a student's layers came from when it was pruned from the teacher, else uniform."""
    manifest = manifest or {}
    parent = (manifest.get("parent") or {}).get("path")
    kept = manifest.get("compression", {}).get("kept_layers")
    if kept is not None and parent is not None and Path(parent) == teacher.absolute():
        return list(kept)
    student_layers = len(encoder_layers(student))
    if student_layers >= teacher_layers:
        return list(range(teacher_layers)) + [teacher_layers - 1] * (student_layers - teacher_layers)
    return every_other_layer(teacher_layers, student_layers)


def check_layer_map(layer_map: list[int], teacher_layers: int, student_layers: int) -> None:
    if any(not 0 <= i < teacher_layers for i in layer_map):
        raise BertcError(f"layer mapping {layer_map} names teacher layers outside 0 to {teacher_layers - 1}")
    if len(layer_map) != student_layers:
        raise BertcError(f"layer mapping {layer_map} has {len(layer_map)} entries for a student with "
                         f"{student_layers} layers; give one teacher layer per student layer")
