"""Read labelled text from local files, directories of splits, or Hub datasets."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bertc.data.config import Columns
from bertc.errors import BertcError

EXTENSIONS = (".tsv", ".csv", ".jsonl", ".json", ".parquet")
SPLIT_NAMES = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}
TEXT_CANDIDATES = ("text", "sentence", "sentence1", "question", "premise", "review", "content", "document")
PAIR_CANDIDATES = {"sentence1": "sentence2", "question": "sentence", "premise": "hypothesis"}
LABEL_CANDIDATES = ("label", "labels", "class", "target", "y")
_INT = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass
class TextDataset:
    """Texts (and optional second texts of a pair) with their labels, as read from one source."""

    texts: list[str]
    labels: list
    pairs: list[str] | None = None
    source: str = ""
    columns: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, indices) -> TextDataset:
        indices = list(indices)
        return TextDataset(
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            pairs=[self.pairs[i] for i in indices] if self.pairs is not None else None,
            source=self.source, columns=self.columns)

    def head(self, n: int | None) -> TextDataset:
        return self if n is None or n >= len(self) else self.select(range(n))

    def label_set(self) -> list:
        return sort_labels(set(self.labels))


def sort_labels(labels) -> list:
    """Integer labels in numeric order (so label 0 gets id 0), others alphabetically."""
    labels = list(labels)
    if all(isinstance(label, int) for label in labels):
        return sorted(labels)
    return sorted(str(label) for label in labels)


def find_split_file(directory: Path, split: str) -> Path | None:
    for name in SPLIT_NAMES[split]:
        for ext in EXTENSIONS:
            candidate = directory / f"{name}{ext}"
            if candidate.is_file():
                return candidate
    return None


def resolve_split(path: str | Path, split: str = "train") -> str:
    """A file for ``split`` when ``path`` is a directory of splits; ``path`` unchanged otherwise."""
    p = Path(path)
    if p.is_dir():
        found = find_split_file(p, split)
        if found is None:
            names = "/".join(SPLIT_NAMES[split])
            raise BertcError(f"directory {p} has no {names} file ({', '.join(EXTENSIONS)}); pass a data file "
                             "or a directory holding train/validation/test files")
        return str(found)
    return str(path)


def read_dataset(path: str | Path, columns: Columns = Columns(), split: str = "train") -> TextDataset:
    """Read one split from a file, a directory of splits, or a Hub dataset id like ``glue/sst2``."""
    p = Path(path)
    if p.is_dir():
        p = Path(resolve_split(p, split))
    if p.exists():
        frame = read_file(p)
    elif looks_like_hub_id(str(path)):
        frame = read_hub(str(path), split)
    else:
        raise BertcError(f"data file {path} does not exist; pass a .tsv/.csv/.jsonl/.json/.parquet file, a "
                         "directory of splits, or a Hub dataset id such as glue/sst2")
    return frame_to_dataset(frame, columns, str(p if p.exists() else f"{path}:{split}"))


def looks_like_hub_id(name: str) -> bool:
    return not name.startswith((".", "/", "~")) and Path(name).suffix.lower() not in EXTENSIONS


def read_file(path: Path) -> pd.DataFrame:
    ext = path.suffix.lower()
    try:
        if ext == ".tsv":
            # GLUE-style TSV: no quoting, since sentences contain '"'.
            return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
                               na_values=[], on_bad_lines="error")
        if ext == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
        if ext == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        if ext == ".json":
            try:
                return pd.read_json(path, dtype=False)
            except ValueError:
                return pd.read_json(path, lines=True, dtype=False)
        if ext == ".parquet":
            return pd.read_parquet(path)
    except (ValueError, pd.errors.ParserError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BertcError(f"could not read {path}: {first}; check the file format") from err
    raise BertcError(f"{path} has an unsupported extension '{ext}'; use one of {', '.join(EXTENSIONS)}")


def read_hub(name: str, split: str) -> pd.DataFrame:
    import datasets

    repo, _, subset = name.partition("/") if name.count("/") == 1 and name.split("/")[0] == "glue" else (
        name, "", "")
    try:
        dataset_dict = datasets.load_dataset(repo, subset or None)
    except Exception as err:  # datasets raises many types for offline / missing repos
        raise BertcError(f"could not load Hub dataset {name} ({type(err).__name__}); check the id and that this "
                         "machine is online, or pass a local file") from err
    available = list(dataset_dict.keys())
    candidates = SPLIT_NAMES[split]
    if split == "test":  # GLUE's test splits are unlabelled; its validation split is what papers report
        candidates = (*candidates, *SPLIT_NAMES["validation"])
    for candidate in candidates:
        if candidate in dataset_dict:
            frame = dataset_dict[candidate].to_pandas()
            if "label" in frame and (frame["label"] < 0).all():  # GLUE test splits are unlabelled
                continue
            return frame
    raise BertcError(f"Hub dataset {name} has no labelled {split} split (it has {', '.join(available)})")


def pick_column(frame: pd.DataFrame, wanted: str | None, candidates, what: str, flag: str) -> str:
    names = [str(c) for c in frame.columns]
    if wanted is not None:
        if wanted not in names:
            raise BertcError(f"column '{wanted}' not found (columns: {', '.join(names)}); pass the right {flag}")
        return wanted
    for candidate in candidates:
        if candidate in names:
            return candidate
    raise BertcError(f"could not find a {what} column among {', '.join(names)}; name it with {flag}")


def frame_to_dataset(frame: pd.DataFrame, columns: Columns, source: str) -> TextDataset:
    frame.columns = [str(c) for c in frame.columns]
    text = pick_column(frame, columns.text, TEXT_CANDIDATES, "text", "--text-column")
    label = pick_column(frame, columns.label, LABEL_CANDIDATES, "label", "--label-column")
    pair = columns.pair
    if pair is None and columns.text is None and text in PAIR_CANDIDATES and PAIR_CANDIDATES[text] in frame:
        pair = PAIR_CANDIDATES[text]
    if pair is not None:
        pick_column(frame, pair, (), "text-pair", "--text-pair-column")
    return TextDataset(
        texts=[as_text(v) for v in frame[text].tolist()],
        pairs=[as_text(v) for v in frame[pair].tolist()] if pair else None,
        labels=parse_labels(frame[label].tolist()),
        source=source,
        columns={"text": text, "pair": pair, "label": label})


def as_text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def parse_labels(values: list) -> list:
    """Integer labels stay integers (also when read as strings); anything else becomes a string. A missing label
    (an empty cell, None, NaN however written, an infinite number) is None: cleaning counts it as unlabelled."""
    cleaned = []
    for v in values:
        if hasattr(v, "dtype") and hasattr(v, "item"):  # a numpy scalar (parquet, Hub datasets): its Python value
            v = v.item()
        if (v is None or (isinstance(v, float) and not math.isfinite(v))
                or (isinstance(v, str) and v.strip().lower() in ("", "nan"))):
            cleaned.append(None)
        elif isinstance(v, bool):
            cleaned.append(str(v).lower())
        elif isinstance(v, int):
            cleaned.append(int(v))
        elif isinstance(v, float) and v.is_integer():
            cleaned.append(int(v))
        else:
            cleaned.append(str(v).strip())
    present = [v for v in cleaned if v is not None]
    if present and all(isinstance(v, int) or (isinstance(v, str) and _INT.match(v)) for v in present):
        return [int(v) if v is not None else None for v in cleaned]
    if present and all(isinstance(v, int) or (isinstance(v, str) and _NUMBER.match(v)) for v in present):
        return numeric_labels(cleaned)
    return [str(v) if v is not None else None for v in cleaned]


def numeric_labels(values: list) -> list:
    """Labels that are numbers, however written: 1, "1" and "1.0" are one class. Whole numbers become ints;
    other numbers keep the spelling most rows use ("0.50" and "0.5" become whichever is more common)."""
    numbers = [float(v) if v is not None else None for v in values]
    if all(n is None or n.is_integer() for n in numbers):
        return [int(n) if n is not None else None for n in numbers]
    spellings: dict[float, Counter] = {}
    for value, number in zip(values, numbers):
        if number is not None:
            spellings.setdefault(number, Counter())[str(value)] += 1
    usual = {number: counts.most_common(1)[0][0] for number, counts in spellings.items()}
    return [usual[n] if n is not None else None for n in numbers]


def read_texts(data: str, text_column: str | None = None,
               pair_column: str | None = None) -> tuple[list[str], list[str] | None]:
    """The texts (and second texts of a sentence-pair task) of an unlabelled file, columns found as for
    labelled data: a sentence1 column brings its sentence2 along unless the text column is named."""
    path = Path(resolve_split(data, "test"))
    if not path.exists():
        raise BertcError(f"data file {data} does not exist; pass an existing file")
    frame = read_file(path)
    frame.columns = [str(c) for c in frame.columns]
    text = pick_column(frame, text_column, TEXT_CANDIDATES, "text", "--text-column")
    pair = pair_column
    if pair is None and text_column is None and text in PAIR_CANDIDATES and PAIR_CANDIDATES[text] in frame:
        pair = PAIR_CANDIDATES[text]
    if pair is not None:
        pick_column(frame, pair, (), "text-pair", "--text-pair-column")
    texts = [as_text(t) or "" for t in frame[text].tolist()]  # a missing cell is an empty text, never "nan"
    return texts, ([as_text(p) or "" for p in frame[pair].tolist()] if pair else None)
