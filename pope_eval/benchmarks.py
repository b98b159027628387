"""Evaluation sets: AIME 2025 and HMMT Feb 2025 by name (bundled, offline), any file, or `hub:ORG/NAME`.

`load_benchmark("aime2025")`, `load_benchmark("path/to/file.jsonl", columns="problem=question")`,
`load_benchmark("hub:MathArena/aime_2025")`; rows without a usable problem or answer are
quarantined with their row number, the rest load. `source` says which data was read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pope_eval.datafiles import (
    SUFFIXES,
    HubRows,
    Quarantine,
    RowReader,
    file_sha256,
    hub_rows,
    iter_rows,
    parse_column_map,
    truncated,
)
from pope_eval.errors import DataError
from pope_eval.registry import Registry

log = logging.getLogger(__name__)

FIELDS = ("id", "problem", "answer")
HUB_PREFIX = "hub:"


@dataclass(frozen=True)
class EvalItem:
    id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class BundledBenchmark:
    """An eval set shipped in pope_eval/data (see its README.md for origin and licence)."""

    file: str
    hub_id: str  # where to refresh or verify it: --data hub:<hub_id>
    default: bool = False  # evaluated and decontaminated against unless told otherwise


BENCHMARKS: Registry[BundledBenchmark] = Registry("benchmark", option="--data")
BENCHMARKS.add("aime2025", BundledBenchmark("aime2025.jsonl", "MathArena/aime_2025", default=True))
BENCHMARKS.add("hmmt_feb_2025", BundledBenchmark("hmmt_feb_2025.jsonl", "MathArena/hmmt_feb_2025",
                                                 default=True))


def default_benchmarks() -> tuple[str, ...]:
    """The bundled sets used by default: pope-train's validation benchmarks and the sets
    training problems are decontaminated against."""
    return tuple(name for name, bench in BENCHMARKS.items() if bench.default)


@dataclass(frozen=True)
class HubLayout:
    """How a known Hub dataset's columns map onto ours."""

    columns: dict[str, str] = field(default_factory=dict)  # our field -> Hub column
    id_prefix: str = ""


# MathArena numbers problems 1..30 in `problem_idx`.
HUB_LAYOUTS: dict[str, HubLayout] = {
    "MathArena/aime_2025": HubLayout({"id": "problem_idx"}, "aime2025-"),
    "MathArena/hmmt_feb_2025": HubLayout({"id": "problem_idx"}, "hmmt-feb-2025-"),
}


@dataclass(frozen=True)
class LoadedBenchmark:
    name: str
    items: list[EvalItem]
    source: str  # bundled:NAME, hub:ORG/NAME[:split], or the file path (summary.json data_source)
    sha256: str  # of the file, or of the Hub split's rows
    quarantined: int = 0
    # id -> (row number, the row with long texts cut): where a later check that refuses an
    # item (gold answer, prompt length) finds the row it quarantines.
    rows: dict[str, tuple[int, Any]] = field(default_factory=dict, repr=False)


def bundled_file(name: str) -> Path:
    """The bundled file of a named eval set, e.g. to read it in tests or diff it with the Hub."""
    if name not in BENCHMARKS:
        raise DataError(f"no bundled eval set {name!r}: use one of {', '.join(BENCHMARKS)}")
    # pope is installed as files (wheel or editable), so the resource is a real path.
    path = Path(str(resources.files("pope_eval") / "data" / BENCHMARKS[name].file))
    if not path.is_file():
        raise DataError(f"bundled eval set {name}: {path} is missing; reinstall pope")
    return path


def _is_path(spec: str) -> bool:
    return Path(spec).suffix.lower() in SUFFIXES or Path(spec).exists()


def _parse_hub(spec: str, option: str) -> tuple[str, str]:
    """'hub:ORG/NAME[:split]' -> (hub id, split)."""
    hub_id, _, split = spec[len(HUB_PREFIX):].partition(":")
    org, slash, name = hub_id.partition("/")
    if not (org and slash and name) or "/" in name:
        raise DataError(f"{option} {spec!r}: expected hub:ORG/NAME or hub:ORG/NAME:SPLIT")
    return hub_id, split or "train"


def load_benchmark(
    spec: str, *, columns: str | dict[str, str] | None = None, limit: int | None = None,
    quarantine: Quarantine | None = None, option: str = "--data",
) -> LoadedBenchmark:
    """Load a named (bundled) benchmark, a file, or `hub:ORG/NAME[:split]`. `columns` maps our
    fields (id, problem, answer) to the data's column names, e.g. 'problem=question,answer=final';
    dotted names reach nested fields. `option` is the flag that gave `spec`, named in errors."""
    quarantine = quarantine if quarantine is not None else Quarantine()
    mapping = parse_column_map(columns, fields=FIELDS)
    id_prefix = ""
    hub: HubRows | None = None  # its sha256 is known once its rows are read
    if spec.startswith(HUB_PREFIX):
        hub_id, split = _parse_hub(spec, option)
        layout = HUB_LAYOUTS.get(hub_id, HubLayout())
        mapping, id_prefix = {**layout.columns, **mapping}, layout.id_prefix
        rows = hub = hub_rows(hub_id, split, local=f"a bundled name ({', '.join(BENCHMARKS)}) "
                                                    f"or {option} PATH")
        source = f"{HUB_PREFIX}{hub_id}" + (f":{split}" if split != "train" else "")
        name = hub_id.split("/")[1]
    elif _is_path(spec):
        path = Path(spec)
        rows, source, name = iter_rows(path), str(path), path.stem
    elif spec in BENCHMARKS:
        path = bundled_file(spec)
        rows, source, name = iter_rows(path), f"bundled:{spec}", spec
    else:
        raise DataError(
            f"{option}: unknown benchmark {spec!r}: use one of {', '.join(BENCHMARKS)} (bundled), "
            "hub:ORG/NAME[:split], or a path to a .jsonl, .json or .parquet file"
        )
    before = len(quarantine)
    reader = RowReader(source, mapping, quarantine)
    items: list[EvalItem] = []
    origin: dict[str, tuple[int, Any]] = {}
    for r in reader.rows(rows):
        raw_id = reader.value(r.row, "id")
        item_id = f"{id_prefix}{raw_id}" if raw_id is not None else f"row-{r.rownum}"
        if reader.claim_id(r.rownum, r.row, item_id):
            items.append(EvalItem(id=item_id, problem=r.problem, answer=r.answer))
            origin[item_id] = (r.rownum, truncated(r.row))
    if limit is not None:
        items = items[:limit]
        origin = {item.id: origin[item.id] for item in items}
    digest = hub.sha256 if hub is not None else file_sha256(path)
    log.info("%s: %d problems from %s (sha256 %s)", name, len(items), source, digest[:12])
    return LoadedBenchmark(name=name, items=items, source=source, sha256=digest,
                           quarantined=len(quarantine) - before, rows=origin)
