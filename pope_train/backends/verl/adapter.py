"""The verl backend: `python -m verl.trainer.main_ppo` on a Ray cluster (GPUs), via `pope_train.backends.verl.launch`.

Registered as `verl` in `pope_train.backends.BACKENDS`; its options are `launch.VerlOptions`, its
settings per recipe `pope_train/config/NAME.yaml`, and any `key=value` is a verl/Hydra override.
"""

from __future__ import annotations

from dataclasses import asdict

from pope_train.backends.base import Outcome, Plan, Progress
from pope_train.backends.verl import launch
from pope_train.recipes import Recipe


class VerlBackend:
    name = "verl"
    summary = "Ray cluster, GPUs"
    options = launch.VerlOptions
    overrides = "verl overrides"

    def plan(self, recipe: Recipe, *, model: str, export: str | None,
             train_files: tuple[str, ...], options: launch.VerlOptions,
             overrides: tuple[str, ...]) -> Plan:
        detail = launch.plan_launch(launch.LaunchConfig(
            config=recipe.name, model=model, export_dir=export, train_files=train_files,
            overrides=overrides, **asdict(options)))
        lines = [("train", ", ".join(detail.train_files)),
                 ("validation", ", ".join(detail.val_files) or "(none)")]
        if detail.sft_data is not None:
            lines.append(("sft", f"{detail.sft_data.line()}; {options.sft_steps} steps of verl's "
                                 f"SFT trainer, then GRPO from {detail.sft_model}"))
        return Plan(backend=self.name, recipe=recipe.name, lines=tuple(lines), steps=None,
                    detail=detail)

    def dry_run(self, plan: Plan) -> str:
        """The commands (SFT's first, for configs with an SFT stage), then the configs verl
        composes for them (YAML documents, in the same order)."""
        return plan.detail.shell() + "\n" + launch.resolved_config(plan.detail)

    def train(self, plan: Plan, progress: Progress | None = None) -> Outcome:
        code = launch.run(plan.detail)
        return Outcome(exit_code=code, lines=(
            f"verl exited with {code}" if code else f"verl's trainer finished {plan.recipe}",))
