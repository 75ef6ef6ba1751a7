"""Cleaning: normalise whitespace, drop empty rows (and, for training data, exact duplicates), find conflicting
labels."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from bertc.data.load import TextDataset


@dataclass
class CleaningReport:
    rows_in: int = 0
    empty_text: int = 0
    missing_label: int = 0
    duplicates: int = 0
    conflicting_texts: int = 0  # distinct texts seen with more than one label (kept, reported)
    conflict_examples: list = field(default_factory=list)
    rows_out: int = 0


def normalise(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def clean(dataset: TextDataset, drop_duplicates: bool = True) -> tuple[TextDataset, CleaningReport]:
    """The usable rows of ``dataset`` with whitespace normalised; exact duplicates are dropped only with
    ``drop_duplicates`` (training data: evaluation data is scored as given)."""
    report = CleaningReport(rows_in=len(dataset))
    keep, seen = [], set()
    labels_of = defaultdict(set)
    texts = [normalise(t) for t in dataset.texts]
    pairs = [normalise(t) for t in dataset.pairs] if dataset.pairs is not None else None
    for i, label in enumerate(dataset.labels):
        key_text = (texts[i], pairs[i] if pairs is not None else None)
        if not texts[i] or (pairs is not None and not pairs[i]):
            report.empty_text += 1
            continue
        if label is None:
            report.missing_label += 1
            continue
        if drop_duplicates and (key_text, label) in seen:
            report.duplicates += 1
            continue
        seen.add((key_text, label))
        labels_of[key_text].add(label)
        keep.append(i)
    conflicts = [key for key, labels in labels_of.items() if len(labels) > 1]
    report.conflicting_texts = len(conflicts)
    report.conflict_examples = [key[0] if key[1] is None else list(key) for key in conflicts[:5]]
    cleaned = TextDataset(texts=texts, pairs=pairs, labels=dataset.labels, source=dataset.source,
                          columns=dataset.columns).select(keep)
    report.rows_out = len(cleaned)
    return cleaned, report
