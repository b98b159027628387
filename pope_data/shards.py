"""Shards of one build over several machines (`--shard i/N`) and `pope-data merge` of their outputs.

`merge(dirs, dest)` joins finished shard builds into a folder like a build's, refusing overlaps, gaps,
mixed configs; which problems a shard takes is `pope_data.sharding` (re-exported here).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pope_data.sharding import in_shard, parse_shard
from pope_eval.errors import ConfigError, DataError
from pope_eval.runinfo import (
    RUN_CONFIG,
    atomic_path,
    config_diff,
    lock_run_dir,
    package_versions,
    write_json_atomic,
)

QUARANTINE = "quarantine.jsonl"
TABLES = ("prefixes.parquet", "curate.parquet", "problems.parquet")
__all__ = ["in_shard", "merge", "parse_shard"]


@dataclass(frozen=True)
class _Shard:
    """A finished shard build: its folder, recorded run config and summary.json."""

    folder: Path
    shard: tuple[int, int]
    run: dict[str, Any]
    summary: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        """The recorded config but the shard: what every shard of one build shares."""
        return {k: v for k, v in self.run["config"].items() if k != "shard"}


def _read_shard(folder: Path) -> _Shard:
    rc = folder / RUN_CONFIG
    if not rc.exists():
        raise DataError(f"{folder}: no {RUN_CONFIG}; not a pope-data build folder")
    run = json.loads(rc.read_text(encoding="utf-8"))
    shard = parse_shard(run["config"].get("shard"))
    if shard is None:
        raise DataError(f"{folder}: was not built with --shard")
    summary = folder / "summary.json"
    if not summary.exists():
        raise DataError(f"{folder}: shard build did not finish (no summary.json)")
    return _Shard(folder, shard, run, json.loads(summary.read_text(encoding="utf-8")))


def merge(shard_dirs: list[str | Path], dest: str | Path, *,
          command: str | None = None) -> dict[str, dict[str, int]]:
    """Join the outputs of `--shard i/N` builds into `dest` as one build writes them: export
    tables, problems / curate / prefix tables, quarantine, decontamination, report.md and
    summary.json (last). Refuses overlaps, gaps, unfinished shards and mixed configs (naming
    the options that differ); `dest` is locked while it is written, and rerunning a merge that
    was killed completes the folder. Returns the row counts {config: {split: rows}}."""
    from pope_data.build import BuildSummary, finish, remove_partial_writes
    from pope_data.export import CONFIGS, SPLITS, PrefixChoice

    shards, seen, parts = [], {}, []
    for d in shard_dirs:
        sh = _read_shard(Path(d))
        if sh.shard in seen:
            raise DataError(f"{d} and {seen[sh.shard]} are both shard {sh.shard[0]}/{sh.shard[1]}")
        seen[sh.shard] = d
        shards.append(sh)
        try:
            parts.append(BuildSummary.from_dict(sh.summary))
        except (KeyError, TypeError) as exc:
            raise DataError(f"{d}/summary.json: written by another pope version ({exc}); "
                            "rebuild the shard") from None
    base = shards[0]
    for sh in shards[1:]:
        diffs = config_diff(base.config, sh.config)
        if diffs:
            raise DataError(f"shards were built with different configurations: {sh.folder} "
                            f"differs from {base.folder} in " + "; ".join(diffs))
    total = base.shard[1]
    missing = sorted(set(range(total)) - {i for i, _ in seen})
    if missing or any(n != total for _, n in seen):
        raise DataError(f"missing shard(s) {missing} of {total}")
    dest = Path(dest)
    folders = [sh.folder.resolve() for sh in shards]
    if dest.resolve() in folders:
        raise ConfigError(f"--out {dest}: is one of the shard folders; merge into a new folder")

    with lock_run_dir(dest, "pope-data merge"):
        _check_previous(dest, folders)
        (dest / "summary.json").unlink(missing_ok=True)
        remove_partial_writes(dest)
        write_json_atomic(dest / RUN_CONFIG, {
            "config": {**base.run["config"], "shard": None},
            "merged_from": [str(sh.folder) for sh in shards],
            "shards": [{"folder": str(sh.folder), "shard": f"{sh.shard[0]}/{sh.shard[1]}",
                        "command": sh.run.get("command")} for sh in shards],
            "command": command if command is not None else " ".join(sys.argv),
            # The guidance template's text, as one build records it (the shards share it).
            **({"guidance": base.run["guidance"]} if "guidance" in base.run else {}),
            "versions": package_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        counts: dict[str, dict[str, int]] = {}
        for config in CONFIGS:
            counts[config] = {}
            for split in SPLITS:
                table = _concat(shards, Path("export") / config / f"{split}.parquet")
                _write(table, dest / "export" / config / f"{split}.parquet")
                counts[config][split] = table.num_rows
        for name in TABLES:
            _write(_concat(shards, Path(name)), dest / name)
        quarantined = _merge_quarantine(shards, dest / QUARANTINE)
        _merge_decontamination(shards, dest)
        summary = BuildSummary.combined(parts, out=str(dest), quarantined=quarantined,
                                        counts=counts)
        names = {f.name for f in fields(PrefixChoice)}
        choices = [PrefixChoice(**{k: v for k, v in row.items() if k in names})
                   for row in pq.read_table(dest / "prefixes.parquet").to_pylist()]
        finish(dest, summary, choices)
    return counts


def _check_previous(dest: Path, folders: list[Path]) -> None:
    """A folder may take a merge again (a rerun) but never one of other shards, nor a build."""
    rc = dest / RUN_CONFIG
    if not rc.exists():
        return
    previous = json.loads(rc.read_text(encoding="utf-8"))
    if "merged_from" not in previous:
        raise ConfigError(f"--out {dest}: holds a pope-data build; merge into a new folder")
    if [Path(f).resolve() for f in previous["merged_from"]] != folders:
        raise ConfigError(f"--out {dest}: holds a merge of other shards "
                          f"({', '.join(previous['merged_from'])}); use a new folder")


def _concat(shards: list[_Shard], name: Path) -> pa.Table:
    try:
        return pa.concat_tables([pq.read_table(sh.folder / name) for sh in shards])
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{name}: cannot join the shards' files: {exc}") from None


def _write(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _merge_quarantine(shards: list[_Shard], path: Path) -> int:
    """Every shard lists the rows unreadable at load (the same rows) and its own rejected
    problems: the union, one line per row. Returns the number of lines."""
    lines: dict[str, None] = {}
    for sh in shards:
        q = sh.folder / QUARANTINE
        if q.exists():
            lines.update(dict.fromkeys(x for x in q.read_text(encoding="utf-8").splitlines()
                                       if x.strip()))
    entries = sorted(lines, key=lambda x: (json.loads(x).get("row") or 0))
    with atomic_path(path) as tmp:
        tmp.write_text("".join(e + "\n" for e in entries), encoding="utf-8")
    return len(entries)


def _merge_decontamination(shards: list[_Shard], dest: Path) -> None:
    from pope_data.decontam import DECONTAMINATION_FILE

    parts = [json.loads((sh.folder / DECONTAMINATION_FILE).read_text(encoding="utf-8"))
             for sh in shards if (sh.folder / DECONTAMINATION_FILE).exists()]
    if not parts:
        return
    write_json_atomic(dest / DECONTAMINATION_FILE, {
        **parts[0], "removed": [r for p in parts for r in p["removed"]],
        "not_checked": {k: v for p in parts for k, v in p["not_checked"].items()},
        "kept": sum(p["kept"] for p in parts)})
