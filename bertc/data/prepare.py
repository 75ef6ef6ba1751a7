"""Data for training and evaluation: read, clean, augment, split, tokenise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertc.data.augment import augment
from bertc.data.clean import CleaningReport, clean
from bertc.data.config import Columns, DataConfig
from bertc.data.labels import align_labels, check_known_labels
from bertc.data.load import TextDataset, find_split_file, read_dataset
from bertc.data.split import stratified_split
from bertc.errors import BertcError


@dataclass
class PreparedData:
    train: TextDataset
    eval: TextDataset
    labels: list
    report: dict


def read_eval_data(path: str, columns: Columns, split: str = "validation", do_clean: bool = True,
                   max_samples: int | None = None, drop_duplicates: bool = False,
                   ) -> tuple[TextDataset, CleaningReport | None]:
    """Evaluation data, scored as given: cleaning normalises whitespace and drops rows without text or label
    (the report counts them) but keeps duplicate rows unless asked; never augmented."""
    dataset = read_dataset(path, columns, split=split)
    report = None
    if do_clean:
        dataset, report = clean(dataset, drop_duplicates=drop_duplicates)
    if len(dataset) == 0:
        raise BertcError(f"{dataset.source} has no usable rows after cleaning; check the file and its columns")
    return dataset.head(max_samples), report


def prepare_data(config: DataConfig) -> PreparedData:
    if config.train is None:
        raise BertcError("no training data given; pass --train with a data file, a directory of splits or a Hub "
                         "dataset id")
    columns = config.columns
    train = read_dataset(config.train, columns, split="train")
    report = {"train_source": train.source, "columns": train.columns}
    if config.clean:
        train, cleaning = clean(train)
        report["train_cleaning"] = cleaning
    if len(train) == 0:
        raise BertcError(f"{train.source} has no usable rows after cleaning (empty texts or labels); check "
                         "the file and --text-column/--label-column")
    train = train.head(config.max_train_samples)
    labels = train.label_set()
    if len(labels) < 2:
        raise BertcError(f"{train.source} has a single class ({labels[0]!r}); a classifier needs at least two "
                         "labels in its training data")
    eval_path = config.eval
    if eval_path is None and Path(config.train).is_dir() and find_split_file(Path(config.train), "validation"):
        eval_path = config.train
    if eval_path is not None:
        evaluation, cleaning = read_eval_data(eval_path, columns, "validation", config.clean,
                                              config.max_eval_samples)
        report["eval_source"] = evaluation.source
        if cleaning is not None:
            report["eval_cleaning"] = cleaning
    else:
        train, evaluation = stratified_split(train, config.val_fraction, config.seed)
        evaluation = evaluation.head(config.max_eval_samples)
        report["eval_source"] = f"{config.val_fraction:.0%} stratified split of the training data"
    evaluation.labels = align_labels(evaluation.labels, labels)  # 1 in one file is "1" in the other
    unseen = sorted({str(label) for label in evaluation.labels} - {str(label) for label in labels})
    if unseen:
        raise BertcError(f"evaluation data has labels never seen in training ({', '.join(unseen[:5])}); "
                         "train on data that covers every label or remove those rows")
    if config.augment.strategies:
        before = len(train)
        train = augment(train, config.augment)
        report["augmented_examples"] = len(train) - before
    report["train_examples"], report["eval_examples"] = len(train), len(evaluation)
    return PreparedData(train=train, eval=evaluation, labels=labels, report=report)


def check_model_labels(data: PreparedData, labels: list) -> None:
    """Every label in ``data`` must be one the model (of an artifact with ``labels``) predicts; the labels of
    ``data`` then take the model's form (data read with 1 gets the "1" of a model whose labels are text), so a
    lookup by value in the model's ``label2id`` finds them."""
    check_known_labels([*data.train.labels, *data.eval.labels], labels, data.train.source,
                       "Pass --data of the same task")
    data.train.labels = align_labels(data.train.labels, labels)
    data.eval.labels = align_labels(data.eval.labels, labels)
    data.labels = align_labels(data.labels, labels)


def task_record(config: DataConfig, data: PreparedData, labels: list, max_length: int) -> dict:
    """The manifest's ``task``: labels, columns, the data trained on (absolute paths) and its report."""
    def where(path):
        return str(Path(path).absolute()) if path is not None and Path(path).exists() else path

    return {"labels": labels, "text_column": data.train.columns.get("text"),
            "text_pair_column": data.train.columns.get("pair"), "label_column": data.train.columns.get("label"),
            "max_length": max_length, "train_data": where(config.train), "eval_data": where(config.eval),
            "data": data.report}
