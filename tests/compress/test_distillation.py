"""Distillation in memory: the loss pieces on hand-made tensors, the layer taps, and training a student in place."""

import json

import pytest
import torch
from torch.nn import functional as F

from bertc.compress.config import DistillLoss, PruneConfig
from bertc.compress.distillation import (
    LayerTaps,
    attention_map_loss,
    distill_,
    distillation_loss,
    head_averaged_attention,
    hidden_state_loss,
)
from bertc.compress.importance import compute_importance
from bertc.compress.prune import prune_model_
from bertc.data.config import DataConfig
from bertc.data.prepare import prepare_data
from bertc.modeling import encoder_layers, load_pretrained_classifier, make_student
from bertc.torch_artifact import load_artifact
from tests.conftest import quick_train_config

TEXTS = ["the movie was great", "a dull and boring plot", "it is fine", "the acting was very bad indeed"]
TEACHER = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
LABELS = torch.tensor([0, 1])


def batch(tokenizer, texts=TEXTS):
    return tokenizer(texts, padding=True, return_tensors="pt")


def test_soft_loss_is_temperature_scaled_kl_and_hard_loss_is_cross_entropy():
    student = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    config = DistillLoss(temperature=2.0, soft_weight=0.3, hard_weight=0.7)
    total, parts = distillation_loss(student, TEACHER, LABELS, config)
    t = config.temperature
    kl = (F.softmax(TEACHER / t, -1) * (F.log_softmax(TEACHER / t, -1) - F.log_softmax(student / t, -1))).sum(-1)
    assert parts["soft"].item() == pytest.approx(kl.mean().item() * t * t, rel=1e-5)
    assert parts["hard"].item() == pytest.approx(F.cross_entropy(student, LABELS).item(), rel=1e-6)
    assert total.item() == pytest.approx(0.3 * parts["soft"].item() + 0.7 * parts["hard"].item(), rel=1e-6)
    assert not parts["soft"].requires_grad  # the parts are for logging; the total carries the gradient


def test_only_the_weighted_parts_are_computed():
    _, parts = distillation_loss(TEACHER.clone(), TEACHER, LABELS, DistillLoss(soft_weight=1.0, hard_weight=0.0))
    assert set(parts) == {"soft"} and parts["soft"].abs().item() < 1e-6  # a copy of the teacher has no soft loss
    _, parts = distillation_loss(TEACHER.clone(), TEACHER, LABELS, DistillLoss(soft_weight=0.0, hard_weight=1.0))
    assert set(parts) == {"hard"}


def test_kl_falls_as_the_student_copies_the_teacher():
    start = torch.tensor([[-1.0, 2.0, 0.0], [2.0, -1.0, 1.0]])
    config = DistillLoss(soft_weight=1.0, hard_weight=0.0)
    losses = [distillation_loss(start + share * (TEACHER - start), TEACHER, LABELS, config)[0].item()
              for share in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert losses == sorted(losses, reverse=True) and losses[0] > 0.1 and losses[-1] == pytest.approx(0, abs=1e-6)
    student = start.clone().requires_grad_(True)  # and gradient steps on the loss move the student there
    optimizer = torch.optim.SGD([student], lr=1.0)
    for _ in range(50):
        optimizer.zero_grad()
        distillation_loss(student, TEACHER, LABELS, config)[0].backward()
        optimizer.step()
    assert distillation_loss(student, TEACHER, LABELS, config)[0].item() < 0.05 * losses[0]


def test_layer_taps_keep_the_last_batch_until_removed(tiny_bert_dir):
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    taps = LayerTaps(model.eval(), hidden=True, attention=False)
    assert taps.query == [None, None]  # attention taps were not asked for
    with torch.no_grad():
        outputs = model(**batch(tokenizer), output_hidden_states=True)
    for i, hidden in enumerate(taps.hidden):
        assert torch.equal(hidden, outputs.hidden_states[i + 1])
    assert taps.full_mask().shape == outputs.hidden_states[0].shape[:2] and taps.full_mask().all()
    taps.remove()
    assert taps.hidden == []
    with torch.no_grad():  # a hook left behind would write into the emptied list and fail
        torch.testing.assert_close(model(**batch(tokenizer)).logits, outputs.logits)


def test_head_averaged_attention_matches_eager_attention(tiny_bert_dir):
    model, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"], attn_implementation="eager")
    model.eval()
    taps = LayerTaps(model, hidden=True, attention=True)
    inputs = batch(tokenizer)  # padded: the mask matters
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    mask = inputs["attention_mask"].bool()
    for i, reference in enumerate(attentions):
        ours = taps.attention_log_probs(i, mask).exp()
        assert torch.allclose(ours[mask], reference.mean(dim=1)[mask], atol=1e-5)
    taps.remove()


def test_loss_parts_are_zero_for_identical_models_and_work_with_fewer_heads(tiny_bert_dir):
    teacher, tokenizer = load_pretrained_classifier(str(tiny_bert_dir), ["0", "1"])
    teacher.eval()
    student = make_student(teacher, [0, 1])
    config = DistillLoss(soft_weight=1.0, hard_weight=0.0, hidden_weight=1.0, attention_weight=1.0)
    taps = LayerTaps(student, True, True), LayerTaps(teacher, True, True)
    inputs = batch(tokenizer)
    labels = torch.tensor([1, 0, 1, 0])
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
    _, parts = distillation_loss(s, t, labels, config, attention_mask=inputs["attention_mask"], pairs=[(0, 0), (1, 1)],
                                 student_taps=taps[0], teacher_taps=taps[1])
    assert set(parts) == {"soft", "hidden", "attention"}
    assert all(abs(value.item()) < 1e-5 for value in parts.values())
    # a student with fewer heads and a smaller FFN: the parts are defined, positive and differentiable
    pruned = make_student(teacher, [1])
    prune_model_(pruned, PruneConfig(heads=1, ffn_size=8), compute_importance(pruned))
    pruned.train()
    taps = LayerTaps(pruned, True, True), taps[1]
    s = pruned(**inputs).logits
    with torch.no_grad():
        t = teacher(**inputs).logits
    loss, parts = distillation_loss(s, t, labels, config, attention_mask=inputs["attention_mask"], pairs=[(0, 1)],
                                    student_taps=taps[0], teacher_taps=taps[1])
    assert all(value.item() > 0 for value in parts.values())
    loss.backward()
    assert encoder_layers(pruned)[0].attention.self.query.weight.grad.abs().sum() > 0


def test_hidden_and_attention_losses_ignore_padding():
    mask = torch.tensor([[True, True, False]])
    teacher = torch.randn(1, 3, 4)
    student = teacher.clone()
    student[0, 2] += 100  # a padded position
    assert hidden_state_loss(student, teacher, mask) == 0
    assert hidden_state_loss(torch.zeros_like(teacher), teacher, mask).item() == pytest.approx(1.0)
    query, key = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    maps = head_averaged_attention(query, key, 4, mask)
    assert torch.allclose(maps.exp()[0, :, :2].sum(-1), torch.ones(3), atol=1e-6)
    assert attention_map_loss(maps, maps, mask).abs() < 1e-6


def test_distill_in_memory_trains_the_student_in_place(tiny_artifact, tmp_path):
    teacher = load_artifact(tiny_artifact)
    labels = teacher.manifest["task"]["labels"]
    data = prepare_data(DataConfig(train=teacher.manifest["task"]["train_data"], max_train_samples=64))
    student = make_student(teacher.model, [1])
    teacher_weight = encoder_layers(teacher.model)[1].output.dense.weight.detach().clone()
    result = distill_(student, teacher.model, teacher.tokenizer, data, {label: i for i, label in enumerate(labels)},
                      quick_train_config(max_steps=2, logging_steps=1), DistillLoss(hidden_weight=1.0),
                      layer_map=[1], work_dir=tmp_path / "work")
    assert result.model is student and result.metrics["steps"] == 2
    assert not torch.equal(encoder_layers(student)[0].output.dense.weight, teacher_weight)
    assert torch.equal(encoder_layers(teacher.model)[1].output.dense.weight.cpu(), teacher_weight)
    log = [json.loads(line) for line in result.log_file.read_text().splitlines()]
    assert {"distill_soft", "distill_hard", "distill_hidden"} <= set().union(*log)


