"""What the bench/ studies share: argument types that refuse a bad value naming the option and what
it takes, so a study checks every argument before it builds anything.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# ---- argument types: each names its option and what it takes -----------------------------------

def _typed(option: str, what: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, TypeError) as exc:
            detail = f" ({exc})" if str(exc) and not str(exc).startswith("invalid literal") else ""
            raise argparse.ArgumentTypeError(f"{what} expected, got {text!r}{detail}") \
                from None
    parse.__name__ = option  # argparse names the type in its fallback message
    return parse


def int_at_least(option: str, low: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f"below {low}")
        return value
    return _typed(option, f"an integer >= {low}", convert)


def float_in(option: str, low: float, high: float | None = None, *,
             open_low: bool = False) -> Callable[[str], float]:
    bound = f"{'>' if open_low else '>='} {low:g}" + ("" if high is None else f" and <= {high:g}")

    def convert(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or (value <= low if open_low else value < low) \
                or (high is not None and value > high):
            raise ValueError(f"outside {bound}")
        return value
    return _typed(option, f"a number {bound}", convert)


def int_list(option: str, low: int = 0) -> Callable[[str], list[int]]:
    """Comma-separated distinct integers >= low, at least one."""
    def convert(text: str) -> list[int]:
        values = [int(x) for x in text.split(",") if x.strip()]
        if not values:
            raise ValueError("empty")
        if min(values) < low:
            raise ValueError(f"{min(values)} is below {low}")
        if len(set(values)) != len(values):
            raise ValueError("a value repeats")
        return values
    return _typed(option, f"comma-separated distinct integers >= {low}", convert)


def name_list(option: str, allowed: Sequence[str] | None = None) -> Callable[[str], list[str]]:
    """Comma-separated names, at least one, each in `allowed` when given."""
    def convert(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        if not values:
            raise ValueError("empty")
        if len(set(values)) != len(values):
            raise ValueError("a name repeats")
        unknown = [v for v in values if allowed is not None and v not in allowed]
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
        return values
    return _typed(option, "comma-separated names", convert)


def add_common_arguments(ap: argparse.ArgumentParser, *, jobs: int = 2) -> None:
    """--out (the study folder, re-run to resume) and --jobs (runs at a time)."""
    ap.add_argument("--out", type=Path, required=True, help="study folder (re-run to resume)")
    ap.add_argument("--jobs", type=int_at_least("--jobs", 1), default=jobs,
                    help="runs at a time (integer >= 1)")
