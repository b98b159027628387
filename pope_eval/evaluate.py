"""`pope-eval pass-at-k` as a library call: generate n samples per problem, grade, score pass@k.

`run_pass_at_k(PassAtKConfig(...))` writes summary.json, per_problem.parquet, samples.parquet,
report.md and pass_at_k.png into the run folder, and resumes from finished problems.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pope_eval import passk
from pope_eval.benchmarks import LoadedBenchmark, load_benchmark
from pope_eval.datafiles import Quarantine
from pope_eval.engines import Engine, EngineConfig, GenerationRequest, make_engine
from pope_eval.errors import ConfigError
from pope_eval.grading import STATUSES, grade_many
from pope_eval.prompts import problem_messages
from pope_eval.runinfo import open_run_dir, package_versions, write_json_atomic

log = logging.getLogger(__name__)

PARTS_DIR = "parts"


@dataclass(frozen=True)
class PassAtKConfig:
    """One evaluation run. Defaults follow the paper's base model (Qwen3-4B-Instruct-2507)
    recommended sampling: temperature 0.7, top_p 0.8."""

    data: str = "aime2025"
    out: str = "pope-eval-out"
    engine: EngineConfig = field(default_factory=EngineConfig)
    columns: str | None = None
    n: int = 16
    ks: tuple[int, ...] | None = None  # None = powers of two up to n
    max_tokens: int = 4096
    temperature: float = 0.7
    top_p: float = 0.8
    seed: int = 0
    limit: int | None = None
    grading_timeout: float = 5.0
    problems_per_batch: int = 8  # problems generated (and saved) together
    n_boot: int = 1000

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"--n: must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise ConfigError(f"--max-tokens: must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature: must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p: must be in (0, 1], got {self.top_p}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit: must be >= 1, got {self.limit}")
        if self.problems_per_batch < 1:
            raise ConfigError("problems_per_batch: must be >= 1")
        if self.ks is not None:
            if not self.ks:
                raise ConfigError("--k: empty list")
            for k in self.ks:
                if k < 1:
                    raise ConfigError(f"--k: k must be >= 1, got {k}")
                if k > self.n:
                    raise ConfigError(f"--k: k = {k} is larger than n = {self.n}; pass@k needs k <= n")

    @property
    def resolved_ks(self) -> tuple[int, ...]:
        return tuple(self.ks) if self.ks is not None else tuple(passk.default_ks(self.n))

    def fingerprint(self) -> dict[str, Any]:
        """The fields that decide results; a resumed run must match them exactly."""
        d = asdict(self)
        d["engine"] = self.engine.fingerprint()
        for key in ("out", "ks", "problems_per_batch", "n_boot", "limit"):
            d.pop(key)  # reporting / batching only: changing them never changes a sample
        return d


@dataclass
class EvalProgress:
    problems_total: int
    problems_done: int = 0
    generated_tokens: int = 0


ProgressFn = Callable[[EvalProgress], None]


def problem_seed(seed: int, problem_id: str) -> int:
    """Stable per-problem seed (never Python's hash())."""
    digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def run_pass_at_k(
    config: PassAtKConfig,
    *,
    engine: Engine | None = None,
    progress: ProgressFn | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) an evaluation and write every output; returns the summary dict."""
    quarantine = Quarantine()
    bench = load_benchmark(
        config.data, columns=config.columns, limit=config.limit, quarantine=quarantine
    )
    if not bench.items:
        raise ConfigError(f"{config.data}: no usable problems (quarantined: {len(quarantine)})")
    fingerprint = config.fingerprint()
    fingerprint["data_sha256"] = bench.sha256
    out = open_run_dir(config.out, fingerprint, command=command)
    if len(quarantine):
        quarantine.write(out / "quarantine.jsonl")

    parts = out / PARTS_DIR
    parts.mkdir(exist_ok=True)
    done_ids = _finished_ids(parts)
    todo = [item for item in bench.items if item.id not in done_ids]
    state = EvalProgress(problems_total=len(bench.items), problems_done=len(bench.items) - len(todo))
    if progress:
        progress(state)
    log.info("%d problems, %d already finished", len(bench.items), state.problems_done)

    owns_engine = engine is None and bool(todo)
    if owns_engine:
        engine = make_engine(config.engine)
    try:
        for start in range(0, len(todo), config.problems_per_batch):
            batch = todo[start : start + config.problems_per_batch]
            _run_batch(config, engine, batch, parts, state, progress)
    finally:
        if owns_engine and engine is not None:
            engine.close()

    engine_desc = engine.describe() if engine is not None else {"engine": config.engine.engine,
                                                                 "model": config.engine.model}
    return finalize(out, config, bench, engine_desc, quarantined=len(quarantine))


def _finished_ids(parts: Path) -> set[str]:
    ids: set[str] = set()
    for f in sorted(parts.glob("part-*.parquet")):
        ids.update(pl.read_parquet(f, columns=["id"])["id"].to_list())
    return ids


def _run_batch(config, engine, batch, parts: Path, state: EvalProgress, progress) -> None:
    requests = [
        GenerationRequest(
            messages=tuple(problem_messages(item.problem)),
            n=config.n,
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            seed=problem_seed(config.seed, item.id),
            tag=item.id,
        )
        for item in batch
    ]
    results = engine.generate(requests)
    texts, golds = [], []
    for item, res in zip(batch, results):
        for s in res.samples:
            texts.append(s.text)
            golds.append(item.answer)
    grades = grade_many(texts, golds, timeout=config.grading_timeout)
    rows: list[dict[str, Any]] = []
    g = iter(grades)
    for item, res in zip(batch, results):
        for j, s in enumerate(res.samples):
            grade = next(g)
            rows.append({
                "id": item.id, "sample": j, "text": s.text, "tokens": s.tokens,
                "finish_reason": s.finish_reason, "status": grade.status,
                "extracted": grade.extracted,
            })
        state.generated_tokens += res.generated_tokens
    # One file per batch, written then renamed: a crash keeps every finished batch.
    index = len(list(parts.glob("part-*.parquet")))
    final = parts / f"part-{index:06d}.parquet"
    tmp = parts / f".part-{index:06d}.parquet.tmp"
    pl.DataFrame(rows, schema=SAMPLE_SCHEMA).write_parquet(tmp)
    tmp.replace(final)
    state.problems_done += len(batch)
    if progress:
        progress(state)


SAMPLE_SCHEMA = {
    "id": pl.String, "sample": pl.Int64, "text": pl.String, "tokens": pl.Int64,
    "finish_reason": pl.String, "status": pl.String, "extracted": pl.String,
}


def finalize(
    out: Path, config: PassAtKConfig, bench: LoadedBenchmark, engine_desc: dict[str, Any],
    *, quarantined: int = 0,
) -> dict[str, Any]:
    """Combine finished batches into the run's tables, summary, report and plot."""
    from pope_eval import report

    files = sorted((out / PARTS_DIR).glob("part-*.parquet"))
    samples = pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame(
        schema=SAMPLE_SCHEMA)
    order = {item.id: i for i, item in enumerate(bench.items)}
    samples = (
        samples.filter(pl.col("id").is_in(list(order)))
        .with_columns(pl.col("id").replace_strict(order, return_dtype=pl.Int64).alias("_order"))
        .sort("_order", "sample")
        .drop("_order")
    )
    samples.write_parquet(out / "samples.parquet")

    answers = {item.id: item.answer for item in bench.items}
    per_problem = (
        samples.group_by("id", maintain_order=True)
        .agg(
            pl.len().alias("n"),
            (pl.col("status") == "correct").sum().alias("correct"),
            *[(pl.col("status") == s).sum().alias(s) for s in STATUSES if s != "correct"],
            pl.col("tokens").mean().alias("mean_tokens"),
        )
        .with_columns(pl.col("id").replace_strict(answers, return_dtype=pl.String).alias("answer"))
        .select("id", "answer", "n", "correct", *[s for s in STATUSES if s != "correct"],
                "mean_tokens")
    )
    per_problem.write_parquet(out / "per_problem.parquet")

    ks = [k for k in config.resolved_ks if k <= config.n]
    counts = list(zip(per_problem["n"].to_list(), per_problem["correct"].to_list()))
    extracted = (
        samples.group_by("id", maintain_order=True)
        .agg(pl.col("extracted"), (pl.col("status") == "correct").alias("ok"))
    )
    summary: dict[str, Any] = {
        "data": config.data,
        "data_source": bench.source,
        "data_sha256": bench.sha256,
        "problems": len(per_problem),
        "problems_expected": len(bench.items),
        "quarantined_rows": quarantined,
        "n": config.n,
        "ks": ks,
        "pass_at_k": passk.summarize(counts, ks, n_boot=config.n_boot, seed=config.seed),
        "maj_at_k": {
            str(k): passk.maj_at_k(extracted["extracted"].to_list(), extracted["ok"].to_list(), k)
            for k in ks
        },
        "status_counts": {
            s: int((samples["status"] == s).sum()) for s in STATUSES
        },
        "generated_tokens": int(samples["tokens"].sum()),
        "finish_reasons": {
            r: int(c) for r, c in samples["finish_reason"].value_counts().iter_rows()
        },
        "model": engine_desc.get("model", config.engine.model),
        "engine": engine_desc,
        "sampling": {
            "temperature": config.temperature, "top_p": config.top_p,
            "max_tokens": config.max_tokens, "seed": config.seed,
        },
        "versions": package_versions(),
    }
    write_json_atomic(out / "summary.json", summary)
    report.write_report(out, summary, per_problem)
    return summary
