"""`bertc prune`: structural head, layer and FFN pruning by importance, with optional recovery training.

Pruning is structural: q/k/v rows, output-projection columns and FFN matrices are physically sliced
(bertc.modeling.keep_heads_ / keep_neurons_) and removed layers leave the encoder, so the model is smaller and
faster, not masked. The per-layer shapes go into config.json, so `bertc.load_model` rebuilds it exactly.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import torch
from torch import nn

from bertc.artifact import check_output, load_artifact, save_artifact
from bertc.compress.config import PruneConfig
from bertc.compress.flops import compare_sizes, size_report
from bertc.compress.importance import ImportanceScores, compute_importance
from bertc.data.labels import check_known_labels
from bertc.errors import BertcError
from bertc.jsonio import to_jsonable
from bertc.modeling import (
    base_model,
    encoder_layers,
    head_size,
    keep_heads_,
    keep_neurons_,
    layer_shapes,
    record_layer_shapes_,
)

IMPORTANCE_FILE = "importance.json"


def prune(src: Path | str, config: PruneConfig, out: Path | str, *, overwrite: bool = False,
          resume: bool = False) -> Path:
    """Prune the artifact ``src`` into a new artifact ``out`` (recovering between steps when asked).

    Every step leaves a snapshot (the pruned model, then the recovered one) in the work directory beside ``out``,
    so with ``resume`` an interrupted run reloads finished steps and continues recovery from its last checkpoint.
    """
    from bertc.data.prepare import prepare_data
    from bertc.training.trainer import CONFIG_FILE, check_device, remove_work_dir, resolve_device, work_dir_for

    src, out = Path(src), check_output(out, overwrite, inputs=(src,))
    device = check_device(config.recover) if config.recover else resolve_device("auto")
    artifact = load_artifact(src)
    model, manifest = artifact.model, artifact.manifest
    check_against_model(config, model)
    data_config, data_source = config.data.resolve(manifest)
    use_gradient = config.importance == "gradient" or (config.importance == "auto" and data_config is not None)
    problems = []
    if use_gradient and data_config is None:
        problems.append(f"--importance gradient needs labelled data ({data_source}); pass --data")
    if config.recover is not None and data_config is None:
        problems.append(f"recovery training needs labelled data ({data_source}); pass --data")
    if not use_gradient and config.layers is not None and config.layer_strategy == "importance":
        problems.append("layer importance is measured on data and magnitude scoring cannot rank layers; pass "
                        "--data, or --layer-strategy top or alternate")
    if problems:
        raise BertcError("; ".join(problems))
    data = prepare_data(data_config) if data_config is not None else None
    labels = manifest["task"]["labels"]
    label2id = {label: i for i, label in enumerate(labels)}
    if data is not None:
        check_labels(data, labels)
    max_length = manifest["task"].get("max_length") or 128
    model.to(device)
    teacher = copy.deepcopy(model).eval() if config.distill else None

    before = size_report(model, max_length)
    heads0, ffn0 = layer_shapes(model)
    start = {"heads": heads0, "ffn": ffn0}
    origins = list(range(len(heads0)))  # parent layer index of each current layer
    head_origins = [list(range(h)) for h in heads0]  # parent head index of each current head
    work_dir = work_dir_for(out)
    start_work_dir(work_dir, {"artifact": str(src.absolute()), **to_jsonable(config)}, resume)
    steps, logs = [], []
    for step in range(1, config.iterative + 1):
        step_dir = work_dir / f"step-{step}"
        if resume and (done := load_step(step_dir / "recovered", device)):
            model, record, origins, head_origins = done
            steps.append(record)
            logs.append((step, step_dir / "recovery" / "train_log.jsonl"))
            continue
        if resume and (pruned := load_step(step_dir / "pruned", device)):
            model, record, origins, head_origins = pruned
        else:
            steps_left = config.iterative - step + 1
            drops = layer_drops_needed(config, len(origins), steps_left)
            scores = compute_importance(model, artifact.tokenizer, data.train if use_gradient else None, label2id,
                                        samples=config.importance_samples, max_length=max_length,
                                        seed=config.data.seed + step, layer_drops=drops)
            kept = prune_model_(model, config, scores, steps_left=steps_left, start=start, origins=origins)
            record = step_record(step, scores, kept, origins, head_origins)
            origins = [origins[i] for i in kept["kept_layers"]]
            head_origins = [[head_origins[i][h] for h in heads] for i, heads in zip(kept["kept_layers"],
                                                                                   kept["kept_heads"])]
            record["shape_after"] = size_report(model, max_length)
            if data is not None and len(data.eval):
                record["eval_accuracy_after_pruning"] = evaluate_model(model, artifact.tokenizer, labels, data,
                                                                       max_length, device)["accuracy"]
            save_step(step_dir / "pruned", model, record, origins, head_origins)
        if config.recover is not None:
            recovery_dir = step_dir / "recovery"
            result = recover(model, artifact.tokenizer, data, label2id, config, recovery_dir, teacher, origins,
                             resume=resume and (recovery_dir / CONFIG_FILE).is_file())
            model = result.model
            record["recovery"] = result.metrics
            logs.append((step, result.log_file))
            save_step(step_dir / "recovered", model, record, origins, head_origins)
            shutil.rmtree(step_dir / "pruned", ignore_errors=True)  # superseded: resume starts from "recovered"
        steps.append(record)

    after = size_report(model, max_length)
    metrics = {"steps": [{k: v for k, v in s.items() if k in ("step", "eval_accuracy_after_pruning", "recovery")}
                         for s in steps]}
    if data is not None and len(data.eval):
        metrics["eval"] = {**evaluate_model(model, artifact.tokenizer, labels, data, max_length, device),
                           "data": data.eval.source}
    importance_file = work_dir / IMPORTANCE_FILE
    importance_file.write_text(json.dumps({"data": data_source if use_gradient else None, "steps": steps},
                                          indent=1) + "\n")
    extra_files = {IMPORTANCE_FILE: importance_file}
    if logs:
        extra_files["train_log.jsonl"] = merge_logs(logs, work_dir / "train_log.jsonl")
    compression = {"technique": "prune", "importance": "gradient" if use_gradient else "magnitude",
                   "data": data_source if data is not None else None, "before": before, "after": after,
                   "ratios": compare_sizes(before, after), "kept_layers": origins, "kept_heads": head_origins,
                   "importance_file": IMPORTANCE_FILE}
    save_artifact(out, model.cpu(), artifact.tokenizer, stage="prune", config=config, task=manifest["task"],
                  parent=src, metrics=metrics, extra={"compression": compression}, extra_files=extra_files,
                  overwrite=overwrite)
    remove_work_dir(work_dir)
    return out


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
    if problems:
        raise BertcError("; ".join(problems))


def check_labels(data, labels: list) -> None:
    check_known_labels([*data.train.labels, *data.eval.labels], labels, data.train.source,
                       "Pass --data of the same task")


def layer_drops_needed(config: PruneConfig, num_layers: int, steps_left: int) -> int:
    """Rounds of greedy layer ablation this step needs (only for --layers with the importance strategy)."""
    if config.layers is None or config.layer_strategy != "importance":
        return 0
    return num_layers - step_target(num_layers, config.layers, steps_left)


def step_target(current: int, final: int, steps_left: int) -> int:
    """Move an equal share of the remaining way from ``current`` to ``final`` (all of it in the last step)."""
    if final >= current:
        return current
    return round(current - (current - final) / steps_left)


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
            keep_heads_(layers[i], kept_heads[i], head_dim)
        if len(kept_neurons[i]) < ffn_now[i]:
            keep_neurons_(layers[i], kept_neurons[i])
    keep_layers_(model, kept_layers)
    record_layer_shapes_(model)
    return {"kept_layers": kept_layers, "kept_heads": [kept_heads[i] for i in kept_layers],
            "kept_neurons": [kept_neurons[i].tolist() for i in kept_layers]}


def choose_layers(config: PruneConfig, scores: ImportanceScores, origins: list[int], steps_left: int) -> list[int]:
    n = len(origins)
    if config.drop_layers:
        return [i for i in range(n) if origins[i] not in set(config.drop_layers)]
    if config.layers is None:
        return list(range(n))
    target = step_target(n, config.layers, steps_left)
    if target >= n:
        return list(range(n))
    if config.layer_strategy == "top":
        return list(range(target))
    if config.layer_strategy == "alternate":
        return every_other_layer(n, target)
    order = scores.layer_order or []
    if len(order) < n - target:
        raise BertcError("layer importance was not measured for this many layers; pass data with --data, or "
                         "--layer-strategy top or alternate")
    dropped = set(order[:n - target])
    return [i for i in range(n) if i not in dropped]


def every_other_layer(num_layers: int, keep: int) -> list[int]:
    """``keep`` evenly spaced layers ending with the last one: 6 -> 3 keeps 1, 3, 5 (TinyBERT's mapping)."""
    return sorted({max(0, min(num_layers - 1, round((j + 1) * num_layers / keep) - 1)) for j in range(keep)})


def choose_heads(config, scores, heads_now, kept_layers, origins, start, steps_left) -> dict[int, list[int]]:
    """Head indices to keep in each kept layer."""
    keep = {i: list(range(heads_now[i])) for i in kept_layers}
    if config.heads is not None:
        for i in kept_layers:
            target = step_target(heads_now[i], min(config.heads, heads_now[i]), steps_left)
            keep[i] = top_indices(scores.heads[i], target)
    elif config.heads_global is not None or config.heads_global_ratio is not None:
        total = sum(heads_now[i] for i in kept_layers)
        if config.heads_global is not None:
            final = min(config.heads_global, total)
        else:
            final = max(1, round(config.heads_global_ratio * sum(start["heads"][origins[i]] for i in kept_layers)))
        target = step_target(total, min(final, total), steps_left)
        ranked = sorted(((-score, i, h) for i in kept_layers for h, score in enumerate(normalized(scores.heads[i]))))
        chosen = {(i, h) for _, i, h in ranked[:target]}
        keep = {i: [h for h in range(heads_now[i]) if (i, h) in chosen] for i in kept_layers}
    return keep


def choose_neurons(config, scores, ffn_now, kept_layers, origins, start, steps_left) -> dict[int, torch.Tensor]:
    """Intermediate neuron indices to keep in each kept layer."""
    keep = {}
    for i in kept_layers:
        size = ffn_now[i]
        if config.ffn_size is not None:
            final = min(config.ffn_size, size)
        elif config.ffn is not None:
            final = min(size, max(1, round(config.ffn * start["ffn"][origins[i]])))
        else:
            final = size
        keep[i] = torch.tensor(top_indices(scores.ffn[i], step_target(size, final, steps_left)), dtype=torch.long)
    return keep


def top_indices(scores: list[float], k: int) -> list[int]:
    """The ``k`` highest-scoring indices in ascending order (ties: the lower index wins)."""
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def normalized(scores: list[float]) -> list[float]:
    """Scores divided by their layer's L2 norm, so layers compare fairly (Michel et al. 2019)."""
    norm = math.sqrt(sum(s * s for s in scores))
    return [s / norm if norm > 0 else 0.0 for s in scores]


def keep_layers_(model, indices: list[int]) -> None:
    """Keep only the listed encoder layers (in order) and update the config to match."""
    encoder = base_model(model).encoder
    if list(indices) == list(range(len(encoder.layer))):
        return
    encoder.layer = nn.ModuleList([encoder.layer[i] for i in indices])
    for new_index, layer in enumerate(encoder.layer):  # caches key layers by index; keep them consistent
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    record_layer_shapes_(model)


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


def recover(model, tokenizer, data, label2id: dict, config: PruneConfig, work_dir: Path, teacher,
            origins: list[int], resume: bool = False):
    """Fine-tune the pruned model, or distil the unpruned parent into it with ``--distill``."""
    if teacher is not None:
        from bertc.compress.distill import distill_model

        return distill_model(model, teacher, tokenizer, data, label2id, config.recover, config.distill_loss,
                             layer_map=origins, work_dir=work_dir, resume=resume,
                             description="recovery (distilling)")
    from bertc.training.trainer import train_model

    return train_model(model, tokenizer, data, label2id, config.recover, work_dir, resume=resume,
                       description="recovery")


# ---------------------------------------------------------------------------------------------- --resume

RUN_FILE, STEP_FILE = "prune_run.json", "step.json"


def start_work_dir(work_dir: Path, run: dict, resume: bool) -> None:
    """Check an interrupted run's leftovers against this one; without ``resume`` they are an error, as in
    `bertc finetune`, so a long recovery is never thrown away by accident."""
    from bertc.training.trainer import check_resume_record

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


def save_step(directory: Path, model, record: dict, origins: list[int], head_origins: list[list[int]]) -> None:
    """A finished step: the model with its per-layer shapes, and what the step decided (in parent numbering)."""
    from bertc.artifact import staging_dir

    record_layer_shapes_(model)
    with staging_dir(directory, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        (tmp / STEP_FILE).write_text(json.dumps({"record": record, "origins": origins,
                                                 "head_origins": head_origins}) + "\n")


def load_step(directory: Path, device: str):
    """(model, record, origins, head_origins) of a finished step, or None if it did not finish."""
    from bertc.artifact import load_model

    if not (directory / STEP_FILE).is_file():
        return None
    state = json.loads((directory / STEP_FILE).read_text())
    return load_model(directory, device=device), state["record"], state["origins"], state["head_origins"]


def evaluate_model(model, tokenizer, labels: list, data, max_length: int, device: str) -> dict:
    from bertc.inference import TorchPredictor, score_dataset

    return score_dataset(TorchPredictor(model, tokenizer, labels, max_length, 64, device), data.eval)


def merge_logs(logs: list[tuple[int, Path]], path: Path) -> Path:
    """One training log for all recovery steps, each record tagged with its pruning step."""
    with path.open("w") as f:
        for step, log in logs:
            if log.is_file():
                for line in log.read_text().splitlines():
                    if line:
                        f.write(json.dumps({"prune_step": step, **json.loads(line)}) + "\n")
    return path
