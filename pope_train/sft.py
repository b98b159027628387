"""The SFT stage of `sft_then_rl`: its options and its data, one of each for the TRL and verl backends.

`sft_data(Path("OUT/export"), "traces")` -> chat examples (unguided hard problem -> correct solution)
from the build folder OUT; `write_sft_data(data, path)` writes them as parquet that both trainers read.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_eval.errors import ConfigError, DataError
from pope_eval.options import option
from pope_eval.runinfo import atomic_path

if TYPE_CHECKING:
    from pope_data.journal import Journal, ProbeRow

PREFIX_STAGE = "prefix"  # the journal stage of pope_data.build's prefix search
CURATE_TABLE = "curate.parquet"  # every problem of the build with its source solution

# What the SFT stage imitates (--sft-data). Prompts are the unguided problems in both cases.
SFT_SOURCES: dict[str, str] = {
    "traces": "the model's own correct guided rollouts at the minimal prefix i*, kept in the "
              "build's journal (retention correct or all), each after the prefix it was shown: "
              "the paper's SFT baseline",
    "solutions": "the oracle solutions of the hard problems (the source's, else the ones "
                 "pope-data build --solve wrote)",
}


def _check_source(source: str) -> None:
    if source not in SFT_SOURCES:
        raise ConfigError(f"--sft-data: unknown {source!r}; choose one of {', '.join(SFT_SOURCES)}")


@dataclass(frozen=True, kw_only=True)
class SftOptions:
    """The SFT stage's options (configs with an SFT stage, e.g. sft_then_rl), on every backend."""

    sft_steps: int = option(20, "SFT optimizer steps before GRPO.")
    sft_data: str = option("traces", lambda: "What SFT imitates: " + "; ".join(
        f"{name}: {what}" for name, what in SFT_SOURCES.items()) + ".")
    sft_learning_rate: float = option(1e-5, "SFT learning rate.")
    sft_batch_size: int = option(8, "Examples per SFT step.")

    def __post_init__(self) -> None:
        for name in ("sft_steps", "sft_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got "
                                  f"{getattr(self, name)}")
        _check_source(self.sft_data)
        if not 0 < self.sft_learning_rate < 1:
            raise ConfigError(f"--sft-learning-rate: must be in (0, 1), got "
                              f"{self.sft_learning_rate}")


@dataclass(frozen=True)
class SftData:
    """The SFT examples of one run: `examples` (problem_id, origin, prompt, completion, messages),
    `source` (a key of SFT_SOURCES), `problems` the hard training problems they were drawn for."""

    source: str
    examples: tuple[dict[str, Any], ...]
    problems: int

    def line(self) -> str:
        covered = len({e["problem_id"] for e in self.examples})
        return (f"{len(self.examples)} examples ({self.source}) for {covered} of {self.problems} "
                "hard training problems")

    def describe(self) -> dict[str, Any]:
        origins: dict[str, int] = {}
        for e in self.examples:
            origins[e["origin"]] = origins.get(e["origin"], 0) + 1
        return {"source": self.source, "examples": len(self.examples),
                "problems_covered": len({e["problem_id"] for e in self.examples}),
                "hard_training_problems": self.problems, "origins": origins}


def _read_rows(path: Path, columns: list[str]) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: no such file (the SFT stage reads the build folder of "
                        "pope-data build; give --export OUT/export of a finished build)")
    try:
        return pq.read_table(path, columns=columns).to_pylist()
    except (OSError, KeyError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: cannot read column(s) {columns} ({exc})") from None


@contextlib.contextmanager
def _journal(build: Path) -> Iterator[Journal]:
    """The build's journal, opened read-only (a finished build is never changed)."""
    from pope_data.build import JOURNAL
    from pope_data.journal import Journal

    path = build / JOURNAL
    if not path.is_file():
        raise DataError(f"{path}: no such file; --sft-data traces reads the correct samples the "
                        "build journaled (or use --sft-data solutions)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{path}: cannot open the journal ({exc})") from None
    try:
        yield Journal(conn, path)
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{path}: not a readable journal ({exc})") from None
    finally:
        conn.close()


def _correct_texts(rows: Iterator[ProbeRow], journal: Path) -> dict[tuple[str, int], list[str]]:
    """Correct sample texts per (problem, prefix segments), in the order they were journaled;
    DataError when the journal holds samples but kept none of their texts (--retention none)."""
    found: dict[tuple[str, int], list[str]] = {}
    samples = kept = 0
    for row in rows:
        samples += row.samples
        kept += len(row.texts)
        for text, status in zip(row.texts, row.statuses):
            if status == "correct" and text.strip():
                found.setdefault((row.problem_id, row.prefix_segments), []).append(text.strip())
    if samples and not kept:
        raise DataError(f"{journal}: the build kept no sample texts (--retention none); rebuild "
                        "with --retention correct (the default) or use --sft-data solutions")
    return found


def _traces(build: Path, export: Path, hard: dict[str, list]) -> list[dict[str, Any]]:
    """Per hard training problem with a minimal prefix i*: prefix + each correct continuation."""
    chosen = {r["problem_id"]: r for r in _read_rows(
        export / "prefixes" / "train.parquet",
        ["problem_id", "prefix_segments", "prefix_text", "fallback"]) if not r["fallback"]}
    with _journal(build) as journal:
        texts = _correct_texts(journal.rows(PREFIX_STAGE, with_texts=True), journal.path)
    examples = []
    for pid in hard:
        choice = chosen.get(pid)
        if choice is None:
            continue  # no i* (fallback cut or no solution): no guided rollout was correct
        for trace in texts.get((pid, choice["prefix_segments"]), []):
            examples.append(_example(pid, hard[pid], f"{choice['prefix_text'].rstrip()}\n{trace}",
                                     "trace"))
    return examples


def _solutions(build: Path, hard: dict[str, list]) -> list[dict[str, Any]]:
    """Per hard training problem: its source solution, else the oracle's verified one."""
    from pope_data.build import JOURNAL
    from pope_data.oracle import STAGE as SOLVE_STAGE

    source = {r["id"]: r["solution"] for r in _read_rows(build / CURATE_TABLE, ["id", "solution"])
              if r["solution"] and r["solution"].strip()}
    oracle: dict[tuple[str, int], list[str]] = {}
    if (build / JOURNAL).is_file() and any(pid not in source for pid in hard):
        with _journal(build) as journal:
            oracle = _correct_texts(journal.rows(SOLVE_STAGE, with_texts=True), journal.path)
    examples = []
    for pid, prompt in hard.items():
        if pid in source:
            examples.append(_example(pid, prompt, source[pid].strip(), "source solution"))
        elif oracle.get((pid, 0)):
            # pope_data.oracle keeps the first verified sample as the problem's solution.
            examples.append(_example(pid, prompt, oracle[(pid, 0)][0], "oracle solution"))
    return examples


def _example(pid: str, prompt: list, completion: str, origin: str) -> dict[str, Any]:
    answer = [{"role": "assistant", "content": completion}]
    return {"problem_id": pid, "origin": origin, "prompt": prompt, "completion": answer,
            "messages": [*prompt, *answer]}


def sft_data(export: Path, source: str) -> SftData:
    """SFT examples for the hard problems of the export's train split (never its validation
    split), read from the build folder that holds `export` (OUT of `pope-data build --out OUT`).
    Prompts are the unguided ones the RL stage trains on; DataError when there are none."""
    _check_source(source)
    export = Path(export).resolve()
    hard: dict[str, list] = {}
    for row in _read_rows(export / "hard" / "train.parquet", ["prompt", "extra_info"]):
        hard.setdefault(row["extra_info"]["problem_id"], row["prompt"])
    build = export.parent
    examples = _traces(build, export, hard) if source == "traces" else _solutions(build, hard)
    if not examples:
        what = ("a correct guided sample at its minimal prefix" if source == "traces"
                else "a solution")
        raise DataError(f"--sft-data {source}: none of the {len(hard)} hard training problems of "
                        f"{export} has {what} in {build}; nothing to fine-tune on")
    return SftData(source=source, examples=tuple(examples), problems=len(hard))


def _schema():
    import pyarrow as pa

    turns = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    return pa.schema([("problem_id", pa.string()), ("origin", pa.string()), ("prompt", turns),
                      ("completion", turns), ("messages", turns)])


def write_sft_data(data: SftData, path: Path) -> Path:
    """The examples as parquet: `prompt` + `completion` (TRL's prompt-completion format) and
    `messages` (the same conversation whole, verl's multi-turn SFT format)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(list(data.examples), schema=_schema()), tmp)
    return path
