"""Training backends of `pope-train run --backend NAME`, one file each, registered here by name.

`BACKENDS["trl"]` -> a `TrainBackend` (base.py); add a backend: one file implementing it and one
`BACKENDS.add` line below. Which recipe runs where: `pope_train.recipes`.
"""

from __future__ import annotations

from pope_eval.registry import Registry
from pope_train.backends.base import Outcome, Plan, Progress, TrainBackend
from pope_train.backends.trl.adapter import TrlBackend
from pope_train.backends.verl.adapter import VerlBackend

BACKENDS: Registry[TrainBackend] = Registry("backend", option="--backend")
BACKENDS.add(VerlBackend.name, VerlBackend())
BACKENDS.add(TrlBackend.name, TrlBackend())

__all__ = ["BACKENDS", "Outcome", "Plan", "Progress", "TrainBackend"]
