"""Command-line value types shared by the subcommands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def _number(text: str, convert: Callable[[str], N], noun: str) -> N:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None


def whole_number(text: str) -> int:
    """1 or more."""
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def seconds(text: str) -> float:
    """More than 0."""
    value = _number(text, float, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def rate(text: str) -> float:
    """0 (no cap) or more."""
    value = _number(text, float, "a number")
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (no cap) or more")
    return value
