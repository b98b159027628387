"""Online POPE: every --refresh-every steps each hard problem's prefix is re-searched with the
policy (never longer); a search that reaches i* = 0 graduates the problem.

Registered as `online`; the probes go to OUT/guidance/journal.sqlite (a killed refresh resumes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pope_eval.errors import ConfigError
from pope_eval.options import option
from pope_train.guidance.base import GuidanceScheme, Policy, Row, Runtime
from pope_train.guidance.table import refresh, refresh_fingerprint

log = logging.getLogger(__name__)

GUIDANCE_DIR = "guidance"  # OUT/guidance/: journal.sqlite (refresh probes), refreshes.jsonl
# What a refresh adds to metrics.jsonl: a record with `refresh_step` (not `step`).
REFRESH_FIELDS: tuple[str, ...] = (
    "refresh_step", "refresh_searched", "refresh_shortened", "refresh_kept",
    "refresh_new_graduates", "refresh_graduated", "refresh_istar_hist", "refresh_prefix_mean",
    "refresh_samples", "refresh_tokens", "refresh_time")


@dataclass(frozen=True, kw_only=True)
class OnlineOptions:
    refresh_every: int = option(10, "Online guidance (config pope_online): re-search each hard "
                                "problem's prefix with the policy every N steps.")
    refresh_n: int = option(8, "Online guidance: samples per probed prefix; a prefix works when "
                            ">= 1 of N is correct (the build's rule).")

    def __post_init__(self) -> None:
        for flag, value in (("--refresh-every", self.refresh_every),
                            ("--refresh-n", self.refresh_n)):
            if value < 1:
                raise ConfigError(f"{flag}: must be >= 1, got {value}")


class Online(GuidanceScheme):
    """Guided rows show the table's current prefix; `after_step` refreshes it."""

    name = "online"
    summary = "i* re-searched with the policy every --refresh-every steps, never longer"
    options = OnlineOptions

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "sampling": self.setup.sampling.to_dict()}

    def start(self, run: Runtime) -> None:
        from pope_data.journal import Journal

        super().start(run)
        folder = run.out_dir / GUIDANCE_DIR
        self.journal = None
        if not run.main:  # the main process refreshes and shares the table
            return
        folder.mkdir(parents=True, exist_ok=True)
        self.journal = Journal.open(folder / "journal.sqlite", refresh_fingerprint(
            self.setup.model, self.setup.seed, self.opts.refresh_n, self.setup.sampling,
            self.table.guidance))
        self.history = folder / "refreshes.jsonl"
        if not self.history.exists():
            self._append({"refresh_step": 0, "start": True, **self.table.snapshot()})

    def _append(self, record: Mapping[str, Any]) -> None:
        with self.history.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def rows(self, rows: Sequence[Mapping[str, Any]], step: int) -> list[Row]:
        return [self.table.render(r) for r in rows]

    def after_step(self, step: int, max_steps: int, policy: Policy) -> None:
        """A refresh after every --refresh-every steps, not after the last (nothing would
        train on it), in journal stage `refresh-step-N`; the main process searches, every
        process takes its table."""
        if step % self.opts.refresh_every or step >= max_steps:
            return
        if not self.run.main:
            self.table.prefix = self.run.share(None)
            return
        record = refresh(self.table, policy(), self.journal, step, n=self.opts.refresh_n,
                         sampling=self.setup.sampling, batch_samples=self.setup.batch_size)
        line = (f"refresh at step {step}: {record['refresh_searched']} searched, "
                f"{record['refresh_shortened']} shortened, {record['refresh_kept']} kept, "
                f"{len(record['refresh_new_graduates'])} graduated "
                f"({record['refresh_graduated']} in all); prefixes "
                f"{record['refresh_istar_hist']}; {record['refresh_tokens']} tokens, "
                f"{record['refresh_time']:.0f} s")
        log.info("%s", line)
        self.run.say(line)
        self.run.write(record)
        self._append(self.table.history[-1])
        self.run.share(self.table.prefix)

    def finish(self) -> None:
        if self.journal is not None:
            self.journal.close()
