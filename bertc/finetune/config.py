"""The options of `bertc finetune` (light: no torch import), and the search space `--search` describes."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from bertc.checks import below_minimum, field_problems, raise_problems
from bertc.data.config import DataConfig
from bertc.errors import BertcError
from bertc.training.config import TrainConfig

# The training options a search may vary; the others change what is trained or measured, not how well.
SEARCHABLE = ("lr", "batch_size", "schedule", "epochs", "warmup", "weight_decay", "optimizer", "momentum",
              "max_grad_norm", "poly_power", "exp_final_factor", "layer_lr_decay", "grad_accum")
ALIASES = {"learning_rate": "lr", "scheduler": "schedule", "lr_schedule": "schedule", "num_epochs": "epochs"}
DEFAULT_TRIALS = 10
EVALUATIONS_PER_EPOCH = 4  # of a search trial (per trial when --max-steps fixes its length): where trials compare
SYNTAX = "name=low:high, name=low:high:log or name=a|b|c"


@dataclass(frozen=True)
class SearchParam:
    """One searched training option: a range from ``low`` to ``high`` (on a log scale with ``log``), or choices."""

    name: str  # a TrainConfig field
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def bounds(self) -> tuple:
        """The values at the edges of the search, which the training options must accept."""
        return self.choices or (self.low, self.high)


@dataclass(frozen=True)
class FinetuneConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trust_remote_code: bool = False  # allow model code from the Hub to run
    search: str | None = None  # search the training options with Optuna, comma-separated name=low:high[:log] or
    #                            name=a|b|c entries (lr=2e-5:2e-4:log,batch_size=16|32,schedule=linear|cosine)
    trials: int | None = None  # trials of --search (default 10); bad ones are pruned early
    search_samples: int | None = None  # training rows each --search trial trains on (default: all); the final
    #                                    model trains on all of them

    def __post_init__(self):
        problems = field_problems(self)
        if not problems and self.data.train is None:
            problems.append("--train is required: fine-tuning needs labelled training data (a file, a directory of "
                            "splits or a Hub dataset id)")
        if not problems:
            problems += self.search_problems()
        raise_problems(problems)

    def search_problems(self) -> list[str]:
        problems = below_minimum(self, ("trials", "search_samples"))
        if self.search is None:
            problems += [f"--{name.replace('_', '-')} needs --search (the training options to search)"
                         for name in ("trials", "search_samples") if getattr(self, name) is not None]
            return problems
        return problems + parse_search(self.search, self.train)[1]

    def search_space(self) -> tuple[SearchParam, ...]:
        """The parameters of ``search`` (checked when the config was made)."""
        return parse_search(self.search, self.train)[0] if self.search else ()

    @property
    def search_trials(self) -> int:
        return self.trials or DEFAULT_TRIALS


def parse_search(text: str, train: TrainConfig) -> tuple[tuple[SearchParam, ...], list[str]]:
    """The parameters ``text`` names and what is wrong with it: an unknown option, a malformed entry, an empty
    range, or a value ``train`` would refuse."""
    params, problems = [], []
    entries = [entry.strip() for entry in text.split(",")]
    if not any(entries):
        return (), [f"--search is empty; give entries such as {SYNTAX}"]
    for entry in entries:
        try:
            param = parse_entry(entry, train)
        except BertcError as err:
            problems.append(str(err))
            continue
        if any(p.name == param.name for p in params):
            problems.append(f"--search names {param.name} twice")
        params.append(param)
    return tuple(params), problems


def parse_entry(entry: str, train: TrainConfig) -> SearchParam:
    name, equals, value = (part.strip() for part in entry.partition("="))
    if not equals or not name or not value:
        raise BertcError(f"--search entry {entry!r} is not {SYNTAX}")
    name = name.lower().replace("-", "_")
    name = ALIASES.get(name, name)
    if name not in SEARCHABLE:
        raise BertcError(f"--search: unknown parameter {entry.partition('=')[0].strip()!r}; search one of "
                         f"{', '.join(SEARCHABLE)}")
    kind = typing.get_type_hints(TrainConfig)[name]
    if "|" in value:
        param = SearchParam(name, choices=tuple(convert(part.strip(), kind, name) for part in value.split("|")))
    elif ":" in value:
        parts = [part.strip() for part in value.split(":")]
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise BertcError(f"--search {name}={value}: a range is low:high or low:high:log")
        if typing.get_origin(kind) is typing.Literal:
            raise BertcError(f"--search {name}={value}: {name} takes choices such as "
                             f"{'|'.join(map(str, typing.get_args(kind)[:2]))}, not a range")
        param = SearchParam(name, convert(parts[0], kind, name), convert(parts[1], kind, name), len(parts) == 3)
        if param.low >= param.high:
            raise BertcError(f"--search {name}={value}: the range is empty; give low:high with low below high")
        if param.log and param.low <= 0:
            raise BertcError(f"--search {name}={value}: a log range needs a low above 0")
    else:
        raise BertcError(f"--search {name}={value}: give a range low:high or choices a|b (set a single value with "
                         f"--{name.replace('_', '-')})")
    if name == "epochs" and train.max_steps is not None:
        raise BertcError("--search epochs has no effect with --max-steps, which fixes the length of training")
    for bound in param.bounds():
        try:
            dataclasses.replace(train, **{name: bound})
        except BertcError as err:
            raise BertcError(f"--search {name}={value}: {err}") from None
    return param


def convert(text: str, kind, name: str):
    """``text`` as a value of a TrainConfig field of type ``kind`` (a choice stays text for the config to check)."""
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise BertcError(f"--search {name} takes {what}, got {text!r}") from None
    if not text:
        raise BertcError(f"--search {name} has an empty choice")
    return text
