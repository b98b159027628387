"""Evaluation sets: AIME 2025 and HMMT Feb 2025 by name (Hub), or any jsonl/json/parquet file.

`load_benchmark("aime2025")`, `load_benchmark("path/to/file.jsonl", columns="problem=question")`;
rows without a problem or answer are quarantined with their row number, the rest load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_eval.datafiles import (
    Quarantine,
    file_sha256,
    get_field,
    iter_objects,
    iter_rows,
    parse_column_map,
)
from pope_eval.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalItem:
    id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class HubBenchmark:
    hub_id: str
    split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)  # field -> Hub column
    id_prefix: str = ""


BENCHMARKS: dict[str, HubBenchmark] = {
    "aime2025": HubBenchmark("MathArena/aime_2025", columns={"id": "problem_idx"},
                             id_prefix="aime2025-"),
    "hmmt_feb_2025": HubBenchmark("MathArena/hmmt_feb_2025", columns={"id": "problem_idx"},
                                  id_prefix="hmmt-feb-2025-"),
}


@dataclass(frozen=True)
class LoadedBenchmark:
    name: str
    items: list[EvalItem]
    source: str  # file path or Hub id
    sha256: str  # of the file, or of the Hub revision's rows
    quarantined: int = 0


def _is_path(spec: str) -> bool:
    return Path(spec).suffix.lower() in (".jsonl", ".json", ".parquet") or Path(spec).exists()


def load_benchmark(
    spec: str, *, columns: str | dict[str, str] | None = None, limit: int | None = None,
    quarantine: Quarantine | None = None,
) -> LoadedBenchmark:
    """Load a named benchmark or a file. `columns` maps our fields (id, problem, answer) to the
    file's column names, e.g. 'problem=question,answer=final'; dotted names reach nested fields."""
    quarantine = quarantine if quarantine is not None else Quarantine()
    mapping = parse_column_map(columns)
    unknown = set(mapping) - {"id", "problem", "answer"}
    if unknown:
        raise DataError(f"column mapping: unknown field(s) {sorted(unknown)}; use id, problem, answer")
    if _is_path(spec):
        path = Path(spec)
        rows = iter_rows(path)
        source, digest, name = str(path), None, path.stem
    elif spec in BENCHMARKS:
        bench = BENCHMARKS[spec]
        mapping = {**bench.columns, **mapping}
        rows, digest = _hub_rows(bench)
        source, name = bench.hub_id, spec
    else:
        raise DataError(
            f"unknown benchmark {spec!r}: use one of {', '.join(BENCHMARKS)} or a path to a "
            ".jsonl, .json or .parquet file"
        )
    before = len(quarantine)
    items = _normalise(rows, mapping, source, quarantine,
                       id_prefix=BENCHMARKS[spec].id_prefix if spec in BENCHMARKS else "")
    if limit is not None:
        items = items[:limit]
    if digest is None:
        digest = file_sha256(source)
    return LoadedBenchmark(name=name, items=items, source=source, sha256=digest,
                           quarantined=len(quarantine) - before)


def _normalise(rows, mapping: dict[str, str], source: str, quarantine: Quarantine,
               *, id_prefix: str) -> list[EvalItem]:
    pcol, acol, icol = (mapping.get("problem", "problem"), mapping.get("answer", "answer"),
                        mapping.get("id", "id"))
    items: list[EvalItem] = []
    seen: set[str] = set()
    checked_columns = False
    for rownum, row in iter_objects(rows, source, quarantine):
        if not checked_columns:
            missing = [c for c in (pcol, acol) if get_field(row, c) is None and c not in row]
            if missing:
                raise DataError(
                    f"{source}: missing column(s) {missing} (columns found: {sorted(row)}); "
                    "map yours with --columns, e.g. 'problem=question,answer=final'"
                )
            checked_columns = True
        problem, answer = get_field(row, pcol), get_field(row, acol)
        if not isinstance(problem, str) or not problem.strip():
            quarantine.add(source, rownum, f"empty or non-text '{pcol}'", row)
            continue
        if isinstance(answer, int | float) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            quarantine.add(source, rownum, f"empty or missing '{acol}'", row)
            continue
        raw_id = get_field(row, icol)
        item_id = f"{id_prefix}{raw_id}" if raw_id is not None else f"row-{rownum}"
        if item_id in seen:
            quarantine.add(source, rownum, f"duplicate id {item_id!r}", row)
            continue
        seen.add(item_id)
        items.append(EvalItem(id=item_id, problem=problem.strip(), answer=answer.strip()))
    return items


def _hub_rows(bench: HubBenchmark) -> tuple[Any, str]:
    import hashlib
    import json

    from pope_eval.errors import require

    datasets = require("datasets", "core")
    try:
        ds = datasets.load_dataset(bench.hub_id, split=bench.split)
    except Exception as exc:  # offline, missing repo, auth: all end here
        raise DataError(
            f"cannot load {bench.hub_id} from the Hugging Face Hub ({type(exc).__name__}: {exc}); "
            "offline? pass a local copy with --data PATH (jsonl/parquet with problem and answer)"
        ) from exc
    rows = list(ds)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()
    return list(enumerate(rows, start=1)), digest
