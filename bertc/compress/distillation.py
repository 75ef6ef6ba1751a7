"""Distillation in memory: the loss, the hooks that read a model's internals, and the Trainer that applies them.

The loss is soft-label KL with a temperature plus hard-label cross-entropy; TinyBERT-style intermediate losses
compare hidden states and attention maps of mapped layers. The student may differ from the teacher in depth, heads,
FFN size, hidden size, family and tokenizer:

- soft labels are the teacher's logits, computed once over the transfer set from the teacher's own tokens and
  cached in the work directory (``bertc.compress.transfer_set``); with only soft and hard labels on, the teacher
  does not run during training at all;
- hidden states are compared per token; when the widths differ, through a learned linear projection of the
  student's states to the teacher's width, trained with the student and dropped afterwards (a student whose width
  was pruned from the teacher instead compares each channel with the one it came from: ``teacher_channels``);
- attention maps are compared after averaging over heads, so head counts need not agree;
- hidden-state and attention-map losses need both models to read the same tokens: with different tokenizers they
  are off, and the run says so in one line.

Training is bertc's one loop, :func:`bertc.training.trainer.train_model`, with a Trainer subclass that swaps the
loss and trains on the transfer set. `bertc distill` (``bertc.compress.distill``) and recovery after pruning
(``bertc.compress.prune``) both train through :func:`distill_`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bertc.compress.config import DistillLoss
from bertc.compress.transfer_set import (
    IGNORED_LABEL,
    LOGITS_FILE,
    ROW_COLUMN,
    TransferSet,
    build_transfer_set,
    cached_teacher_logits,
    teacher_inputs_for,
    transfer_rows,
)
from bertc.data.load import TextDataset
from bertc.data.prepare import PreparedData
from bertc.errors import BertcError
from bertc.modeling import check_max_length, encoder_layers, family_of, head_size
from bertc.training.config import TrainConfig
from bertc.training.trainer import BertcTrainer, TrainResult, train_model

log = logging.getLogger("bertc.compress")
PROJECTION = "bertc_hidden_projection"  # the student's submodule holding the projection while it trains


def distill_(student, teacher, tokenizer, data: PreparedData, label2id: dict, train_config: TrainConfig,
             loss: DistillLoss, *, layer_map: list[int], work_dir: Path, resume: bool = False,
             description: str = "distilling", teacher_channels: list[int] | None = None,
             teacher_tokenizer=None, extra: TextDataset | list[str] | None = None) -> TrainResult:
    """Train ``student`` in place on ``data`` to match ``teacher`` (student layer i to teacher layer
    ``layer_map[i]`` for the intermediate losses); checkpoints go to ``work_dir`` so a killed run can resume.

    ``tokenizer`` is the student's; ``teacher_tokenizer`` the teacher's when it is another one (None: the same).
    ``extra``: rows added to the transfer set after ``data.train``: unlabelled texts, or a dataset whose labels may
    be None (such rows are learned from the teacher's soft labels only). ``teacher_channels``: for a student whose
    hidden width was pruned from the teacher, the teacher's hidden channel each student channel came from, so hidden
    states compare channel to channel; a student of another width otherwise learns a projection to the teacher's
    (not kept in the model)."""
    check_max_length(teacher, train_config.max_length, "the teacher")
    transfer = build_transfer_set(transfer_rows(data.train, extra), tokenizer, teacher_tokenizer, label2id,
                                  train_config.max_length)
    loss = without_unusable_attention_loss(loss, student, teacher)
    loss = without_token_losses_across_tokenizers(loss, transfer)
    projection = None
    width, teacher_width = student.config.hidden_size, teacher.config.hidden_size
    if loss.hidden_weight and teacher_channels is None and width != teacher_width:
        projection = attach_hidden_projection_(student, width, teacher_width)
    try:
        return train_model(student, tokenizer, data, label2id, train_config, work_dir, resume=resume,
                           trainer_class=DistillTrainer, description=description,
                           trainer_kwargs={"teacher": teacher, "loss_config": loss, "layer_map": list(layer_map),
                                           "transfer": transfer, "cache_file": work_dir / LOGITS_FILE,
                                           "teacher_channels": teacher_channels, "hidden_projection": projection})
    finally:
        if projection is not None:  # trained with the student, but no part of the model it saves
            delattr(student, PROJECTION)


def attach_hidden_projection_(student, width: int, teacher_width: int) -> nn.Linear:
    """A learned map of the student's hidden states to the teacher's width (TinyBERT's W_h, one for all layers),
    held by the student while it trains so that the optimizer, checkpoints and --resume include it."""
    projection = nn.Linear(width, teacher_width)
    projection.to(next(student.parameters()).device)
    student.add_module(PROJECTION, projection)
    return projection


def without_unusable_attention_loss(loss: DistillLoss, student, teacher) -> DistillLoss:
    """The loss with its attention-map term off, and a one-line warning, when either model's attention scores are
    not the product of its query and key projections (DeBERTa's relative-position terms, ModernBERT's rotary)."""
    if not loss.attention_weight:
        return loss
    unusable = sorted({family_of(m).name for m in (student, teacher) if not family_of(m).attention_maps})
    if not unusable:
        return loss
    reason = (f"{' and '.join(unusable)} attention maps are not query-key products (relative positions or "
              "rotary embeddings)")
    if not (loss.soft_weight or loss.hard_weight or loss.hidden_weight):
        raise BertcError(f"--attention-weight is the only distillation loss, but {reason}; add --soft-weight, "
                         "--hard-weight or --hidden-weight")
    log.warning("WARNING: attention-map loss is off: %s; distilling with the other losses", reason)
    return dataclasses.replace(loss, attention_weight=0.0)


def without_token_losses_across_tokenizers(loss: DistillLoss, transfer: TransferSet) -> DistillLoss:
    """The loss with its hidden-state and attention-map terms off, and a one-line warning, when the teacher and
    the student read the texts as different tokens: those terms compare the two models token by token."""
    if not loss.intermediate or transfer.tokens_align:
        return loss
    flags = " and ".join(flag for flag, weight in (("--hidden-weight", loss.hidden_weight),
                                                   ("--attention-weight", loss.attention_weight)) if weight)
    reason = "the teacher and the student tokenize the texts differently, so their tokens do not align"
    if not (loss.soft_weight or loss.hard_weight):
        raise BertcError(f"{flags} compare the models token by token, but {reason}; add --soft-weight or "
                         "--hard-weight")
    log.warning("WARNING: %s %s off: %s; distilling with the soft and hard labels", flags,
                "are" if " and " in flags else "is", reason)
    return dataclasses.replace(loss, hidden_weight=0.0, attention_weight=0.0)


class DistillTrainer(BertcTrainer):
    """BertcTrainer whose training loss is the distillation loss; evaluation keeps plain cross-entropy.

    It trains on the transfer set (``transfer``: the labelled rows and any extra ones, each example carrying its row
    in the teacher's logits), which replaces the training set ``train_model`` encoded. With soft and hard losses
    only, the teacher's logits are read from ``cache_file`` or computed once before training and the teacher
    never runs during it; the intermediate losses need its layers' outputs on every batch, and then the logits
    come from that same pass (a cache would cost one more pass over the whole transfer set)."""

    def __init__(self, *args, teacher, loss_config: DistillLoss, layer_map: list[int], transfer: TransferSet,
                 cache_file: Path, teacher_channels: list[int] | None = None,
                 hidden_projection: nn.Module | None = None, **kwargs):
        kwargs["train_dataset"] = transfer.dataset()
        super().__init__(*args, **kwargs)
        device = self.args.device
        self.teacher_channels = (torch.tensor(teacher_channels, device=device)
                                 if teacher_channels is not None else None)
        self.hidden_projection = hidden_projection
        self.loss_config = loss_config
        self.pairs = list(enumerate(layer_map))  # (student layer, teacher layer)
        hidden, attention = loss_config.hidden_weight > 0, loss_config.attention_weight > 0
        # runs under no_grad, only for its internals; its parameters are left as given
        self.teacher = teacher.to(device).eval() if loss_config.intermediate else None
        self.teacher_logits = None if self.teacher is not None else cached_teacher_logits(
            teacher, transfer, cache_file, self.args.per_device_eval_batch_size, device).to(device)
        self.student_taps = LayerTaps(self.model, hidden, attention) if loss_config.intermediate else None
        self.teacher_taps = LayerTaps(self.teacher, hidden, attention) if loss_config.intermediate else None
        self.loss_sums: dict[str, float] = defaultdict(float)
        self.loss_batches = 0

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if ROW_COLUMN not in self._signature_columns:  # kept in the batches: it finds each example's soft label
            self._signature_columns.append(ROW_COLUMN)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        features = {k: v for k, v in inputs.items() if k not in ("labels", ROW_COLUMN)}
        outputs = model(**features)
        if self.teacher is not None:  # fills the teacher's taps too
            with torch.no_grad():
                teacher_logits = self.teacher(**teacher_inputs_for(self.teacher, features)).logits
        else:
            teacher_logits = self.teacher_logits[inputs[ROW_COLUMN].to(self.teacher_logits.device)]
        loss, parts = distillation_loss(outputs.logits, teacher_logits, inputs["labels"], self.loss_config,
                                        attention_mask=features.get("attention_mask"), pairs=self.pairs,
                                        student_taps=self.student_taps, teacher_taps=self.teacher_taps,
                                        teacher_channels=self.teacher_channels,
                                        hidden_projection=self.hidden_projection)
        for name, value in parts.items():
            self.loss_sums[name] += value.item()
        self.loss_batches += 1
        return (loss, outputs) if return_outputs else loss

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:  # the returned model must not keep hooks holding the last batch's activations
            for taps in (self.student_taps, self.teacher_taps):
                if taps is not None:
                    taps.remove()

    def log(self, logs, *args, **kwargs):
        if self.loss_batches and "loss" in logs:  # the loss parts, averaged since the last log record
            for name, total in self.loss_sums.items():
                logs[f"distill_{name}"] = round(total / self.loss_batches, 5)
            self.loss_sums.clear()
            self.loss_batches = 0
        super().log(logs, *args, **kwargs)


class LayerTaps:
    """Forward hooks keeping each encoder layer's output and its attention queries and keys for the last batch."""

    def __init__(self, model, hidden: bool, attention: bool):
        self.head_dim = head_size(model)
        family, layers = family_of(model), encoder_layers(model)
        self.hidden: list[torch.Tensor | None] = [None] * len(layers)
        self.query: list[torch.Tensor | None] = [None] * len(layers)
        self.key: list[torch.Tensor | None] = [None] * len(layers)
        self.handles = []
        for i, layer in enumerate(layers):
            if hidden:
                self.handles.append(layer.register_forward_hook(self.keep(self.hidden, i)))
            projections = family.query_key(layer) if attention else None
            if projections:
                query, key = projections
                self.handles.append(query.register_forward_hook(self.keep(self.query, i)))
                self.handles.append(key.register_forward_hook(self.keep(self.key, i)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.hidden = self.query = self.key = []

    def full_mask(self) -> torch.Tensor:
        """An all-true (batch, seq) mask, for inputs that came without an attention mask."""
        tensor = next(t for t in [*self.hidden, *self.query] if t is not None)
        return torch.ones(tensor.shape[:2], dtype=torch.bool, device=tensor.device)

    @staticmethod
    def keep(store: list, index: int):
        def hook(module, args, output):
            store[index] = output[0] if isinstance(output, tuple) else output
        return hook

    def attention_log_probs(self, index: int, mask: torch.Tensor) -> torch.Tensor | None:
        """log of the head-averaged attention distribution of one layer: (batch, query, key); None without heads."""
        query, key = self.query[index], self.key[index]
        if query is None or key is None:
            return None
        return head_averaged_attention(query, key, self.head_dim, mask)


def head_averaged_attention(query: torch.Tensor, key: torch.Tensor, head_dim: int, mask: torch.Tensor) -> torch.Tensor:
    """log(mean over heads of softmax(q k^T / sqrt(d))) from projected queries/keys (batch, seq, heads*head_dim).

    Averaging over heads makes maps of layers with different head counts comparable.
    """
    batch, seq, width = query.shape
    heads = width // head_dim
    q = query.float().view(batch, seq, heads, head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)
    k = key.float().view(batch, seq, heads, head_dim).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) * head_dim**-0.5  # (batch, heads, query, key)
    scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
    return torch.logsumexp(scores.log_softmax(dim=-1), dim=1) - math.log(heads)


def distillation_loss(student_logits, teacher_logits, labels, config: DistillLoss, *, attention_mask=None,
                      pairs=(), student_taps: LayerTaps | None = None, teacher_taps: LayerTaps | None = None,
                      teacher_channels: torch.Tensor | None = None, hidden_projection: nn.Module | None = None):
    """The weighted distillation loss and its parts (soft, hard, hidden, attention), each a batch mean.

    Labels of ``IGNORED_LABEL`` (rows without one) count for the soft loss only; ``hidden_projection`` maps the
    student's hidden states to the teacher's width."""
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
    t = config.temperature
    parts = {}
    if config.soft_weight:
        parts["soft"] = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                                 log_target=True, reduction="batchmean") * t * t
    if config.hard_weight:
        # the mean over labelled rows; 0 for a batch without any (a plain mean would be 0/0)
        summed = F.cross_entropy(student_logits, labels, ignore_index=IGNORED_LABEL, reduction="sum")
        parts["hard"] = summed / (labels != IGNORED_LABEL).sum().clamp_min(1)
    if config.intermediate:
        mask = attention_mask.bool() if attention_mask is not None else student_taps.full_mask()
        if config.hidden_weight:
            teacher_hidden = [teacher_taps.hidden[t_] for _, t_ in pairs]
            if teacher_channels is not None:
                teacher_hidden = [hidden.index_select(-1, teacher_channels) for hidden in teacher_hidden]
            student_hidden = [student_taps.hidden[s] for s, _ in pairs]
            if hidden_projection is not None:
                student_hidden = [hidden_projection(hidden) for hidden in student_hidden]
            losses = [hidden_state_loss(student, teacher, mask)
                      for student, teacher in zip(student_hidden, teacher_hidden)]
            parts["hidden"] = torch.stack(losses).mean()
        if config.attention_weight:
            losses = []
            for s, t_ in pairs:
                student_map = student_taps.attention_log_probs(s, mask)
                teacher_map = teacher_taps.attention_log_probs(t_, mask)
                if student_map is not None and teacher_map is not None:
                    losses.append(attention_map_loss(student_map, teacher_map, mask))
            if losses:
                parts["attention"] = torch.stack(losses).mean()
    weights = {"soft": config.soft_weight, "hard": config.hard_weight, "hidden": config.hidden_weight,
               "attention": config.attention_weight}
    total = sum(weights[name] * value for name, value in parts.items())
    return total, {name: value.detach() for name, value in parts.items()}


def hidden_state_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Squared error relative to the teacher's norm, per real token: scale-free, 0 when equal, 1 for zeros."""
    error = (student.float() - teacher.float()).pow(2).sum(-1) / teacher.float().pow(2).sum(-1).clamp_min(1e-6)
    return error[mask].mean()


def attention_map_loss(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of head-averaged attention rows, averaged over real query tokens."""
    teacher_probs = teacher_log_probs.exp()
    kl = torch.where(mask[:, None, :], teacher_probs * (teacher_log_probs - student_log_probs), 0.0).sum(-1)
    return kl[mask].mean()

