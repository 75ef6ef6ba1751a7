"""The transfer set of distillation beyond the labelled training texts: unlabeled in-domain texts and augmented
copies of the training texts, both labelled by the teacher (TinyBERT augments the task's training set only)."""

from __future__ import annotations

from pathlib import Path

from bertc.data.clean import normalise
from bertc.data.config import TransferConfig
from bertc.data.load import EXTENSIONS, TEXT_CANDIDATES, as_text, pick_column, read_file
from bertc.data.neighbours import neighbour_augment
from bertc.errors import BertcError

TEXT_EXTENSIONS = (".txt",)
FORMATS = ".txt (one text per line) or .tsv/.csv/.jsonl/.parquet with a text column"


def read_unlabeled(config: TransferConfig) -> list[str]:
    """The texts of ``config.unlabeled``, whitespace normalised, empty ones dropped, the first
    ``config.max_unlabeled`` of them; [] when no file is given."""
    if config.unlabeled is None:
        return []
    path = Path(config.unlabeled)
    if not path.is_file():
        why = "is a directory" if path.is_dir() else "does not exist"
        raise BertcError(f"--unlabeled {path} {why}; pass a file of texts: {FORMATS}")
    if path.stat().st_size == 0:
        raise no_texts(path)
    if path.suffix.lower() in TEXT_EXTENSIONS:
        if config.unlabeled_column is not None:
            raise BertcError(f"--unlabeled-column {config.unlabeled_column} names a column, but {path} is a text "
                             "file with one text per line; leave --unlabeled-column out")
        try:
            raw = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise BertcError(f"could not read --unlabeled file {path} ({type(err).__name__}); give UTF-8 text, "
                             "one text per line") from err
    elif path.suffix.lower() in EXTENSIONS:
        frame = read_file(path)
        frame.columns = [str(c) for c in frame.columns]
        column = pick_column(frame, config.unlabeled_column, TEXT_CANDIDATES, "text", "--unlabeled-column")
        raw = [as_text(value) for value in frame[column].tolist()]
    else:
        raise BertcError(f"--unlabeled file {path} has an unsupported extension '{path.suffix}'; use {FORMATS}")
    texts = [text for text in map(normalise, raw) if text]
    if not texts:
        raise no_texts(path)
    return texts[:config.max_unlabeled]


def no_texts(path: Path) -> BertcError:
    return BertcError(f"--unlabeled file {path} has no texts (it is empty or every text is blank); give {FORMATS}, "
                      "or leave --unlabeled out")


def transfer_texts(config: TransferConfig, tokenizer, model, train_texts: list[str]) -> list[str]:
    """What the teacher labels besides ``train_texts``: the unlabeled texts, then ``config.augment_copies``
    neighbour-augmented copies of each training text (drawn from ``model``'s input embeddings), without
    repeats and without the training texts themselves. Unlabeled texts are not augmented, as in TinyBERT."""
    unlabeled = read_unlabeled(config)
    augmented = []
    if config.augment_copies > 0:
        augmented = neighbour_augment(train_texts, tokenizer, model.get_input_embeddings().weight,
                                      copies=config.augment_copies, probability=config.neighbour_probability,
                                      neighbours=config.neighbours, seed=config.seed)
    seen, extra = set(train_texts), []
    for text in unlabeled + augmented:
        if text not in seen:
            seen.add(text)
            extra.append(text)
    return extra
