"""What `bertc optimize` checks and measures before any long work: the data plan and the machine's speed."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bertc.artifact import is_artifact, read_manifest
from bertc.console import console
from bertc.data.clean import normalise
from bertc.data.config import Columns, TransferConfig
from bertc.data.load import TextDataset, find_split_file, read_dataset, resolve_split
from bertc.data.prepare import read_eval_data
from bertc.data.transfer import read_unlabeled
from bertc.errors import BertcError
from bertc.imports.source import classifier_source
from bertc.inference.onnx import providers_for
from bertc.modeling import describe_model, family_of, load_pretrained_classifier
from bertc.optimize.config import OptimizeConfig
from bertc.optimize.search import Shape
from bertc.torch_artifact import load_artifact


@dataclass
class DataPlan:
    train: str  # training file
    selection: str  # eval file; its first selection_rows rows choose the winner
    test: str | None  # final accuracy data
    columns: Columns
    labels: list
    train_rows: int
    selection_rows: int
    test_rows: int
    selection_in_train: int = 0  # selection rows whose text also appears in the training file (not held out)
    pairs: bool = False  # the task reads sentence pairs
    unlike_test: str | None = None  # how the selection slice's texts differ from the test data's (None: alike)


def plan_data(config: OptimizeConfig):
    """Local data files, their label sets checked against each other; returns the plan and the selection slice."""
    train, selection, test = Path(config.train), config.eval, config.test
    if train.is_dir():
        selection = selection or (str(found) if (found := find_split_file(train, "validation")) else None)
        test = test or (str(found) if (found := find_split_file(train, "test")) else None)
        train = Path(resolve_split(train, "train"))
    for flag, path in (("--train", str(train)), ("--eval", selection), ("--test", test)):
        if path is not None and not Path(path).is_file():
            raise BertcError(f"{flag} {path} is not a data file; bertc optimize needs local labelled files "
                             "(.tsv/.csv/.jsonl/.json/.parquet) or a --train directory of splits")
    if selection is None:
        raise BertcError(f"no selection data: pass --eval PATH (e.g. validation.tsv), or a --train directory with a "
                         f"validation file ({train} has none)")
    task = start_task(config.start_from) if config.start_from else {}
    columns = Columns(config.text_column or task.get("text_column"),
                      config.text_pair_column or task.get("text_pair_column"),
                      config.label_column or task.get("label_column"))
    sets, read = {}, {}
    for flag, path, split in (("--train", str(train), "train"), ("--eval", selection, "validation"),
                              ("--test", test, "test")):
        if path is not None:
            dataset = read[flag] = read_dataset(path, columns, split=split)
            if not any(label is not None for label in dataset.labels):
                raise BertcError(f"{flag} {path} has no labelled rows; check the file and --text-column/"
                                 "--label-column")
            sets[flag] = (sorted({str(label) for label in dataset.labels if label is not None}), len(dataset), path)
    problems = [f"{flag} {path} has labels {labels}" for flag, (labels, _, path) in sets.items()
                if labels != sets["--train"][0]]
    if problems:
        raise BertcError(f"the data sets have different label sets: --train {sets['--train'][2]} has labels "
                         f"{sets['--train'][0]} but {'; '.join(problems)}. Pass train and eval data of one task")
    if config.start_from:
        known = sorted(str(label) for label in task.get("labels", []))
        if known != sets["--train"][0]:
            raise BertcError(f"--from {config.start_from} predicts labels {known} but the training data has "
                             f"{sets['--train'][0]}; start from an artifact of this task")
    for flag, path in (("--eval", selection), ("--test", test)):
        if path is not None and Path(path).resolve() == train.resolve():
            raise BertcError(f"{flag} {path} is the training file; the rows that choose and score the models must be "
                             "held out from training and distillation: pass another file (e.g. validation.tsv)")
    sample, _ = read_eval_data(selection, columns, "validation", max_samples=config.setting("selection_samples"))
    plan = DataPlan(train=str(train.resolve()), selection=str(Path(selection).resolve()),
                    test=str(Path(test).resolve()) if test else None, columns=columns, labels=sets["--train"][0],
                    train_rows=sets["--train"][1], selection_rows=len(sample),
                    test_rows=min(sets["--test"][1], config.test_samples or sets["--test"][1]) if test else 0,
                    selection_in_train=len(rows_in(sample, read["--train"])),
                    pairs=read["--train"].pairs is not None)
    if plan.selection_in_train:
        console.print(f"warning: {plan.selection_in_train} of the {plan.selection_rows} selection rows of {selection} "
                      f"also appear in the training data {train}: the models may have been trained on them, so their "
                      "accuracy there is not held out", style="yellow", soft_wrap=True)
    if test and (mismatch := length_mismatch(sample, read["--test"].head(plan.test_rows))):
        plan.unlike_test = (f"warning: {mismatch}: models ranked on {selection} may rank differently on {test}; to "
                            "choose on what you serve, pass --eval data like it")
        console.print(plan.unlike_test, style="yellow", soft_wrap=True)
    if config.unlabeled and plan.pairs:
        raise BertcError("--unlabeled adds single texts, but this task reads sentence pairs; leave it out")
    if config.unlabeled:  # read now: a file without texts stops the run before the fine-tune, not after it
        unlabeled = read_unlabeled(TransferConfig(unlabeled=config.unlabeled))
        overlap = len(rows_in(sample, TextDataset(texts=unlabeled, pairs=None, labels=[None] * len(unlabeled))))
        if overlap:
            console.print(f"warning: {overlap} of the {plan.selection_rows} selection rows of {selection} are also in "
                          f"--unlabeled {config.unlabeled}: students distilled on them are not held out from them",
                          style="yellow", soft_wrap=True)
    return plan, sample


def median_words(data: TextDataset) -> float:
    return statistics.median(len(text.split()) + len((pair or "").split())
                             for text, pair in zip(data.texts, data.pairs or [None] * len(data)))


# Texts a median of 7 words long (SST-2's validation.tsv phrases) against 19 (its test.tsv sentences) ranked the same
# models differently: the standard recipe lost 0.05 points on the phrases and 1.95 on the sentences.
LENGTH_RATIO, LENGTH_WORDS = 2.0, 5


def length_mismatch(selection: TextDataset, test: TextDataset) -> str | None:
    """What makes the selection slice's texts unlike the test data's (None when they are alike): a median length
    at least twice the other's and at least 5 words apart."""
    if not len(selection) or not len(test):
        return None
    chosen, tested = median_words(selection), median_words(test)
    shorter, longer = sorted((chosen, tested))
    if longer < LENGTH_RATIO * shorter or longer - shorter < LENGTH_WORDS:
        return None
    return f"the selection rows are a median {chosen:g} words long, the test rows {tested:g}"


def rows_in(rows: TextDataset, data: TextDataset) -> list[int]:
    """Indices of ``rows`` whose input (text and second text, as cleaning normalises them) is also one of ``data``."""
    def inputs(dataset: TextDataset) -> list[tuple[str, str]]:
        return [(normalise(text), normalise(pair)) for text, pair in zip(dataset.texts, dataset.pairs or
                                                                          [None] * len(dataset))]

    known = set(inputs(data))
    return [i for i, row in enumerate(inputs(rows)) if row in known]


def start_task(start_from: str) -> dict:
    """The task of the --from model: its artifact's, or a transformers classifier's labels (checked before any data
    is read: a model bertc cannot handle is refused here as by every command)."""
    return read_manifest(start_from)["task"] if is_artifact(start_from) else classifier_source(start_from).task()


@dataclass
class Probe:
    shape: Shape  # the fine-tuned model's
    train_rate: float  # training samples/s (forward + backward, with an allowance for the optimizer step)
    infer_rate: float  # inference samples/s in PyTorch at batch 64
    seq_len: int  # mean tokens per selection sentence


def measure(config: OptimizeConfig, plan: DataPlan, sample) -> Probe:
    """The model's shape and how fast this machine trains and runs it, measured on a few real batches."""
    if config.start_from:
        artifact = load_artifact(config.start_from)
        model, tokenizer = artifact.model, artifact.tokenizer
    else:
        model, tokenizer = load_pretrained_classifier(config.model, plan.labels)
    info = describe_model(model)
    shape = Shape(layers=info["num_layers"], heads=max(info["heads_per_layer"]), ffn=max(info["ffn_per_layer"]),
                  hidden=info["hidden_size"], head_dim=info["head_size"],
                  width_surgery=family_of(model).width_surgery, family=family_of(model).name)
    device = "cuda" if config.target == "cuda" and torch.cuda.is_available() else "cpu"
    model.to(device)

    def batch(n: int):
        texts = (sample.texts * (n // len(sample.texts) + 1))[:n]
        pairs = (sample.pairs * (n // len(sample.pairs) + 1))[:n] if sample.pairs else None
        encoded = tokenizer(texts, pairs, padding=True, truncation=True, max_length=config.max_length,
                            return_tensors="pt")
        return {k: v.to(device) for k, v in encoded.items()}

    def timed(fn) -> float:
        times = []
        for _ in range(3):  # the first call warms up
            begin = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - begin)
        return min(times[1:])

    lengths = tokenizer(sample.texts[:256], sample.pairs[:256] if sample.pairs else None, truncation=True,
                        max_length=config.max_length)["input_ids"]
    train_batch, labels = batch(config.batch_size), torch.zeros(config.batch_size, dtype=torch.long, device=device)

    def step():
        model(**train_batch, labels=labels).loss.backward()
        model.zero_grad(set_to_none=True)

    model.train()
    train_seconds = timed(step)
    model.eval()
    infer_batch = batch(64)
    with torch.inference_mode():
        infer_seconds = timed(lambda: model(**infer_batch))
    # The optimizer step, data loading, evaluation and checkpoints cost about a quarter on top.
    return Probe(shape=shape, train_rate=0.75 * config.batch_size / train_seconds, infer_rate=64 / infer_seconds,
                 seq_len=max(2, round(sum(map(len, lengths)) / max(1, len(lengths)))))


def check_cuda() -> None:
    if not torch.cuda.is_available():
        raise BertcError("--target cuda needs a CUDA GPU for training and measuring, and this machine has none; "
                         "use --target cpu, or run on a GPU machine")
    providers_for("cuda")  # onnxruntime-gpu must be installed: it says how otherwise
