"""The options of `bertc bench` (light: no torch or onnxruntime import)."""

from __future__ import annotations

from dataclasses import dataclass

from bertc.checks import field_problems, flag, raise_problems, well_typed
from bertc.export.config import Device, Split


@dataclass(frozen=True)
class BenchConfig:
    data: str  # labelled data: a file, a directory (its --split file) or a Hub dataset id
    split: Split = "test"  # split to use when --data is a directory or Hub id
    text_column: str | None = None  # text column (default: the one the baseline was trained with)
    text_pair_column: str | None = None  # second text column (default: the baseline's)
    label_column: str | None = None  # label column (default: the baseline's)
    max_samples: int | None = None  # use only the first N rows of the data
    device: Device = "cpu"  # where the variants run: cpu or cuda
    threads: int | None = None  # CPU threads for each variant (default: all usable cores)
    batch_sizes: tuple[int, ...] = (1, 8, 32)  # batch sizes to time
    seq_lens: tuple[int | str, ...] = ("real",)  # "real" (the data's own lengths, no padding to max) or fixed lengths
    warmup: int = 10  # untimed calls per variant and setting before timing
    runs: int = 100  # timed calls per variant and setting
    duration: float | None = None  # seconds of timed calls per variant and setting (replaces --runs)
    rounds: int = 10  # interleaved rounds the timed calls are split into (the spread is taken over them)
    baseline: str | None = None  # the variant the others are compared with (default: the first)
    accuracy: bool = True  # measure accuracy and macro-F1 on the data
    memory: bool = True  # measure the peak memory of each variant in a child process
    standard_recipe: bool = False  # also bench PyTorch eager and ORT-optimized dynamic int8 of the unpruned parent
    seed: int = 0  # seed of the order in which real sentences are batched

    def __post_init__(self):
        problems = field_problems(self)
        ok = well_typed(self, problems)  # ranges only mean something once the types are right
        if "batch_sizes" in ok and (not self.batch_sizes or any(b < 1 for b in self.batch_sizes)):
            problems.append(f"--batch-sizes needs positive integers, got {list(self.batch_sizes)}")
        if not self.seq_lens or any(s != "real" and (not isinstance(s, int) or s < 2) for s in self.seq_lens):
            problems = [p for p in problems if not p.startswith("--seq-lens ")]  # the flag is --seq-len
            problems.append(f"--seq-len needs 'real' or lengths of at least 2, got {list(self.seq_lens)}")
        for name, low in (("threads", 1), ("max_samples", 1), ("warmup", 0), ("runs", 1), ("rounds", 1)):
            value = getattr(self, name)
            if name in ok and value is not None and value < low:
                problems.append(f"{flag(name)} must be at least {low}, got {value}")
        if "duration" in ok and self.duration is not None and self.duration <= 0:
            problems.append(f"--duration must be positive, got {self.duration}")
        raise_problems(problems)
