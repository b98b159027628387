"""The interface every guidance scheme implements: what guided rows show during training and how it changes.

A scheme is one file in pope_train/guidance/ (a `GuidanceScheme` subclass with its options
dataclass) and one `SCHEMES.add` line in pope_train/guidance/__init__.py; a recipe names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from pope_eval.engines import Engine, Sampling
from pope_eval.errors import ConfigError, DataError
from pope_eval.options import flag_of
from pope_eval.prompts import Guidance
from pope_train.guidance.table import (
    GuidanceTable,
    GuidedProblem,
    load_guided_problems,
    prefix_tokens,
)

Row = dict[str, Any]  # a training row: prompt, reward_model, extra_info (problem_id, guided, ...)
Policy = Callable[[], Engine]  # the policy being trained, as a pope engine (built on demand)


@dataclass(frozen=True)
class NoOptions:
    """The options of a scheme that has none."""


@dataclass(frozen=True)
class Setup:
    """What a scheme may read when a run is planned (nothing is loaded yet).

    `sampling`: the rollouts' (a scheme that samples with the policy samples like them);
    `batch_size`: sequences per generation batch when it does.
    """

    config: str
    export_dir: str | None
    hard_ids: frozenset[str]
    model: str
    seed: int
    max_steps: int
    sampling: Sampling
    batch_size: int


@dataclass
class Runtime:
    """What a scheme gets when training starts: the run folder, the group size (rollouts per
    prompt), a token counter (the policy's tokenizer), `write` (one metrics.jsonl record) and
    `say` (one console line). With several training processes each has its own scheme: `main`
    is True in one of them (the one that writes files), `share(value)` returns the main
    process's `value` in every process and `gather(value)` every process's `value`, in process
    order (collectives: all processes call them together, the same number of times)."""

    out_dir: Path
    group: int
    count_tokens: Callable[[str], int]
    write: Callable[[dict[str, Any]], None]
    say: Callable[[str], None]
    main: bool = True
    share: Callable[[Any], Any] = lambda value: value
    gather: Callable[[Any], list[Any]] = lambda value: [value]


class GuidanceScheme:
    """A guidance scheme; one instance per run, made by `plan` before any model loads.

    The trainer calls, in this order per step: `rows` (the batch as the policy sees it),
    generation and grading, `regenerate` until it names no group (each named group is generated
    again and replaces the old one in the batch), `observe` (the step's final rows and scores;
    what it returns is logged with the step), then after the optimizer step `after_step`.
    With several training processes each has its own scheme: `rows` and `regenerate` see that
    process's share of the batch, `observe` the whole step's (every process's, in order), so
    a scheme that changes its state there changes it alike everywhere; the trainer checks
    after every step that every process's `state()` is the same.
    `state()` / `load_state(state)` carry what changes during training (JSON-ready), so a resumed
    run continues where it stopped. Nothing here knows TRL.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    options: ClassVar[type] = NoOptions
    needs_build: ClassVar[bool] = True  # reads the build folder beside --export

    def __init__(self, setup: Setup, options: Any, problems: Mapping[str, GuidedProblem],
                 guidance: Guidance | None) -> None:
        self.setup = setup
        self.opts = options
        self.problems = problems
        self.table = GuidanceTable(problems, guidance) if guidance is not None else None
        self.run: Runtime | None = None

    # -- planning ---------------------------------------------------------------------------

    @classmethod
    def plan(cls, setup: Setup, options: Any) -> GuidanceScheme:
        """The scheme of one run, its problems read from the build beside --export and checked
        (ConfigError / DataError naming what is missing)."""
        if not setup.export_dir:
            if cls.needs_build:
                raise ConfigError(f"export: config {setup.config} changes its guidance from the "
                                  "build's solutions; give --export OUT/export of a pope-data "
                                  "build")
            return cls(setup, options, {}, None)
        try:
            problems, guidance = load_guided_problems(setup.export_dir, setup.hard_ids,
                                                      f"config {setup.config}")
        except (ConfigError, DataError):
            if cls.needs_build:
                raise
            return cls(setup, options, {}, None)  # a static recipe only counts what it shows
        return cls(setup, options, problems, guidance)

    def describe(self) -> dict[str, Any]:
        """What run_config.json and --dry-run record: the scheme, its options, its start."""
        out: dict[str, Any] = {"kind": self.name, "problems": len(self.problems)}
        if self.problems:
            out["start_prefix"] = {pid: p.start for pid, p in sorted(self.problems.items())}
        out.update({k: list(v) if isinstance(v, tuple) else v
                    for k, v in asdict(self.opts).items()})
        return out

    # -- training ---------------------------------------------------------------------------

    def start(self, run: Runtime) -> None:
        """Training starts (after `load_state` on a resumed run)."""
        self.run = run

    def rows(self, rows: Sequence[Mapping[str, Any]], step: int) -> list[Row]:
        """The batch as the policy sees it at `step` (optimizer steps taken so far)."""
        return [dict(r) for r in rows]

    def regenerate(self, rows: Sequence[Mapping[str, Any]], scores: Sequence[float],
                   round: int, step: int) -> dict[int, list[Row]]:
        """Groups (index of `group` consecutive rows) to generate again, with their new rows;
        called with round 0, 1, ... until it returns none."""
        return {}

    def observe(self, rows: Sequence[Mapping[str, Any]], scores: Sequence[float],
                step: int) -> dict[str, float]:
        """The step's final rows and scores (`step`: optimizer steps before it); returns step
        metrics, logged as metrics.jsonl fields of the same name."""
        return {}

    def after_step(self, step: int, max_steps: int, policy: Policy) -> None:
        """Between steps, after optimizer step `step` (1-based)."""

    def finish(self) -> None:
        """Training ended (release files)."""

    def shown(self, rows: Sequence[Mapping[str, Any]], group: int) -> int | None:
        """Solution tokens shown in a batch, each prompt once (None: not known, no build)."""
        if self.table is None or self.run is None:
            return None
        return prefix_tokens(self.table, rows, group, self.run.count_tokens)

    # -- resume -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What changed during training, JSON-ready (the prefix table)."""
        return {"prefix": dict(sorted(self.table.prefix.items()))} if self.table else {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from `state()` of an earlier run of this scheme on the same build."""
        if self.table is not None and "prefix" in state:
            unknown = set(state["prefix"]) ^ set(self.table.prefix)
            if unknown:
                raise DataError(f"guidance state: problems differ from the build's: "
                                f"{sorted(unknown)[:5]}")
            self.table.prefix = {k: int(v) for k, v in state["prefix"].items()}


def check_options(options: Any, used_by: Callable[[], str], this: str) -> None:
    """ConfigError naming the flag of an option of `options` changed from its default, for a
    run whose scheme does not use them (`used_by()`: which configs do; `this`: this run's)."""
    for f in fields(options):
        if getattr(options, f.name) != f.default:
            raise ConfigError(f"{flag_of(f)}: applies to config {used_by()} only (this run: "
                              f"{this})")
