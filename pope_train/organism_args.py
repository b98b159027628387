"""The organism scripts' pretraining options, one per `OrganismConfig` field.

`add_config_arguments(parser)` offers every field (but those the script sets itself) as a typed
option with the field's default and its help text; `config_from_args(args, seed=..., ...)` reads
them back. scripts/make_organism.py and scripts/make_opchain_organism.py share it, so a new field
needs one help line here and nothing in either script.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import fields
from typing import Any

from pope_train.organism_model import OrganismConfig

# --help text of each OrganismConfig field offered as an option.
FIELD_HELP = {
    "seed": "seed of the data, the initial weights and the regime check",
    "hidden_size": "width of the transformer",
    "layers": "transformer layers",
    "heads": "attention heads (hidden size must be a multiple of it)",
    "intermediate_size": "width of the MLP",
    "examples": "pretraining demonstrations generated",
    "difficulties": "pretraining difficulties, comma-separated",
    "guided_fraction": "share of the demonstrations that show part of the solution as guidance",
    "max_steps": "optimizer steps of pretraining",
    "batch_size": "packed rows per step",
    "pack_length": "tokens per packed row",
    "rope_theta": "RoPE base (short-range positions)",
    "learning_rate": "peak learning rate (warm-up, then cosine decay)",
    "warmup_steps": "steps of linear learning-rate warm-up",
    "log_every": "steps between points of the loss curve",
    "threads": "CPU threads of torch",
    "snapshots": "steps after which the model is also saved to OUT/snapshots/step-N, "
                 "comma-separated",
}


def ints(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); an argparse type."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")
    return values


def finite(text: str) -> float:
    """A finite float; an argparse type."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def integer(text: str) -> int:
    """An integer; an argparse type."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


TYPES = {int: integer, float: finite, tuple: ints}


def add_config_arguments(parser: argparse.ArgumentParser, *,
                         skip: tuple[str, ...] = ("restate",)) -> None:
    """`--field-name` for every OrganismConfig field not in `skip` (bool fields are the
    scripts' own flags), typed and defaulted from the field."""
    base = OrganismConfig()
    for f in fields(OrganismConfig):
        if f.name in skip:
            continue
        default = getattr(base, f.name)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=TYPES[type(default)],
                            default=default, help=FIELD_HELP[f.name])


def config_from_args(args: argparse.Namespace, **fixed: Any) -> OrganismConfig:
    """The OrganismConfig of parsed options; `fixed` gives the fields the script sets itself."""
    values = {f.name: getattr(args, f.name) for f in fields(OrganismConfig)
              if f.name not in fixed and hasattr(args, f.name)}
    return OrganismConfig(**values, **fixed)
