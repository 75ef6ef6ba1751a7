"""The transfer set of a distillation: the rows a student learns from, each model's own tokens for them, and the
teacher's logits for every row, computed once and cached in the work directory (when only soft and hard losses
are used: the intermediate losses run the teacher on every batch, which gives its logits too).

Soft labels need only each example's logits, so teacher and student may use different tokenizers: each reads the
raw text in its own tokens, and row ``i`` of the student's batches finds its soft label as row ``i`` of the cached
logits (the ``ROW_COLUMN`` column). A row may have no label (``None``: an unlabelled or augmented text added for
distillation); its label id is ``IGNORED_LABEL``, which the hard-label cross-entropy skips, while the soft loss uses
every row.

Only logits are cached. The hidden states of every layer would take rows x tokens x hidden size x layers floats
(60,000 rows of 64 tokens of MiniLM's 6 x 384 are 35 GB in fp32), so the intermediate losses, which need them, run
the teacher live on each batch, and take its logits from that pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bertc.data.batching import MODEL_INPUTS, encode, padded_batches
from bertc.data.labels import check_known_labels, label_ids
from bertc.data.load import TextDataset
from bertc.errors import BertcError
from bertc.modeling import family_of
from bertc.training.trainer import parameter_hash
from bertc.training.workdir import is_main_process

IGNORED_LABEL = -100  # the label id of a row without a label: torch's cross-entropy skips it
ROW_COLUMN = "transfer_row"  # the column giving each training example's row in the cached teacher logits
LOGITS_FILE = "teacher_logits.pt"  # the cache, in the work directory, so --resume reuses it


@dataclass
class TransferSet:
    rows: TextDataset  # the texts (and pairs) the student learns from; labels may be None
    label_ids: list[int]  # each row's label id, IGNORED_LABEL for a row without one
    student_inputs: dict  # the student tokenizer's encoding of the rows (token id lists, unpadded)
    teacher_inputs: dict  # the teacher tokenizer's encoding (the student's when both read the same tokens)
    teacher_tokenizer: Any  # pads the teacher's encoding into batches

    @property
    def tokens_align(self) -> bool:
        """Whether both models read every row as the same token ids, so they can be compared token by token."""
        return self.teacher_inputs["input_ids"] == self.student_inputs["input_ids"]

    def dataset(self):
        """The student's training set: token ids, labels, a ``length`` column (length-grouped batches) and each
        example's row in the teacher's logits."""
        import datasets

        columns = {key: self.student_inputs[key] for key in MODEL_INPUTS if key in self.student_inputs}
        columns["labels"] = self.label_ids
        columns["length"] = [len(ids) for ids in self.student_inputs["input_ids"]]
        columns[ROW_COLUMN] = list(range(len(self.rows)))
        return datasets.Dataset.from_dict(columns)


def transfer_rows(train: TextDataset, extra: TextDataset | list[str] | None) -> TextDataset:
    """The labelled training rows followed by ``extra`` rows: texts without labels, or a dataset whose labels may be
    None."""
    if extra is None or not len(extra):
        return train
    if isinstance(extra, list):
        extra = TextDataset(texts=list(extra), labels=[None] * len(extra), source="extra texts")
    if (train.pairs is None) != (extra.pairs is None):
        having, lacking = ("the training data", "the extra rows") if train.pairs is not None else (
            "the extra rows", "the training data")
        raise BertcError(f"{having} are text pairs but {lacking} are not; give the extra rows a second text exactly "
                         "when the task has one")
    return TextDataset(texts=[*train.texts, *extra.texts], labels=[*train.labels, *extra.labels],
                       pairs=[*train.pairs, *extra.pairs] if train.pairs is not None else None,
                       source=train.source, columns=train.columns)


def build_transfer_set(rows: TextDataset, student_tokenizer, teacher_tokenizer, label2id: dict,
                       max_length: int) -> TransferSet:
    """``rows`` tokenised by the student and, when its tokenizer is another one, by the teacher as well."""
    labelled = [label for label in rows.labels if label is not None]
    check_known_labels(labelled, label2id, rows.source, "Fix the data or train on all labels")
    ids = iter(label_ids(labelled, label2id))
    student_inputs = encode(student_tokenizer, rows, max_length)
    same = teacher_tokenizer is None or teacher_tokenizer is student_tokenizer
    teacher_inputs = student_inputs if same else encode(teacher_tokenizer, rows, max_length)
    return TransferSet(rows=rows, label_ids=[IGNORED_LABEL if label is None else next(ids) for label in rows.labels],
                       student_inputs=student_inputs, teacher_inputs=teacher_inputs,
                       teacher_tokenizer=student_tokenizer if same else teacher_tokenizer)


def teacher_inputs_for(teacher, features: dict) -> dict:
    """The batch inputs the teacher's forward accepts (DistilBERT, DeBERTa-v3 and ModernBERT take no token types)."""
    return {key: value for key, value in features.items() if key in teacher_input_names(teacher)}


def teacher_input_names(teacher) -> list[str]:
    return [key for key in MODEL_INPUTS if key != "token_type_ids" or family_of(teacher).takes_token_types]


@torch.no_grad()
def teacher_logits(teacher, transfer: TransferSet, batch_size: int, device: str | torch.device) -> torch.Tensor:
    """The teacher's logits for every row of ``transfer``, in row order, from its own tokens (float32, on CPU)."""
    was_training = teacher.training
    teacher.eval()
    logits = None
    for indices, batch in padded_batches(transfer.teacher_tokenizer, transfer.teacher_inputs, batch_size, "pt",
                                         teacher_input_names(teacher)):
        out = teacher(**{key: value.to(device) for key, value in batch.items()}).logits.float().cpu()
        if logits is None:
            logits = torch.empty(len(transfer.rows), out.shape[-1])
        logits[indices] = out
    teacher.train(was_training)
    return logits


def fingerprint(teacher, transfer: TransferSet) -> str:
    """What the cached logits depend on: the teacher's weights and the token ids it reads."""
    digest = hashlib.sha256(parameter_hash(teacher).encode())
    for key in MODEL_INPUTS:
        if key in transfer.teacher_inputs:
            digest.update(json.dumps(transfer.teacher_inputs[key], separators=(",", ":")).encode())
    return digest.hexdigest()


def cached_teacher_logits(teacher, transfer: TransferSet, cache_file: Path, batch_size: int,
                          device: str | torch.device) -> torch.Tensor:
    """The teacher's logits for ``transfer``: read from ``cache_file`` when it holds those of this teacher and
    these rows (a resumed run), else computed on ``device`` (the teacher goes back where it was) and saved there."""
    key = fingerprint(teacher, transfer)
    if cache_file.is_file():
        cached = torch.load(cache_file, map_location="cpu", weights_only=True)
        if cached.get("fingerprint") == key:
            return cached["logits"]
    home = next(teacher.parameters()).device
    logits = teacher_logits(teacher.to(device), transfer, batch_size, device)
    teacher.to(home)
    if is_main_process():
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_name(cache_file.name + ".partial")  # a run killed while saving leaves no cache
        torch.save({"fingerprint": key, "logits": logits}, partial)
        partial.replace(cache_file)
    return logits
