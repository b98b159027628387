"""The interface every training backend implements: its options, a checked plan, a dry run and a run.

`b = BACKENDS["trl"]; plan = b.plan(RECIPES["pope"], model=..., export=..., train_files=(),
options=b.options(max_steps=5), overrides=())`; then `b.dry_run(plan)` (text) or `b.train(plan)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pope_train.recipes import Recipe

# (step done, steps in all, one line on the step's metrics)
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Plan:
    """A checked run of one backend: nothing is trained yet.

    `lines`: (label, text) pairs worth showing before the run (train files, model, out folder);
    `steps`: the steps the run reports through `progress`, or None when the backend shows its
    own progress (verl's trainer prints to the terminal); `detail`: the backend's own plan.
    """

    backend: str
    recipe: str
    lines: tuple[tuple[str, str], ...]
    steps: int | None
    detail: Any


@dataclass(frozen=True)
class Outcome:
    """How a run ended: `exit_code` 0 when it trained; `lines`: what it produced, one line each."""

    exit_code: int
    lines: tuple[str, ...]
    result: Any = None


class TrainBackend(Protocol):
    """A training backend, registered by name in `pope_train.backends.BACKENDS`.

    `options`: a dataclass of `pope_eval.options.option` fields, the backend's own command-line
    options (the CLI offers them and refuses them with another backend); `overrides`: what
    extra `key=value` arguments are to it (e.g. "verl overrides"), None when it takes none.
    `plan` checks the recipe, data, model and options and reads nothing heavy; `dry_run` is
    the text `--dry-run` prints; `train` runs in the foreground.
    """

    name: str
    summary: str
    options: type
    overrides: str | None

    def plan(self, recipe: Recipe, *, model: str, export: str | None,
             train_files: tuple[str, ...], options: Any, overrides: tuple[str, ...]) -> Plan: ...

    def dry_run(self, plan: Plan) -> str: ...

    def train(self, plan: Plan, progress: Progress | None = None) -> Outcome: ...
