"""The training configs ("recipes"): per config its export subsets, what it is, and per backend its settings or why not.

`RECIPES["clip_higher"].settings("trl")` -> GRPOConfig changes; `.settings("verl")` refuses a backend
that cannot run it. Add a config: one `RECIPES.add` here (+ `pope_train/config/NAME.yaml` for verl).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pope_eval.errors import ConfigError
from pope_eval.registry import Registry


@dataclass(frozen=True)
class Unsupported:
    """A backend that cannot run a recipe as the paper means it, and why."""

    reason: str


@dataclass(frozen=True)
class Recipe:
    """One training config.

    `subsets`: the export subsets it trains on (pope-data build OUT/export/<subset>/train.parquet);
    the paper's comparisons differ in data as much as in algorithm. `backends`: per backend name
    either its settings (verl: none here, its settings are pope_train/config/NAME.yaml; trl:
    GRPOConfig fields changed from the paper's GRPO) or `Unsupported(why)`. A backend not named
    does not run the recipe. `sft`: GRPO starts from a supervised fine-tune of the model on the
    hard problems' correct solutions (pope_train.sft), not from the model itself. `guidance`:
    the guidance scheme its guided rows follow as training goes (a name in
    pope_train.guidance.SCHEMES); anything
    but "static" needs a training loop that re-renders prompts, which TRL's has and verl's fit()
    does not (docs/training.md, "Guidance during training").
    """

    name: str
    summary: str
    subsets: tuple[str, ...]
    backends: Mapping[str, Mapping[str, Any] | Unsupported] = field(default_factory=dict)
    sft: bool = False
    guidance: str = "static"

    def __post_init__(self) -> None:
        from pope_train.guidance import SCHEMES

        if self.guidance not in SCHEMES:
            raise ValueError(f"recipe {self.name}: unknown guidance {self.guidance!r}")

    def supports(self, backend: str) -> bool:
        return isinstance(self.backends.get(backend), Mapping)

    def why_not(self, backend: str) -> str | None:
        """None when `backend` runs this recipe, else why not and which backends do."""
        entry = self.backends.get(backend)
        if isinstance(entry, Mapping):
            return None
        why = entry.reason if isinstance(entry, Unsupported) else \
            f"pope_train/recipes.py declares no {backend} settings for it"
        others = [name for name in self.backends if self.supports(name)]
        return why + (f"; run it with {' or '.join(f'--backend {b}' for b in others)}"
                      if others else "")

    def settings(self, backend: str) -> Mapping[str, Any]:
        """The backend's settings for this recipe, or a ConfigError saying why it has none."""
        why = self.why_not(backend)
        if why is not None:
            raise ConfigError(f"config: {self.name!r} is not available with --backend {backend}: "
                              f"{why}")
        return self.backends[backend]


RECIPES: Registry[Recipe] = Registry("config", option="config")


def _add(recipe: Recipe) -> None:
    RECIPES.add(recipe.name, recipe)


_add(Recipe("pope", "POPE: GRPO on the 1:1 mix of unguided hard problems and their guided versions.",
            ("mix",), {"verl": {}, "trl": {}}))
_add(Recipe("hard_only", "Baseline: GRPO on the unguided hard problems only (no guidance).",
            ("hard",), {"verl": {}, "trl": {}}))
_add(Recipe("entropy_bonus", "Baseline: hard problems only, plus an entropy bonus (coefficient 0.001).",
            ("hard",), {"verl": {}, "trl": {"entropy_coef": 0.001}}))
_add(Recipe("clip_higher", "Baseline: hard problems only with DAPO's clip-higher (upper clip bound 0.28).",
            ("hard",), {"verl": {}, "trl": {"epsilon": 0.2, "epsilon_high": 0.28}}))
_add(Recipe("pass_at_k", "Baseline: hard problems only, optimising pass@k directly (k = n = 8).",
            ("hard",), {"verl": {}, "trl": Unsupported(
                "TRL has no pass@k advantage estimator (pope_train.advantages is a verl plug-in)")}))
_add(Recipe("easy_hard_mix", "Baseline: unguided hard problems mixed with easy ones, no guidance.",
            ("hard", "easy"), {"verl": {}, "trl": {}}))
_add(Recipe("pope_easy_hard", "POPE plus easy problems: the guided 1:1 mix together with the easy set.",
            ("mix", "easy"), {"verl": {}, "trl": {}}))
_add(Recipe("sft_then_rl", "Baseline: SFT on correct solutions of the hard problems (default: the "
            "model's correct guided traces), then GRPO on the hard problems from that checkpoint.",
            ("hard",), {"verl": {}, "trl": {}}, sft=True))

# Guidance that changes during training (pope_train.guidance). verl's trainer reads its parquet
# once through its dataloader and its fit() loop takes no callback: docs/training.md says what the
# hook would be.
_VERL_NO_HOOK = Unsupported("verl's fit() loop has no per-step hook to re-render prompts or "
                            "regenerate a group (docs/training.md, \"Guidance during training\")")
_add(Recipe("pope_online", "POPE with online guidance: every --refresh-every steps each hard "
            "problem's prefix is re-searched with the policy (never longer); i* = 0 graduates it.",
            ("mix",), {"verl": _VERL_NO_HOOK, "trl": {}}, guidance="online"))
_add(Recipe("fixed_ratio", "Baseline (QuestA-style): the 1:1 mix with a fixed share of the "
            "solution as guidance, by phase (--ratio-schedule, default 50% then 25%).",
            ("mix",), {"verl": _VERL_NO_HOOK, "trl": {}}, guidance="ratio"))
_add(Recipe("ghpo", "Baseline (GHPO-style): hard problems only; a group whose rollouts all failed "
            "is regenerated with 25%, then 50%, then 75% of the solution (--ghpo-ratios).",
            ("hard",), {"verl": _VERL_NO_HOOK, "trl": {}}, guidance="ghpo"))
_add(Recipe("pope_adaptive", "POPE whose prefixes follow the rollouts: after each step a guided "
            "group all correct moves its prefix one segment shorter, all wrong one longer (up to "
            "the build's longest probe); an unguided success graduates. No extra generation.",
            ("mix",), {"verl": _VERL_NO_HOOK, "trl": {}}, guidance="adaptive"))
_add(Recipe("pope_shorter", "POPE at i* - 1: the 1:1 mix with each prefix one segment shorter "
            "than the build's (at least one segment), unchanged during training.",
            ("mix",), {"verl": _VERL_NO_HOOK, "trl": {}}, guidance="shorter"))
_add(Recipe("fixed_ratio_istar", "Baseline: fixed-ratio guidance whose first phase shows each "
            "problem's i*, then a fixed multiple of its share (--istar-schedule, default 1 then "
            "0.5).", ("mix",), {"verl": _VERL_NO_HOOK, "trl": {}}, guidance="istar_ratio"))
