"""Stable integers from strings: seeds, shard and split assignment, never Python's `hash()`.

`stable_int("0:curate:p-1:0")` is the same on every machine and run; callers build the key from
the ids that decide the draw (run seed, stage, problem, prefix, sample index).
"""

from __future__ import annotations

import hashlib


def stable_int(key: str, nbytes: int = 8) -> int:
    """The first `nbytes` of sha256(key) as a little-endian unsigned integer."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:nbytes], "little")


def stable_unit(key: str) -> float:
    """A stable float in [0, 1) from a key (e.g. for a validation split)."""
    return stable_int(key) / 2**64
