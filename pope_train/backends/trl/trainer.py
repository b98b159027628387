"""Guidance during TRL training: the trainer that re-renders guided rows, the refresh callback, GHPO.

`plan_guidance(cfg, hard_ids)` checks the build behind the export before any model loads (None for
recipes whose guided rows are the export's own and which show nothing new: `static` ones without
guided rows). `guided_trainer_class()` is TRL's `GRPOTrainer` with one change: before a batch is
generated, `Guide.prepare` renders each guided row with the problem's current prefix (online) or the
phase's share of the solution (fixed ratio); for GHPO, a group whose rollouts all scored 0 is
generated again with growing shares of the solution and replaces its first rollouts in the batch.
`refresh_callback` re-searches the prefixes every --refresh-every steps with the live policy
(pope_train.guidance.refresh), writes a metrics.jsonl record per refresh and OUT/guidance/.

Every step also logs `rollout_tokens` (completion tokens generated, hinted regenerations included)
and `guidance_tokens` (solution tokens shown in the step's prompts, each prompt once), so arms are
compared at their full price.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_eval.engines import Sampling
from pope_eval.errors import ConfigError, DataError
from pope_eval.prompts import Guidance
from pope_train.backends.trl.eval import live_engine
from pope_train.guidance import (
    GroupHints,
    GuidanceTable,
    GuidedProblem,
    load_guided_problems,
    prefix_tokens,
    ratio_at,
    ratio_prefix,
    refresh,
    refresh_fingerprint,
)
from pope_train.recipes import RECIPES

if TYPE_CHECKING:
    from pope_train.backends.trl.backend import TrlConfig

log = logging.getLogger(__name__)

GUIDANCE_DIR = "guidance"  # OUT/guidance/: journal.sqlite (refresh probes), refreshes.jsonl
# The options of each guidance kind; given with another kind they are refused.
KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    "online": ("refresh_every", "refresh_n"),
    "ratio": ("ratio_schedule",),
    "ghpo": ("ghpo_ratios",),
}
# What a refresh adds to metrics.jsonl: a record with `refresh_step` (not `step`).
REFRESH_FIELDS: tuple[str, ...] = (
    "refresh_step", "refresh_searched", "refresh_shortened", "refresh_kept",
    "refresh_new_graduates", "refresh_graduated", "refresh_istar_hist", "refresh_prefix_mean",
    "refresh_samples", "refresh_tokens", "refresh_time")


def check_guidance_options(cfg: Any, kind: str) -> None:
    """ConfigError naming a guidance option set for a config whose guidance does not use it."""
    from dataclasses import fields

    defaults = {f.name: f.default for f in fields(cfg)}
    for other, names in KIND_OPTIONS.items():
        if other == kind:
            continue
        for name in names:
            if getattr(cfg, name) != defaults[name]:
                users = " or ".join(r.name for r in RECIPES.values() if r.guidance == other)
                raise ConfigError(f"{name}: applies to config {users} only (this run: "
                                  f"{cfg.config})")


@dataclass(frozen=True)
class GuidePlan:
    """What a run's guidance does, checked before training."""

    kind: str
    problems: Mapping[str, GuidedProblem]
    guidance: Guidance
    max_steps: int
    refresh_every: int
    refresh_n: int
    sampling: Sampling  # the refresh's sampling: the rollouts'
    ratio_schedule: tuple[float, ...]
    ghpo_ratios: tuple[float, ...]
    batch_size: int
    model: str

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "problems": len(self.problems),
                               "start_prefix": {pid: p.start for pid, p in
                                                sorted(self.problems.items())}}
        if self.kind == "online":
            out.update(refresh_every=self.refresh_every, refresh_n=self.refresh_n,
                       sampling=self.sampling.to_dict())
        elif self.kind == "ratio":
            out["ratio_schedule"] = list(self.ratio_schedule)
        elif self.kind == "ghpo":
            out["ghpo_ratios"] = list(self.ghpo_ratios)
        return out


def plan_guidance(cfg: TrlConfig, kind: str, hard_ids: frozenset[str],
                  grpo: Mapping[str, Any], model: str) -> GuidePlan | None:
    """The run's guidance (None for static recipes without guided rows to count), its problems
    read from the build beside --export and checked."""
    if kind == "static" and not cfg.export_dir:
        return None
    if not cfg.export_dir:
        raise ConfigError(f"export: config {cfg.config} changes its guidance from the build's "
                          "solutions; give --export OUT/export of a pope-data build")
    try:
        problems, guidance = load_guided_problems(cfg.export_dir, hard_ids,
                                                  f"config {cfg.config}")
    except (ConfigError, DataError):
        if kind == "static":  # a static recipe only counts the tokens it shows
            return None
        raise
    sampling = Sampling(max_tokens=cfg.max_completion_length, temperature=grpo["temperature"],
                        top_p=grpo["top_p"], seed=cfg.seed)
    return GuidePlan(kind=kind, problems=problems, guidance=guidance, max_steps=cfg.max_steps,
                     refresh_every=cfg.refresh_every, refresh_n=cfg.refresh_n,
                     sampling=sampling, ratio_schedule=tuple(cfg.ratio_schedule),
                     ghpo_ratios=tuple(cfg.ghpo_ratios), batch_size=cfg.eval_batch_size,
                     model=model)


class Guide:
    """The live guidance of one run: the table, and what each batch is rendered with."""

    def __init__(self, plan: GuidePlan, group: int, count_tokens: Callable[[str], int]) -> None:
        self.plan = plan
        self.group = group
        self.count_tokens = count_tokens
        self.table = GuidanceTable(plan.problems, plan.guidance)
        self.hints = GroupHints(plan.ghpo_ratios, self.table) if plan.kind == "ghpo" else None
        self.hint_log: Path | None = None  # OUT/guidance/hints.jsonl: every hinted group

    def log_hints(self, step: int, ratio: float, groups: list[tuple[str, list[float]]]) -> None:
        """One line per round of hints: the step, the ratio, each group's problem and the scores
        of the rollouts it replaced (all 0, by the rule)."""
        if self.hint_log is None:
            return
        self.hint_log.parent.mkdir(parents=True, exist_ok=True)
        with self.hint_log.open("a") as f:
            f.write(json.dumps({"step": step, "ratio": ratio, "groups": [
                {"problem_id": pid, "scores_before": scores} for pid, scores in groups]}) + "\n")

    def prepare(self, rows: Sequence[Mapping[str, Any]], step: int) -> list[dict[str, Any]]:
        """The batch as the policy sees it at `step` (optimizer steps taken so far)."""
        if self.plan.kind == "online":
            return [self.table.render(r) for r in rows]
        if self.plan.kind == "ratio":
            ratio = ratio_at(self.plan.ratio_schedule, step, self.plan.max_steps)
            out = []
            for r in rows:
                pid = (r.get("extra_info") or {}).get("problem_id")
                seg = self.plan.problems[pid].segmentation if pid in self.plan.problems else None
                out.append(self.table.render(r, ratio_prefix(seg, ratio)) if seg else dict(r))
            return out
        return [dict(r) for r in rows]

    def shown(self, rows: Sequence[Mapping[str, Any]]) -> int:
        return prefix_tokens(self.table, rows, self.group, self.count_tokens)


def merge_rows(base: dict[str, Any], sub: dict[str, Any], rows: Sequence[int],
               pad_id: int) -> dict[str, Any]:
    """`base` (a generated batch of TRL's) with rows `rows` replaced by `sub`'s (a batch of
    len(rows) generated for them): prompt tensors re-padded on the left, per-token tensors on the
    right, and the loss normaliser `num_items_in_batch` recounted."""
    import torch

    if set(base) != set(sub):
        raise ValueError(f"hinting: batches differ in keys {sorted(set(base) ^ set(sub))}")
    index = torch.tensor(list(rows), dtype=torch.long)
    out: dict[str, Any] = {}
    for key, value in base.items():
        other = sub[key]
        if key == "num_items_in_batch" or not torch.is_tensor(value) or value.dim() == 0:
            out[key] = value
            continue
        if value.dim() == 1:
            merged = value.clone()
            merged[index.to(value.device)] = other.to(value.dtype)
        elif value.dim() == 2:
            width = max(value.shape[1], other.shape[1])
            left = key.startswith("prompt")
            fill = pad_id if key.endswith("_ids") else 0
            merged = _pad(value, width, left, fill).clone()
            merged[index.to(value.device)] = _pad(other, width, left, fill).to(value.dtype)
        else:
            raise ValueError(f"hinting: cannot merge {key!r} of shape {tuple(value.shape)}")
        out[key] = merged
    mask = out["completion_mask"] * out["tool_mask"] if "tool_mask" in out else \
        out["completion_mask"]
    items = base["num_items_in_batch"]
    out["num_items_in_batch"] = mask.sum().to(items.dtype) if torch.is_tensor(items) \
        else int(mask.sum())
    return out


def _pad(t: Any, width: int, left: bool, fill: int) -> Any:
    import torch

    extra = width - t.shape[1]
    if extra <= 0:
        return t
    pad = torch.full((t.shape[0], extra), fill, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


def guided_trainer_class() -> type:
    """TRL's GRPOTrainer whose batches pass through a `Guide` (set as `trainer.pope_guide`, with
    `trainer.pope_reward` the reward function whose `last_scores` name a batch's rewards)."""
    from trl import GRPOTrainer

    class PopeGRPOTrainer(GRPOTrainer):
        pope_guide: Guide | None = None
        pope_reward: Any = None

        def _generate_and_score_completions(self, inputs):
            guide = self.pope_guide
            if guide is None or not self.model.training:
                return super()._generate_and_score_completions(inputs)
            rows = guide.prepare(inputs, self.state.global_step)
            out = super()._generate_and_score_completions(rows)
            tokens, shown = int(out["completion_mask"].sum()), guide.shown(rows)
            hinted = rounds = 0
            if guide.hints is not None:
                out, extra_tokens, extra_shown, hinted, rounds = self._hint(guide, rows, out)
                tokens, shown = tokens + extra_tokens, shown + extra_shown
            metrics = self._metrics["train"]
            metrics["pope/rollout_tokens"].append(float(tokens))
            metrics["pope/guidance_tokens"].append(float(shown))
            if guide.hints is not None:
                metrics["pope/hinted_groups"].append(float(hinted))
                metrics["pope/hint_rounds"].append(float(rounds))
            return out

        def _hint(self, guide: Guide, rows: list[dict[str, Any]], out: dict[str, Any]):
            """GHPO's refinement: each ratio in turn, on the groups still all-failed."""
            group = guide.group
            scores = list(self.pope_reward.last_scores)
            tokens = shown = hinted = rounds = 0
            pad_id = self.processing_class.pad_token_id
            for ratio in guide.hints.ratios:
                failed = guide.hints.failed_groups(scores, rows, group)
                if not failed:
                    break
                index = [g * group + j for g in failed for j in range(group)]
                guide.log_hints(self.state.global_step + 1, ratio, [
                    (rows[g * group]["extra_info"]["problem_id"],
                     scores[g * group:(g + 1) * group]) for g in failed])
                sub_rows = [guide.hints.hinted(rows[i], ratio) for i in index]
                sub = super()._generate_and_score_completions(sub_rows)
                sub_scores = list(self.pope_reward.last_scores)
                out = merge_rows(out, sub, index, pad_id)
                for k, i in enumerate(index):
                    rows[i], scores[i] = sub_rows[k], sub_scores[k]
                tokens += int(sub["completion_mask"].sum())
                shown += guide.shown(sub_rows)
                hinted += len(failed)
                rounds += 1
            return out, tokens, shown, hinted, rounds

    return PopeGRPOTrainer


def refresh_callback(guide: Guide, out_dir: Path, write: Callable[[dict[str, Any]], None],
                     seed: int) -> Any:
    """A TrainerCallback that re-searches the prefixes after every --refresh-every steps (not
    after the last: nothing would train on them), with the live policy, into
    OUT/guidance/journal.sqlite (stage `refresh-step-N`); each refresh's record goes to
    metrics.jsonl and OUT/guidance/refreshes.jsonl (with every problem's prefix)."""
    from transformers import TrainerCallback

    from pope_data.journal import Journal

    plan = guide.plan
    folder = out_dir / GUIDANCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    journal = Journal.open(folder / "journal.sqlite", refresh_fingerprint(
        plan.model, seed, plan.refresh_n, plan.sampling, plan.guidance))
    history = folder / "refreshes.jsonl"

    class GuidanceRefresh(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            with history.open("a") as f:
                f.write(json.dumps({"refresh_step": 0, "start": True,
                                    **guide.table.snapshot()}) + "\n")

        def on_step_end(self, args, state, control, model=None, processing_class=None,
                        **kwargs):
            step = state.global_step
            if step % plan.refresh_every or step >= state.max_steps:
                return
            engine = live_engine(model, processing_class, seed=plan.sampling.seed,
                                 batch_size=plan.batch_size)
            was_training = model.training
            model.eval()
            try:
                record = refresh(guide.table, engine, journal, step, n=plan.refresh_n,
                                 sampling=plan.sampling)
            finally:
                model.train(was_training)
            log.info("refresh at step %d: %d shortened, %d graduated, prefixes %s (%d tokens)",
                     step, record["refresh_shortened"], record["refresh_graduated"],
                     record["refresh_istar_hist"], record["refresh_tokens"])
            write(record)
            with history.open("a") as f:
                f.write(json.dumps(guide.table.history[-1]) + "\n")

        def on_train_end(self, args, state, control, **kwargs):
            journal.close()

    return GuidanceRefresh()
