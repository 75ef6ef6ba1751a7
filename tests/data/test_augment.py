import pytest

from bertc.data.augment import augment
from bertc.data.config import AugmentConfig
from bertc.data.load import TextDataset
from bertc.errors import BertcError

DATA = TextDataset(texts=[f"w{i} one two three four five six seven" for i in range(50)],
                   labels=[i % 2 for i in range(50)])


def test_augmentation_is_seeded_and_keeps_labels():
    config = AugmentConfig(strategies=("delete", "swap"), factor=1.0, seed=3)
    a, b = augment(DATA, config), augment(DATA, config)
    assert a.texts == b.texts
    assert a.texts[:50] == DATA.texts  # originals first, unchanged
    assert 40 <= len(a) - 50 <= 50
    originals = {t: y for t, y in zip(DATA.texts, DATA.labels)}
    for text, label in zip(a.texts[50:], a.labels[50:]):
        source = next(t for t in originals if t.split()[0] in text.split() or set(text.split()) <= set(t.split()))
        assert set(text.split()) <= set(source.split())
        assert label in (0, 1)
    assert augment(DATA, AugmentConfig(strategies=("swap",), seed=4)).texts != a.texts


def test_deletion_removes_words_and_swap_keeps_them():
    deleted = augment(DATA, AugmentConfig(strategies=("delete",), probability=0.3, seed=1))
    assert all(len(t.split()) < 8 for t in deleted.texts[50:])
    swapped = augment(DATA, AugmentConfig(strategies=("swap",), seed=1))
    assert all(sorted(t.split()) == sorted(DATA.texts[0].split()[1:] + [t.split()[0]]) or len(t.split()) == 8
               for t in swapped.texts[50:])


def test_factor_controls_copies():
    assert len(augment(DATA, AugmentConfig(strategies=("delete",), factor=2.0, probability=0.5))) > 130
    assert len(augment(DATA, AugmentConfig(strategies=("delete",), factor=0))) == 50


def test_unknown_strategy():
    with pytest.raises(BertcError, match="unknown --augment strategy synonym"):
        AugmentConfig(strategies=("synonym",))
