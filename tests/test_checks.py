"""The type, choice and finite-number checks every config runs on itself."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from bertc.checks import field_problems, flag, raise_problems
from bertc.data.config import AugmentConfig, DataConfig
from bertc.errors import BertcError
from bertc.training.config import TrainConfig


@dataclass(frozen=True)
class Inner:
    size: int = 1


@dataclass(frozen=True)
class Example:
    mode: Literal["fast", "exact"] = "fast"
    rate: float = 0.5
    steps: int = 10
    verbose: bool = False
    name: str = "x"
    limit: int | None = None
    scale: Optional[float] = None  # noqa: UP045 -- typing.Optional must be understood too
    sizes: tuple[int, ...] = (1, 2)
    words: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)
    anything: dict = field(default_factory=dict)  # no rule for plain containers: never a problem


def problems(**values) -> list[str]:
    return field_problems(Example(**values))


def test_defaults_have_no_problems():
    assert problems() == []


def test_flag_is_the_cli_option_name():
    assert flag("max_train_samples") == "--max-train-samples" and flag("seed") == "--seed"


def test_literal_fields_hold_one_of_their_choices():
    assert problems(mode="exact") == []
    assert problems(mode="slow") == ["--mode 'slow' is not one of fast, exact"]
    assert problems(mode=None) == ["--mode None is not one of fast, exact"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_floats_must_be_finite(value):
    assert problems(rate=value) == [f"--rate must be a finite number, got {value!r}"]


def test_floats_accept_whole_numbers_but_not_bools_or_text():
    assert problems(rate=3) == [] and problems(rate=-0.0) == []
    assert problems(rate=True) == ["--rate must be a number, got True"]
    assert problems(rate="0.5") == ["--rate must be a number, got '0.5'"]


def test_a_bool_is_not_a_whole_number():
    assert problems(steps=True) == ["--steps must be a whole number, got True"]
    assert problems(steps=False) == ["--steps must be a whole number, got False"]
    assert problems(steps=2.0) == ["--steps must be a whole number, got 2.0"]
    assert problems(steps="2") == ["--steps must be a whole number, got '2'"]
    assert problems(steps=-3) == []  # ranges are each config's own business


def test_flags_are_true_or_false_only():
    assert problems(verbose=True) == []
    assert problems(verbose=1) == ["--verbose must be true or false, got 1"]
    assert problems(verbose="false") == ["--verbose must be true or false, got 'false'"]


def test_text_must_be_text():
    assert problems(name="") == []
    assert problems(name=3) == ["--name must be text, got 3"]


def test_optional_fields_take_none_or_their_type():
    assert problems(limit=None, scale=None) == []
    assert problems(limit=4, scale=0.5) == []
    assert problems(limit="4") == ["--limit must be a whole number, got '4'"]
    assert problems(limit=True) == ["--limit must be a whole number, got True"]
    assert problems(scale=math.nan) == ["--scale must be a finite number, got nan"]


def test_tuples_take_lists_and_check_every_entry():
    assert problems(sizes=[3, 4]) == [] and problems(sizes=()) == []
    assert problems(sizes="12") == ["--sizes must be a list, got '12'"]
    assert problems(sizes=5) == ["--sizes must be a list, got 5"]
    assert problems(sizes=(1, True)) == ["--sizes has an entry that must be a whole number, got True"]
    assert problems(words=("a", 2)) == ["--words has an entry that must be text, got 2"]


def test_nested_configs_must_be_their_class():
    assert problems(inner=Inner(3)) == []
    assert problems(inner={"size": 3}) == ["--inner must be a Inner, got dict"]
    assert problems(inner=None) == ["--inner must be a Inner, got NoneType"]


def test_every_problem_is_reported_in_field_order():
    assert problems(steps=1.5, mode="x", anything=None) == ["--mode 'x' is not one of fast, exact",
                                                           "--steps must be a whole number, got 1.5"]


def test_raise_problems_raises_once_naming_all():
    raise_problems([])  # nothing wrong: nothing raised
    with pytest.raises(BertcError) as err:
        raise_problems(["--a must be positive, got 0", "--b must be text, got 3"])
    assert str(err.value) == "--a must be positive, got 0; --b must be text, got 3"


def test_configs_run_the_checks_on_themselves():
    with pytest.raises(BertcError, match=r"^--val-fraction must be a finite number, got nan$"):
        DataConfig(val_fraction=math.nan)
    with pytest.raises(BertcError) as err:
        DataConfig(clean="yes", seed=1.5)
    assert str(err.value) == "--clean must be true or false, got 'yes'; --seed must be a whole number, got 1.5"
    with pytest.raises(BertcError, match=r"^--strategies must be a list, got 'delete'$"):
        AugmentConfig(strategies="delete")
    with pytest.raises(BertcError, match=r"^--augment must be a AugmentConfig, got dict$"):
        DataConfig(augment={"factor": 2.0})
    with pytest.raises(BertcError, match=r"^--optimizer 'lamb' is not one of adamw, adam, sgd, adafactor$"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(BertcError, match=r"^--batch-size must be a whole number, got True$"):
        TrainConfig(batch_size=True)
