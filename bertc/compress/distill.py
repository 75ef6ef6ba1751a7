"""`bertc distill`: train a smaller student on a teacher's soft labels (and, optionally, its internals).

The student is an existing artifact (``--student``, e.g. a pruned one) or a copy of the teacher keeping some of
its layers (``--student-layers``). Training is :func:`bertc.compress.distillation.distill_`, which recovery after
pruning uses too.
"""

from __future__ import annotations

from pathlib import Path

from bertc.artifact import check_output, parent_record
from bertc.compress.config import DistillConfig
from bertc.compress.distillation import distill_
from bertc.compress.flops import compare_sizes, size_report
from bertc.data.prepare import check_model_labels, prepare_data, task_record
from bertc.errors import BertcError
from bertc.inference.evaluation import score_dataset
from bertc.inference.pytorch import TorchPredictor
from bertc.modeling import check_max_length, encoder_layers, every_other_layer, make_student
from bertc.torch_artifact import Artifact, load_artifact, save_artifact
from bertc.training.trainer import check_device
from bertc.training.workdir import cleaned_up_on_failure, is_main_process, remove_work_dir, work_dir_for


def distill(src: Path | str, config: DistillConfig, out: Path | str, *, overwrite: bool = False,
            resume: bool = False) -> Path:
    """Distil the artifact ``src`` (the teacher) into a student and write it to ``out``."""
    from transformers import set_seed

    src, out = Path(src), check_output(out, overwrite, inputs=(src, config.student))
    check_device(config.train)
    teacher = load_artifact(src)
    student, tokenizer, layer_map = choose_student(teacher, config)
    check_max_length(student, config.train.max_length, "the student")
    check_max_length(teacher.model, config.train.max_length, "the teacher")
    data_config, data_source = config.data.resolve(teacher.manifest)
    if data_config is None:
        raise BertcError(f"distillation needs training data ({data_source}); pass --train")
    data = prepare_data(data_config)
    labels = teacher.manifest["task"]["labels"]
    check_model_labels(data, labels)

    set_seed(config.train.seed)
    work_dir = work_dir_for(out)
    with cleaned_up_on_failure(work_dir, resume=resume):
        result = distill_(student, teacher.model, tokenizer, data, {label: i for i, label in enumerate(labels)},
                          config.train, config.loss, layer_map=layer_map, work_dir=work_dir, resume=resume)
        if not is_main_process():
            return out
        max_length = config.train.max_length
        predictor = TorchPredictor(result.model, tokenizer, labels, max_length, config.train.eval_batch_size,
                                   result.metrics["device"])
        metrics = {"eval": {**score_dataset(predictor, data.eval), "data": data.eval.source},
                   "training": result.metrics}
        before, after = size_report(teacher.model, max_length), size_report(result.model, max_length)
        compression = {"technique": "distill", "teacher": parent_record(src), "layer_map": layer_map,
                       "student": parent_record(config.student) if config.student else "made from the teacher",
                       "data": data_source, "before": before, "after": after, "ratios": compare_sizes(before, after)}
        save_artifact(out, result.model.cpu(), tokenizer, stage="distill", config=config,
                      task=task_record(data_config, data, labels, max_length), parent=config.student or src,
                      metrics=metrics, extra={"compression": compression},
                      extra_files={"train_log.jsonl": result.log_file}, overwrite=overwrite)
    remove_work_dir(work_dir)
    return out


def choose_student(teacher: Artifact, config: DistillConfig) -> tuple[object, object, list[int]]:
    """The student model, its tokenizer, and the teacher layer each of its layers learns from."""
    teacher_layers = len(encoder_layers(teacher.model))
    if config.student is not None:
        student_artifact = load_artifact(config.student)
        check_compatible(teacher, student_artifact)
        student, tokenizer = student_artifact.model, student_artifact.tokenizer
        layer_map = list(config.layer_map or default_layer_map(student_artifact, teacher.path, teacher_layers))
    else:
        if config.student_layers is not None and config.student_layers > teacher_layers:
            raise BertcError(f"--student-layers {config.student_layers} is more than the teacher's {teacher_layers} "
                             f"layers; pass 1 to {teacher_layers}")
        layer_map = list(config.layer_map or every_other_layer(teacher_layers, config.student_layers))
        check_layer_map(layer_map, teacher_layers, len(layer_map))
        student, tokenizer = make_student(teacher.model, layer_map), teacher.tokenizer
    check_layer_map(layer_map, teacher_layers, len(encoder_layers(student)))
    hidden, teacher_hidden = student.config.hidden_size, teacher.model.config.hidden_size
    if config.loss.hidden_weight and hidden != teacher_hidden:
        raise BertcError(f"the hidden-state loss compares hidden states, but the student's hidden size {hidden} "
                         f"differs from the teacher's {teacher_hidden}; pass --hidden-weight 0")
    return student, tokenizer, layer_map


def check_compatible(teacher: Artifact, student: Artifact) -> None:
    """Teacher and student must predict the same labels from the same token ids."""
    problems = []
    t_labels = [str(label) for label in teacher.manifest["task"]["labels"]]
    s_labels = [str(label) for label in student.manifest["task"]["labels"]]
    if t_labels != s_labels:
        problems.append(f"the teacher predicts labels {t_labels} but the student {s_labels}; distil into a student "
                        "trained on the same task")
    if type(teacher.tokenizer).__name__ != type(student.tokenizer).__name__ or \
            teacher.tokenizer.get_vocab() != student.tokenizer.get_vocab():
        problems.append(f"the teacher ({teacher.path}) and the student ({student.path}) use different tokenizers; "
                        "the student must read the same token ids, e.g. make it with --student-layers")
    if problems:
        raise BertcError("; ".join(problems))


def default_layer_map(student_artifact: Artifact, teacher: Path, teacher_layers: int) -> list[int]:
    """The teacher layers a student's layers came from when it was pruned from the teacher, else uniform."""
    manifest = student_artifact.manifest
    parent = (manifest.get("parent") or {}).get("path")
    kept = manifest.get("compression", {}).get("kept_layers")
    if kept is not None and parent is not None and Path(parent) == teacher.absolute():
        return list(kept)
    student_layers = len(encoder_layers(student_artifact.model))
    if student_layers >= teacher_layers:
        return list(range(teacher_layers)) + [teacher_layers - 1] * (student_layers - teacher_layers)
    return every_other_layer(teacher_layers, student_layers)


def check_layer_map(layer_map: list[int], teacher_layers: int, student_layers: int) -> None:
    if any(not 0 <= i < teacher_layers for i in layer_map):
        raise BertcError(f"layer mapping {layer_map} names teacher layers outside 0 to {teacher_layers - 1}")
    if len(layer_map) != student_layers:
        raise BertcError(f"layer mapping {layer_map} has {len(layer_map)} entries for a student with "
                         f"{student_layers} layers; give one teacher layer per student layer")
