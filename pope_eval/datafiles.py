"""Reading problem rows (jsonl, json, parquet files or a Hub split) with column mapping and quarantine.

Loaders in pope_eval.benchmarks and pope_data.sources read rows with `iter_rows` / `hub_rows` and
judge them with one `RowReader`; errors name the file or dataset and the 1-based row number.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_eval.errors import DataError, require

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".parquet")
# Fields every problem row must have; a loader's other fields are optional.
REQUIRED_FIELDS = ("problem", "answer")


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


class InvalidRowError(DataError):
    """A row that could not be parsed, yielded (not raised) by `iter_rows`; `raw` is its text,
    kept in the quarantine."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


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
                    yield i, InvalidRowError(f"{p}: row {i}: invalid JSON: {exc.msg}",
                                             line.rstrip("\n"))
        except UnicodeDecodeError as exc:
            raise DataError(f"{p}: not UTF-8 text: {exc}") from exc


def iter_objects(rows, source: str, quarantine: Quarantine) -> Iterator[tuple[int, dict]]:
    """The rows of `iter_rows` that are JSON objects; invalid lines and non-objects are
    quarantined with their row number."""
    for rownum, row in rows:
        if isinstance(row, Exception):
            quarantine.add(source, rownum, str(row), getattr(row, "raw", None))
        elif not isinstance(row, dict):
            quarantine.add(source, rownum, f"row is {type(row).__name__}, not an object", row)
        else:
            yield rownum, row


class MappedColumn(str):
    """A column named with --columns (`parse_column_map`): it must exist in the data, so a typo
    is an error, never a silent read of the column named like the field. A loader's own layout
    (a source's or a Hub set's default columns, plain `str`) falls back to the field's name."""


def parse_column_map(spec: str | Mapping[str, str] | None, *,
                     fields: Sequence[str] | None = None) -> dict[str, MappedColumn]:
    """'problem=question,answer=final' -> {'problem': 'question', 'answer': 'final'}.

    With `fields`, a field outside them is refused up front (naming the valid ones): a typo such
    as 'problme=question' would otherwise leave every row without a problem. The columns come
    back as `MappedColumn`s, which `RowReader` requires to exist (a typo in a column name).
    """
    if spec is None:
        out: dict[str, MappedColumn] = {}
    elif isinstance(spec, Mapping):
        out = {key: MappedColumn(col) for key, col in spec.items()}
    else:
        out = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise DataError(f"--columns: mapping {part!r}: expected FIELD=COLUMN")
            key, col = (s.strip() for s in part.split("=", 1))
            if not key or not col:
                raise DataError(f"--columns: mapping {part!r}: expected FIELD=COLUMN")
            out[key] = MappedColumn(col)
    if fields is not None:
        unknown = [k for k in out if k not in fields]
        if unknown:
            raise DataError(f"--columns: unknown field(s) {', '.join(map(repr, unknown))}; "
                            f"valid fields: {', '.join(fields)}")
    return out


_ABSENT = object()


def _walk(row: Mapping[str, Any], column: str) -> Any:
    """The value at a possibly dotted column, or _ABSENT when a key on the way is missing."""
    value: Any = row
    for key in column.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return _ABSENT
        value = value[key]
    return value


def get_field(row: Mapping[str, Any], column: str) -> Any:
    """Read a possibly dotted column ('reward_model.ground_truth') from a row (None if absent)."""
    value = _walk(row, column)
    return None if value is _ABSENT else value


def has_field(row: Mapping[str, Any], column: str) -> bool:
    """Whether a possibly dotted column exists in a row (a null value still counts)."""
    return _walk(row, column) is not _ABSENT


def as_text(value: Any) -> str | None:
    """A field value as text: strings as they are, numbers written out (7.0 -> '7'); else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return None


@dataclass(frozen=True)
class TextRow:
    """A row that passed the shared checks: problem and answer as stripped, non-empty text."""

    rownum: int
    problem: str
    answer: str
    row: dict[str, Any]  # the row as read (after the loader's transform), for its other fields


class RowReader:
    """The checks every loader applies to every row alike (benchmarks and training sources).

    `columns` maps our fields to the row's columns (dotted for nested values). A loader's own
    layout column (plain `str`) that a row lacks is read by the field's name (a row already in
    our shape); a column given with --columns (`MappedColumn`) is read only from that column.
    Rows that are not objects, or whose problem / answer is missing, not text or empty, are
    quarantined with their row number and the reason; so are repeated ids (`claim_id`). A
    --columns column in no row, or a required column absent from every row, is an error, raised
    once all rows are read, naming it and the columns found.
    """

    def __init__(self, source: str, columns: Mapping[str, str], quarantine: Quarantine, *,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.source, self.quarantine, self.transform = source, quarantine, transform
        self.columns = {name: columns.get(name, name) for name in {*REQUIRED_FIELDS, *columns}}
        self.mapped = {name for name, col in self.columns.items() if isinstance(col, MappedColumn)}
        self._ids: set[str] = set()

    def _falls_back(self, row: Mapping[str, Any], name: str) -> bool:
        col = self.columns.get(name, name)
        return col != name and name not in self.mapped and not has_field(row, col)

    def value(self, row: Mapping[str, Any], name: str) -> Any:
        """Our field `name` from a row: its mapped column, else (for a layout column) the
        column named like the field."""
        if self._falls_back(row, name):
            return row.get(name)
        return get_field(row, self.columns.get(name, name))

    def _has(self, row: Mapping[str, Any], name: str) -> bool:
        return has_field(row, self.columns[name]) or (name not in self.mapped and name in row)

    def _text(self, rownum: int, row: dict[str, Any], name: str) -> str | None:
        col = self.columns[name]
        where = "" if col == name else f" (column {col!r})"
        value = self.value(row, name)
        # Answers are often numbers (AIME's are integers); a problem must be text.
        text = as_text(value) if name == "answer" else value if isinstance(value, str) else None
        if value is None:
            reason = f"missing {name}{where}"
        elif text is None:
            reason = f"{name} is {type(value).__name__}, not text{where}"
        elif not text.strip():
            reason = f"empty {name}{where}"
        else:
            return text.strip()
        self.quarantine.add(self.source, rownum, reason, row)
        return None

    def rows(self, rows: Iterable[tuple[int, Any]]) -> Iterator[TextRow]:
        """The rows with a usable problem and answer; the rest go to the quarantine."""
        seen_columns: set[str] = set()
        present = dict.fromkeys([*REQUIRED_FIELDS, *sorted(self.mapped - {*REQUIRED_FIELDS})],
                                False)
        any_object = False
        for rownum, row in iter_objects(rows, self.source, self.quarantine):
            if self.transform is not None:
                row = self.transform(row)
            any_object = True
            seen_columns.update(row)
            for name in present:
                present[name] = present[name] or self._has(row, name)
            problem = self._text(rownum, row, "problem")
            answer = self._text(rownum, row, "answer") if problem is not None else None
            if problem is not None and answer is not None:
                yield TextRow(rownum, problem, answer, row)
        if not any_object:
            return
        found = ", ".join(sorted(seen_columns)) or "none"
        typos = [f"{name}={self.columns[name]}" for name in present
                 if name in self.mapped and not present[name]]
        if typos:
            raise DataError(f"{self.source}: --columns {', '.join(typos)}: no such column in any "
                            f"row (columns found: {found})")
        missing = [self.columns[name] for name, found_it in present.items() if not found_it]
        if missing:
            raise DataError(
                f"{self.source}: missing column(s) {', '.join(map(repr, missing))} in every row "
                f"(columns found: {found}); map yours with --columns, e.g. "
                "'problem=question,answer=final'"
            )

    def claim_id(self, rownum: int, row: Mapping[str, Any], item_id: str) -> bool:
        """True for an id not seen before in this load; a repeat is quarantined."""
        if item_id in self._ids:
            self.quarantine.add(self.source, rownum, f"duplicate id {item_id!r}", row)
            return False
        self._ids.add(item_id)
        return True


class HubRows:
    """Numbered rows of one Hugging Face dataset split, read once as a stream (DAPO has ~1.8M).

    `sha256` is the digest of the rows' content (a JSON list, keys sorted), known after iteration.
    """

    def __init__(self, hub_id: str, split: str, dataset: Iterable[dict[str, Any]]) -> None:
        self.hub_id, self.split, self._dataset = hub_id, split, dataset
        self._sha256: str | None = None

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        h = hashlib.sha256(b"[")
        for i, row in enumerate(self._dataset, start=1):
            if i > 1:
                h.update(b", ")
            h.update(json.dumps(row, sort_keys=True, default=str).encode())
            yield i, row
        h.update(b"]")
        self._sha256 = h.hexdigest()

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            raise RuntimeError(f"{self.hub_id}: sha256 is known only after reading every row")
        return self._sha256


def hub_rows(hub_id: str, split: str = "train", *, local: str = "a local file") -> HubRows:
    """Open a Hub dataset split for `RowReader`; any failure (offline, no such repo or split,
    auth) is one DataError naming the dataset and `local`, the option that avoids the Hub."""
    from pope_eval.offline import hub_endpoint, hub_unreachable, offline_mode

    datasets = require("datasets", "core")
    # A folder named like the id is read by `datasets` without the Hub; anything else needs it,
    # or a copy in the datasets cache read in offline mode when the Hub does not answer.
    unreachable = None if Path(hub_id).is_dir() else hub_unreachable()
    try:
        if unreachable is not None and not offline_mode():
            with _hub_clients_offline(datasets):
                ds = datasets.load_dataset(hub_id, split=split)
        else:
            ds = datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # offline, missing repo or split, auth: all end here
        if unreachable is not None:
            raise DataError(
                f"cannot load {hub_id} (split {split!r}): the Hugging Face Hub "
                f"({hub_endpoint()}) cannot be reached ({unreachable}) and the datasets cache "
                f"holds no copy of it; use {local}") from None
        raise DataError(
            f"cannot load {hub_id} (split {split!r}) from the Hugging Face Hub "
            f"({type(exc).__name__}: {exc}); offline? use {local}"
        ) from exc
    return HubRows(hub_id, split, ds)


@contextlib.contextmanager
def _hub_clients_offline(datasets: Any) -> Iterator[None]:
    """`datasets` and `huggingface_hub` in their offline mode (HF_HUB_OFFLINE, read once at
    their import) for one load: a cached copy is read at once, with no retries of a Hub that
    does not answer. Fails loudly if either library no longer has the switch."""
    import huggingface_hub.constants as hub_constants

    switches = [(datasets.config, "HF_HUB_OFFLINE"), (hub_constants, "HF_HUB_OFFLINE")]
    for module, name in switches:
        if not isinstance(getattr(module, name, None), bool):
            raise RuntimeError(f"{module.__name__}.{name} is gone: pope's offline Hub "
                               "loading needs updating for this version")
    saved = [getattr(module, name) for module, name in switches]
    try:
        for module, name in switches:
            setattr(module, name, True)
        yield
    finally:
        for (module, name), value in zip(switches, saved):
            setattr(module, name, value)


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

    def first_reasons(self, count: int = 3) -> str:
        """'row 1: empty problem; row 4: ...': the first `count` reasons, for an error line."""
        return "; ".join(f"row {e['row']}: {e['reason']}" if e["row"] is not None
                         else e["reason"] for e in self.entries[:count])

    def write_for_error(self, folder: str | Path) -> str:
        """Write folder/quarantine.jsonl for an error that ends a run before its folder is
        used (every row was refused): the error names it, and it lists every row and reason.
        Returns the clause that points to it; '' when nothing is quarantined, when the folder
        holds a run (its run_config.json: that run's own quarantine is left as it is) or cannot
        be written (the error itself must still be shown)."""
        from pope_eval.runinfo import RUN_CONFIG

        if not self.entries or (Path(folder) / RUN_CONFIG).exists():
            return ""
        try:
            path = self.write(Path(folder) / "quarantine.jsonl")
        except OSError:
            return ""
        return f"; every row and reason in {path}"

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for e in self.entries:
                fh.write(json.dumps(e, ensure_ascii=False) + "\n")
        tmp.replace(p)
        return p


# Text fields of a raw row kept in quarantine.jsonl by the checks after loading, in characters.
RAW_TEXT_LIMIT = 200


def truncated(raw: Any, limit: int = RAW_TEXT_LIMIT) -> Any:
    """A row for quarantine.jsonl with every text longer than `limit` characters cut (the row a
    later check refuses is kept in the quarantine, not the whole of a long solution)."""
    if isinstance(raw, str):
        return raw if len(raw) <= limit else f"{raw[:limit]}... ({len(raw)} characters)"
    if isinstance(raw, Mapping):
        return {k: truncated(v, limit) for k, v in raw.items()}
    if isinstance(raw, list | tuple):
        return [truncated(v, limit) for v in raw]
    return raw


def _jsonable(raw: Any) -> Any:
    try:
        json.dumps(raw)
        return raw
    except (TypeError, ValueError):
        return repr(raw)
