"""The one check that data and a model speak about the same classes, and the one way their labels are matched."""

from __future__ import annotations

from collections.abc import Iterable

from bertc.errors import BertcError


def check_known_labels(found: Iterable, known: Iterable, source: str, fix: str) -> None:
    """Fail naming the labels of ``found`` (from ``source``) that are not among the model's ``known`` labels.

    Labels compare as text, the way manifests store them.
    """
    known = [str(label) for label in known]
    unknown = sorted({str(label) for label in found} - set(known))
    if unknown:
        raise BertcError(f"{source} has labels the model does not know ({', '.join(unknown[:5])}); the model "
                         f"predicts {', '.join(known)}. {fix}")


def align_labels(found: Iterable, known: Iterable) -> list:
    """``found`` in the form of ``known``: labels equal as text become the known label (the evaluation file's 1 is
    the training file's "1" when another training label made those text); unknown labels stay as they are."""
    by_text = {str(label): label for label in known}
    return [by_text.get(str(label), label) if label is not None else None for label in found]


def label_ids(found: Iterable, label2id: dict) -> list[int]:
    """The model output index of each label of ``found``, matched as text like ``check_known_labels`` (run it
    first): data read with 1 finds the model's "1"."""
    by_text = {str(label): i for label, i in label2id.items()}
    return [by_text[str(label)] for label in found]
