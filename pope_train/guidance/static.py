"""Static guidance: the build's prefix, unchanged during training (POPE as published).

Registered as `static` in pope_train.guidance.SCHEMES; recipes pope, hard_only, ... use it.
"""

from __future__ import annotations

from pope_train.guidance.base import GuidanceScheme


class Static(GuidanceScheme):
    """Rows as the export wrote them; with the build beside --export it counts what they show."""

    name = "static"
    summary = "the build's prefix, unchanged (POPE as published)"
    needs_build = False
