"""The options of `bertc bench`: what is refused, and how list options are parsed."""

from __future__ import annotations

import math

import pytest

from bertc.bench.config import BenchConfig
from bertc.errors import BertcError


def test_defaults_are_valid():
    config = BenchConfig(data="test.tsv")
    assert (config.split, config.device, config.batch_sizes, config.seq_lens) == ("test", "cpu", (1, 8, 32),
                                                                                  ("real",))


def test_edge_values_are_accepted():
    config = BenchConfig(data="d", batch_sizes=(1,), seq_lens=("real", 2), warmup=0, runs=1, rounds=1, threads=1,
                         max_samples=1, duration=0.01, device="cuda", split="validation")
    assert config.seq_lens == ("real", 2)


@pytest.mark.parametrize(("options", "message"), [
    ({"split": "dev"}, "--split 'dev' is not one of train, validation, test"),
    ({"device": "gpu"}, "--device 'gpu' is not one of cpu, cuda"),
    ({"batch_sizes": ()}, "--batch-sizes needs positive integers, got []"),
    ({"batch_sizes": (8, 0)}, "--batch-sizes needs positive integers, got [8, 0]"),
    ({"seq_lens": ()}, "--seq-len needs 'real' or lengths of at least 2, got []"),
    ({"seq_lens": ("real", 1)}, "--seq-len needs 'real' or lengths of at least 2, got ['real', 1]"),
    ({"seq_lens": ("long",)}, "--seq-len needs 'real' or lengths of at least 2, got ['long']"),
    ({"threads": 0}, "--threads must be at least 1, got 0"),
    ({"max_samples": 0}, "--max-samples must be at least 1, got 0"),
    ({"warmup": -1}, "--warmup must be at least 0, got -1"),
    ({"runs": 0}, "--runs must be at least 1, got 0"),
    ({"rounds": 0}, "--rounds must be at least 1, got 0"),
    ({"duration": 0.0}, "--duration must be positive, got 0.0"),
])
def test_bad_options_are_refused_naming_the_flag(options, message):
    with pytest.raises(BertcError) as err:
        BenchConfig(data="d", **options)
    assert message in str(err.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(BertcError) as err:
        BenchConfig(data="d", device="tpu", runs=0, rounds=0)
    assert "--device 'tpu'" in str(err.value) and "--runs" in str(err.value) and "--rounds" in str(err.value)


@pytest.mark.parametrize(("options", "flag"), [({"runs": True}, "--runs"), ({"warmup": 2.5}, "--warmup"),
                                               ({"duration": math.nan}, "--duration"), ({"memory": "no"}, "--memory")])
def test_types_are_checked_like_every_config(options, flag):
    """bertc.checks.field_problems: a bool is not a count, numbers are finite, flags are bools."""
    with pytest.raises(BertcError, match=f"^{flag} must be"):
        BenchConfig(data="d", **options)


def test_list_options_parse_through_the_cli():
    from bertc.cli_options import split_list

    assert split_list("1,8,32", "--batch-sizes", int) == (1, 8, 32)
    with pytest.raises(BertcError, match=r"^--batch-sizes takes comma-separated whole numbers"):
        split_list("1,x", "--batch-sizes", int)


def test_seq_lens_are_real_or_lengths():
    assert BenchConfig(data="d", seq_lens=("real", 128, 32)).seq_lens == ("real", 128, 32)
    with pytest.raises(BertcError, match=r"--seq-len needs 'real' or lengths of at least 2"):
        BenchConfig(data="d", seq_lens=("real", "long"))
    with pytest.raises(BertcError, match=r"--seq-len needs 'real' or lengths of at least 2"):
        BenchConfig(data="d", seq_lens=(-5,))
