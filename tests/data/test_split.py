import pytest

from bertc.data.load import TextDataset
from bertc.data.split import stratified_split
from bertc.errors import BertcError


def test_split_is_stratified_seeded_and_disjoint():
    data = TextDataset(texts=[f"t{i}" for i in range(200)], labels=[0] * 150 + [1] * 50)
    train, val = stratified_split(data, 0.2, seed=7)
    assert (val.labels.count(0), val.labels.count(1)) == (30, 10)
    assert not set(train.texts) & set(val.texts) and len(train) + len(val) == 200
    assert stratified_split(data, 0.2, seed=7)[1].texts == val.texts
    assert stratified_split(data, 0.2, seed=8)[1].texts != val.texts


def test_too_small_to_split():
    with pytest.raises(BertcError, match="--eval"):
        stratified_split(TextDataset(texts=["a", "b"], labels=[0, 1]), 0.1, seed=0)
