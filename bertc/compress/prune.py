"""`bertc prune`: structural pruning of layers, heads, FFN neurons and hidden channels by importance, vocabulary
and position pruning, an activation swap, with optional recovery training.

Pruning is structural: q/k/v rows, output-projection columns, FFN matrices and hidden channels are physically
sliced (bertc.modeling.keep_heads_ / keep_neurons_ / keep_hidden_) and removed layers leave the encoder, so the
model is smaller and faster, not masked. The shapes go into config.json, so `bertc.load_model` rebuilds it exactly.
The vocabulary, positions and activation are changed once, before the structural steps; the unpruned parent
that recovery distils from keeps the original activation but shares the new vocabulary (both read the same ids).
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from bertc.artifact import check_output, staging_dir
from bertc.compress.activation import swap_activation_
from bertc.compress.config import PruneConfig
from bertc.compress.distillation import distill_
from bertc.compress.flops import compare_sizes, size_report
from bertc.compress.importance import ImportanceScores, compute_importance
from bertc.compress.selection import (
    choose_heads,
    choose_hidden,
    choose_layers,
    choose_neurons,
    layer_drops_needed,
    spec_targets,
)
from bertc.compress.vocabulary import prune_vocabulary_, truncate_positions_, vocabulary_texts, wordpiece_layout
from bertc.compress.width import keep_hidden_
from bertc.data.prepare import PreparedData, check_model_labels, prepare_data
from bertc.errors import BertcError
from bertc.families import BERT
from bertc.inference.evaluation import score_dataset
from bertc.inference.pytorch import TorchPredictor
from bertc.jsonio import to_jsonable
from bertc.modeling import (
    encoder_layers,
    family_of,
    head_size,
    keep_heads_,
    keep_layers_,
    keep_neurons_,
    layer_shapes,
    max_length_problem,
    record_layer_shapes_,
    usable_positions,
)
from bertc.torch_artifact import load_artifact, load_model, save_artifact
from bertc.training.trainer import TrainResult, check_device, resolve_device, train_model
from bertc.training.workdir import (
    CONFIG_FILE,
    check_resume_record,
    cleaned_up_on_failure,
    has_checkpoint,
    remove_work_dir,
    work_dir_for,
)

IMPORTANCE_FILE = "importance.json"
RUN_FILE, STEP_FILE = "prune_run.json", "step.json"


def prune(src: Path | str, config: PruneConfig, out: Path | str, *, overwrite: bool = False,
          resume: bool = False) -> Path:
    """Prune the artifact ``src`` into a new artifact ``out`` (recovering between steps when asked).

    Every step leaves a snapshot (the pruned model, then the recovered one) in the work directory beside ``out``,
    so with ``resume`` an interrupted run reloads finished steps and continues recovery from its last checkpoint.
    """
    src, out = Path(src), check_output(out, overwrite, inputs=(src,))
    device = check_device(config.recover) if config.recover else resolve_device("auto")
    artifact = load_artifact(src)
    task = artifact.manifest["task"]
    check_against_model(config, artifact.model)
    vocab_texts = None
    if config.vocab is not None:
        wordpiece_layout(artifact.tokenizer)  # refuse BPE and Unigram tokenizers before reading anything more
        vocab_texts = vocabulary_texts(config.vocab, task)
    data_config, data_source = config.data.resolve(artifact.manifest)
    check_data_needs(config, data_config is not None, data_source)
    data = prepare_data(data_config) if data_config is not None else None
    if data is not None:
        check_model_labels(data, task["labels"])
    work_dir = work_dir_for(out)
    start_work_dir(work_dir, {"artifact": str(src.absolute()), **to_jsonable(config)}, resume)
    with cleaned_up_on_failure(work_dir, resume=resume, resumable=has_finished_work):
        result = prune_(artifact.model.to(device), artifact.tokenizer, config, data, work_dir,
                        labels=task["labels"], max_length=task.get("max_length") or 128, resume=resume,
                        vocab_texts=vocab_texts)
        compression, extra_files = artifact_records(result, work_dir, data_source if data is not None else None)
        if task.get("max_length") and task["max_length"] > usable_positions(result.model.config):
            task = {**task, "max_length": usable_positions(result.model.config)}  # --max-positions below it
        save_artifact(out, result.model.cpu(), result.tokenizer, stage="prune", config=config, task=task,
                      parent=src, metrics=result.metrics(), extra={"compression": compression},
                      extra_files=extra_files, overwrite=overwrite)
    remove_work_dir(work_dir)
    return out


@dataclass
class PruneResult:
    model: object  # the pruned (and recovered) model
    importance: str  # how importance was scored: "gradient" or "activation" (on data), or "magnitude"
    before: dict  # size of the model as given (bertc.compress.flops.size_report)
    after: dict  # size of the pruned model
    steps: list[dict]  # what each step scored, kept and recovered (in the given model's numbering)
    kept_layers: list[int]  # the given model's index of each remaining layer
    kept_heads: list[list[int]]  # the given model's index of each remaining head, per remaining layer
    tokenizer: object = None  # the tokenizer to ship: a new one when the vocabulary was pruned
    edits: dict | None = None  # what changed model-wide: vocabulary, positions, activation
    eval: dict | None = None  # classification report on the evaluation data, when there is some
    logs: list[tuple[int, Path]] | None = None  # (step, recovery training log) of each recovered step

    def metrics(self) -> dict:
        """The manifest's metrics: accuracy after each step (and its recovery), and the final evaluation."""
        keep = ("step", "eval_accuracy_after_pruning", "recovery")
        metrics = {"steps": [{k: v for k, v in step.items() if k in keep} for step in self.steps]}
        if self.eval is not None:
            metrics["eval"] = self.eval
        return metrics


def prune_(model, tokenizer, config: PruneConfig, data: PreparedData | None, work_dir: Path, *, labels: list,
           max_length: int = 128, resume: bool = False, vocab_texts: list[str] | None = None) -> PruneResult:
    """Prune ``model`` to the targets of ``config`` in ``config.iterative`` steps, scoring importance on ``data``
    (weight magnitude when None) and, with ``config.recover``, training it back after each step.

    ``labels`` are the model's classes in output order. Each finished step is saved under ``work_dir``; with
    ``resume`` finished steps are reloaded and an interrupted recovery continues from its last checkpoint, so
    use the returned model and tokenizer: the ones given are changed in place but may have been replaced.
    ``vocab_texts`` are the texts of ``config.vocab`` (`bertc.compress.vocabulary.vocabulary_texts`).
    """
    check_against_model(config, model)
    check_data_needs(config, data is not None, "none was given")
    if config.vocab is not None and not vocab_texts:
        raise BertcError(f"--vocab {config.vocab} has no texts; pass a data file with a text column")
    method = importance_method(config, data is not None)
    device = str(next(model.parameters()).device)
    label2id = {label: i for i, label in enumerate(labels)}
    before = size_report(model, max_length)
    tokenizer, edits = edit_inputs_(model, tokenizer, config, vocab_texts)
    max_length = min(max_length, usable_positions(model.config))
    teacher = copy.deepcopy(model).eval() if config.distill else None
    if config.activation is not None:
        edits["activation"] = swap_activation_(model, config.activation)
    heads0, ffn0 = layer_shapes(model)
    start = {"heads": heads0, "ffn": ffn0}
    origins = list(range(len(heads0)))  # parent layer index of each current layer
    head_origins = [list(range(h)) for h in heads0]  # parent head index of each current head
    hidden_origins = list(range(model.config.hidden_size))  # parent channel of each current hidden channel
    steps, logs = [], []
    for step in range(1, config.iterative + 1):
        step_dir = work_dir / f"step-{step}"
        if resume and (done := load_step(step_dir / "recovered", device)):
            model, record, origins, head_origins = done
            hidden_origins = record.get("hidden_kept", hidden_origins)
            steps.append(record)
            logs.append((step, step_dir / "recovery" / "train_log.jsonl"))
            continue
        if resume and (pruned := load_step(step_dir / "pruned", device)):
            model, record, origins, head_origins = pruned
            hidden_origins = record.get("hidden_kept", hidden_origins)
        elif not config.prunes_structure:
            record = {"step": step}
            # Without recovery the final evaluation below scores this very model: do not score it twice.
            if data is not None and len(data.eval) and config.recover is not None:
                record["eval_accuracy_after_pruning"] = evaluate(model, tokenizer, labels, data, max_length)["accuracy"]
        else:
            steps_left = config.iterative - step + 1
            drops = layer_drops_needed(config, len(origins), steps_left)
            scores = compute_importance(model, tokenizer, data.train if method != "magnitude" else None, label2id,
                                        samples=config.importance_samples, max_length=max_length,
                                        seed=config.data.seed + step, layer_drops=drops, method=method)
            kept = prune_model_(model, config, scores, steps_left=steps_left, start=start, origins=origins)
            record = step_record(step, scores, kept, origins, head_origins)
            if kept["kept_hidden"] is not None:
                hidden_origins = [hidden_origins[c] for c in kept["kept_hidden"]]
                record["hidden_kept"] = hidden_origins
            origins = [origins[i] for i in kept["kept_layers"]]
            head_origins = [[head_origins[i][h] for h in heads] for i, heads in zip(kept["kept_layers"],
                                                                                   kept["kept_heads"])]
            record["shape_after"] = size_report(model, max_length)
            if data is not None and len(data.eval):
                record["eval_accuracy_after_pruning"] = evaluate(model, tokenizer, labels, data, max_length)["accuracy"]
            save_step(step_dir / "pruned", model, record, origins, head_origins)
        if config.recover is not None:
            recovery_dir = step_dir / "recovery"
            result = recover_(model, tokenizer, data, label2id, config, recovery_dir, teacher, origins,
                              resume=resume and (recovery_dir / CONFIG_FILE).is_file(),
                              teacher_channels=hidden_origins if teacher is not None and len(hidden_origins)
                              < teacher.config.hidden_size else None)
            model = result.model
            record["recovery"] = result.metrics
            logs.append((step, result.log_file))
            save_step(step_dir / "recovered", model, record, origins, head_origins)
            shutil.rmtree(step_dir / "pruned", ignore_errors=True)  # superseded: resume starts from "recovered"
        steps.append(record)
    final = None
    if data is not None and len(data.eval):
        final = {**evaluate(model, tokenizer, labels, data, max_length), "data": data.eval.source}
    return PruneResult(model=model, importance=method, before=before,
                       after=size_report(model, max_length), steps=steps, kept_layers=origins,
                       kept_heads=head_origins, tokenizer=tokenizer, edits=edits, eval=final, logs=logs)


def edit_inputs_(model, tokenizer, config: PruneConfig, vocab_texts: list[str] | None):
    """The vocabulary and position pruning (before the parent is copied for distillation, so that it reads the
    same token ids); returns the tokenizer to use from now on and what changed."""
    edits = {}
    if config.vocab is not None:
        tokenizer, edits["vocab"] = prune_vocabulary_(model, tokenizer, vocab_texts, keep_top=config.vocab_top)
        edits["vocab"]["data"] = config.vocab
    if config.max_positions is not None:
        edits["positions"] = truncate_positions_(model, config.max_positions)
        tokenizer.model_max_length = min(tokenizer.model_max_length, usable_positions(model.config))
    return tokenizer, edits


def artifact_records(result: PruneResult, work_dir: Path, data_source: str | None) -> tuple[dict, dict]:
    """The manifest's ``compression`` record and the files beside the model: what each step decided
    (``importance.json``) and, after recovery, the training log of all steps."""
    importance_file = work_dir / IMPORTANCE_FILE
    importance_file.write_text(json.dumps({"data": data_source if result.importance != "magnitude" else None,
                                           "steps": result.steps}, indent=1) + "\n")
    extra_files = {IMPORTANCE_FILE: importance_file}
    if result.logs:
        extra_files["train_log.jsonl"] = merge_logs(result.logs, work_dir / "train_log.jsonl")
    compression = {"technique": "prune", "importance": result.importance, "data": data_source,
                   "before": result.before, "after": result.after, "ratios": compare_sizes(result.before, result.after),
                   "kept_layers": result.kept_layers, "kept_heads": result.kept_heads,
                   "importance_file": IMPORTANCE_FILE, **(result.edits or {})}
    return compression, extra_files


def importance_method(config: PruneConfig, has_data: bool) -> str:
    """How importance is scored: on data ("gradient", "activation") or by weight "magnitude" (or none needed)."""
    if not config.prunes_structure or config.importance == "magnitude":
        return "magnitude"
    if config.importance == "auto":
        return "gradient" if has_data else "magnitude"
    return config.importance


def check_data_needs(config: PruneConfig, has_data: bool, why_none: str) -> None:
    """What ``config`` cannot do without labelled data: one error listing all of it (``why_none``: why none)."""
    problems = []
    if (method := importance_method(config, has_data)) != "magnitude" and not has_data:
        problems.append(f"--importance {method} needs labelled data ({why_none}); pass --data")
    if config.recover is not None and not has_data:
        problems.append(f"recovery training needs labelled data ({why_none}); pass --data")
    if method == "magnitude" and config.layers is not None and config.layer_strategy == "importance":
        problems.append("layer importance is measured on data and magnitude scoring cannot rank layers; pass "
                        "--data, or --layer-strategy top or alternate")
    if problems:
        raise BertcError("; ".join(problems))


def check_against_model(config: PruneConfig, model) -> None:
    """Targets the model cannot meet (more heads or layers than it has...): one error listing all of them."""
    heads, ffn = layer_shapes(model)
    problems = []
    if config.heads is not None and config.heads > max(heads, default=0):
        problems.append(f"--heads {config.heads} is more than the model's {max(heads, default=0)} heads per layer; "
                        f"pass 1 to {max(heads, default=0)}")
    if config.heads_global is not None and config.heads_global > sum(heads):
        problems.append(f"--heads-global {config.heads_global} is more than the model's {sum(heads)} heads; "
                        f"pass 1 to {sum(heads)} or a share such as 0.5")
    if config.layers is not None and config.layers > len(heads):
        problems.append(f"--layers {config.layers} is more than the model's {len(heads)} layers; pass 1 to "
                        f"{len(heads)}")
    bad = [i for i in config.drop_layers if i >= len(heads)]
    if bad:
        problems.append(f"--drop-layers {bad} out of range: the model has layers 0 to {len(heads) - 1}")
    elif config.drop_layers and len(set(config.drop_layers)) >= len(heads):
        problems.append(f"--drop-layers would remove all {len(heads)} layers; keep at least one")
    if config.ffn_size is not None and config.ffn_size > max(ffn):
        problems.append(f"--ffn-size {config.ffn_size} is more than the model's {max(ffn)} intermediate neurons; "
                        f"pass 1 to {max(ffn)} or a share with --ffn")
    if config.recover is not None and (too_long := max_length_problem(model, config.recover.max_length)):
        problems.append(too_long)
    problems.extend(width_problems(config, model, heads, ffn))
    if problems:
        raise BertcError("; ".join(problems))


def width_problems(config: PruneConfig, model, heads: list[int], ffn: list[int]) -> list[str]:
    """Per-layer specs, hidden width and positions the model cannot take."""
    problems = []
    for spec, flag_name, sizes, what, minimum in (
            (config.heads_per_layer, "--heads-per-layer", heads, "heads", 0),
            (config.ffn_per_layer, "--ffn-per-layer", ffn, "FFN neurons", 1)):
        try:
            spec_targets(spec, sizes, flag_name, what, minimum)
        except BertcError as err:
            problems.append(str(err))
    hidden, head_dim = model.config.hidden_size, head_size(model)
    family = family_of(model)
    surgery = [flag for flag, value in (("--hidden", config.hidden), ("--vocab", config.vocab),
                                        ("--max-positions", config.max_positions),
                                        ("--activation", config.activation)) if value is not None]
    if surgery and not family.width_surgery:
        verb = "works" if len(surgery) == 1 else "work"
        problems.append(f"{', '.join(surgery)} {verb} on {', '.join(BERT.model_types)} models, not this "
                        f"{model.config.model_type} one; --heads, --ffn and --layers prune every family")
        return problems
    if config.hidden is not None:
        if config.hidden > hidden:
            problems.append(f"--hidden {config.hidden} is more than the model's hidden size {hidden}; pass a "
                            f"multiple of {head_dim} below {hidden}")
        elif config.hidden % head_dim:
            below = config.hidden // head_dim * head_dim
            problems.append(f"--hidden {config.hidden} is not a multiple of the head size {head_dim} (hidden "
                            f"{hidden} over {hidden // head_dim} heads; every kept head keeps its width): pass "
                            f"{below or head_dim} or {below + head_dim}")
    if config.max_positions is not None and config.max_positions > usable_positions(model.config):
        problems.append(f"--max-positions {config.max_positions} is more than the model's "
                        f"{usable_positions(model.config)} positions; pass {usable_positions(model.config)} or less")
    return problems


def prune_model_(model, config: PruneConfig, scores: ImportanceScores, *, steps_left: int = 1,
                 start: dict | None = None, origins: list[int] | None = None) -> dict:
    """Prune ``model`` in place to the targets of ``config``, keeping what ``scores`` rates highest.

    ``steps_left`` > 1 (iterative pruning) goes only part of the way. ``start`` (heads and FFN sizes per
    layer of the model pruning started from) and ``origins`` (that model's index of each current layer) let
    fractions and layer numbers refer to the starting model. Returns the kept layers, heads and neurons,
    as indices into the model as it was.
    """
    heads_now, ffn_now = layer_shapes(model)
    if start is None:
        check_against_model(config, model)
        start = {"heads": heads_now, "ffn": ffn_now}
    origins = list(range(len(heads_now))) if origins is None else origins
    kept_layers = choose_layers(config, scores, origins, steps_left)
    kept_heads = choose_heads(config, scores, heads_now, kept_layers, origins, start, steps_left)
    kept_neurons = choose_neurons(config, scores, ffn_now, kept_layers, origins, start, steps_left)
    layers, head_dim = encoder_layers(model), head_size(model)
    for i in kept_layers:
        if len(kept_heads[i]) < heads_now[i]:
            keep_heads_(model, layers[i], kept_heads[i])
        if len(kept_neurons[i]) < ffn_now[i]:
            keep_neurons_(model, layers[i], kept_neurons[i])
    keep_layers_(model, kept_layers)
    channels = choose_hidden(config, scores, model.config.hidden_size, head_dim, steps_left)
    if channels is not None:
        keep_hidden_(model, channels)
    record_layer_shapes_(model)
    return {"kept_layers": kept_layers, "kept_heads": [kept_heads[i] for i in kept_layers],
            "kept_neurons": [kept_neurons[i].tolist() for i in kept_layers],
            "kept_hidden": channels.tolist() if channels is not None else None}


def step_record(step: int, scores: ImportanceScores, kept: dict, origins: list[int],
                head_origins: list[list[int]]) -> dict:
    """What one pruning step saw and decided, in the parent's layer and head numbering."""
    kept_layers = set(kept["kept_layers"])
    heads_kept = dict(zip(kept["kept_layers"], kept["kept_heads"]))
    layers = []
    for i, origin in enumerate(origins):
        entry = {"layer": origin, "kept": i in kept_layers,
                 "head_scores": {str(head_origins[i][h]): round(s, 6) for h, s in enumerate(scores.heads[i])}}
        if i in kept_layers:
            entry["heads_kept"] = [head_origins[i][h] for h in heads_kept[i]]
            entry["heads_pruned"] = [head_origins[i][h] for h in range(len(scores.heads[i]))
                                     if h not in heads_kept[i]]
            entry["ffn_kept"] = len(kept["kept_neurons"][kept["kept_layers"].index(i)])
        entry["ffn_before"] = len(scores.ffn[i])
        layers.append(entry)
    importance = scores.to_json()
    if importance["layer_order"] is not None:
        importance["layer_order"] = [origins[i] for i in importance["layer_order"]]
        for round_ in importance["layer_rounds"]:
            round_["loss_without"] = {str(origins[int(k)]): v for k, v in round_["loss_without"].items()}
            round_["removed"] = origins[round_["removed"]]
    return {"step": step, "method": scores.method, "samples": scores.samples, "base_loss": scores.base_loss,
            "layers": layers, "layer_order": importance["layer_order"], "layer_rounds": importance["layer_rounds"],
            "ffn_scores": {str(origin): values for origin, values in zip(origins, importance["ffn"])}}


def recover_(model, tokenizer, data: PreparedData, label2id: dict, config: PruneConfig, work_dir: Path, teacher,
             layer_map: list[int], *, resume: bool = False, teacher_channels: list[int] | None = None) -> TrainResult:
    """Train the pruned ``model`` back in place: fine-tune it, or (``--distill``) distil ``teacher``, the unpruned
    parent, into it with each layer (and hidden channel) learning from the parent's one it came from."""
    if teacher is not None:
        return distill_(model, teacher, tokenizer, data, label2id, config.recover, config.distill_loss,
                        layer_map=layer_map, work_dir=work_dir, resume=resume, description="recovery (distilling)",
                        teacher_channels=teacher_channels)
    return train_model(model, tokenizer, data, label2id, config.recover, work_dir, resume=resume,
                       description="recovery")


def evaluate(model, tokenizer, labels: list, data: PreparedData, max_length: int) -> dict:
    device = str(next(model.parameters()).device)
    return score_dataset(TorchPredictor(model, tokenizer, labels, max_length, 64, device), data.eval)


# ---------------------------------------------------------------------------------------------- --resume

def start_work_dir(work_dir: Path, run: dict, resume: bool) -> None:
    """Check an interrupted run's leftovers against this one; without ``resume`` they are an error, as in
    `bertc finetune`, so a long recovery is never thrown away by accident."""
    saved = work_dir / RUN_FILE
    if resume:
        check_resume_record(saved, run, "bertc prune run")
        return
    if any(work_dir.glob(f"step-*/*/{STEP_FILE}")) or any(work_dir.glob("step-*/recovery/checkpoints/*")):
        raise BertcError(f"an interrupted run left finished steps or checkpoints in {work_dir}; pass --resume to "
                         "continue it, or delete that directory to start over")
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    saved.write_text(json.dumps(run, indent=1) + "\n")


def has_finished_work(work_dir: Path) -> bool:
    """Whether ``--resume`` can continue an interrupted run: a finished step or a recovery checkpoint."""
    return any(work_dir.glob(f"step-*/*/{STEP_FILE}")) or any(map(has_checkpoint, work_dir.glob("step-*/recovery")))


def save_step(directory: Path, model, record: dict, origins: list[int], head_origins: list[list[int]]) -> None:
    """A finished step: the model with its per-layer shapes, and what the step decided (in parent numbering)."""
    record_layer_shapes_(model)
    with staging_dir(directory, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        (tmp / STEP_FILE).write_text(json.dumps({"record": record, "origins": origins,
                                                 "head_origins": head_origins}) + "\n")


def load_step(directory: Path, device: str):
    """(model, record, origins, head_origins) of a finished step, or None if it did not finish."""
    if not (directory / STEP_FILE).is_file():
        return None
    state = json.loads((directory / STEP_FILE).read_text())
    return load_model(directory, device=device), state["record"], state["origins"], state["head_origins"]


def merge_logs(logs: list[tuple[int, Path]], path: Path) -> Path:
    """One training log for all recovery steps, each record tagged with its pruning step."""
    with path.open("w") as f:
        for step, log in logs:
            if log.is_file():
                for line in log.read_text().splitlines():
                    if line:
                        f.write(json.dumps({"prune_step": step, **json.loads(line)}) + "\n")
    return path
