"""Shards of one build over several machines (`--shard i/N`) and `pope-data merge` of their outputs.

`in_shard(problem_id, parse_shard("2/8"))` decides membership by a stable hash of the id;
`merge(dirs, dest)` joins finished shard builds and refuses overlaps, gaps and mixed configs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pope_eval.errors import ConfigError, DataError
from pope_eval.runinfo import RUN_CONFIG, write_json_atomic
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
    if shard is None:
        return True
    return stable_int(f"shard:{problem_id}") % shard[1] == shard[0]


def merge(shard_dirs: list[str | Path], dest: str | Path) -> dict[str, dict[str, int]]:
    """Join the exports of `--shard i/N` builds; refuses overlaps, gaps and mixed configs."""
    configs, seen = [], {}
    for d in shard_dirs:
        rc = Path(d) / RUN_CONFIG
        if not rc.exists():
            raise DataError(f"{d}: no {RUN_CONFIG}; not a pope-data build folder")
        cfg = json.loads(rc.read_text())["config"]
        shard = parse_shard(cfg.get("shard"))
        if shard is None:
            raise DataError(f"{d}: was not built with --shard")
        if shard in seen:
            raise DataError(f"{d} and {seen[shard]} are both shard {shard[0]}/{shard[1]}")
        seen[shard] = d
        configs.append({k: v for k, v in cfg.items() if k != "shard"})
        if not (Path(d) / "summary.json").exists():
            raise DataError(f"{d}: shard build did not finish (no summary.json)")
    if any(c != configs[0] for c in configs[1:]):
        raise DataError("shards were built with different configurations")
    total = next(iter(seen))[1]
    missing = sorted(set(range(total)) - {i for i, _ in seen})
    if missing or any(n != total for _, n in seen):
        raise DataError(f"missing shard(s) {missing} of {total}")
    dest = Path(dest)
    counts: dict[str, dict[str, int]] = {}
    from pope_data.export import CONFIGS, SPLITS

    for config in CONFIGS:
        counts[config] = {}
        for split in SPLITS:
            tables = [pq.read_table(Path(d) / "export" / config / f"{split}.parquet")
                      for d in shard_dirs]
            table = pa.concat_tables(tables)
            (dest / "export" / config).mkdir(parents=True, exist_ok=True)
            pq.write_table(table, dest / "export" / config / f"{split}.parquet")
            counts[config][split] = table.num_rows
    for name in ("prefixes.parquet", "curate.parquet", "problems.parquet"):
        pq.write_table(pa.concat_tables([pq.read_table(Path(d) / name) for d in shard_dirs]),
                       dest / name)
    write_json_atomic(dest / RUN_CONFIG, {"config": {**configs[0], "shard": None},
                                          "merged_from": [str(d) for d in shard_dirs]})
    return counts
