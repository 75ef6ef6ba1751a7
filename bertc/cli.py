"""The `bertc` command line: each command parses options and calls one library function."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from bertc.errors import BertcError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make BERT-family text classifiers fast to serve.")
state = {"debug": False}


@app.callback()
def main_options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False):
    state["debug"] = debug


def command(fn):
    """Register ``fn`` as a command; user errors print one line and exit with code 2."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BertcError as err:
            if state["debug"]:
                raise
            typer.echo(f"bertc: error: {err}", err=True)
            raise typer.Exit(code=2) from None

    return app.command(fn.__name__.removesuffix("_cmd").replace("_", "-"))(run)


# Options shared by every command that trains (finetune, prune recovery, distill).
Model = Annotated[str | None, typer.Option(
    help="Pretrained model: a directory, a Hub id, or a bertc artifact. Default: the embedded all-MiniLM-L6-v2.")]
Train = Annotated[str, typer.Option(help="Training data: a .tsv/.csv/.jsonl/.json/.parquet file, a directory "
                                         "with train/validation files, or a Hub dataset id (glue/sst2).")]
Eval = Annotated[str | None, typer.Option("--eval", help="Evaluation data (default: the directory's "
                                             "validation file, else a stratified split of the training data).")]
Out = Annotated[Path, typer.Option(help="Output artifact directory.")]
Overwrite = Annotated[bool, typer.Option(help="Replace --out if it exists.")]
TextColumn = Annotated[str | None, typer.Option(help="Text column (auto-detected when omitted).")]
PairColumn = Annotated[str | None, typer.Option(help="Second text column for sentence-pair tasks.")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column (auto-detected when omitted).")]


def data_config(train, eval_, text_column, text_pair_column, label_column, max_train_samples, max_eval_samples,
                val_fraction, no_clean, augment, augment_factor, augment_probability, seed):
    from bertc.data import DataConfig
    from bertc.data.augment import AugmentConfig

    strategies = tuple(s.strip() for s in augment.split(",") if s.strip()) if augment else ()
    return DataConfig(
        train=train, eval=eval_, text_column=text_column, text_pair_column=text_pair_column,
        label_column=label_column, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
        val_fraction=val_fraction, clean=not no_clean,
        augment=AugmentConfig(strategies=strategies, factor=augment_factor, probability=augment_probability,
                              seed=seed),
        seed=seed)


@command
def finetune_cmd(
    train: Train,
    out: Out,
    model: Model = None,
    eval_: Eval = None,
    text_column: TextColumn = None,
    text_pair_column: PairColumn = None,
    label_column: LabelColumn = None,
    max_train_samples: Annotated[int | None, typer.Option(help="Use only the first N training examples.")] = None,
    max_eval_samples: Annotated[int | None, typer.Option(help="Use only the first N eval examples.")] = None,
    val_fraction: Annotated[float, typer.Option(help="Held-out share when no eval data is given.")] = 0.1,
    no_clean: Annotated[bool, typer.Option("--no-clean", help="Skip whitespace/empty/duplicate cleaning.")] = False,
    augment: Annotated[str | None, typer.Option(help="Augment training data: delete,swap.")] = None,
    augment_factor: Annotated[float, typer.Option(help="Augmented copies per training example.")] = 1.0,
    augment_probability: Annotated[float, typer.Option(help="Share of words deleted/swapped.")] = 0.1,
    optimizer: Annotated[str, typer.Option(help="adamw, adam, sgd (momentum) or adafactor.")] = "adamw",
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 8e-5,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 0.01,
    momentum: Annotated[float, typer.Option(help="Momentum for --optimizer sgd.")] = 0.9,
    max_grad_norm: Annotated[float, typer.Option(help="Gradient clipping norm (0 disables).")] = 1.0,
    schedule: Annotated[str, typer.Option(help="linear, cosine, constant, polynomial or exponential.")] = "linear",
    warmup: Annotated[float, typer.Option(help="Warmup: ratio of steps when < 1, else steps.")] = 0.1,
    poly_power: Annotated[float, typer.Option(help="Power of the polynomial schedule.")] = 1.0,
    exp_final_factor: Annotated[float, typer.Option(help="Exponential schedule ends at lr x this.")] = 0.01,
    layer_lr_decay: Annotated[float, typer.Option(help="Layer-wise lr decay (1 = off).")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Training batch size per device.")] = 32,
    eval_batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = 64,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 3.0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
    max_length: Annotated[int, typer.Option(help="Truncate texts to N tokens.")] = 128,
    no_group_by_length: Annotated[bool, typer.Option("--no-group-by-length",
                                                     help="Random batches instead of length-grouped.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed (runs are reproducible).")] = 42,
    precision: Annotated[str, typer.Option(help="fp32, bf16, or fp16 (CUDA).")] = "fp32",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    eval_steps: Annotated[int | None, typer.Option(help="Evaluate every N steps (default: per epoch).")] = None,
    early_stopping_patience: Annotated[int | None, typer.Option(
        help="Stop after N evaluations without improvement.")] = None,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps (for --resume).")] = 100,
    logging_steps: Annotated[int, typer.Option(help="Log every N steps.")] = 10,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow model code from the Hub to run.")] = False,
    overwrite: Overwrite = False,
):
    """Fine-tune a BERT-family encoder on labelled text."""
    from bertc.finetune import FinetuneConfig, TrainConfig, finetune

    check_choice("--optimizer", optimizer, ("adamw", "adam", "sgd", "adafactor"))
    check_choice("--schedule", schedule, ("linear", "cosine", "constant", "polynomial", "exponential"))
    check_choice("--precision", precision, ("fp32", "bf16", "fp16"))
    check_choice("--device", device, ("auto", "cpu", "cuda"))
    config = FinetuneConfig(
        model=model, trust_remote_code=trust_remote_code,
        data=data_config(train, eval_, text_column, text_pair_column, label_column, max_train_samples,
                         max_eval_samples, val_fraction, no_clean, augment, augment_factor, augment_probability,
                         seed),
        train=TrainConfig(
            optimizer=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum,
            max_grad_norm=max_grad_norm, schedule=schedule, warmup=warmup, poly_power=poly_power,
            exp_final_factor=exp_final_factor, layer_lr_decay=layer_lr_decay, batch_size=batch_size,
            eval_batch_size=eval_batch_size, grad_accum=grad_accum, epochs=epochs, max_steps=max_steps,
            max_length=max_length, group_by_length=not no_group_by_length, seed=seed, precision=precision,
            device=device, eval_steps=eval_steps, early_stopping_patience=early_stopping_patience,
            save_steps=save_steps, logging_steps=logging_steps))
    result = finetune(config, out, overwrite=overwrite, resume=resume)
    show_artifact_metrics(result)


def check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BertcError(f"{flag} {value!r} is not one of {', '.join(choices)}")


def show_artifact_metrics(path: Path) -> None:
    from bertc.artifact import is_artifact, read_manifest
    from bertc.console import classification_table, console, key_value_table

    if not is_artifact(path):  # non-zero ranks of a distributed run
        return
    manifest = read_manifest(path)
    metrics = manifest["metrics"]
    if "training" in metrics:
        console.print(key_value_table(metrics["training"], "training"))
    if "eval" in metrics:
        console.print(classification_table(metrics["eval"], f"evaluation ({manifest['task'].get('eval_data')})"))
    console.print(f"wrote {path}")


@command
def evaluate_cmd(
    artifact: Annotated[Path, typer.Argument(help="A bertc artifact directory.")],
    data: Annotated[str, typer.Option(help="Labelled data: a file, a directory (its test split), or a Hub id.")],
    text_column: TextColumn = None,
    text_pair_column: PairColumn = None,
    label_column: LabelColumn = None,
    split: Annotated[str, typer.Option(help="Split to use when --data is a directory or Hub id.")] = "test",
    max_samples: Annotated[int | None, typer.Option(help="Evaluate only the first N examples.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
):
    """Accuracy, macro-F1, per-class precision/recall and confusion matrix on labelled data."""
    from bertc.artifact import read_manifest
    from bertc.console import classification_table, confusion_table, console, write_json
    from bertc.data import Columns
    from bertc.inference import evaluate, task_columns

    check_choice("--split", split, ("train", "validation", "test"))
    columns = task_columns(read_manifest(artifact), text_column, text_pair_column, label_column)
    report = evaluate(artifact, data, columns=Columns(columns.text, columns.pair, columns.label), split=split,
                      max_samples=max_samples, device=device, batch_size=batch_size)
    console.print(classification_table(report, f"{artifact} on {report['data']}"))
    console.print(confusion_table(report))
    if json_out:
        write_json(json_out, report)
        console.print(f"wrote {json_out}")


@command
def predict_cmd(
    artifact: Annotated[Path, typer.Argument(help="A bertc artifact directory.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.")] = None,
    data: Annotated[str | None, typer.Option(help="Classify every row of this file instead.")] = None,
    text_column: TextColumn = None,
    text_pair_column: PairColumn = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write predictions as JSON here.")] = None,
):
    """Labels and class probabilities for texts or a data file."""
    from rich.table import Table

    from bertc.console import console, write_json
    from bertc.inference import predict

    pairs = None
    if data is not None:
        texts, pairs = read_texts(data, text_column, text_pair_column)
    results = predict(artifact, list(texts or []), pairs, device=device, batch_size=batch_size)
    if json_out:
        write_json(json_out, results)
    table = Table("label", "probability", "text")
    for row in results[:50]:
        table.add_row(str(row["label"]), f"{row['probabilities'][str(row['label'])]:.3f}", row["text"][:100])
    console.print(table)
    if len(results) > 50:
        console.print(f"... {len(results) - 50} more" + (f" in {json_out}" if json_out else " (use --json)"))


def read_texts(data: str, text_column: str | None, pair_column: str | None):
    from bertc.data.load import TEXT_CANDIDATES, pick_column, read_file, resolve_split

    path = Path(resolve_split(data, "test"))
    if not path.exists():
        raise BertcError(f"data file {data} does not exist; pass an existing file")
    frame = read_file(path)
    frame.columns = [str(c) for c in frame.columns]
    text = pick_column(frame, text_column, TEXT_CANDIDATES, "text", "--text-column")
    pairs = frame[pick_column(frame, pair_column, (), "pair", "--text-pair-column")] if pair_column else None
    return [str(t) for t in frame[text]], ([str(p) for p in pairs] if pairs is not None else None)


def main():
    app()


if __name__ == "__main__":
    main()
