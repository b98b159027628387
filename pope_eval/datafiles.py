"""Reading problem files (jsonl, json, parquet) row by row, with column mapping and quarantine.

Loaders in pope_eval.benchmarks and pope_data.sources call `iter_rows` and `Quarantine`; errors
name the file and the 1-based row number.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_eval.errors import DataError

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".parquet")


def iter_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (row_number, row) from a jsonl / json / parquet file; row numbers start at 1.

    A jsonl line that is not valid JSON is yielded as a `DataError` instance (not raised) so
    the caller can quarantine it and go on; an unreadable file raises `DataError`.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a .jsonl, .json or .parquet file")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        yield from _iter_jsonl(p)
    elif suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{p}: cannot read JSON: {exc}") from exc
        if isinstance(data, dict):
            # {"data": [...]} / {"rows": [...]} are common wrappers.
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise DataError(f"{p}: expected a JSON list of rows")
            data = lists[0]
        if not isinstance(data, list):
            raise DataError(f"{p}: expected a JSON list of rows")
        yield from enumerate(data, start=1)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"{p}: cannot read parquet: {exc}") from exc
        yield from enumerate(table.to_pylist(), start=1)
    else:
        raise DataError(f"{p}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")


def _iter_jsonl(p: Path) -> Iterator[tuple[int, Any]]:
    try:
        fh = p.open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{p}: cannot open: {exc}") from exc
    with fh:
        try:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield i, DataError(f"{p}: row {i}: invalid JSON: {exc.msg}")
        except UnicodeDecodeError as exc:
            raise DataError(f"{p}: not UTF-8 text: {exc}") from exc


def iter_objects(rows, source: str, quarantine: Quarantine) -> Iterator[tuple[int, dict]]:
    """The rows of `iter_rows` that are JSON objects; invalid lines and non-objects are
    quarantined with their row number."""
    for rownum, row in rows:
        if isinstance(row, Exception):
            quarantine.add(source, rownum, str(row))
        elif not isinstance(row, dict):
            quarantine.add(source, rownum, f"row is {type(row).__name__}, not an object", row)
        else:
            yield rownum, row


def parse_column_map(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """'problem=question,answer=final' -> {'problem': 'question', 'answer': 'final'}."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return dict(spec)
    out: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise DataError(f"column mapping {part!r}: expected FIELD=COLUMN")
        key, col = (s.strip() for s in part.split("=", 1))
        if not key or not col:
            raise DataError(f"column mapping {part!r}: expected FIELD=COLUMN")
        out[key] = col
    return out


def get_field(row: Mapping[str, Any], column: str) -> Any:
    """Read a possibly dotted column ('reward_model.ground_truth') from a row."""
    value: Any = row
    for key in column.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def file_sha256(path: str | Path) -> str:
    """Hex digest of a file, recorded in summaries so results name the exact data."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Quarantine:
    """Collects rows that could not be normalised; written as jsonl, never dropped silently."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, source: str, row: int | None, reason: str, raw: Any = None) -> None:
        log.debug("quarantined %s row %s: %s", source, row, reason)
        self.entries.append({"source": source, "row": row, "reason": reason, "raw": _jsonable(raw)})

    def __len__(self) -> int:
        return len(self.entries)

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for e in self.entries:
                fh.write(json.dumps(e, ensure_ascii=False) + "\n")
        tmp.replace(p)
        return p


def _jsonable(raw: Any) -> Any:
    try:
        json.dumps(raw)
        return raw
    except (TypeError, ValueError):
        return repr(raw)
