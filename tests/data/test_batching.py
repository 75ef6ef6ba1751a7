import pytest

from bertc.data.batching import to_hf_dataset
from bertc.data.load import TextDataset
from bertc.errors import BertcError
from tests.conftest import tiny_tokenizer


def test_lengths_are_real_token_counts_without_padding(tmp_path):
    tokenizer, _ = tiny_tokenizer(tmp_path)
    data = TextDataset(texts=["good", "the movie was really very good and the plot"], labels=["b", "a"])
    encoded = to_hf_dataset(tokenizer, data, {"a": 0, "b": 1}, max_length=6)
    assert encoded["length"] == [3, 6]  # [CLS] good [SEP]; the long one is truncated to max_length
    assert encoded["labels"] == [1, 0]
    assert [len(ids) for ids in encoded["input_ids"]] == [3, 6]


def test_unknown_label_is_reported(tmp_path):
    tokenizer, _ = tiny_tokenizer(tmp_path)
    with pytest.raises(BertcError, match="labels the model does not know \\(c\\)"):
        to_hf_dataset(tokenizer, TextDataset(texts=["x"], labels=["c"], source="d.tsv"), {"a": 0}, 8)
