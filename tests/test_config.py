"""rlgen.config: flags from dataclasses and the field checks every config uses."""

import argparse
import dataclasses

import pytest

from rlgen.config import add_arguments, check, from_arguments, option


@dataclasses.dataclass(frozen=True)
class Example:
    steps: int = option("steps", default=10)
    delay: int = option("delay", default=0)
    ratio: float = option("ratio", default=0.5)
    mode: str = option("mode", default="a")
    hidden: tuple[int, ...] = option("widths", default=(4, 4))
    fast: bool = option("fast", default=False)


def checked(**values):
    check(
        Example(**values),
        positive=("steps",),
        non_negative=("delay",),
        unit=("ratio",),
        choices={"mode": ("a", "b")},
        at_least={"steps": 2},
    )


def test_check_names_the_field_value_and_rule():
    checked()  # the defaults pass
    checked(steps=2, delay=0, ratio=1.0, mode="b")  # every bound is inclusive where stated
    cases = {
        "steps must be positive, got 0": dict(steps=0),
        "delay must be >= 0, got -1": dict(delay=-1),
        r"ratio must be in \[0, 1\], got 1.5": dict(ratio=1.5),
        "mode must be one of a, b, got 'c'": dict(mode="c"),
        "steps must be >= 2, got 1": dict(steps=1),
    }
    for message, values in cases.items():
        with pytest.raises(ValueError, match=message):
            checked(**values)


def test_flags_round_trip_with_tuples_and_booleans():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    args = parser.parse_args(["--steps", "3", "--hidden", "8", "16", "--fast", "--mode", "b"])
    assert from_arguments(Example, args, ratio=0.25) == Example(
        steps=3, hidden=(8, 16), fast=True, mode="b", ratio=0.25
    )
