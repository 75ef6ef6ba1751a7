"""The options of `bertc optimize`: its presets, the selection rules, and the checks on budgets given as text."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from bertc.checks import field_problems, flag, raise_problems, well_typed
from bertc.errors import BertcError
from bertc.finetune.config import DEFAULT_TRIALS, EVALUATIONS_PER_EPOCH, parse_search
from bertc.training.config import TrainConfig


@dataclass(frozen=True)
class Preset:
    finetune_samples: int | None  # training rows for fine-tuning (None: all)
    finetune_epochs: float
    distill_samples: int  # training rows the teacher labels for a shallower student
    recover_samples: int  # training rows for recovery after head/FFN pruning (distilled from the parent)
    importance_samples: int
    selection_samples: int  # rows of the eval data that choose the winner
    bench_runs: int
    batch_sizes: tuple[int, ...]
    memory: bool
    time_budget: float | None  # seconds
    search: str | None = None  # the fine-tune's training options searched (Optuna) before the final fine-tune
    trials: int = 0
    search_samples: int | None = None  # training rows each search trial trains on
    augment_copies: int = 0  # neighbour-augmented copies of each training text in a distillation's transfer set
    distill_epochs: float = 1.0  # epochs over the transfer set for each shallower student


# The share of its training rows (at most so many) a training stage evaluates on, never the selection slice.
STAGE_EVAL_FRACTION, STAGE_EVAL_ROWS = 0.05, 1000
EVALUATION_COST = 1 / 3  # an evaluated row against a trained one: a forward pass without the backward's two

PRESETS = {
    # About 15 minutes on 2 CPU cores with MiniLM-L6 on SST-2 (the README's first command).
    "quick": Preset(finetune_samples=4000, finetune_epochs=1.0, distill_samples=4000, recover_samples=2000,
                    importance_samples=256, selection_samples=500, bench_runs=100, batch_sizes=(1,), memory=False,
                    time_budget=15 * 60),
    # The full search: students distilled on 60k samples (all of SST-2's train.tsv, about 20 minutes per 3-layer
    # student on 2 cores: with 32k, layers3 lost 1.83 points on test.tsv, 1.15 with 60k; see
    # benchmarks/compress_sst2.py). On SST-2 and 2 cores about 2 hours (README, "The full run").
    # 2,000 selection rows, since 500 (standard error about 1.6 points at 85%) cannot resolve a 1-point budget.
    # The teacher is the strongest the data gives: all training rows for 2 epochs (1 epoch of all 60k rows reached
    # 88.65% on SST-2's dev set, 16k rows 86.1%), its learning rate searched on 4,000-row trials first. Students
    # learn from the labelled rows alone: on SST-2 one neighbour-augmented copy of each (TinyBERT) took the 3-layer
    # student 0.80 points [-2.18, +0.57] lower for twice the time (benchmarks/optimize_sst2.py --compare-transfer).
    # Each student distils for 2 epochs: on SST-2 the 3-layer student lost 1.05 points on selection after 1 and
    # none after 2 (on test.tsv, 2 minus 1 epoch: -0.57 [-1.61, +0.46]). 2.5 hours in all: the searched teacher
    # took 64.5 minutes of it on 2 cores, the 2-epoch 3-layer student 52.
    "full": Preset(finetune_samples=None, finetune_epochs=2.0, distill_samples=60000, recover_samples=8000,
                   importance_samples=512, selection_samples=2000, bench_runs=300, batch_sizes=(1, 8), memory=True,
                   time_budget=150 * 60, search="lr=3e-5:1.5e-4:log", trials=4, search_samples=4000,
                   distill_epochs=2.0),
}
FINETUNE_LR, DISTILL_LR, RECOVER_LR = 8e-5, 8e-5, 5e-5


@dataclass(frozen=True)
class SelectConfig:
    max_accuracy_drop: float = 1.0  # accuracy points the winner may lose against the fine-tuned model (selection)
    latency_budget_ms: float | None = None  # p50 latency at batch 1 the winner should meet (then: most accurate)
    test: str | None = None  # labelled data for the final accuracy (test.tsv); None: no final accuracy
    test_samples: int | None = None  # use only the first N rows of the test data
    serve_batch: int = 1  # the batch size you serve at: the winner is the fastest at it

    def __post_init__(self):
        problems = field_problems(self)
        problems += budget_problems(self, problems)
        for name in ("test_samples", "serve_batch"):
            value = getattr(self, name)
            if name in well_typed(self, problems) and value is not None and value < 1:
                problems.append(f"{flag(name)} must be at least 1, got {value}")
        raise_problems(problems)


@dataclass(frozen=True)
class OptimizeConfig:
    train: str  # training data: a file, or a directory with train/validation/test files
    eval: str | None = None  # selection data, of which the first --selection-samples rows are used (default: the
    #                          directory's validation file)
    test: str | None = None  # data for the final accuracy (default: the directory's test file, if any)
    model: str | None = None  # pretrained model to fine-tune first (default: the embedded all-MiniLM-L6-v2)
    start_from: str | None = None  # start from this fine-tuned artifact instead of fine-tuning
    target: Literal["cpu", "cuda"] = "cpu"  # where the model will be served: cpu (int8) or cuda (fp16)
    max_accuracy_drop: float = 1.0  # accuracy points the winner may lose against the fine-tuned model
    latency_budget_ms: float | None = None  # p50 latency at batch 1 the winner should meet
    time_budget: float | None = None  # seconds for the whole run (default: the preset's: quick 15 min, full 2.5 h)
    preset: Literal["quick", "full"] = "full"  # quick: about 15 minutes on 2 CPU cores; full: the whole search
    candidates: tuple[str, ...] = ()  # instead of the preset's, e.g. layers3+hidden256:int8-dynamic (+ the standard)
    selection_samples: int | None = None  # rows of the eval data that choose the winner (quick 500, full 2000)
    test_samples: int | None = None  # use only the first N rows of the test data
    finetune_samples: int | None = None  # training rows for fine-tuning (preset: quick 4000, full all)
    finetune_epochs: float | None = None  # fine-tuning epochs (preset: quick 1, full 2)
    distill_samples: int | None = None  # training rows for distillation to fewer layers (preset)
    distill_epochs: float | None = None  # epochs of each distillation to fewer layers (preset: quick 1, full 2)
    recover_samples: int | None = None  # training rows for recovery after head/FFN pruning (preset)
    importance_samples: int | None = None  # rows used to score heads and neurons (preset)
    lr: float | None = None  # fine-tuning learning rate (default 8e-5; the full preset searches it)
    search: str | None = None  # training options the fine-tune searches first, as `bertc finetune --search` (full
    #                            preset: lr=3e-5:1.5e-4:log; none: no search)
    trials: int | None = None  # trials of the search (full preset: 4)
    search_samples: int | None = None  # training rows each search trial trains on (full preset: 4000)
    augment_copies: int | None = None  # neighbour-augmented copies of each training text that distilled students
    #                                    also learn from, labelled by the teacher (presets: 0)
    unlabeled: str | None = None  # unlabeled in-domain texts the teacher labels for distilled students
    batch_size: int = 32  # training batch size
    max_length: int = 128  # truncate texts to this many tokens
    bench_runs: int | None = None  # timed batch-1 calls per variant in the final bench (preset)
    text_column: str | None = None  # text column (auto-detected when omitted)
    text_pair_column: str | None = None  # second text column for sentence-pair tasks
    label_column: str | None = None  # label column (auto-detected when omitted)
    exhaustive: bool = False  # build every candidate, also those a faster in-budget one makes pointless
    serve_batch: int = 1  # the batch size you serve at: optimize ships the runtime that is fastest at it
    seed: int = 42  # seed of every training stage

    def __post_init__(self):
        problems = field_problems(self)
        problems += budget_problems(self, problems)
        if "time_budget" in well_typed(self, problems) and self.time_budget is not None:
            problems += check_number("--time-budget (seconds)", self.time_budget, minimum=0, strict=True)
        if self.model is not None and self.start_from is not None:
            problems.append("give --model (fine-tune it first) or --from (an artifact already fine-tuned), not both")
        for name in ("selection_samples", "test_samples", "finetune_samples", "distill_samples", "recover_samples",
                     "importance_samples", "bench_runs", "batch_size", "max_length", "serve_batch"):
            value = getattr(self, name)
            if name in well_typed(self, problems) and value is not None and value < 1:
                problems.append(f"{flag(name)} must be a whole number of at least 1, got {value!r}")
        if self.augment_copies is not None and "augment_copies" in well_typed(self, problems) and \
                self.augment_copies < 0:
            problems.append(f"--augment-copies must be at least 0, got {self.augment_copies}")
        for name in ("trials", "search_samples"):
            value = getattr(self, name)
            if name in well_typed(self, problems) and value is not None and value < 1:
                problems.append(f"{flag(name)} must be a whole number of at least 1, got {value!r}")
        if {"search", "preset", "lr"} <= well_typed(self, problems) and (space := self.search_space()):
            params, search_problems = parse_search(space, TrainConfig())
            problems += search_problems
            if self.lr is not None and any(param.name == "lr" for param in params):
                problems.append("--lr fixes the learning rate that --search varies; give one of them")
        for name in ("finetune_epochs", "distill_epochs", "lr"):
            if name in well_typed(self, problems) and getattr(self, name) is not None:
                problems += check_number(flag(name), getattr(self, name), minimum=0, strict=True)
        raise_problems(problems)

    def setting(self, name: str):
        """An option, or the preset's value when it was not given."""
        value = getattr(self, name, None)
        return value if value is not None else getattr(PRESETS[self.preset], name)

    def search_space(self) -> str | None:
        """The fine-tune's search (``--search`` or the preset's); None when there is none."""
        if self.search is not None:
            return None if self.search.strip().lower() == "none" else self.search
        return None if self.lr is not None else PRESETS[self.preset].search

    def finetune_rows_seen(self, train_rows: int) -> float:
        """Training rows the fine-tune passes through: its search trials (each the final training's epochs on
        its sample, with its evaluations counted at their cost) and the final training on all of its rows."""
        rows = min(train_rows, self.setting("finetune_samples") or train_rows)
        epochs = self.setting("finetune_epochs")
        if not self.search_space():
            return rows * epochs
        evaluated = min(STAGE_EVAL_ROWS, math.ceil(train_rows * STAGE_EVAL_FRACTION))
        trial = epochs * (min(rows, self.setting("search_samples") or rows)
                          + EVALUATIONS_PER_EPOCH * evaluated * EVALUATION_COST)
        return (self.setting("trials") or DEFAULT_TRIALS) * trial + rows * epochs


def budget_problems(config: SelectConfig | OptimizeConfig, problems: list[str]) -> list[str]:
    """The accuracy and latency budgets' ranges, shared by both configs."""
    found = []
    if "max_accuracy_drop" in well_typed(config, problems):
        found += check_number("--max-accuracy-drop", config.max_accuracy_drop, minimum=0)
    if config.latency_budget_ms is not None and "latency_budget_ms" in well_typed(config, problems):
        found += check_number("--latency-budget-ms", config.latency_budget_ms, minimum=0, strict=True)
    return found


def check_number(name: str, value, minimum: float, strict: bool = False) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return [f"{name} must be a finite number, got {value!r}"]
    if value < minimum or (strict and value == minimum):
        return [f"{name} must be {'above' if strict else 'at least'} {minimum:g}, got {value:g}"]
    return []


def parse_number(flag: str, text: str | None) -> float | None:
    """A budget given on the command line: a finite number, checked here so the error is one line."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BertcError(f"{flag} must be a number, got {text!r}") from None
    problems = check_number(flag, value, minimum=0)
    if problems:
        raise BertcError(problems[0])
    return value


def parse_duration(text: str | None) -> float | None:
    """``30m``, ``1.5h``, ``900s``, ``1h30m`` or a bare number of minutes, in seconds."""
    if text is None:
        return None
    units = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    cleaned = text.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(sec|s|min|m|hr|h)?", cleaned)
    rebuilt = "".join(f"{n}{u}" for n, u in parts)
    if not parts or rebuilt != cleaned.replace(" ", "") or (len(parts) > 1 and not all(u for _, u in parts)):
        raise BertcError(f"--time-budget must be a duration such as 30m, 1.5h, 900s or 1h30m, got {text!r}")
    seconds = sum(float(n) * units[u or "m"] for n, u in parts)
    if seconds <= 0:
        raise BertcError(f"--time-budget must be above zero, got {text!r}")
    return seconds


