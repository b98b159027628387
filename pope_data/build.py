"""`pope-data build` as a library call: load -> curate (hard set) -> prefix search -> export -> report.

`run_build(BuildConfig(...), progress=...)` is resumable as a whole: every finished probe is in the
journal, so a rerun with the same folder generates only what is missing; `merge` joins shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pope_data.export import (
    CONFIGS,
    PREFIX_SCHEMA,
    SPLITS,
    PrefixChoice,
    plot_prefix_fractions,
    write_export,
    write_table,
)
from pope_data.journal import Journal
from pope_data.oracle import solve
from pope_data.records import Problem
from pope_data.search import DEFAULT_STRATEGY, DEFAULT_WAVE_SIZE, make_strategy
from pope_data.segments import Segmentation, fallback_prefix, segment
from pope_data.service import SearchService, SearchTask, ServiceProgress
from pope_data.sources import load_problems
from pope_eval.datafiles import Quarantine
from pope_eval.engines import Engine, EngineConfig, make_engine, resolve_engine_name
from pope_eval.errors import ConfigError, DataError
from pope_eval.runinfo import RUN_CONFIG, open_run_dir, write_json_atomic

log = logging.getLogger(__name__)


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """'2/8' -> (2, 8): this process takes shard 2 of 8 (0-based)."""
    if not spec:
        return None
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ConfigError(f"shard: expected I/N (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard: need 0 <= I < N, got {spec!r}")
    return i, n


def in_shard(problem_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    h = int.from_bytes(hashlib.sha256(f"shard:{problem_id}".encode()).digest()[:8], "little")
    return h % shard[1] == shard[0]


@dataclass(frozen=True)
class BuildConfig:
    """Everything `pope-data build` decides; recorded in run_config.json and checked on resume.

    Defaults are the offline demo: 16 synthetic problems, the bundled tiny model, short rollouts
    (finishes in minutes on a 2-core CPU). For the paper's setup use k=128, n=8 and long rollouts.
    """

    out: str = "pope-out"
    source: str = "synthetic"
    path: str | None = None
    hub_id: str | None = None
    columns: str | None = None
    limit: int | None = 16
    difficulty_min: float | None = None
    difficulty_max: float | None = None
    domain: str | None = None
    synthetic_difficulty: int = 2
    engine: EngineConfig = field(default_factory=EngineConfig)
    k: int = 4  # unguided samples per problem for the hard set (paper: 128)
    n: int = 4  # samples per probed prefix
    wave_size: int | None = DEFAULT_WAVE_SIZE
    strategy: str = DEFAULT_STRATEGY
    segmenter: str = "steps"
    include_full_solution: bool = False  # the complete solution is not guidance
    max_tokens: int = 192
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    validation_fraction: float = 0.1
    shard: str | None = None
    samples_per_batch: int = 256
    grading_timeout: float = 5.0
    # Drop training problems that overlap the evaluation sets (names or files). Synthetic
    # problems are generated here and cannot overlap them: the step is skipped for them.
    decontaminate: bool = True
    decontam_against: tuple[str, ...] = ("aime2025", "hmmt_feb_2025")
    decontam_ngram: int = 8
    decontam_threshold: float = 0.5
    # Oracle solutions for hard problems without one (answer-only sources such as DAPO).
    solve: bool = False
    oracle: EngineConfig | None = None  # the stronger model; None = the base model's engine
    solve_n: int = 4
    solve_max_tokens: int = 4096

    def __post_init__(self) -> None:
        for name in ("k", "n", "max_tokens", "samples_per_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"BuildConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"BuildConfig.limit: must be >= 1, got {self.limit}")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError("BuildConfig.validation_fraction: must be in [0, 1)")
        if self.temperature <= 0:
            raise ConfigError("BuildConfig.temperature: sampling needs temperature > 0")
        if self.source == "generic" and not (self.path or self.hub_id):
            raise ConfigError("BuildConfig.path: the generic source needs --path or --hub-id")
        parse_shard(self.shard)
        from pope_data.search import strategy_names

        if self.strategy not in strategy_names():
            raise ConfigError(f"BuildConfig.strategy: unknown {self.strategy!r}; choose one of "
                              f"{', '.join(strategy_names())}")

    def fingerprint(self) -> dict[str, Any]:
        d = asdict(self)
        d["engine"] = self.engine.fingerprint()
        d["decontam_against"] = list(self.decontam_against)
        if self.oracle is not None:
            d["oracle"] = self.oracle.fingerprint()
        for key in ("out", "samples_per_batch"):
            d.pop(key)
        return d


@dataclass
class BuildSummary:
    out: str
    problems: int
    quarantined: int
    decontaminated: int
    hard: int
    easy: int
    guided: int
    fallback: int
    no_solution: int
    oracle_unsolved: int
    tokens: dict[str, int]
    counts: dict[str, dict[str, int]]


class LazyEngine(Engine):
    """Builds the real engine on first use: a resumed, finished build never loads a model."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.name = resolve_engine_name(config)
        self.model = config.model
        self._engine: Engine | None = None

    def _generate(self, requests, progress):
        if self._engine is None:
            self._engine = make_engine(self.config)
        return self._engine._generate(requests, progress)

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.model}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


ProgressFn = Callable[[ServiceProgress], None]


def run_build(config: BuildConfig, *, progress: ProgressFn | None = None,
              engine: Engine | None = None, oracle_engine: Engine | None = None,
              command: str | None = None) -> BuildSummary:
    out = open_run_dir(config.out, config.fingerprint(), command=command)
    quarantine = Quarantine()
    problems = load_problems(
        config.source, path=config.path, hub_id=config.hub_id, columns=config.columns,
        limit=config.limit, seed=config.seed, quarantine=quarantine,
        difficulty=(None if config.difficulty_min is None and config.difficulty_max is None
                    else (config.difficulty_min, config.difficulty_max)),
        domain=config.domain, synthetic_difficulty=config.synthetic_difficulty,
    )
    shard = parse_shard(config.shard)
    problems = [p for p in problems if in_shard(p.id, shard)]
    quarantine.write(out / "quarantine.jsonl")
    problems, decontam_removed = _decontaminate(config, problems, out)
    write_table([p.to_dict() for p in problems], _problem_schema(), out / "problems.parquet")
    if not problems:
        raise DataError(f"no usable problems from {config.path or config.source} "
                        f"({len(quarantine)} rows quarantined, see {out / 'quarantine.jsonl'})")

    journal = Journal.open(out / "journal.sqlite", config.fingerprint())
    owned = engine is None
    eng = engine if engine is not None else LazyEngine(config.engine)
    service = SearchService(eng, journal, max_tokens=config.max_tokens,
                            temperature=config.temperature, top_p=config.top_p, seed=config.seed,
                            samples_per_batch=config.samples_per_batch,
                            grading_timeout=config.grading_timeout, progress=progress)
    try:
        # 1. The hard set: k unguided samples per problem, hard = none correct.
        curate = service.run("curate", [
            SearchTask(p, make_strategy("once", problem_id=p.id, min_prefix=0, max_prefix=0,
                                        n=config.k, wave_size=config.k)) for p in problems])
        solved = _correct_counts(journal, "curate")
        hard = [p for p in problems if curate[p.id].i_star is None]
        hard_ids = {p.id for p in hard}
        easy = [p for p in problems if curate[p.id].i_star is not None]
        write_table([{**p.to_dict(), "k": config.k, "correct": solved.get(p.id, 0),
                      "hard": p.id in hard_ids} for p in problems],
                    _problem_schema(extra=True), out / "curate.parquet")

        # 2. Oracle solutions, when asked, for hard problems that have none.
        unsolved_oracle: list[str] = []
        if config.solve:
            missing = [p for p in hard if not p.solution]
            owned_oracle = oracle_engine is None and config.oracle is not None
            if oracle_engine is None:
                oracle_engine = LazyEngine(config.oracle) if config.oracle else eng
            oracle_service = SearchService(
                oracle_engine, journal, max_tokens=config.solve_max_tokens,
                temperature=config.temperature, top_p=config.top_p, seed=config.seed,
                samples_per_batch=config.samples_per_batch,
                grading_timeout=config.grading_timeout, progress=progress)
            try:
                solved, unsolved_oracle = solve(missing, oracle_service, n=config.solve_n)
            finally:
                if owned_oracle:
                    oracle_engine.close()
            with_solution = {p.id: p for p in solved}
            hard = [with_solution.get(p.id, p) for p in hard]

        # 3. Minimal prefixes for hard problems with an oracle solution.
        segs: dict[str, Segmentation] = {}
        tasks, no_solution, direct_fallback = [], [], []
        for p in hard:
            if not p.solution:
                no_solution.append(p.id)
                continue
            seg = segment(p.solution, config.segmenter)
            segs[p.id] = seg
            top = len(seg) if config.include_full_solution else len(seg) - 1
            if top < 1:
                direct_fallback.append(p.id)  # one-segment solution: only the random cut
                continue
            tasks.append(SearchTask(p, make_strategy(
                config.strategy, problem_id=p.id, min_prefix=1, max_prefix=top, n=config.n,
                wave_size=config.wave_size, seed=config.seed), seg))
        if no_solution:
            log.warning("%d hard problems have no solution and get no guided row (unguided "
                        "rows are still exported); build with --solve for answer-only sources",
                        len(no_solution))
        results = service.run("prefix", tasks)
    finally:
        if owned:
            eng.close()

    choices: dict[str, PrefixChoice] = {}
    by_id = {p.id: p for p in hard}
    for pid in [t.problem.id for t in tasks] + direct_fallback:
        seg = segs[pid]
        r = results.get(pid)
        if r is not None and r.i_star is not None:
            text, frac, seg_count = seg.prefix(r.i_star), seg.fraction(r.i_star), r.i_star
        else:
            text, frac = fallback_prefix(by_id[pid].solution, f"{config.seed}:{pid}")
            seg_count = 0
        choices[pid] = PrefixChoice(
            problem_id=pid, num_segments=len(seg), i_star=r.i_star if r else None,
            prefix_segments=seg_count, prefix_fraction=frac, prefix_text=text,
            fallback=r is None or r.i_star is None, probes=r.probes if r else 0,
            samples=r.samples if r else 0, tokens=r.tokens if r else 0)
    write_table([asdict(c) for c in choices.values()], PREFIX_SCHEMA, out / "prefixes.parquet")
    counts = write_export(out, hard, choices, easy=easy,
                          validation_fraction=config.validation_fraction, seed=config.seed)
    tokens = {stage: journal.tokens(stage) for stage in ("curate", "solve", "prefix")}
    journal.close()
    summary = BuildSummary(
        out=str(out), problems=len(problems), quarantined=len(quarantine),
        decontaminated=decontam_removed, hard=len(hard),
        easy=len(easy), guided=len(choices), fallback=sum(c.fallback for c in choices.values()),
        no_solution=len(no_solution), oracle_unsolved=len(unsolved_oracle), tokens=tokens,
        counts=counts)
    write_report(out, config, summary, list(choices.values()))
    write_json_atomic(out / "summary.json", asdict(summary))
    return summary


def _decontaminate(config: BuildConfig, problems: list[Problem],
                   out: Path) -> tuple[list[Problem], int]:
    """Remove eval-set overlaps; writes decontamination.json (what was removed or not checked)."""
    from pope_data.decontam import (
        DecontamResult,
        decontaminate,
        load_eval_sets,
        write_decontamination,
    )

    if not config.decontaminate or config.source == "synthetic":
        reason = ("disabled (--no-decontaminate)" if not config.decontaminate
                  else "synthetic problems are generated; they cannot overlap eval sets")
        write_decontamination(out, DecontamResult(kept=problems, removed=[]),
                              {name: reason for name in config.decontam_against})
        return problems, 0
    eval_sets, not_checked = load_eval_sets(config.decontam_against)
    result = decontaminate(problems, eval_sets=eval_sets, ngram=config.decontam_ngram,
                           threshold=config.decontam_threshold)
    write_decontamination(out, result, not_checked)
    return result.kept, len(result.removed)


def _correct_counts(journal: Journal, stage: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in journal.rows(stage):
        counts[r.problem_id] = counts.get(r.problem_id, 0) + r.correct
    return counts


def _problem_schema(extra: bool = False) -> pa.Schema:
    fields = [("id", pa.string()), ("problem", pa.string()), ("answer", pa.string()),
              ("source", pa.string()), ("solution", pa.string()), ("difficulty", pa.float64()),
              ("domain", pa.string())]
    if extra:
        fields += [("k", pa.int64()), ("correct", pa.int64()), ("hard", pa.bool_())]
    return pa.schema(fields)


def write_report(out: Path, config: BuildConfig, s: BuildSummary,
                 choices: list[PrefixChoice]) -> None:
    plot_prefix_fractions(choices, out / "prefix_fraction.png")
    found = [c for c in choices if not c.fallback]
    lines = [
        "# POPE build report", "",
        f"- source: `{config.path or config.hub_id or config.source}` ({config.source}); "
        f"{s.problems} problems, {s.quarantined} rows quarantined",
        f"- model: `{config.engine.model}` via {resolve_engine_name(config.engine)}; "
        f"temperature {config.temperature}, top_p {config.top_p}, max_tokens {config.max_tokens}, "
        f"seed {config.seed}",
        f"- hard set: {s.hard} hard (0 of k = {config.k} correct), {s.easy} easy",
        f"- prefix search: strategy `{config.strategy}`, n = {config.n}, wave {config.wave_size}, "
        f"segments by `{config.segmenter}`",
        f"- guided problems: {s.guided}; minimal prefix found for {len(found)}, fallback "
        f"(random cut < 1/4) for {s.fallback} "
        f"({s.fallback / s.guided:.0%} fallback rate)" if s.guided else "- guided problems: 0",
        f"- hard problems without a solution (unguided rows only): {s.no_solution}",
        f"- removed by decontamination: {s.decontaminated} (see decontamination.json)",
        f"- oracle solutions: {'asked; ' + str(s.oracle_unsolved) + ' hard problems left unsolved' if config.solve else 'not asked'}",
        f"- generated tokens: curate {s.tokens['curate']:,}, oracle {s.tokens['solve']:,}, "
        f"prefix search {s.tokens['prefix']:,}",
        "", "## Rows per config", "", "| config | train | validation |", "|---|---:|---:|",
    ]
    lines += [f"| {c} | {s.counts[c]['train']} | {s.counts[c]['validation']} |" for c in CONFIGS]
    if found:
        lines += ["", "## i* (segments) of the problems with a minimal prefix", "",
                  "| i* | problems |", "|---:|---:|"]
        hist: dict[int, int] = {}
        for c in found:
            hist[c.i_star] = hist.get(c.i_star, 0) + 1
        lines += [f"| {k} | {v} |" for k, v in sorted(hist.items())]
    lines += ["", "![prefix fractions](prefix_fraction.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")


def merge(shard_dirs: list[str | Path], dest: str | Path) -> dict[str, dict[str, int]]:
    """Join the exports of `--shard i/N` builds; refuses overlaps, gaps and mixed configs."""
    configs, seen = [], {}
    for d in shard_dirs:
        rc = Path(d) / RUN_CONFIG
        if not rc.exists():
            raise DataError(f"{d}: no {RUN_CONFIG}; not a pope-data build folder")
        cfg = json.loads(rc.read_text())["config"]
        shard = parse_shard(cfg.get("shard"))
        if shard is None:
            raise DataError(f"{d}: was not built with --shard")
        if shard in seen:
            raise DataError(f"{d} and {seen[shard]} are both shard {shard[0]}/{shard[1]}")
        seen[shard] = d
        configs.append({k: v for k, v in cfg.items() if k != "shard"})
        if not (Path(d) / "summary.json").exists():
            raise DataError(f"{d}: shard build did not finish (no summary.json)")
    if any(c != configs[0] for c in configs[1:]):
        raise DataError("shards were built with different configurations")
    total = next(iter(seen))[1]
    missing = sorted(set(range(total)) - {i for i, _ in seen})
    if missing or any(n != total for _, n in seen):
        raise DataError(f"missing shard(s) {missing} of {total}")
    dest = Path(dest)
    counts: dict[str, dict[str, int]] = {}
    for config in CONFIGS:
        counts[config] = {}
        for split in SPLITS:
            tables = [pq.read_table(Path(d) / "export" / config / f"{split}.parquet")
                      for d in shard_dirs]
            table = pa.concat_tables(tables)
            (dest / "export" / config).mkdir(parents=True, exist_ok=True)
            pq.write_table(table, dest / "export" / config / f"{split}.parquet")
            counts[config][split] = table.num_rows
    for name in ("prefixes.parquet", "curate.parquet", "problems.parquet"):
        pq.write_table(pa.concat_tables([pq.read_table(Path(d) / name) for d in shard_dirs]),
                       dest / name)
    write_json_atomic(dest / RUN_CONFIG, {"config": {**configs[0], "shard": None},
                                          "merged_from": [str(d) for d in shard_dirs]})
    return counts
