"""Problem sources (Omni-MATH, DAPO-Math-17k, any file or Hub dataset, synthetic) -> Problem records.

`load_problems("omni-math", path=..., difficulty=(5, None))` or `load_problems("synthetic", limit=24)`;
rows that cannot be normalised go to the Quarantine with their row number, never silently dropped.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pope_data.records import Problem
from pope_eval.datafiles import (
    Quarantine,
    RowReader,
    file_sha256,
    get_field,
    hub_rows,
    iter_rows,
    parse_column_map,
)
from pope_eval.errors import ConfigError

log = logging.getLogger(__name__)

# DAPO-Math-17k wraps every problem in this instruction (quoted in tests/data/README.md).
DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of "
    "the form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'


@dataclass(frozen=True)
class SourceSpec:
    """How a named source reads rows (Hub id and split, column mapping), its licence (a Hub
    licence id, inherited by published datasets) and who wrote the solutions it ships."""

    hub_id: str | None
    split: str
    columns: dict[str, str]  # our field -> the source's column (dotted for nested)
    id_prefix: str
    normalise: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    dedup: bool = False
    license: str = "other"  # unknown provenance (a user's file or Hub id)
    solution_origin: str = "dataset"  # human, dataset (authorship unknown), generator:...


def strip_dapo_wrapper(prompt: str) -> str:
    """The bare problem from a DAPO prompt (unchanged if it carries no wrapper)."""
    text = prompt.strip()
    if text.startswith(DAPO_PREFIX.strip()[:60]):
        text = text[len(DAPO_PREFIX.strip()):]
    if text.endswith(DAPO_SUFFIX.strip()):
        text = text[: -len(DAPO_SUFFIX.strip())]
    return text.strip()


def _dapo_row(row: dict[str, Any]) -> dict[str, Any]:
    prompt = row.get("prompt")
    if isinstance(prompt, list):  # chat form: [{"role": "user", "content": ...}]
        prompt = next((m.get("content") for m in prompt if isinstance(m, dict)
                       and m.get("role") == "user"), None)
    out = dict(row)
    if isinstance(prompt, str):
        out["prompt"] = strip_dapo_wrapper(prompt)
    return out


SOURCES: dict[str, SourceSpec] = {
    "omni-math": SourceSpec(
        hub_id="KbsdJames/Omni-MATH", split="test",
        columns={"problem": "problem", "solution": "solution", "answer": "answer",
                 "difficulty": "difficulty", "domain": "domain", "id": "id"},
        id_prefix="omni-math-", license="apache-2.0", solution_origin="human"),
    "dapo": SourceSpec(
        hub_id="BytedTsinghua-SIA/DAPO-Math-17k", split="train",
        columns={"problem": "prompt", "answer": "reward_model.ground_truth",
                 "id": "extra_info.index"},
        id_prefix="dapo-", normalise=_dapo_row, dedup=True, license="apache-2.0"),
    "dapo-processed": SourceSpec(
        hub_id="open-r1/DAPO-Math-17k-Processed", split="train",
        columns={"problem": "prompt", "answer": "solution", "id": "extra_info.index"},
        id_prefix="dapo-", normalise=_dapo_row, dedup=True, license="apache-2.0"),
    "generic": SourceSpec(hub_id=None, split="train", columns={}, id_prefix=""),
}
# The fields --columns may map (problem and answer are required, the rest optional).
FIELDS = ("id", "problem", "answer", "solution", "difficulty", "domain")


def normalise_text(text: str) -> str:
    """Key for deduplication: case, whitespace and LaTeX spacing do not count."""
    t = re.sub(r"\\[,;:! ]|~", " ", text.lower())
    t = re.sub(r"\s+", " ", t)
    return t.strip()


def _stable_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha256(normalise_text(text).encode()).hexdigest()[:16]


def normalise_rows(
    rows: Iterable[tuple[int, Any]], spec: SourceSpec, *, origin: str, source_name: str,
    quarantine: Quarantine, columns: dict[str, str] | None = None,
) -> list[Problem]:
    """Rows -> Problems. The shared `RowReader` judges problem, answer and ids; here come the
    optional solution / difficulty / domain and deduplication. Bad rows are quarantined
    (origin + row number + reason)."""
    cols = {**spec.columns, **(columns or {})}
    reader = RowReader(origin, cols, quarantine, transform=spec.normalise)
    id_col = cols.get("id", "id")
    out: list[Problem] = []
    seen_text: set[str] = set()
    duplicates = 0
    for r in reader.rows(rows):
        row = r.row
        solution = reader.value(row, "solution")
        if solution is not None and not isinstance(solution, str):
            quarantine.add(origin, r.rownum, f"solution is {type(solution).__name__}, not text",
                           row)
            continue
        if isinstance(solution, str) and not solution.strip():
            solution = None
        difficulty = reader.value(row, "difficulty")
        if difficulty is not None:
            try:
                difficulty = float(difficulty)
            except (TypeError, ValueError):
                quarantine.add(origin, r.rownum, f"difficulty {difficulty!r} is not a number", row)
                continue
        domain = reader.value(row, "domain")
        if isinstance(domain, list):
            domain = "; ".join(map(str, domain))
        key = normalise_text(r.problem)
        if spec.dedup and key in seen_text:
            duplicates += 1
            continue
        raw_id = get_field(row, id_col)
        if raw_id is not None:
            # Ids from a source column (e.g. DAPO's extra_info.index) get the source's prefix.
            pid = f"{spec.id_prefix}{raw_id}" if id_col != "id" else str(raw_id)
        elif isinstance(row.get("id"), str | int):
            pid = str(row["id"])
        else:
            pid = _stable_id(spec.id_prefix or f"{source_name}-", r.problem)
        if not reader.claim_id(r.rownum, row, pid):
            continue
        seen_text.add(key)
        out.append(Problem(id=pid, problem=r.problem, answer=r.answer, source=source_name,
                           solution=solution, difficulty=difficulty,
                           domain=str(domain) if domain is not None else None))
    if duplicates:
        log.info("%s: %d duplicate problems removed", origin, duplicates)
    return out


# The offline generator is not a file reader, so it is not in SOURCES; these are its facts.
SYNTHETIC = SourceSpec(hub_id=None, split="", columns={}, id_prefix="synthetic-",
                       license="apache-2.0", solution_origin="generator:pope_data.synthetic")


def source_spec(source: str) -> SourceSpec | None:
    """The registered facts of a source name (None for an unknown name)."""
    return SYNTHETIC if source == "synthetic" else SOURCES.get(source)


def load_problems(
    source: str, *, path: str | None = None, hub_id: str | None = None,
    columns: str | dict[str, str] | None = None, limit: int | None = None,
    difficulty: tuple[float | None, float | None] | None = None, domain: str | None = None,
    seed: int = 0, quarantine: Quarantine | None = None, synthetic_difficulty: int = 2,
    revision: dict[str, str] | None = None,
) -> list[Problem]:
    """Load a source. `path` reads a local jsonl/json/parquet file, `hub_id` overrides the Hub
    dataset; filters apply before `limit`. `synthetic` needs neither (limit = count, default 24).
    A `revision` dict receives where the rows came from and a content digest (provenance)."""
    quarantine = quarantine if quarantine is not None else Quarantine()
    if source == "synthetic":
        from pope_data.synthetic import generate_synthetic

        problems = generate_synthetic(limit or 24, seed=seed, difficulty=synthetic_difficulty)
        if revision is not None:
            from pope_eval.runinfo import package_versions

            revision.update(dataset="synthetic", revision=(
                f"pope {package_versions().get('pope', '?')} generator, seed {seed}, "
                f"difficulty {synthetic_difficulty}"))
        return _filter(problems, difficulty, domain)
    if source not in SOURCES:
        raise ConfigError(f"source: unknown {source!r}; choose one of "
                          f"{', '.join([*SOURCES, 'synthetic'])}")
    spec = SOURCES[source]
    if path is not None:
        rows, origin = iter_rows(path), str(path)
    elif hub_id is not None or spec.hub_id is not None:
        hid = hub_id or spec.hub_id
        rows, origin = hub_rows(hid, spec.split, local="a local file with --path"), hid
    else:
        raise ConfigError(f"source {source!r}: give --path (a local file) or --hub-id")
    problems = normalise_rows(rows, spec, origin=origin, source_name=source,
                              quarantine=quarantine,
                              columns=parse_column_map(columns, fields=FIELDS))
    if revision is not None:
        # A file by its name only: published rows should not carry local folder names.
        where = Path(path).name if path is not None else origin
        digest = file_sha256(path) if path is not None else rows.sha256
        revision.update(dataset=f"{source}:{where}", revision=f"sha256:{digest}")
    problems = _filter(problems, difficulty, domain)
    return problems[:limit] if limit is not None else problems


def _filter(problems: list[Problem], difficulty, domain) -> list[Problem]:
    if difficulty is not None:
        lo, hi = difficulty
        problems = [p for p in problems if p.difficulty is not None
                    and (lo is None or p.difficulty >= lo) and (hi is None or p.difficulty <= hi)]
    if domain:
        problems = [p for p in problems if p.domain and domain.lower() in p.domain.lower()]
    return problems
