"""`pope-eval pass-at-k` as a library call: generate n samples per problem, grade, score pass@k.

`run_pass_at_k(PassAtKConfig(...))` writes summary.json, per_problem.parquet, samples.parquet,
report.md and pass_at_k.png into the run folder, and resumes from finished problems.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pope_eval import passk
from pope_eval.benchmarks import BENCHMARKS, EvalItem, LoadedBenchmark, load_benchmark
from pope_eval.datafiles import Quarantine
from pope_eval.engines import Engine, EngineConfig, GenerationRequest, LazyEngine, Sampling
from pope_eval.errors import ConfigError, DataError
from pope_eval.grading import STATUSES, bad_golds
from pope_eval.options import operational_fields, option
from pope_eval.prompts import check_prompt_lengths, problem_messages
from pope_eval.runinfo import (
    RUN_CONFIG,
    atomic_path,
    lock_run_dir,
    open_run_dir,
    package_versions,
    prepare_out_dir,
    write_json_atomic,
)
from pope_eval.scoring import GradedResult
from pope_eval.seeds import stable_int
from pope_eval.stream import GradedStream

log = logging.getLogger(__name__)

PARTS_DIR = "parts"
RUN_KIND = "pope-eval pass-at-k"  # how the run lock names its holder


def parse_ks(spec: str) -> tuple[int, ...] | None:
    """--k '1,2,4' -> (1, 2, 4); an empty text is the default list (None)."""
    if not spec.strip():
        return None
    try:
        return tuple(int(part) for part in spec.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--k: expected a comma list of integers, got {spec!r}") from None


# The paper's base model (Qwen3-4B-Instruct-2507) recommended sampling.
DEFAULT_SAMPLING = Sampling(max_tokens=4096, temperature=0.7, top_p=0.8, seed=0)


@dataclass(frozen=True)
class PassAtKConfig:
    """One evaluation run; validated on construction with errors naming the CLI option."""

    data: str = option("aime2025", lambda: (
        f"Benchmark name ({', '.join(BENCHMARKS)}; bundled, offline), hub:ORG/NAME[:split], "
        "or a .jsonl/.json/.parquet file."))
    out: str = option("pope-eval-out", "Run folder (re-running with it resumes).",
                      operational=True)
    engine: EngineConfig = option(default_factory=EngineConfig)
    columns: str | None = option(None, "Column mapping, e.g. 'problem=question,answer=final'.")
    n: int = option(16, "Samples per problem.")
    ks: tuple[int, ...] | None = option(None, "Comma list of k; default powers of two up to n.",
                                        flag="--k", parse=parse_ks, operational=True)
    sampling: Sampling = option(DEFAULT_SAMPLING)
    limit: int | None = option(None, "Only the first N problems.", operational=True)
    grading_timeout: float = option(5.0, cli=False)
    problems_per_batch: int = option(8, cli=False, operational=True)  # saved together
    samples_per_batch: int = option(1024, "Samples in flight in the engine (the streaming "
                                          "window; see docs/engines.md).",
                                    flag="--batch-samples", operational=True)
    n_boot: int = option(1000, cli=False, operational=True)
    # Set by --preset: what it filled in (recorded in run_config.json, never compared).
    preset: dict[str, Any] | None = option(None, cli=False, operational=True, repr=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"--n: must be >= 1, got {self.n}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit: must be >= 1, got {self.limit}")
        if self.problems_per_batch < 1:
            raise ConfigError(f"problems_per_batch: must be >= 1, got {self.problems_per_batch}")
        if self.samples_per_batch < 1:
            raise ConfigError(f"--batch-samples: must be >= 1, got {self.samples_per_batch}")
        if not math.isfinite(self.grading_timeout) or self.grading_timeout <= 0:
            raise ConfigError(f"grading_timeout: must be > 0, got {self.grading_timeout}")
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
        d["sampling"] = self.sampling.to_dict()
        for key in operational_fields(type(self)):
            d.pop(key)  # reporting / batching only: changing them never changes a sample
        return d


@dataclass
class EvalProgress:
    problems_total: int
    problems_done: int = 0
    generated_tokens: int = 0
    quarantined: int = 0


ProgressFn = Callable[[EvalProgress], None]


def problem_seed(seed: int, problem_id: str) -> int:
    """Stable per-problem seed (never Python's hash())."""
    return stable_int(f"{seed}:{problem_id}", 4)


def check_items(config: PassAtKConfig, bench: LoadedBenchmark, quarantine: Quarantine, *,
                inspect: bool) -> LoadedBenchmark:
    """The benchmark's items that can be run, every one checked before any generation: gold
    answers math-verify cannot read, and (with `inspect`, the model's tokenizer loaded without
    weights) prompts that do not fit the model's context with --max-tokens, are quarantined with
    their reason. A --model that cannot be loaded is a ConfigError."""
    tokenizer = context = None
    if inspect:
        from pope_eval.models import inspect_model

        tokenizer, context = inspect_model(config.engine)
    items = list(bench.items)

    def refuse(i: int, reason: str) -> None:
        row, raw = bench.rows.get(items[i].id, (None, None))
        quarantine.add(bench.source, row, f"{items[i].id}: {reason}", raw)

    refused = set(bad_golds([it.answer for it in items], timeout=config.grading_timeout))
    for i in sorted(refused):
        refuse(i, f"answer {items[i].answer!r} cannot be parsed by math-verify (no sample could "
                  "be graded correct)")
    if tokenizer is not None and context:
        kept = [i for i in range(len(items)) if i not in refused]
        too_long = check_prompt_lengths([problem_messages(items[i].problem) for i in kept],
                                        tokenizer, config.sampling.max_tokens, context)
        for j, tokens in too_long:
            refuse(kept[j], f"prompt is {tokens} tokens; with --max-tokens "
                            f"{config.sampling.max_tokens} it exceeds the model's context of "
                            f"{context} tokens")
            refused.add(kept[j])
    items = [it for i, it in enumerate(items) if i not in refused]
    if not items:
        # The run ends here: the quarantine is written where the error says, with every reason.
        where = quarantine.write_for_error(config.out)
        first = quarantine.first_reasons()
        raise DataError(f"{config.data}: no usable problems ({len(quarantine)} rows quarantined"
                        + (f"; first: {first}" if first else "") + f"){where}")
    return LoadedBenchmark(name=bench.name, items=items, source=bench.source,
                           sha256=bench.sha256, quarantined=len(quarantine))


def run_pass_at_k(
    config: PassAtKConfig,
    *,
    engine: Engine | None = None,
    progress: ProgressFn | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) an evaluation and write every output; returns the summary dict.

    Everything is checked before the engine is built or run_config.json is written, the fast
    checks first so that a typo fails at once: the data (file, rows, --columns), the output
    folder and the config of a run already in it; then the model (its tokenizer), the gold
    answers and the prompt lengths. A failed check leaves no new folder behind. The run folder
    is locked (`lock_run_dir`) to the end of the run: an existing one before its config is
    read, a new one once it is created; a second run into it fails naming the first.
    """
    quarantine = Quarantine()
    bench = load_benchmark(config.data, columns=config.columns, limit=config.limit,
                           quarantine=quarantine)
    out_dir = Path(config.out)
    existed = out_dir.is_dir()
    if not existed:
        _check_new_out_dir(out_dir)
    fingerprint = config.fingerprint()
    fingerprint["data_sha256"] = bench.sha256
    open_out = functools.partial(open_run_dir, out_dir, fingerprint, command=command,
                                 has_results=_has_parts,
                                 extra={"preset": config.preset} if config.preset else None)
    with contextlib.ExitStack() as held:
        if existed:
            held.enter_context(lock_run_dir(out_dir, RUN_KIND))
            if (out_dir / RUN_CONFIG).exists():  # a changed config is refused before the model
                open_out()
        bench = check_items(config, bench, quarantine, inspect=engine is None)
        if not existed:
            held.enter_context(lock_run_dir(out_dir, RUN_KIND))
        out = open_out()
        if len(quarantine):
            quarantine.write(out / "quarantine.jsonl")

        parts = out / PARTS_DIR
        parts.mkdir(exist_ok=True)
        done_ids = _finished_ids(parts)
        todo = [item for item in bench.items if item.id not in done_ids]
        state = EvalProgress(problems_total=len(bench.items),
                             problems_done=len(bench.items) - len(todo),
                             quarantined=len(quarantine))
        if progress:
            progress(state)
        log.info("%d problems, %d already finished", len(bench.items), state.problems_done)

        eng = engine if engine is not None else LazyEngine(config.engine)
        try:
            if todo:
                _run_stream(config, eng, todo, parts, state, progress)
            engine_desc = eng.describe()
        finally:
            if engine is None:
                eng.close()
        return finalize(out, config, bench, engine_desc, quarantined=len(quarantine))


def _check_new_out_dir(out: Path) -> None:
    """`prepare_out_dir`'s checks of a folder that does not exist yet (a file in the way, a
    read-only or full disk) without leaving it behind: the folders made for the check are
    removed again, so a run that fails a later check has written nothing."""
    made = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
    try:
        prepare_out_dir(out)
    finally:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _has_parts(out: Path) -> bool:
    return any((out / PARTS_DIR).glob("part-*.parquet"))


def _finished_ids(parts: Path) -> set[str]:
    ids: set[str] = set()
    for f in sorted(parts.glob("part-*.parquet")):
        ids.update(pl.read_parquet(f, columns=["id"])["id"].to_list())
    return ids


def _run_stream(config: PassAtKConfig, engine: Engine, todo: list[EvalItem], parts: Path,
                state: EvalProgress, progress: ProgressFn | None) -> None:
    """Every problem through one stream (`pope_eval.stream.GradedStream`, --batch-samples samples
    in flight); finished problems are saved every `problems_per_batch` problems and at the end."""
    stream = GradedStream(engine, window=config.samples_per_batch,
                          grading_timeout=config.grading_timeout)
    items = {item.id: item for item in todo}
    for item in todo:
        stream.submit(item.id, GenerationRequest(
            messages=tuple(problem_messages(item.problem)), n=config.n, sampling=config.sampling,
            seed=problem_seed(config.sampling.seed, item.id), tag=item.id), item.answer)
    finished: list[tuple[EvalItem, GradedResult]] = []
    for done in stream.results():
        for key, g in done:
            finished.append((items[key], g))
            state.generated_tokens += g.result.generated_tokens
        while len(finished) >= config.problems_per_batch:
            _save(finished[:config.problems_per_batch], parts, state)
            finished = finished[config.problems_per_batch:]
        if progress:
            progress(state)
    if finished:
        _save(finished, parts, state)
        if progress:
            progress(state)


def _save(finished: list[tuple[EvalItem, GradedResult]], parts: Path,
          state: EvalProgress) -> None:
    rows: list[dict[str, Any]] = []
    for item, g in finished:
        for j, (s, grade) in enumerate(zip(g.result.samples, g.grades)):
            rows.append({
                "id": item.id, "sample": j, "text": s.text, "tokens": s.tokens,
                "finish_reason": s.finish_reason, "status": grade.status,
                "extracted": grade.extracted,
            })
    # One file per group, written then renamed: a crash keeps every saved group.
    index = len(list(parts.glob("part-*.parquet")))
    with atomic_path(parts / f"part-{index:06d}.parquet") as tmp:
        pl.DataFrame(rows, schema=SAMPLE_SCHEMA).write_parquet(tmp)
    state.problems_done += len(finished)


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
        "pass_at_k": passk.summarize(counts, ks, n_boot=config.n_boot,
                                     seed=config.sampling.seed),
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
        "sampling": config.sampling.to_dict(),
        "versions": package_versions(),
    }
    write_json_atomic(out / "summary.json", summary)
    report.write_report(out, summary, per_problem)
    return summary
