"""The probe journal: an append-only SQLite (WAL) record of every finished probe, the basis of resume.

`j = Journal.open(path, fingerprint)`; `j.record_many(rows)` commits one batch atomically;
`j.rows(stage)` replays them. A probe (stage, problem, prefix, wave) can be recorded only once.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_eval.errors import ConfigError, DataError
from pope_eval.runinfo import config_diff

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS probes (
    stage TEXT NOT NULL,
    problem_id TEXT NOT NULL,
    prefix_segments INTEGER NOT NULL,
    wave INTEGER NOT NULL,
    prefix_fraction REAL NOT NULL,
    samples INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    finish_reasons TEXT NOT NULL,
    statuses TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER NOT NULL,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    texts BLOB NOT NULL,
    PRIMARY KEY (stage, problem_id, prefix_segments, wave)
);
"""


@dataclass(frozen=True)
class ProbeRow:
    """One finished probe (docs/design.md, "The journal"). `texts` are the sample texts kept
    by the retention mode, stored compressed."""

    stage: str
    problem_id: str
    prefix_segments: int
    wave: int
    prefix_fraction: float
    samples: int
    correct: int
    tokens: int
    finish_reasons: list[str]
    statuses: list[str]
    params: dict[str, Any]
    seed: int
    started: float
    finished: float = field(default_factory=time.time)
    texts: list[str] = field(default_factory=list, repr=False)


class Journal:
    """SQLite in WAL mode, one transaction per batch: a kill -9 keeps every committed batch."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path, fingerprint: dict[str, Any]) -> Journal:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(p, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{p}: not a readable probe journal: {exc}") from exc
        fp = json.loads(json.dumps(fingerprint, default=str))
        row = conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (json.dumps(fp),))
        else:
            diffs = config_diff(json.loads(row[0]), fp)
            if diffs and conn.execute("SELECT COUNT(*) FROM probes").fetchone()[0] == 0:
                # Nothing generated yet: the corrected configuration takes over.
                conn.execute("UPDATE meta SET value = ? WHERE key = 'fingerprint'",
                             (json.dumps(fp),))
            elif diffs:
                conn.close()
                raise ConfigError(
                    f"{p} was written with another configuration; resume with the same options "
                    "or use a new output folder. Changed: " + "; ".join(diffs))
        return cls(conn, p)

    @staticmethod
    def has_probes(path: str | Path) -> bool:
        """Whether the journal at `path` holds a finished probe, read without changing it. An
        unreadable file counts as holding some: what may be someone's results is never replaced."""
        p = Path(path)
        if not p.exists():
            return False
        try:
            with contextlib.closing(sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro",
                                                    uri=True)) as conn:
                return conn.execute("SELECT COUNT(*) FROM probes").fetchone()[0] > 0
        except sqlite3.DatabaseError:
            return True

    def record_many(self, rows: Iterable[ProbeRow]) -> int:
        """Append a batch atomically; a probe already recorded is an error (never twice)."""
        values = [
            (r.stage, r.problem_id, r.prefix_segments, r.wave, r.prefix_fraction, r.samples,
             r.correct, r.tokens, json.dumps(r.finish_reasons), json.dumps(r.statuses),
             json.dumps(r.params, sort_keys=True), r.seed, r.started, r.finished,
             zlib.compress(json.dumps(r.texts).encode(), 6))
            for r in rows
        ]
        if not values:
            return 0
        try:
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.executemany(
                    "INSERT INTO probes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
        except sqlite3.IntegrityError as exc:
            raise DataError(f"{self.path}: a probe was recorded twice ({exc})") from exc
        except sqlite3.OperationalError as exc:  # disk full, read-only folder
            raise DataError(f"{self.path}: cannot write the journal: {exc}") from exc
        return len(values)

    def rows(self, stage: str | None = None, *, with_texts: bool = False) -> Iterator[ProbeRow]:
        """Recorded probes in the order they were committed."""
        q = "SELECT * FROM probes" + (" WHERE stage = ?" if stage else "") + " ORDER BY rowid"
        for r in self.conn.execute(q, (stage,) if stage else ()):
            yield ProbeRow(
                stage=r[0], problem_id=r[1], prefix_segments=r[2], wave=r[3],
                prefix_fraction=r[4], samples=r[5], correct=r[6], tokens=r[7],
                finish_reasons=json.loads(r[8]), statuses=json.loads(r[9]),
                params=json.loads(r[10]), seed=r[11], started=r[12], finished=r[13],
                texts=json.loads(zlib.decompress(r[14])) if with_texts else [],
            )

    def correct_counts(self, stage: str) -> dict[str, int]:
        """Correct samples per problem in a stage."""
        q = "SELECT problem_id, SUM(correct) FROM probes WHERE stage = ? GROUP BY problem_id"
        return {pid: int(c) for pid, c in self.conn.execute(q, (stage,))}

    def sample_counts(self, stage: str) -> dict[str, int]:
        """Samples drawn per problem in a stage."""
        q = "SELECT problem_id, SUM(samples) FROM probes WHERE stage = ? GROUP BY problem_id"
        return {pid: int(c) for pid, c in self.conn.execute(q, (stage,))}

    def finish_reasons(self) -> dict[str, int]:
        """How many samples ended for each reason (stop, length, error), all stages."""
        counts: dict[str, int] = {}
        for (reasons,) in self.conn.execute("SELECT finish_reasons FROM probes"):
            for r in json.loads(reasons):
                counts[r] = counts.get(r, 0) + 1
        return counts

    def count(self, stage: str | None = None) -> int:
        q = "SELECT COUNT(*) FROM probes" + (" WHERE stage = ?" if stage else "")
        return self.conn.execute(q, (stage,) if stage else ()).fetchone()[0]

    def tokens(self, stage: str | None = None) -> int:
        q = "SELECT COALESCE(SUM(tokens), 0) FROM probes" + (" WHERE stage = ?" if stage else "")
        return self.conn.execute(q, (stage,) if stage else ()).fetchone()[0]

    def close(self) -> None:
        self.conn.close()
