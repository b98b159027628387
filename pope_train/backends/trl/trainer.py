"""TRL's GRPOTrainer with pope's seam: a guidance scheme shapes each batch, scores travel in the batch.

`check_trl_seam()` refuses, in one line naming the TRL version, a TRL whose hooked private methods
are gone or changed; `guided_trainer_class()` is `GRPOTrainer` whose constructor takes `scheme=`
(a pope_train.guidance scheme) and `pope_run=` (where it writes). Per step it logs what the step
generated and showed, the scheme's own metrics, and the zero-advantage accounting.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pope_eval.errors import ConfigError
from pope_train.backends.trl.policy import live_engine
from pope_train.guidance.base import GuidanceScheme, Runtime
from pope_train.guidance.online import GUIDANCE_DIR

log = logging.getLogger(__name__)

# The TRL versions this seam is tested with (pyproject's `trl` extra pins the same range).
TESTED_TRL = ">=1.16,<1.17"
# GRPOTrainer's private methods the seam overrides, with the parameters it relies on.
HOOKS: dict[str, tuple[str, ...]] = {
    "_generate_and_score_completions": ("self", "inputs"),
    "_calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
}
SCORES = "pope_scores"  # the batch key of each rollout's reward (this process's rows)
# OUT/guidance/steps.jsonl: per step, every group as first generated and each regeneration
# round's groups (over all processes, in step order), and each process's scheme-state digest.
STEPS_LOG = "steps.jsonl"
TRACED = ("problem_id", "guided", "prefix_segments", "hint_ratio", "graduated")


def check_trl_seam(trainer_class: Any = None) -> None:
    """ConfigError, one line naming the installed TRL, when GRPOTrainer lacks a hooked method or
    its parameters changed: training would otherwise run without its guidance."""
    if trainer_class is None:
        from trl import GRPOTrainer as trainer_class
    version = importlib.metadata.version("trl")
    for name, params in HOOKS.items():
        method = getattr(trainer_class, name, None)
        found = tuple(inspect.signature(method).parameters) if callable(method) else None
        if found != params:
            what = "has no" if found is None else f"has {name}({', '.join(found)}), not"
            raise ConfigError(f"trl: TRL {version}'s GRPOTrainer {what} {name}"
                              f"({', '.join(params)}), which pope's training hooks; install a "
                              f"tested TRL: pip install 'trl{TESTED_TRL}'")


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


def _head(batch: dict[str, Any], k: int) -> dict[str, Any]:
    """The first k rows of a generated batch (per-row tensors cut, the rest kept)."""
    import torch

    return {key: v[:k] if torch.is_tensor(v) and v.dim() >= 1 else v for key, v in batch.items()}


def zero_advantage(scores: Sequence[float], guided: Sequence[bool], group: int,
                   advantages: Any, mask: Any) -> list[float]:
    """Counts for the zero-advantage accounting of one batch: [groups, zero-spread groups, of
    them all correct, all wrong, guided groups, guided zero-spread, unguided groups, unguided
    zero-spread, rollout tokens, tokens of rollouts whose advantage is 0]."""
    counts = [0.0] * 10
    for g in range(len(scores) // group):
        s = scores[g * group:(g + 1) * group]
        zero = max(s) == min(s)
        counts[0] += 1
        counts[1] += zero
        counts[2] += zero and s[0] > 0
        counts[3] += zero and s[0] <= 0
        kind = 4 if guided[g * group] else 6
        counts[kind] += 1
        counts[kind + 1] += zero
    tokens = mask.sum(dim=1).float()
    counts[8] = float(tokens.sum())
    counts[9] = float(tokens[advantages == 0].sum())
    return counts


def zero_advantage_metrics(c: Sequence[float]) -> dict[str, float]:
    """metrics.jsonl fields from summed `zero_advantage` counts (a share is absent without a
    group of its kind)."""
    out: dict[str, float] = {}
    if c[0]:
        out.update(zero_spread_groups=c[1] / c[0], zero_spread_all_correct=c[2] / c[0],
                   zero_spread_all_wrong=c[3] / c[0])
    if c[4]:
        out["zero_spread_guided"] = c[5] / c[4]
    if c[6]:
        out["zero_spread_unguided"] = c[7] / c[6]
    if c[8]:
        out["zero_gradient_tokens"] = c[9] / c[8]
    return out


def group_records(rows: Sequence[Mapping[str, Any]], scores: Sequence[float],
                  group: int) -> list[dict[str, Any]]:
    """Per group of `group` consecutive rows, what the policy was shown and how it scored:
    problem_id, guided, prefix_segments, hint_ratio (those the row carries) and the scores."""
    out = []
    for g in range(len(rows) // group):
        info = rows[g * group].get("extra_info") or {}
        record = {k: info[k] for k in TRACED if k in info}
        record["scores"] = [float(x) for x in scores[g * group:(g + 1) * group]]
        out.append(record)
    return out


def state_digest(state: Mapping[str, Any]) -> str:
    """A short digest of a scheme's `state()` (equal states, equal digests)."""
    text = json.dumps(state, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def guided_trainer_class() -> type:
    """TRL's GRPOTrainer whose batches pass through a guidance scheme (checked by
    `check_trl_seam` first). Constructor: GRPOTrainer's arguments plus `scheme` and `pope_run`
    (a pope_train.guidance.Runtime without its token counter, which comes from the tokenizer)."""
    from trl import GRPOTrainer

    check_trl_seam(GRPOTrainer)

    class PopeGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, scheme: GuidanceScheme, pope_run: dict[str, Any],
                     **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            tokenizer = self.processing_class
            self.pope_scheme = scheme
            self.pope_out = Path(pope_run["out_dir"])
            scheme.start(Runtime(group=self.num_generations, count_tokens=lambda text: len(
                tokenizer(text, add_special_tokens=False)["input_ids"]),
                main=self.accelerator.is_main_process, share=self._share, gather=self._gather,
                **pope_run))
            self._pope_scores: Any = None
            self.add_callback(_between_steps(scheme, scheme.setup.batch_size, self.args.seed))

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions,
                                                 completion_ids_list)
            weights = self.reward_weights.to(rewards.device).unsqueeze(0)
            mine = slice(self.accelerator.process_index * len(prompts),
                         (self.accelerator.process_index + 1) * len(prompts))
            self._pope_scores = (rewards * weights).nansum(dim=1)[mine]
            return rewards

        def _scored(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
            out = super()._generate_and_score_completions(rows)
            out[SCORES], self._pope_scores = self._pope_scores, None
            return out

        def _share(self, value: Any) -> Any:
            """The main process's `value`, in every process."""
            if self.accelerator.num_processes == 1:
                return value
            from accelerate.utils import broadcast_object_list

            return broadcast_object_list([value], from_process=0)[0]

        def _gather(self, value: Any) -> list[Any]:
            """Every process's `value`, in process order, in every process."""
            from accelerate.utils import gather_object

            return gather_object([value])

        def _agree(self, local: int) -> int:
            """The largest `local` over all processes (each must generate the same rounds)."""
            import torch

            value = torch.tensor([local], device=self.accelerator.device)
            return int(self.accelerator.gather(value).max())

        def _generate_and_score_completions(self, inputs):
            if not self.model.training:
                return super()._generate_and_score_completions(inputs)
            import torch
            from accelerate.utils import gather_object

            scheme, group, step = self.pope_scheme, self.num_generations, self.state.global_step
            rows = scheme.rows(inputs, step)
            out = self._scored(rows)
            tokens, shown = int(out["completion_mask"].sum()), scheme.shown(rows, group)
            scores = out[SCORES].tolist()
            pad_id = self.processing_class.pad_token_id
            # Group g of this process is group offset + g of the step (processes in order).
            offset = self.accelerator.process_index * (len(rows) // group)
            trace: dict[str, Any] = {
                "step": step + 1, "processes": self.accelerator.num_processes,
                "first": [r for part in self._gather(group_records(rows, scores, group))
                          for r in part], "rounds": []}
            round = 0
            while True:
                redo = scheme.regenerate(rows, scores, round, step)
                most = self._agree(len(redo))
                if not most:
                    break
                wanted = sorted(redo)
                # Every process generates as many groups as the one with most to redo: the
                # others generate padding (their first group again) and drop it.
                padding = [0] * (most - len(wanted))
                sub_rows = [r for g in wanted for r in redo[g]] + \
                    [dict(r) for g in padding for r in rows[g * group:(g + 1) * group]]
                sub = self._scored(sub_rows)
                if padding:
                    sub = _head(sub, len(wanted) * group)
                index = [g * group + j for g in wanted for j in range(group)]
                if index:
                    out = merge_rows(out, sub, index, pad_id)
                    for k, i in enumerate(index):
                        rows[i], scores[i] = sub_rows[k], float(sub[SCORES][k])
                    tokens += int(sub["completion_mask"].sum())
                    extra = scheme.shown(sub_rows[:len(index)], group)
                    shown = None if shown is None or extra is None else shown + extra
                new = group_records([rows[i] for i in index],
                                    [scores[i] for i in index], group)
                done = sorted((pair for part in self._gather(
                    [(offset + g, r) for g, r in zip(wanted, new)]) for pair in part),
                    key=lambda pair: pair[0])
                trace["rounds"].append({"groups": [g for g, _ in done],
                                        "new": [r for _, r in done]})
                round += 1
            out.pop(SCORES)
            mask = out["completion_mask"] * out["tool_mask"] if "tool_mask" in out else \
                out["completion_mask"]
            if round:  # TRL's loss normaliser counts the tokens of every process
                out["num_items_in_batch"] = self.accelerator.gather(
                    mask.sum().reshape(1).to(out["num_items_in_batch"].dtype)).sum() \
                    if torch.is_tensor(out["num_items_in_batch"]) else \
                    int(self.accelerator.gather(mask.sum().reshape(1)).sum())
            guided = [bool((r.get("extra_info") or {}).get("guided")) for r in rows]
            counts = zero_advantage(scores, guided, group, out["advantages"], mask)
            counts += [float(tokens), float(shown or 0)]
            total = self.accelerator.gather(torch.tensor([counts], dtype=torch.float64,
                                                         device=self.accelerator.device)).sum(0)
            metrics = self._metrics["train"]
            for key, value in zero_advantage_metrics(total[:10].tolist()).items():
                metrics[f"pope/{key}"].append(value)
            metrics["pope/rollout_tokens"].append(float(total[10]))
            if shown is not None:
                metrics["pope/guidance_tokens"].append(float(total[11]))
            seen = gather_object([{"extra_info": r.get("extra_info") or {}} for r in rows])
            every = gather_object(list(scores))
            for key, value in scheme.observe(seen, every, step).items():
                metrics[f"pope/scheme/{key}"].append(float(value))
            self._check_agreement(trace)
            return out

        def _check_agreement(self, trace: dict[str, Any]) -> None:
            """Every process's scheme state after the step, compared (RuntimeError in every
            process when they differ: the processes would train on different guidance); the
            main process appends the step's trace to OUT/guidance/steps.jsonl."""
            digests = self._gather(state_digest(self.pope_scheme.state()))
            trace["state_digests"] = digests
            if self.accelerator.is_main_process:
                path = self.pope_out / GUIDANCE_DIR / STEPS_LOG
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a") as f:
                    f.write(json.dumps(trace) + "\n")
            if len(set(digests)) > 1:
                raise RuntimeError(f"guidance: the training processes' {self.pope_scheme.name} "
                                   f"states differ after step {trace['step']} (digests "
                                   f"{digests}); see {GUIDANCE_DIR}/{STEPS_LOG}")

    return PopeGRPOTrainer


def _between_steps(scheme: GuidanceScheme, batch_size: int, seed: int) -> Any:
    """A TrainerCallback: the scheme's `after_step` after every optimizer step (the policy
    there is pope's transformers engine over the model being trained, in eval mode while it
    generates), its `finish` when training ends."""
    from transformers import TrainerCallback

    class BetweenSteps(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, processing_class=None,
                        **kwargs):
            was_training = model.training

            def policy() -> Any:
                model.eval()
                return live_engine(model, processing_class, seed=seed, batch_size=batch_size)

            try:
                scheme.after_step(state.global_step, state.max_steps, policy)
            finally:
                model.train(was_training)

        def on_train_end(self, args, state, control, **kwargs):
            scheme.finish()

    return BetweenSteps()

