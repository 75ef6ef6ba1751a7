"""Tokenisation to a length-annotated dataset: padding happens per batch, and batches group similar lengths."""

from __future__ import annotations

from bertc.data.load import TextDataset
from bertc.errors import BertcError


def encode(tokenizer, dataset: TextDataset, max_length: int) -> dict:
    return tokenizer(dataset.texts, dataset.pairs, truncation=True, max_length=max_length)


def to_hf_dataset(tokenizer, dataset: TextDataset, label2id: dict, max_length: int):
    """A ``datasets.Dataset`` of token ids, labels and a ``length`` column for length-grouped sampling."""
    import datasets

    unknown = sorted({str(label) for label in dataset.labels if label not in label2id})
    if unknown:
        raise BertcError(f"{dataset.source} has labels the model does not know ({', '.join(unknown[:5])}); "
                         f"known labels: {', '.join(map(str, label2id))}. Fix the data or train on all labels")
    encoded = encode(tokenizer, dataset, max_length)
    columns = {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
    columns["labels"] = [label2id[label] for label in dataset.labels]
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    return datasets.Dataset.from_dict(columns)
