"""The TRL backend: GRPO in-process on one machine (CPU included), via `pope_train.backends.trl.backend`.

Registered as `trl` in `pope_train.backends.BACKENDS`; its options are `options.TrlOptions`, its
settings per recipe the GRPOConfig fields in `pope_train.recipes`. It takes no `key=value` overrides.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from pope_train.backends.base import Outcome, Plan, Progress
from pope_train.backends.trl import backend as trl_backend
from pope_train.backends.trl.options import TrlOptions
from pope_train.recipes import Recipe


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _step_line(record: dict[str, Any]) -> str:
    """One line on a metrics.jsonl record: guided/unguided reward, solvability, entropy, length."""
    return (f"reward guided {_fmt(record['reward_guided'])} "
            f"unguided {_fmt(record['reward_unguided'])}  "
            f"solvable {_fmt(record['solvable'])}  "
            f"entropy {_fmt(record['entropy'])}  "
            f"length {_fmt(record['response_length'])}")


class TrlBackend:
    name = "trl"
    summary = "in-process, one machine, CPU included"
    options = TrlOptions
    overrides = None

    def plan(self, recipe: Recipe, *, model: str, export: str | None,
             train_files: tuple[str, ...], options: TrlOptions,
             overrides: tuple[str, ...]) -> Plan:
        detail = trl_backend.plan_trl(trl_backend.TrlConfig(
            config=recipe.name, model=model, export_dir=export, train_files=train_files,
            **asdict(options)))
        folder = detail.folder
        if folder is not None and folder.finished:  # one line from train(), nothing to show
            return Plan(backend=self.name, recipe=recipe.name, lines=(), steps=None,
                        detail=detail)
        lines = [("train", ", ".join(detail.train_files)), ("model", detail.model_path)]
        if detail.sft_data is not None:
            lines.append(("sft", f"{detail.sft_data.line()}; {detail.config.sft_steps} steps, "
                                 "then GRPO from the fine-tuned model"))
        lines.append(("rollouts", f"vLLM ({detail.grpo['vllm_mode']})"
                      if detail.grpo.get("use_vllm") else "transformers generate()"))
        lines.append(("out", detail.config.out_dir))
        if folder is not None and folder.line():
            lines.append(("resume", folder.line() or ""))
        return Plan(backend=self.name, recipe=recipe.name, lines=tuple(lines),
                    steps=detail.config.max_steps, detail=detail)

    def dry_run(self, plan: Plan) -> str:
        """The checked plan with its GRPOConfig fields, as JSON."""
        return json.dumps(plan.detail.describe(), indent=2)

    def train(self, plan: Plan, progress: Progress | None = None) -> Outcome:
        where = [0, plan.steps or 0]  # the last step reported, of how many

        def on_step(record: dict[str, Any], max_steps: int) -> None:
            where[:] = [record["step"], max_steps]
            if progress is not None:
                progress(record["step"], max_steps, _step_line(record))

        def note(line: str) -> None:
            """A guidance event (an online refresh) as one progress line."""
            if progress is not None:
                progress(where[0], where[1], line)

        def on_sft_step(step: int, steps: int, loss: float | None) -> None:
            if progress is not None:
                progress(step, steps, f"SFT loss {_fmt(loss)}")

        result = trl_backend.train(plan.detail, progress=on_step, sft_progress=on_sft_step,
                                   note=note)
        if result.folder is not None and result.folder.finished:
            return Outcome(exit_code=0, lines=(result.folder.line() or "",), result=result)
        lines = (f"{result.steps} steps; final model {result.final_model}",
                 *((f"SFT model (GRPO's start): {result.sft_model}",) if result.sft_model else ()),
                 *(f"checkpoint: {c}" for c in result.checkpoints),
                 f"metrics: {result.metrics}  plot: {result.plot}")
        return Outcome(exit_code=0, lines=lines, result=result)
