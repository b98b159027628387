"""Presets: published settings by name (`--preset paper`, `--preset qwen3-instruct`), per command.

`PRESETS["paper"].values_for("pass-at-k")` -> {flag: PresetValue(value, source)}; the CLI fills in
each value whose flag was not given (explicit flags win) and run_config.json records what it set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pope_eval.registry import Registry

COMMANDS = ("build", "pass-at-k", "train")


@dataclass(frozen=True)
class PresetValue:
    """One published value and where it is published."""

    value: Any
    source: str


@dataclass(frozen=True)
class Preset:
    """Values by command ("build", "pass-at-k", "train"), each keyed by the option's flag."""

    name: str
    description: str
    values: Mapping[str, Mapping[str, PresetValue]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.values) - set(COMMANDS)
        if unknown:
            raise ValueError(f"preset {self.name}: unknown command(s) {', '.join(sorted(unknown))}")

    def values_for(self, command: str) -> dict[str, PresetValue]:
        return dict(self.values.get(command, {}))


def record(preset: Preset, applied: Mapping[str, Any], explicit: list[str],
           not_applied: list[str] = ()) -> dict[str, Any]:
    """What run_config.json keeps of a preset: the values it set, the flags the user gave
    instead, and the values the command had no option for."""
    return {"name": preset.name, "set": dict(applied), "explicit": sorted(explicit),
            "not_applied": sorted(not_applied)}


_PAPER = "POPE paper, reported setup"
_CONF = "CohenQU/pipeline-rl conf/"
_QWEN = "Qwen3-4B-Instruct-2507 model card, best practices"
QWEN3_4B = "Qwen/Qwen3-4B-Instruct-2507"

PRESETS: Registry[Preset] = Registry("preset", option="--preset")
PRESETS.add("paper", Preset(
    "paper", "The paper's published setup: Qwen3-4B-Instruct-2507, hard = 0 of 128 at 32k "
    "tokens, rollouts 8 x 16k at T 0.8, tests at T 0.8 / top_p 0.95 / top_k 50 / 16k.",
    {
        "build": {
            "--model": PresetValue(QWEN3_4B, f"{_PAPER}: base model; {_CONF}base.yaml model_path"),
            "--k": PresetValue(128, f"{_PAPER}: hard = 0 correct of 128 samples"),
            "--max-tokens": PresetValue(32768, f"{_PAPER}: hard filter at 32k tokens"),
            "--n": PresetValue(8, f"{_CONF}finetune/grpo.yaml attempts: 8 (the group size)"),
            "--temperature": PresetValue(0.8, f"{_CONF}base.yaml llm.parameters.temperature (the "
                                              "rollouts'; the hard filter's own is not stated)"),
            "--top-p": PresetValue(1.0, f"{_CONF}base.yaml llm.parameters sets no top_p (1.0)"),
        },
        "pass-at-k": {
            "--model": PresetValue(QWEN3_4B, f"{_CONF}base.yaml model_path"),
            "--max-tokens": PresetValue(16000, f"{_CONF}base.yaml test_llm.parameters.max_tokens"),
            "--temperature": PresetValue(0.8, f"{_CONF}base.yaml test_llm.parameters.temperature"),
            "--top-p": PresetValue(0.95, f"{_CONF}base.yaml test_llm.parameters.top_p"),
            "--top-k": PresetValue(50, f"{_CONF}base.yaml test_llm.parameters.top_k"),
            "--n": PresetValue(16, f"{_PAPER}: pass@16 reported, so n >= 16"),
        },
        "train": {
            "--model": PresetValue(QWEN3_4B, f"{_CONF}base.yaml model_path"),
            "--num-generations": PresetValue(8, f"{_CONF}finetune/grpo.yaml attempts: 8"),
            "--max-completion-length": PresetValue(
                16384, f"{_CONF}base.yaml llm.parameters.max_tokens"),
            "--temperature": PresetValue(0.8, f"{_CONF}base.yaml llm.parameters.temperature"),
            "--learning-rate": PresetValue(1e-6, f"{_CONF}finetune/base.yaml learning_rate"),
            "--lr-scheduler": PresetValue("cosine", f"{_CONF}finetune/base.yaml lr_scheduler_type"),
            "--max-grad-norm": PresetValue(
                0.3, f"{_CONF}finetune/base.yaml gradient_clipping_threshold"),
            "--beta": PresetValue(0.0, f"{_CONF}finetune/base.yaml rl.kl_coef: 0.0 (no KL)"),
        },
    }))
PRESETS.add("qwen3-instruct", Preset(
    "qwen3-instruct", "Qwen's recommended sampling for Qwen3-4B-Instruct-2507: T 0.7, top_p 0.8, "
    "top_k 20, min_p 0, up to 16,384 output tokens.",
    {
        command: {
            "--model": PresetValue(QWEN3_4B, _QWEN),
            "--temperature": PresetValue(0.7, _QWEN),
            "--top-p": PresetValue(0.8, _QWEN),
            "--top-k": PresetValue(20, _QWEN),
            "--min-p": PresetValue(0.0, _QWEN),
            ("--max-completion-length" if command == "train" else "--max-tokens"):
                PresetValue(16384, _QWEN),
        }
        for command in COMMANDS
    }))
