"""The options of `bertc import` (light: no torch import)."""

from __future__ import annotations

from dataclasses import dataclass

from bertc.checks import below_minimum, check_config


@dataclass(frozen=True)
class ImportConfig:
    max_length: int | None = None  # tokens the model reads (default: its tokenizer's and positions' limit, at most
    #                                128)

    def __post_init__(self):
        check_config(self)

    def range_problems(self) -> list[str]:
        return below_minimum(self, ("max_length",))
