"""Which problems a shard of a build takes (`--shard i/N`): parsing the spec and the membership test.

`in_shard(problem_id, parse_shard("2/8"))`; low level on purpose (no build imports), so the config,
the sources and the build import it without a circle; `pope_data.shards` merges finished shards.
"""

from __future__ import annotations

from pope_eval.errors import ConfigError
from pope_eval.seeds import stable_int


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """'2/8' -> (2, 8): this process takes shard 2 of 8 (0-based)."""
    if not spec:
        return None
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ConfigError(f"--shard: expected I/N (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard: need 0 <= I < N, got {spec!r}")
    return i, n


def in_shard(problem_id: str, shard: tuple[int, int] | None) -> bool:
    """True when `problem_id` belongs to `shard` (every id does when shard is None)."""
    if shard is None:
        return True
    return stable_int(f"shard:{problem_id}") % shard[1] == shard[0]
