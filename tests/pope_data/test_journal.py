"""The probe journal: round trip, compressed texts, never twice, refusal of a changed config."""

import sqlite3

import pytest

from pope_data.journal import Journal, ProbeRow
from pope_eval.errors import ConfigError, DataError


def row(pid="p1", prefix=1, wave=0, correct=0, texts=("a", "b")):
    return ProbeRow(stage="prefix", problem_id=pid, prefix_segments=prefix, wave=wave,
                    prefix_fraction=0.25, samples=len(texts), correct=correct, tokens=7,
                    finish_reasons=["stop"] * len(texts), statuses=["wrong"] * len(texts),
                    params={"temperature": 0.8}, seed=3, started=1.0, texts=list(texts))


def test_round_trip_in_commit_order_with_texts(tmp_path):
    j = Journal.open(tmp_path / "j.sqlite", {"n": 4})
    j.record_many([row(prefix=2), row(prefix=1)])
    j.record_many([row("p2", texts=("x" * 5000,))])
    got = list(j.rows("prefix", with_texts=True))
    assert [(r.problem_id, r.prefix_segments) for r in got] == [("p1", 2), ("p1", 1), ("p2", 1)]
    assert got[2].texts == ["x" * 5000] and got[0].params == {"temperature": 0.8}
    assert list(j.rows("prefix"))[0].texts == []
    assert j.count("prefix") == 3 and j.tokens() == 21 and j.count("curate") == 0
    # Texts are stored compressed.
    blob = j.conn.execute("SELECT texts FROM probes WHERE problem_id='p2'").fetchone()[0]
    assert len(blob) < 200


def test_a_probe_is_never_recorded_twice_and_the_batch_is_atomic(tmp_path):
    j = Journal.open(tmp_path / "j.sqlite", {})
    j.record_many([row()])
    with pytest.raises(DataError, match="recorded twice"):
        j.record_many([row(prefix=5), row()])
    assert j.count() == 1  # the failed batch left nothing behind


def test_changed_config_is_refused(tmp_path):
    # Without a probe the journal holds no results: a corrected config takes over.
    Journal.open(tmp_path / "j.sqlite", {"n": 4, "engine": {"model": "typo"}}).close()
    j = Journal.open(tmp_path / "j.sqlite", {"n": 4, "engine": {"model": "a"}})
    j.record_many([row()])
    j.close()
    Journal.open(tmp_path / "j.sqlite", {"n": 4, "engine": {"model": "a"}}).close()
    with pytest.raises(ConfigError, match="engine.model: 'a' -> 'b'"):
        Journal.open(tmp_path / "j.sqlite", {"n": 4, "engine": {"model": "b"}})


def test_wal_mode_and_unreadable_file(tmp_path):
    j = Journal.open(tmp_path / "j.sqlite", {})
    assert j.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="not a readable probe journal"):
        Journal.open(bad, {})
    assert isinstance(j.conn, sqlite3.Connection)


def test_has_probes_reads_without_changing_the_journal(tmp_path):
    path = tmp_path / "j.sqlite"
    assert not Journal.has_probes(path) and not path.exists()
    j = Journal.open(path, {"n": 4})
    assert not Journal.has_probes(path)
    j.record_many([row()])
    assert Journal.has_probes(path)
    j.close()
    garbage = tmp_path / "g.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    assert Journal.has_probes(garbage)  # unreadable: treated as someone's results
    assert garbage.read_bytes() == b"not a database at all" * 100
