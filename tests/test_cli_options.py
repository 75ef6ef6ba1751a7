"""Options generated from config dataclasses: help from field comments, flattening, ties, renames, conversions."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from bertc.bench.config import BenchConfig
from bertc.cli_options import (
    argument,
    build_config,
    cli_kind,
    command_function,
    config_options,
    field_help,
    parse_text,
    sentence,
    split_list,
    to_number,
    typer_option,
)
from bertc.compress.config import DistillLoss
from bertc.errors import BertcError
from bertc.export.config import DynamicQuantConfig, ExportConfig, StaticQuantConfig
from bertc.finetune.config import FinetuneConfig
from bertc.optimize.config import OptimizeConfig, SelectConfig
from bertc.training.config import TrainConfig


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5  # learning rate of the inner loop
    seed: int = 1  # inner seed
    mode: Literal["fast", "exact"] = "fast"  # how to run


@dataclass(frozen=True)
class Outer:
    name: str  # the run's name
    sizes: tuple[int, ...] = (1, 8)  # batch sizes
    limit: int | None = None  # stop after N items,
    #                           continued on this line
    verbose: bool = False  # print more
    shuffle: bool = True  # fp32 weights are shuffled.
    split: Literal["train", "test"] = "train"  # which part to use
    inner: Inner = field(default_factory=Inner)
    uncommented: int = 3
    # a comment after a field without one belongs to nobody
    seed: int = 7  # outer seed
    hidden: str = field(default="x", init=False)
    when: float | None = None  # a duration


def by_name(options):
    return {option.name: option for option in options}


# ---------------------------------------------------------------------------------------------- help text

def test_field_help_reads_trailing_comments_and_their_continuation_lines():
    helps = field_help(Outer)
    assert helps["name"] == "The run's name."
    assert helps["limit"] == "Stop after N items, continued on this line."
    assert helps["shuffle"] == "fp32 weights are shuffled."  # a lowercase name keeps its case, no second stop
    assert helps["seed"] == "Outer seed."  # the orphan comment above did not leak into it
    assert "uncommented" not in helps and "inner" not in helps and "hidden" not in helps


def test_field_help_of_a_real_config_joins_the_continued_comment():
    assert field_help(OptimizeConfig)["eval"] == (
        "Selection data, of which the first --selection-samples rows are used (default: the directory's "
        "validation file).")


def test_sentence_capitalises_plain_words_only():
    assert sentence("peak learning rate") == "Peak learning rate."
    assert sentence("fp16 for GPUs") == "fp16 for GPUs."
    assert sentence("--flag wins") == "--flag wins."
    assert sentence("ONNX opset.") == "ONNX opset."


# ---------------------------------------------------------------------------------------------- flattening

def test_nested_configs_are_flattened_and_same_named_fields_share_one_option():
    options = config_options(Outer)
    names = [option.name for option in options]
    assert names == ["name", "sizes", "limit", "verbose", "shuffle", "split", "rate", "seed", "mode",
                     "uncommented", "when"]  # hidden (init=False) has no option
    seed = by_name(options)["seed"]
    assert seed.paths == [("inner", "seed"), ("seed",)] and seed.default == 1  # the first declaration's default
    assert by_name(options)["rate"].paths == [("inner", "rate")]
    assert by_name(options)["name"].default is ...  # required
    assert by_name(options)["sizes"].default == "1,8"  # a tuple default is shown as the text it is typed as


def test_renames_skips_defaults_helps_and_panels():
    options = by_name(config_options(Outer, skip=("verbose", "inner.mode"), flags={"inner.rate": "--inner-rate"},
                                     defaults={"limit": 5}, helps={"limit": "Custom."}, panel="Run"))
    assert "verbose" not in options and "mode" not in options
    assert options["inner_rate"].flag == "--inner-rate" and options["inner_rate"].paths == [("inner", "rate")]
    assert options["limit"].default == 5 and options["limit"].help == "Custom."
    assert {option.panel for option in options.values()} == {"Run"}


def test_literal_choices_are_added_to_help_unless_it_names_them_all():
    options = by_name(config_options(Outer))
    assert options["split"].help == "Which part to use. One of: train, test."
    assert by_name(config_options(ExportConfig))["device"].help == (
        "Execution provider for verification: cpu or cuda.")


def test_real_configs_get_their_panels_and_a_keyword_flag_gets_an_underscore():
    options = by_name(config_options(FinetuneConfig))
    assert options["lr"].panel == "Training" and options["train"].panel == "Data"
    assert by_name(config_options(OptimizeConfig, flags={"start_from": "--from"}))["from_"].paths == [("start_from",)]
    assert [o.name for o in config_options(DynamicQuantConfig)] == ["per_channel", "reduce_range"]


# ---------------------------------------------------------------------------------------------- conversions

def test_cli_kind_per_field_type():
    assert cli_kind(int)[0] is str and cli_kind(int)[2] == "INTEGER"
    assert cli_kind(float | None)[0] == str | None and cli_kind(float | None)[2] == "FLOAT"
    assert cli_kind(bool) == (bool, None, None)
    assert cli_kind(str | None) == (str | None, None, None)
    assert cli_kind(Literal["a", "b"]) == (str, None, None)  # the config checks the choice
    kind, convert, metavar = cli_kind(tuple[int, ...])
    assert kind == str | None and metavar == "LIST" and convert("3,5", "--x") == (3, 5)
    assert cli_kind(dict)[0] is str


def test_to_number_names_the_flag_on_bad_text():
    assert to_number("3", "--n", kind=int) == 3 and to_number("1e-3", "--lr") == 0.001
    assert to_number(None, "--n") is None and to_number(7, "--n", kind=int) == 7
    with pytest.raises(BertcError, match=r"^--n must be a whole number, got '1\.5'$"):
        to_number("1.5", "--n", kind=int)
    with pytest.raises(BertcError, match=r"^--lr must be a number, got 'fast'$"):
        to_number("fast", "--lr")


def test_split_list_parses_numbers_before_text_and_refuses_empty_or_wrong_entries():
    assert split_list("1, 8 ,32", "--batch-sizes", int) == (1, 8, 32)
    assert split_list(None, "--batch-sizes", int) == ()
    assert split_list("real,128", "--seq-len", int | str) == ("real", 128)
    assert split_list("delete,swap", "--augment") == ("delete", "swap")
    with pytest.raises(BertcError, match="--batch-sizes '1,,2' has an empty entry"):
        split_list("1,,2", "--batch-sizes", int)
    with pytest.raises(BertcError, match="--batch-sizes takes comma-separated whole numbers such as 3,5; got '1,x'"):
        split_list("1,x", "--batch-sizes", int)
    with pytest.raises(BertcError, match="empty entry"):
        split_list("", "--augment")


def test_parse_text_applies_the_parser_to_given_text_only():
    assert parse_text("2", "--when", parser=lambda text: int(text) * 60) == 120
    assert parse_text(None, "--when", parser=lambda text: 1 / 0) is None


def test_switches_always_get_a_no_form():
    options = by_name(config_options(Outer))
    assert typer_option(options["shuffle"]).param_decls == ("--shuffle/--no-shuffle",)
    assert typer_option(options["verbose"]).param_decls == ("--verbose/--no-verbose",)  # as the old CLI had
    assert typer_option(options["limit"]).param_decls == ("--limit",)


# ---------------------------------------------------------------------------------------------- build_config

def defaults_of(options) -> dict:
    return {option.name: option.default for option in options}


@pytest.mark.parametrize("cls, required", [
    (TrainConfig, {}), (ExportConfig, {}), (StaticQuantConfig, {}), (DistillLoss, {}), (SelectConfig, {}),
    (BenchConfig, {"data": "d.tsv"}), (OptimizeConfig, {"train": "t.tsv"})])
def test_the_option_defaults_build_the_default_config(cls, required):
    options = config_options(cls)
    assert build_config(cls, options, {**defaults_of(options), **required}) == cls(**required)


def test_build_config_converts_text_and_rebuilds_nested_configs_with_ties_and_fixed_fields():
    options = config_options(Outer)
    values = {**defaults_of(options), "name": "r1", "sizes": "2,4", "limit": "5", "rate": "0.25", "seed": "3"}
    config = build_config(Outer, options, values)
    assert config == Outer(name="r1", sizes=(2, 4), limit=5, inner=Inner(rate=0.25, seed=3), seed=3)
    fixed = build_config(Outer, options, values, inner=Inner(mode="exact"))
    assert fixed.inner == Inner(mode="exact") and fixed.seed == 3


def test_the_seed_tie_sets_every_seed_of_a_finetune_run():
    options = config_options(FinetuneConfig, defaults={"data.train": "t.tsv"})
    config = build_config(FinetuneConfig, options, {**defaults_of(options), "seed": "5", "lr": "0.001"})
    assert (config.data.seed, config.data.augment.seed, config.train.seed) == (5, 5, 5)
    assert config.train.lr == 0.001 and config.data.train == "t.tsv"


# ---------------------------------------------------------------------------------------------- through Typer

def test_a_generated_command_parses_every_kind_of_option():
    options = config_options(Outer, flags={"inner.rate": "--inner-rate"},
                             parsers={"when": lambda text: float(text.removesuffix("m")) * 60})
    built = {}

    def run(values):
        built["out"] = values["out"]
        built["config"] = build_config(Outer, options, values)

    app = typer.Typer()
    app.command()(command_function(run, [argument("out", str, help="Where to write.")], options, "Run it."))
    parameters = inspect.signature(app.registered_commands[0].callback).parameters
    assert list(parameters) == ["out", *(o.name for o in options)]
    runner = CliRunner()
    result = runner.invoke(app, ["dest", "--name", "r1", "--sizes", "2,4", "--limit", "5", "--verbose", "--no-shuffle",
                                 "--split", "test", "--inner-rate", "0.25", "--seed", "3", "--mode", "exact",
                                 "--when", "2m"])
    assert result.exit_code == 0, result.output
    assert built["out"] == "dest"
    assert built["config"] == Outer(name="r1", sizes=(2, 4), limit=5, verbose=True, shuffle=False, split="test",
                                    inner=Inner(rate=0.25, seed=3, mode="exact"), seed=3, when=120.0)
    result = runner.invoke(app, ["dest", "--name", "r1", "--limit", "many"])
    assert isinstance(result.exception, BertcError)
    assert str(result.exception) == "--limit must be a whole number, got 'many'"
    built.clear()
    result = runner.invoke(app, ["dest"])
    assert result.exit_code == 2 and "--name" in result.output and not built  # required: Typer refuses
