"""Problem sources (Omni-MATH, DAPO-Math-17k, any file or Hub dataset, synthetic) -> Problem records.

`load_problems("omni-math", path=..., difficulty=(5, None))` or `load_problems("synthetic", limit=24)`;
rows that cannot be normalised go to the Quarantine with their row number, never silently dropped.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_data.opchain import OpchainOptions, generate_opchain
from pope_data.organism import OrganismOptions, generate_organism
from pope_data.records import Problem, RowCounts
from pope_data.sharding import in_shard
from pope_data.synthetic import generate_synthetic
from pope_eval.datafiles import (
    Quarantine,
    RowReader,
    file_sha256,
    get_field,
    hub_rows,
    iter_rows,
    parse_column_map,
    truncated,
)
from pope_eval.errors import ConfigError
from pope_eval.registry import Registry

log = logging.getLogger(__name__)

# DAPO-Math-17k wraps every problem in this instruction (quoted in tests/data/README.md).
DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of "
    "the form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'


@dataclass(frozen=True)
class SourceSpec:
    """A named source: how it reads rows (Hub id and split, column mapping) or makes them
    (`generate`), its licence (a Hub licence id, inherited by published datasets) and who wrote
    the solutions it ships.

    A generator source is called as `generate(count, seed=seed, **options)`. Its keywords come
    from `option_class`, a dataclass of `pope_eval.options.option` fields set on the command line
    as `--source-option KEY=VALUE`, and from `options`, which maps keywords to BuildConfig fields
    (the synthetic source's `--synthetic-difficulty`). It takes `default_limit` problems unless
    --limit says otherwise.
    """

    hub_id: str | None = None
    split: str = "train"
    columns: Mapping[str, str] = field(default_factory=dict)  # our field -> the source's column
    id_prefix: str = ""
    normalise: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    dedup: bool = False
    license: str = "other"  # unknown provenance (a user's file or Hub id)
    solution_origin: str = "dataset"  # human, dataset (authorship unknown), generator:...
    generate: Callable[..., list[Problem]] | None = None
    options: Mapping[str, str] = field(default_factory=dict)  # generator keyword -> config field
    option_class: type | None = None  # the generator's own options (--source-option KEY=VALUE)
    default_limit: int | None = None  # problems taken without --limit (None: every row)
    # False for problems made here: they cannot overlap evaluation sets, so decontamination
    # is skipped for them.
    can_overlap_eval_sets: bool = True
    description: str | None = None  # how a dataset card names a source that reads no file

    def __post_init__(self) -> None:
        if self.generate is not None and self.default_limit is None:
            raise ValueError("SourceSpec: a generator source needs a default_limit")

    def generator_options(self, config: Any) -> dict[str, Any]:
        """The generator's keyword arguments from a BuildConfig (empty for a file source)."""
        out = {keyword: getattr(config, name) for keyword, name in self.options.items()}
        out.update(self.parse_source_options(config.source_options))
        return out

    def parse_source_options(self, items: Iterable[str]) -> dict[str, Any]:
        """`("difficulty=10", "restate=false")` -> the option class's values, checked and typed;
        an unknown key or a value of the wrong type is a ConfigError naming --source-option."""
        items = tuple(items)
        if not items:
            return {}
        if self.option_class is None:
            raise ConfigError("--source-option: this source takes no options")
        import dataclasses
        import typing

        types = typing.get_type_hints(self.option_class)
        names = [f.name for f in dataclasses.fields(self.option_class)]
        given: dict[str, Any] = {}
        for item in items:
            key, sep, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in names:
                raise ConfigError(f"--source-option {item!r}: expected KEY=VALUE with KEY one of "
                                  f"{', '.join(names)}")
            if key in given:
                raise ConfigError(f"--source-option {key}: given twice ({key}={given[key]!r} "
                                  f"and {item!r}); give each key once")
            given[key] = _typed(types[key], raw.strip(), key)
        try:
            return dataclasses.asdict(self.option_class(**given))
        except ConfigError as exc:  # the option class's own range checks name the key
            raise ConfigError(f"--source-option {exc}") from None


# How a --source-option value's type is named in errors.
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def _typed(tp: Any, raw: str, key: str) -> Any:
    """A --source-option value as the option's type (int, float, bool or text)."""
    try:
        if tp is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        value = tp(raw) if tp in (int, float, str) else raw
    except ValueError:
        raise ConfigError(f"--source-option {key}: must be "
                          f"{_TYPE_WORDS.get(tp, getattr(tp, '__name__', str(tp)))}, got "
                          f"{raw!r}") from None
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"--source-option {key}: must be a finite number, got {raw!r}")
    return value


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


SOURCES: Registry[SourceSpec] = Registry("source", option="--source")
SOURCES.add("synthetic", SourceSpec(
    generate=generate_synthetic, options={"difficulty": "synthetic_difficulty"},
    default_limit=16, id_prefix="synthetic-", license="apache-2.0",
    solution_origin="generator:pope_data.synthetic", can_overlap_eval_sets=False,
    description="synthetic arithmetic problems generated by `pope_data.synthetic`"))
SOURCES.add("organism", SourceSpec(
    generate=generate_organism, option_class=OrganismOptions, default_limit=32,
    id_prefix="organism-", license="apache-2.0", solution_origin="generator:pope_data.organism",
    can_overlap_eval_sets=False,
    description="running sums of the model organism's task family, generated by "
                "`pope_data.organism`"))
SOURCES.add("opchain", SourceSpec(
    generate=generate_opchain, option_class=OpchainOptions, default_limit=32, id_prefix="opchain-",
    license="apache-2.0", solution_origin="generator:pope_data.opchain",
    can_overlap_eval_sets=False, description="chains of common and rare operations of the second "
    "organism's task family, generated by `pope_data.opchain`"))
SOURCES.add("omni-math", SourceSpec(
    hub_id="KbsdJames/Omni-MATH", split="test",
    columns={"problem": "problem", "solution": "solution", "answer": "answer",
             "difficulty": "difficulty", "domain": "domain", "id": "id"},
    id_prefix="omni-math-", license="apache-2.0", solution_origin="human"))
SOURCES.add("dapo", SourceSpec(
    hub_id="BytedTsinghua-SIA/DAPO-Math-17k", split="train",
    columns={"problem": "prompt", "answer": "reward_model.ground_truth", "id": "extra_info.index"},
    id_prefix="dapo-", normalise=_dapo_row, dedup=True, license="apache-2.0"))
SOURCES.add("dapo-processed", SourceSpec(
    hub_id="open-r1/DAPO-Math-17k-Processed", split="train",
    columns={"problem": "prompt", "answer": "solution", "id": "extra_info.index"},
    id_prefix="dapo-", normalise=_dapo_row, dedup=True, license="apache-2.0"))
SOURCES.add("generic", SourceSpec())
# The fields --columns may map (problem and answer are required, the rest optional).
FIELDS = ("id", "problem", "answer", "solution", "difficulty", "domain")


def source_names() -> list[str]:
    """Choices for --source, in registration order."""
    return SOURCES.names()


def get_source(name: str) -> SourceSpec:
    """The spec registered as `name`; an unknown name is a ConfigError naming the choices."""
    if name not in SOURCES:
        raise ConfigError(f"--source: unknown {name!r}; choose one of "
                          f"{', '.join(source_names())}")
    return SOURCES[name]


@dataclass
class Loaded:
    """What a load read and left out (`counts`), and the source row of each problem it kept
    (`origin`: id -> (row number, the row with long texts cut)), so that a later check
    quarantines a problem under its row number."""

    counts: RowCounts = field(default_factory=RowCounts)
    origin: dict[str, tuple[int, Any]] = field(default_factory=dict)

    def reject(self, quarantine: Quarantine, source: str, problem_id: str, reason: str) -> None:
        """Quarantine a kept problem under its source row (a later check refused it)."""
        row, raw = self.origin[problem_id]
        quarantine.add(source, row, reason, raw)
        self.counts.rejected += 1
        self.counts.kept -= 1


def normalise_text(text: str) -> str:
    """Key for deduplication: case, whitespace and LaTeX spacing do not count."""
    t = re.sub(r"\\[,;:! ]|~", " ", text.lower())
    t = re.sub(r"\s+", " ", t)
    return t.strip()


def _stable_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha256(normalise_text(text).encode()).hexdigest()[:16]


def normalise_rows(
    rows: Iterable[tuple[int, Any]], spec: SourceSpec, *, origin: str, source_name: str,
    quarantine: Quarantine, columns: dict[str, str] | None = None, loaded: Loaded | None = None,
) -> list[Problem]:
    """Rows -> Problems. The shared `RowReader` judges problem, answer and ids; here come the
    optional solution / difficulty / domain and deduplication. Bad rows are quarantined
    (origin + row number + reason); `loaded` receives the counts and each problem's row."""
    loaded = loaded if loaded is not None else Loaded()
    quarantined_before = len(quarantine)
    rows = _counted(rows, loaded.counts)
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
        loaded.origin[pid] = (r.rownum, truncated(row))
    if duplicates:
        log.info("%s: %d duplicate problems removed", origin, duplicates)
    loaded.counts.duplicates += duplicates
    loaded.counts.unreadable += len(quarantine) - quarantined_before
    return out


def _counted(rows: Iterable[tuple[int, Any]], counts: RowCounts) -> Iterator[tuple[int, Any]]:
    for item in rows:
        counts.read += 1
        yield item


def load_problems(
    source: str, *, path: str | None = None, hub_id: str | None = None,
    columns: str | dict[str, str] | None = None, limit: int | None = None,
    difficulty: tuple[float | None, float | None] | None = None, domain: str | None = None,
    seed: int = 0, quarantine: Quarantine | None = None,
    options: Mapping[str, Any] | None = None, shard: tuple[int, int] | None = None,
    revision: dict[str, str] | None = None, loaded: Loaded | None = None,
) -> list[Problem]:
    """Load a source, keep the problems of `shard` (see `pope_data.shards.parse_shard`), apply
    the filters, then take the first `limit` (default: the source's `default_limit`; every row
    for a file source). `path` reads a local jsonl/json/parquet file, `hub_id` overrides the Hub
    dataset; a generator source needs neither (`limit` = how many to make, `options` = its
    keywords). A `revision` dict receives where the rows came from and a content digest
    (provenance); `loaded` receives the counts and each problem's source row."""
    quarantine = quarantine if quarantine is not None else Quarantine()
    loaded = loaded if loaded is not None else Loaded()
    spec = get_source(source)
    limit = limit if limit is not None else spec.default_limit
    if spec.generate is not None:
        problems = spec.generate(limit, seed=seed, **(options or {}))
        loaded.counts.read += len(problems)
        for i, p in enumerate(problems, start=1):
            loaded.origin[p.id] = (i, truncated(p.to_dict()))
        if revision is not None:
            from pope_eval.runinfo import package_versions

            revision.update(dataset=source, revision=(
                f"pope {package_versions().get('pope', '?')} generator, seed {seed}"
                + "".join(f", {k} {v}" for k, v in (options or {}).items())))
        return _select(problems, loaded, shard, difficulty, domain, limit)
    if path is not None:
        rows, origin = iter_rows(path), str(path)
    elif hub_id is not None or spec.hub_id is not None:
        hid = hub_id or spec.hub_id
        rows, origin = hub_rows(hid, spec.split, local="a local file with --path"), hid
    else:
        raise ConfigError(f"source {source!r}: give --path (a local file) or --hub-id")
    problems = normalise_rows(rows, spec, origin=origin, source_name=source,
                              quarantine=quarantine,
                              columns=parse_column_map(columns, fields=FIELDS), loaded=loaded)
    if revision is not None:
        # A file by its name only: published rows should not carry local folder names.
        where = Path(path).name if path is not None else origin
        digest = file_sha256(path) if path is not None else rows.sha256
        revision.update(dataset=f"{source}:{where}", revision=f"sha256:{digest}")
    return _select(problems, loaded, shard, difficulty, domain, limit)


def _select(problems: list[Problem], loaded: Loaded, shard: tuple[int, int] | None,
            difficulty: tuple[float | None, float | None] | None, domain: str | None,
            limit: int | None) -> list[Problem]:
    """This shard's problems, then the filters, then the first `limit`: counted in `loaded`."""
    counts = loaded.counts
    mine = [p for p in problems if in_shard(p.id, shard)]
    counts.other_shards += len(problems) - len(mine)
    kept = _filter(mine, difficulty, domain)
    counts.filtered += len(mine) - len(kept)
    if limit is not None and len(kept) > limit:
        counts.over_limit += len(kept) - limit
        kept = kept[:limit]
    counts.kept += len(kept)
    ids = {p.id for p in kept}
    loaded.origin = {pid: row for pid, row in loaded.origin.items() if pid in ids}
    return kept


def _filter(problems: list[Problem], difficulty, domain) -> list[Problem]:
    if difficulty is not None:
        lo, hi = difficulty
        problems = [p for p in problems if p.difficulty is not None
                    and (lo is None or p.difficulty >= lo) and (hi is None or p.difficulty <= hi)]
    if domain:
        problems = [p for p in problems if p.domain and domain.lower() in p.domain.lower()]
    return problems
