"""Guidance schemes: what a recipe's guided rows show during training, one file each, registered here.

`SCHEMES["online"]` -> a `GuidanceScheme` class (base.py); a recipe names one (`Recipe.guidance`).
Add a scheme: one file with its class and options, one `SCHEMES.add` line below, a recipe line.
"""

from __future__ import annotations

from pope_eval.registry import Registry
from pope_train.guidance.adaptive import Adaptive
from pope_train.guidance.base import GuidanceScheme, NoOptions, Runtime, Setup
from pope_train.guidance.ghpo import Ghpo
from pope_train.guidance.istar_ratio import IstarRatio
from pope_train.guidance.online import Online
from pope_train.guidance.ratio import Ratio
from pope_train.guidance.shorter import Shorter
from pope_train.guidance.static import Static

SCHEMES: Registry[type[GuidanceScheme]] = Registry("guidance scheme")
SCHEMES.add(Static.name, Static)
SCHEMES.add(Online.name, Online)
SCHEMES.add(Ratio.name, Ratio)
SCHEMES.add(Ghpo.name, Ghpo)
SCHEMES.add(Shorter.name, Shorter)
SCHEMES.add(IstarRatio.name, IstarRatio)
SCHEMES.add(Adaptive.name, Adaptive)


def scheme_options() -> tuple[type, ...]:
    """Every scheme's options dataclass (each once; NoOptions left out): the TRL backend's
    options include their fields, so each is a command-line flag."""
    out: list[type] = []
    for cls in SCHEMES.values():
        if cls.options is not NoOptions and cls.options not in out:
            out.append(cls.options)
    return tuple(out)


__all__ = ["SCHEMES", "GuidanceScheme", "NoOptions", "Runtime", "Setup", "scheme_options"]
