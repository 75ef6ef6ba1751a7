import pytest
import torch

from bertc.errors import BertcError
from bertc.modeling import load_pretrained_classifier
from bertc.training.config import TrainConfig
from bertc.training.optim import build_optimizer, build_scheduler, layer_depth, param_groups


@pytest.fixture
def model(tiny_bert_dir):
    return load_pretrained_classifier(str(tiny_bert_dir), ["a", "b"])[0]


def test_layer_depths():
    assert layer_depth("bert.embeddings.word_embeddings.weight", 2) == 0
    assert layer_depth("bert.encoder.layer.1.output.dense.weight", 2) == 2
    assert layer_depth("classifier.weight", 2) == 3


def test_layer_wise_lr_decay_and_no_decay_groups(model):
    groups = param_groups(model, TrainConfig(lr=1.0, layer_lr_decay=0.5, weight_decay=0.1))
    lrs = {}
    for group in groups:
        for p in group["params"]:
            lrs[id(p)] = (group["lr"], group["weight_decay"])
    named = dict(model.named_parameters())
    assert lrs[id(named["classifier.weight"])] == (1.0, 0.1)
    assert lrs[id(named["bert.encoder.layer.1.attention.self.query.weight"])] == (0.5, 0.1)
    assert lrs[id(named["bert.encoder.layer.0.attention.self.query.bias"])] == (0.25, 0.0)
    assert lrs[id(named["bert.embeddings.word_embeddings.weight"])] == (0.125, 0.1)
    assert sum(len(g["params"]) for g in groups) == len(named)


@pytest.mark.parametrize("name,expected", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                                           ("sgd", torch.optim.SGD)])
def test_optimizers(model, name, expected):
    optimizer = build_optimizer(model, TrainConfig(optimizer=name))
    assert type(optimizer) is expected
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.9


def test_adafactor(model):
    from transformers.optimization import Adafactor

    assert isinstance(build_optimizer(model, TrainConfig(optimizer="adafactor")), Adafactor)


def test_an_unknown_optimizer_is_refused_not_read_as_adafactor(model):
    config = TrainConfig()
    object.__setattr__(config, "optimizer", "lion")  # past the config's own check, as a caller's object may be
    with pytest.raises(BertcError, match=r"^--optimizer 'lion' is not one of adamw, adam, sgd, adafactor$"):
        build_optimizer(model, config)


def lr_curve(model, schedule, total=100, **kwargs):
    optimizer = build_optimizer(model, TrainConfig(lr=1.0, schedule=schedule, layer_lr_decay=1.0, **kwargs))
    scheduler = build_scheduler(optimizer, TrainConfig(lr=1.0, schedule=schedule, **kwargs), total)
    curve = []
    for _ in range(total):
        curve.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return curve


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant", "polynomial", "exponential"])
def test_every_schedule_warms_up_then_follows_its_shape(model, schedule):
    curve = lr_curve(model, schedule, warmup=0.1, poly_power=2.0)
    assert curve[0] < 0.2 and max(curve) == pytest.approx(1.0, abs=0.1)
    peak = curve.index(max(curve))
    assert 8 <= peak <= 11
    after = curve[peak:]
    if schedule == "constant":
        assert all(v == pytest.approx(1.0) for v in after)
    else:
        assert all(a >= b for a, b in zip(after, after[1:])) and after[-1] < 0.1
    if schedule == "exponential":
        assert after[-1] == pytest.approx(0.01, rel=0.2)
    if schedule == "polynomial":  # power 2 decays faster early than linear
        assert curve[55] < lr_curve(model, "linear", warmup=0.1)[55]


def test_warmup_in_steps(model):
    assert lr_curve(model, "linear", warmup=30.0).index(1.0) == 30


def test_invalid_options_are_reported_together():
    with pytest.raises(BertcError, match="--lr must be positive.*--layer-lr-decay must be in"):
        TrainConfig(lr=0, layer_lr_decay=2.0)
    with pytest.raises(BertcError, match="fp16 needs CUDA"):
        TrainConfig(precision="fp16", device="cpu")
