"""How figures are written for people."""

from __future__ import annotations

import pytest

from bertc.formatting import duration, megabytes, pct, points, ratio, signed


def test_pct_is_a_percentage_with_two_decimals():
    assert pct(0.91234) == "91.23"
    assert pct(1.0) == "100.00" and pct(0.0) == "0.00"
    assert pct(0.000049) == "0.00"
    assert pct(None) == "-"


def test_signed_always_shows_the_sign_and_never_minus_zero():
    assert signed(0.5) == "+0.50" and signed(-1.234) == "-1.23"
    assert signed(0.0) == "+0.00" and signed(-0.0) == "+0.00"
    assert signed(-0.001) == "-0.00"  # a real (if tiny) loss keeps its sign
    assert signed(None) == "-"


def test_points_agrees_in_number():
    assert points(1) == "1 point" and points(1.0) == "1 point"
    assert points(0.5) == "0.5 points" and points(2) == "2 points" and points(0) == "0 points"


def test_ratio_has_three_significant_digits():
    assert ratio(2.5) == "2.5x" and ratio(1.23456) == "1.23x" and ratio(12.345) == "12.3x"
    assert ratio(None) == "-"


def test_megabytes_are_mebibytes_with_one_decimal():
    assert megabytes(2**20) == "1.0" and megabytes(int(1.25 * 2**20)) == "1.2"
    assert megabytes(3 * 2**30) == "3072.0"
    assert megabytes(None) == "-" and megabytes(0) == "-"  # an unknown size (0) shows as unknown


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (59.6, "60 s"), (119.4, "119 s"), (120, "2.0 min"),
                                               (3600, "60.0 min")])
def test_duration_switches_to_minutes_from_two_minutes(seconds, text):
    assert duration(seconds) == text
