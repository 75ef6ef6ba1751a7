"""How figures are written for people: percentages, signed point differences, durations, sizes."""

from __future__ import annotations


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals ('-' when unknown)."""
    return "-" if value is None else f"{100 * value:.2f}"


def signed(value: float | None) -> str:
    """A difference with its sign ('-' when unknown); + 0.0 keeps "-0.00" from appearing."""
    return "-" if value is None else f"{value + 0.0:+.2f}"


def with_interval(value: float, low: float, high: float) -> str:
    """A difference with its interval: '-0.20 [-1.1, +0.7]'."""
    return f"{signed(value)} [{low + 0.0:+.1f}, {high + 0.0:+.1f}]"


def points(value: float) -> str:
    return f"{value:g} point" + ("" if value == 1 else "s")


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"


def megabytes(size: int | None) -> str:
    return "-" if not size else f"{size / 2**20:.1f}"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
