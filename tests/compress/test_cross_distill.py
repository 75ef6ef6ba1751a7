"""Distillation from any teacher into any student: another tokenizer, width, depth or family, a pretrained encoder
as the student, teacher logits computed once and cached, and transfer rows without labels."""

import json
import logging
import types

import pytest
import torch
from safetensors import safe_open
from torch.nn import functional as F

import bertc.compress.distillation as distillation_module
from bertc.artifact import read_manifest
from bertc.compress.config import DistillConfig, DistillLoss
from bertc.compress.distill import distill, load_student
from bertc.compress.distillation import (
    PROJECTION,
    distill_,
    distillation_loss,
    without_token_losses_across_tokenizers,
)
from bertc.compress.transfer_set import IGNORED_LABEL, LOGITS_FILE, build_transfer_set, transfer_rows
from bertc.data.config import DataConfig, TransferConfig
from bertc.data.load import TextDataset
from bertc.data.prepare import prepare_data
from bertc.errors import BertcError
from bertc.modeling import embedded_model_path, encoder_layers, load_pretrained_classifier, make_student
from bertc.torch_artifact import load_artifact, load_model
from tests.compress.test_distill import student_artifact
from tests.conftest import quick_train_config
from tests.families.tiny import make_family_dir

LABELS = ["0", "1"]


def other_vocabulary_encoder(directory, family: str):
    """A pretrained encoder (no head) with the embedded MiniLM's vocabulary of 30,522 tokens, where the tiny teacher
    has one of 91: hidden 16 (the teacher's 32), 1 layer (the teacher's 2), no dropout."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, DistilBertConfig

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_path()))
    common = dict(vocab_size=len(tokenizer), max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    if family == "bert":
        config = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **common)
    else:
        config = DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=32, dropout=0.0, attention_dropout=0.0,
                                  seq_classif_dropout=0.0, **common)
    torch.manual_seed(3)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def other_tokenizer_encoder(tmp_path_factory):
    """A DistilBERT encoder: another family, tokenizer, width and depth than the tiny BERT teacher."""
    return other_vocabulary_encoder(tmp_path_factory.mktemp("distilbert-minilm-vocab"), "distilbert")


@pytest.fixture(scope="module")
def teacher_data(tiny_artifact):
    return prepare_data(DataConfig(train=read_manifest(tiny_artifact)["task"]["train_data"], max_train_samples=96))


def logits(model, tokenizer, texts):
    model.eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


def kl_to_teacher(student, student_tokenizer, teacher, teacher_tokenizer, texts) -> float:
    """KL(teacher || student) of the predicted distributions, each model reading its own tokens."""
    s, t = logits(student, student_tokenizer, texts), logits(teacher, teacher_tokenizer, texts)
    return F.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="batchmean").item()


def count_calls(monkeypatch, model) -> list:
    calls = []
    forward = model.forward

    def counted(*args, **kwargs):
        calls.append(model.training)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counted)
    return calls


def test_a_student_with_another_tokenizer_learns_the_teachers_soft_labels(tiny_artifact, tmp_path, caplog):
    teacher = load_artifact(tiny_artifact)
    data = prepare_data(DataConfig(train=teacher.manifest["task"]["train_data"]))  # 240 rows
    torch.manual_seed(0)  # the fresh head
    student, tokenizer = load_pretrained_classifier(str(other_vocabulary_encoder(tmp_path / "bert", "bert")), LABELS)
    assert tokenizer.get_vocab() != teacher.tokenizer.get_vocab()
    texts = data.train.texts
    before = kl_to_teacher(student, tokenizer, teacher.model, teacher.tokenizer, texts)
    loss = DistillLoss(temperature=1.0, soft_weight=1.0, hard_weight=0.0, hidden_weight=1.0, attention_weight=1.0)
    with caplog.at_level(logging.WARNING, logger="bertc.compress"):
        distill_(student, teacher.model, tokenizer, data, {label: i for i, label in enumerate(LABELS)},
                 quick_train_config(epochs=8, lr=5e-3), loss, layer_map=[0], work_dir=tmp_path / "work",
                 teacher_tokenizer=teacher.tokenizer)
    after = kl_to_teacher(student, tokenizer, teacher.model, teacher.tokenizer, texts)
    print(f"KL to teacher before {before:.4f} after {after:.4f}")
    assert after < 0.7 * before, (before, after)
    warnings = [r.getMessage() for r in caplog.records if "tokenize the texts differently" in r.getMessage()]
    assert len(warnings) == 1 and "--hidden-weight and --attention-weight are off" in warnings[0]
    assert "\n" not in warnings[0]


def test_distill_writes_a_cross_tokenizer_student_with_its_own_tokenizer(tiny_artifact, other_tokenizer_encoder,
                                                                        tmp_path):
    config = DistillConfig(student=str(other_tokenizer_encoder), train=quick_train_config(epochs=2, lr=3e-3),
                           loss=DistillLoss(soft_weight=1.0, hard_weight=0.5, hidden_weight=1.0))
    out = distill(tiny_artifact, config, tmp_path / "student")
    artifact = load_artifact(out)
    assert type(artifact.model).__name__ == "DistilBertForSequenceClassification"
    assert len(artifact.tokenizer) == 30522 != len(load_artifact(tiny_artifact).tokenizer)  # the student's own
    assert artifact.model.config.id2label == {0: "0", 1: "1"}
    manifest = read_manifest(out)
    assert manifest["compression"]["student"] == {"kind": "pretrained", "source": str(other_tokenizer_encoder)}
    assert manifest["parent"]["path"] == str(tiny_artifact.absolute())
    assert list(map(str, manifest["task"]["labels"])) == LABELS and manifest["compression"]["layer_map"] == [1]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("distill_soft" in record for record in log)
    assert not any("distill_hidden" in record for record in log)  # off: the tokens do not align


def test_with_soft_and_hard_labels_only_the_teacher_runs_once_per_row_before_training(
        tiny_artifact, teacher_data, tmp_path, monkeypatch):
    teacher = load_artifact(tiny_artifact)
    students = [make_student(teacher.model, [1]) for _ in range(2)]
    calls = count_calls(monkeypatch, teacher.model)
    train = quick_train_config(epochs=3, eval_batch_size=64)
    label2id = {label: i for i, label in enumerate(LABELS)}
    work_dir = tmp_path / "work"
    result = distill_(students[0], teacher.model, teacher.tokenizer, teacher_data, label2id, train, DistillLoss(),
                      layer_map=[1], work_dir=work_dir)
    rows = len(teacher_data.train)
    assert calls == [False] * -(-rows // 64)  # one pass over the rows in eval mode, in batches of 64
    assert result.metrics["steps"] == 3 * -(-rows // 16) > len(calls)
    cached = torch.load(work_dir / LOGITS_FILE, weights_only=True)["logits"]
    torch.testing.assert_close(cached, logits(teacher.model, teacher.tokenizer, teacher_data.train.texts),
                               atol=1e-5, rtol=1e-5)
    calls.clear()  # a resumed run of the same teacher and rows reads the cache
    distill_(students[1], teacher.model, teacher.tokenizer, teacher_data, label2id, train, DistillLoss(),
             layer_map=[1], work_dir=work_dir, resume=True)
    assert calls == []


def test_intermediate_losses_take_the_teacher_logits_from_its_live_pass(tiny_artifact, teacher_data, tmp_path,
                                                                        monkeypatch):
    teacher = load_artifact(tiny_artifact)
    student = make_student(teacher.model, [1])
    calls = count_calls(monkeypatch, teacher.model)
    used = []
    real_loss = distillation_module.distillation_loss

    def loss(student_logits, teacher_logits, *args, **kwargs):
        used.append(teacher_logits)
        return real_loss(student_logits, teacher_logits, *args, **kwargs)

    monkeypatch.setattr(distillation_module, "distillation_loss", loss)
    distill_(student, teacher.model, teacher.tokenizer, teacher_data,
             {label: i for i, label in enumerate(LABELS)}, quick_train_config(max_steps=3, eval_batch_size=64),
             DistillLoss(hidden_weight=1.0), layer_map=[1], work_dir=tmp_path / "work")
    assert calls == [False] * 3  # no pass to fill a cache: one live pass per training step, in eval mode
    assert not (tmp_path / "work" / LOGITS_FILE).exists()
    reference = logits(teacher.model, teacher.tokenizer, teacher_data.train.texts)
    assert len(used) == 3 and all(any(torch.allclose(row, ref, atol=1e-5) for ref in reference)
                                  for batch in used for row in batch)


def test_a_narrower_student_learns_hidden_states_through_a_projection_it_does_not_keep(tiny_artifact, tmp_path,
                                                                                       monkeypatch):
    student = student_artifact(tmp_path, read_manifest(tiny_artifact)["task"], hidden_size=16)
    projections = []
    real_attach = distillation_module.attach_hidden_projection_

    def attach(model, width, teacher_width):
        projections.append(real_attach(model, width, teacher_width))
        projections.append(projections[-1].weight.detach().clone())
        return projections[0]

    monkeypatch.setattr(distillation_module, "attach_hidden_projection_", attach)
    config = DistillConfig(student=str(student), train=quick_train_config(lr=2e-3),
                           loss=DistillLoss(soft_weight=0.5, hard_weight=0.0, hidden_weight=1.0))
    out = distill(tiny_artifact, config, tmp_path / "out")
    projection, initial = projections
    assert projection.weight.shape == (32, 16) and not torch.equal(projection.weight.detach().cpu(), initial)
    with safe_open(str(out / "model.safetensors"), framework="pt") as weights:
        assert not [key for key in weights.keys() if PROJECTION in key]
    model = load_model(out)  # loads strictly: nothing but the classifier
    assert model.config.hidden_size == 16 and not hasattr(model, PROJECTION)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("distill_hidden" in record for record in log)


def test_transfer_rows_without_labels_count_for_the_soft_loss_only(tiny_artifact, teacher_data, tmp_path):
    teacher = load_artifact(tiny_artifact)
    extra = TextDataset(texts=["a lovely warm film", "dull and cold", "the plot was superb"] * 10,
                        labels=[None, None, 1] * 10)  # unlabelled texts, and augmented ones keeping their label
    work_dir = tmp_path / "work"
    result = distill_(make_student(teacher.model, [1]), teacher.model, teacher.tokenizer, teacher_data,
                      {label: i for i, label in enumerate(LABELS)}, quick_train_config(epochs=1, logging_steps=1),
                      DistillLoss(), layer_map=[1], work_dir=work_dir, extra=extra)
    rows = len(teacher_data.train) + 30
    assert result.metrics["steps"] == -(-rows // 16)
    assert torch.load(work_dir / LOGITS_FILE, weights_only=True)["logits"].shape == (rows, 2)
    log = [json.loads(line) for line in result.log_file.read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(record["distill_hard"])) for record in log if "distill_hard" in record)


def test_rows_without_labels_are_skipped_by_the_hard_loss():
    student = torch.tensor([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    config = DistillLoss(soft_weight=1.0, hard_weight=1.0)
    _, parts = distillation_loss(student, teacher, torch.tensor([1, IGNORED_LABEL, 0]), config)
    assert parts["hard"].item() == pytest.approx(F.cross_entropy(student[[0, 2]], torch.tensor([1, 0])).item())
    _, everything = distillation_loss(student, teacher, torch.tensor([1, 0, 0]), config)
    assert parts["soft"].item() == pytest.approx(everything["soft"].item())  # every row counts for the soft loss
    loss, parts = distillation_loss(student, teacher, torch.full((3,), IGNORED_LABEL), config)
    assert parts["hard"].item() == 0 and torch.isfinite(loss)


def test_transfer_set_labels_and_token_alignment(tiny_artifact, other_tokenizer_encoder):
    teacher_tokenizer = load_artifact(tiny_artifact).tokenizer
    student_tokenizer = load_student(str(other_tokenizer_encoder), LABELS)[1]
    rows = TextDataset(texts=["a great film", "a very dull plot"], labels=["1", None], source="rows")
    same = build_transfer_set(rows, teacher_tokenizer, None, {"0": 0, "1": 1}, 32)
    assert same.tokens_align and same.label_ids == [1, IGNORED_LABEL]
    other = build_transfer_set(rows, student_tokenizer, teacher_tokenizer, {"0": 0, "1": 1}, 32)
    assert not other.tokens_align
    assert other.teacher_inputs["input_ids"] == teacher_tokenizer(rows.texts)["input_ids"]
    assert other.student_inputs["input_ids"] == student_tokenizer(rows.texts)["input_ids"]
    rows = transfer_rows(rows, ["an unlabelled text", "another"])
    assert rows.texts[2:] == ["an unlabelled text", "another"] and rows.labels == ["1", None, None, None]
    assert build_transfer_set(rows, teacher_tokenizer, None, {"0": 0, "1": 1}, 32).label_ids[1:] == [IGNORED_LABEL] * 3
    pairs = TextDataset(texts=["a", "b"], pairs=["c", "d"], labels=["0", "1"])
    with pytest.raises(BertcError, match="the training data are text pairs but the extra rows are not"):
        transfer_rows(pairs, ["a single text"])
    with pytest.raises(BertcError, match="compare the models token by token.*add --soft-weight or --hard-weight"):
        without_token_losses_across_tokenizers(DistillLoss(soft_weight=0.0, hard_weight=0.0, hidden_weight=1.0),
                                               types.SimpleNamespace(tokens_align=False))


def test_students_of_every_kind_and_labels_that_differ(tiny_artifact, other_tokenizer_encoder, tmp_path):
    model, tokenizer, record, manifest = load_student("minilm", LABELS)  # the embedded MiniLM, a fresh head
    assert record == {"kind": "pretrained", "source": "minilm"} and manifest is None
    assert model.config.num_labels == 2 and len(encoder_layers(model)) == 6
    classifier = make_family_dir(tmp_path / "classifier", "distilbert", labels=("0", "1"))
    _, _, record, manifest = load_student(str(classifier), LABELS)
    assert record["kind"] == "classifier" and manifest["task"]["labels"] == LABELS
    other = make_family_dir(tmp_path / "other", "distilbert", labels=("neg", "pos"))
    with pytest.raises(BertcError) as err:
        load_student(str(other), LABELS)
    assert "the teacher predicts labels ['0', '1'] but the student" in str(err.value)
    assert "predicts ['neg', 'pos']" in str(err.value) and "\n" not in str(err.value)


def test_distill_adds_unlabeled_and_augmented_texts_to_the_transfer_set(tiny_artifact, tmp_path):
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("a good film\n\nthe plot was dull and awful\na good film\n")
    train = quick_train_config(epochs=1, batch_size=16)
    plain = distill(tiny_artifact, DistillConfig(student_layers=1, train=train), tmp_path / "plain")
    config = DistillConfig(student_layers=1, train=train,
                           transfer=TransferConfig(unlabeled=str(unlabeled), augment_copies=1))
    out = distill(tiny_artifact, config, tmp_path / "transfer")
    transfer = read_manifest(out)["compression"]["transfer"]
    labelled = read_manifest(plain)["compression"]["transfer"]["labelled"]
    assert transfer["labelled"] == labelled and transfer["unlabeled"] == 2 and transfer["augmented"] > 0
    steps = read_manifest(out)["metrics"]["training"]["steps"]
    rows = labelled + transfer["unlabeled"] + transfer["augmented"]
    assert steps == -(-rows // 16) > read_manifest(plain)["metrics"]["training"]["steps"]
