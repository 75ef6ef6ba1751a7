"""Tokenisation to a length-annotated dataset: padding happens per batch, and batches group similar lengths."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from bertc.data.labels import check_known_labels, label_ids

if TYPE_CHECKING:  # reading data needs pandas; batching and ONNX serving do not
    from bertc.data.load import TextDataset

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def encode(tokenizer, dataset: TextDataset, max_length: int) -> dict:
    return tokenizer(dataset.texts, dataset.pairs, truncation=True, max_length=max_length)


def to_hf_dataset(tokenizer, dataset: TextDataset, label2id: dict, max_length: int):
    """A ``datasets.Dataset`` of token ids, labels and a ``length`` column for length-grouped sampling."""
    import datasets

    check_known_labels(dataset.labels, label2id, dataset.source, "Fix the data or train on all labels")
    encoded = encode(tokenizer, dataset, max_length)
    columns = {key: encoded[key] for key in MODEL_INPUTS if key in encoded}
    columns["labels"] = label_ids(dataset.labels, label2id)
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    return datasets.Dataset.from_dict(columns)


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so padding stays small."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padded_batches(tokenizer, encoded, batch_size: int, return_tensors: str,
                   keys: tuple[str, ...] | list[str] = MODEL_INPUTS) -> Iterator[tuple[list[int], dict]]:
    """(indices, padded inputs) for each length-grouped batch of an encoding; padding happens per batch."""
    keys = [key for key in keys if key in encoded]
    for batch in length_sorted_batches([len(ids) for ids in encoded["input_ids"]], batch_size):
        yield batch, tokenizer.pad([{key: encoded[key][i] for key in keys} for i in batch],
                                   return_tensors=return_tensors)
