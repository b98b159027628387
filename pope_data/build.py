"""`pope-data build` as a library call: check -> curate (hard set) -> oracle -> prefix search -> export.

`run_build(BuildConfig(...), progress=...)` reads as its list of stages; every input is checked
before anything is written or generated, and a rerun with the same folder resumes from the journal.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from pope_data.config import BuildConfig
from pope_data.cost import STAGES, CostPlan, plan_cost
from pope_data.export import PREFIX_SCHEMA, PrefixChoice, write_export, write_table
from pope_data.journal import Journal
from pope_data.oracle import solve
from pope_data.records import Problem
from pope_data.report import write_report
from pope_data.search import make_strategy
from pope_data.segments import Segmentation, fallback_prefix, segment
from pope_data.service import SearchService, SearchTask, ServiceProgress
from pope_data.sharding import parse_shard
from pope_data.sources import Loaded, SourceSpec, get_source, load_problems
from pope_eval.datafiles import Quarantine
from pope_eval.engines import Engine, LazyEngine
from pope_eval.errors import DataError, PopeError
from pope_eval.runinfo import RUN_CONFIG, lock_run_dir, open_run_dir, write_json_atomic

log = logging.getLogger(__name__)

ProgressFn = Callable[[ServiceProgress], None]
PlanFn = Callable[[CostPlan], None]

JOURNAL = "journal.sqlite"
SUMMARY = "summary.json"  # written last: its presence marks a finished build or merge


@dataclass
class BuildSummary:
    """What a build (or a merge of shard builds) produced; summary.json. `plan` is the bill with
    the row counts; `replayed` the probes taken from the journal instead of generated."""

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
    plan: CostPlan
    decontam_not_checked: dict[str, str] = field(default_factory=dict)
    finish_reasons: dict[str, int] = field(default_factory=dict)
    replayed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildSummary:
        return cls(**{**d, "plan": CostPlan.from_dict(d["plan"])})

    @classmethod
    def combined(cls, parts: list[BuildSummary], *, out: str, quarantined: int,
                 counts: dict[str, dict[str, int]]) -> BuildSummary:
        """The summary of one build from those of its `--shard i/N` parts (`quarantined`: rows
        of the merged quarantine, where every shard lists the same unreadable rows)."""
        def total(name: str) -> int:
            return sum(getattr(p, name) for p in parts)

        reasons: dict[str, int] = {}
        for p in parts:
            for reason, n in p.finish_reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
        return cls(
            out=out, problems=total("problems"), quarantined=quarantined,
            decontaminated=total("decontaminated"), hard=total("hard"), easy=total("easy"),
            guided=total("guided"), fallback=total("fallback"), no_solution=total("no_solution"),
            oracle_unsolved=total("oracle_unsolved"),
            tokens={stage: sum(p.tokens[stage] for p in parts) for stage in STAGES},
            counts=counts, plan=CostPlan.combined([p.plan for p in parts]),
            decontam_not_checked={k: v for p in parts for k, v in p.decontam_not_checked.items()},
            finish_reasons=reasons, replayed=total("replayed"))


@dataclass
class Inputs:
    """Everything checked before the first write: problems, their segmentations, what was
    quarantined and what decontamination removed, and where every source row went."""

    problems: list[Problem]
    quarantine: Quarantine
    segmentations: dict[str, Segmentation]
    decontam: Any  # pope_data.decontam.DecontamResult
    decontam_not_checked: dict[str, str]
    loaded: Loaded
    tokenizer: Any = None  # the model's, when loaded (token segments, prompt lengths)
    revision: dict[str, str] = field(default_factory=dict)  # source dataset and its digest


def run_build(config: BuildConfig, *, progress: ProgressFn | None = None,
              engine: Engine | None = None, oracle_engine: Engine | None = None,
              command: str | None = None, on_plan: PlanFn | None = None) -> BuildSummary:
    """Run (or resume) a build; `on_plan` gets the cost plan before any token is generated.
    The output folder is locked for the whole run: a second run into it fails at once, naming
    the process that holds it."""
    with contextlib.ExitStack() as stack:
        # An existing folder is locked before the checks, so that a second run fails at once;
        # a new one is made (and locked) only once the checks passed: they write nothing.
        existing = Path(config.out).is_dir()
        if existing:
            stack.enter_context(lock_run_dir(config.out, "pope-data build"))
        inputs = check_inputs(config, inspect=engine is None or config.segmenter == "tokens")
        if not existing:
            stack.enter_context(lock_run_dir(config.out, "pope-data build"))
        return _build(config, inputs, progress=progress, engine=engine,
                      oracle_engine=oracle_engine, command=command, on_plan=on_plan)


def _build(config: BuildConfig, inputs: Inputs, *, progress: ProgressFn | None,
           engine: Engine | None, oracle_engine: Engine | None, command: str | None,
           on_plan: PlanFn | None) -> BuildSummary:
    # Recorded beside the config, never compared: the template's text (the config holds its
    # name and digest) and what --preset set.
    extra = {"guidance": config.guidance_template.record(),
             **({"preset": config.preset} if config.preset else {})}
    out = open_run_dir(config.out, config.fingerprint(), command=command,
                       has_results=lambda folder: Journal.has_probes(folder / JOURNAL),
                       extra=extra)
    (out / SUMMARY).unlink(missing_ok=True)
    remove_partial_writes(out)
    journal = Journal.open(out / JOURNAL, config.fingerprint())
    try:
        plan = write_inputs(out, config, inputs, replayed=journal.count())
        if on_plan:
            on_plan(plan)
        eng = engine if engine is not None else LazyEngine(config.engine)
        service = SearchService(eng, journal, sampling=config.sampling,
                                samples_per_batch=config.samples_per_batch,
                                grading_timeout=config.grading_timeout, progress=progress,
                                retention=config.retention, guidance=config.guidance_template)
        try:
            hard, easy = curate_stage(config, service, inputs.problems, out)
            hard, unsolved = solve_stage(config, service, hard, oracle_engine, progress)
            choices, no_solution = prefix_stage(config, service, hard, inputs, out)
        finally:
            if engine is None:
                eng.close()
        counts = write_export(out, hard, choices, easy=easy,
                              validation_fraction=config.validation_fraction, seed=config.seed,
                              guidance=config.guidance_template,
                              provenance=provenance(config, inputs),
                              solution_sources=solution_sources(config, inputs.problems, hard))
        summary = BuildSummary(
            out=str(out), problems=len(inputs.problems), quarantined=len(inputs.quarantine),
            decontaminated=len(inputs.decontam.removed), hard=len(hard), easy=len(easy),
            guided=len(choices), fallback=sum(c.fallback for c in choices.values()),
            no_solution=len(no_solution), oracle_unsolved=len(unsolved),
            tokens={stage: journal.tokens(stage) for stage in STAGES},
            counts=counts, plan=plan, decontam_not_checked=inputs.decontam_not_checked,
            finish_reasons=journal.finish_reasons(), replayed=plan.replayed)
    finally:
        journal.close()
    finish(out, summary, list(choices.values()))
    return summary


def finish(out: Path, summary: BuildSummary, choices: list[PrefixChoice]) -> None:
    """The last writes of a build or a merge: report.md and prefix_fraction.png from the run
    config recorded in the folder, then summary.json, whose presence marks the folder finished."""
    run = json.loads((out / RUN_CONFIG).read_text(encoding="utf-8"))
    write_report(out, run, summary, choices)
    write_json_atomic(out / SUMMARY, asdict(summary))


def remove_partial_writes(out: Path) -> None:
    """Delete the temporary files a killed run left behind (`pope_eval.runinfo.atomic_path`
    names them .NAME.PID.tmp). Called with the folder locked, so no live writer owns one."""
    for tmp in out.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


# -- before anything is written ---------------------------------------------------------------
def check_inputs(config: BuildConfig, *, inspect: bool) -> Inputs:
    """Load and check every input; writes nothing. Rows that cannot be used are quarantined
    with their source row: unreadable rows (by the loader), gold answers math-verify cannot
    read, prompts that do not fit the model's context with --max-tokens. An empty result is an
    error, unless --shard gave the rows to the other shards (an empty shard is a valid build)."""
    from pope_eval.grading import bad_golds

    quarantine = Quarantine()
    revision: dict[str, str] = {}
    loaded = Loaded()
    spec = get_source(config.source)
    problems = load_problems(
        config.source, path=config.path, hub_id=config.hub_id, columns=config.columns,
        limit=config.limit, seed=config.seed, quarantine=quarantine,
        difficulty=(None if config.difficulty_min is None and config.difficulty_max is None
                    else (config.difficulty_min, config.difficulty_max)),
        domain=config.domain, options=spec.generator_options(config),
        shard=parse_shard(config.shard), revision=revision, loaded=loaded,
    )
    origin = config.path or config.hub_id or config.source
    bad = set(bad_golds([p.answer for p in problems], timeout=config.grading_timeout)
              if problems else ())
    for i in sorted(bad):
        loaded.reject(quarantine, origin, problems[i].id,
                      f"{problems[i].id}: answer {problems[i].answer!r} cannot be parsed by "
                      "math-verify (the problem would pass for hard)")
    problems = [p for i, p in enumerate(problems) if i not in bad]
    tokenizer = context = None
    if inspect:
        from pope_eval.models import inspect_model

        tokenizer, context = inspect_model(config.engine)
    if tokenizer is not None and context:
        problems = _drop_too_long(config, problems, tokenizer, context, quarantine, origin,
                                  loaded)
    problems, decontam, not_checked = _decontaminate(config, spec, problems)
    loaded.counts.decontaminated += len(decontam.removed)
    loaded.counts.kept -= len(decontam.removed)
    if not problems:
        if not loaded.counts.other_shards:
            # The build ends here: the quarantine the error names is written first.
            where = quarantine.write_for_error(config.out)
            reasons = quarantine.first_reasons()
            raise DataError(f"no usable problems from {origin}: {loaded.counts.describe()}"
                            + (f" (first: {reasons})" if reasons else "") + where)
        log.warning("shard %s of %s has no problems (rows: %s); it exports empty tables, which "
                    "pope-data merge joins with the other shards", config.shard, origin,
                    loaded.counts.describe())
    segmentations = {}
    for p in problems:
        if p.solution:
            segmentations[p.id] = segment(p.solution, config.segmenter, tokenizer=tokenizer,
                                          chunk_tokens=config.segment_tokens)
    return Inputs(problems, quarantine, segmentations, decontam, not_checked, loaded, tokenizer,
                  revision)


def _drop_too_long(config: BuildConfig, problems: list[Problem], tokenizer: Any, context: int,
                   quarantine: Quarantine, origin: str, loaded: Loaded) -> list[Problem]:
    from pope_eval.prompts import check_prompt_lengths, guided_messages

    # The longest prompt a problem can get: guided with its whole solution.
    convs = [guided_messages(p.problem, p.solution or "", guidance=config.guidance_template)
             for p in problems]
    over = dict(check_prompt_lengths(convs, tokenizer, config.sampling.max_tokens, context))
    for i in sorted(over):
        loaded.reject(quarantine, origin, problems[i].id,
                      f"{problems[i].id}: prompt is {over[i]} tokens (with its solution as "
                      f"guidance); with --max-tokens {config.sampling.max_tokens} it exceeds the "
                      f"model's context of {context} tokens")
    return [p for i, p in enumerate(problems) if i not in over]


def _decontaminate(config: BuildConfig, spec: SourceSpec, problems: list[Problem]):
    """(kept problems, DecontamResult, not-checked reasons by eval set)."""
    from pope_data.decontam import DecontamResult, decontaminate, load_eval_sets

    if not config.decontaminate or not spec.can_overlap_eval_sets:
        reason = ("disabled (--no-decontaminate)" if not config.decontaminate
                  else f"{config.source} problems are generated here; they cannot overlap eval "
                       "sets")
        return problems, DecontamResult(kept=problems, removed=[]), {
            name: reason for name in config.decontam_against}
    eval_sets, not_checked = load_eval_sets(config.decontam_against)
    result = decontaminate(problems, eval_sets=eval_sets, ngram=config.decontam_ngram,
                           threshold=config.decontam_threshold)
    return result.kept, result, not_checked


def write_inputs(out: Path, config: BuildConfig, inputs: Inputs, *,
                 replayed: int = 0) -> CostPlan:
    """quarantine.jsonl, problems.parquet, decontamination.json; returns the cost plan
    (`replayed`: probes already in the journal)."""
    from pope_data.decontam import write_decontamination

    inputs.quarantine.write(out / "quarantine.jsonl")
    write_decontamination(out, inputs.decontam, inputs.decontam_not_checked)
    write_table([p.to_dict() for p in inputs.problems], _problem_schema(),
                out / "problems.parquet")
    candidates = [_top(config, inputs.segmentations[p.id]) if p.id in inputs.segmentations
                  else 0 for p in inputs.problems]
    unsolved = sum(1 for p in inputs.problems if not p.solution)
    return plan_cost(config, len(inputs.problems), candidates, unsolved,
                     rows=inputs.loaded.counts, replayed=replayed)


def _top(config: BuildConfig, seg: Segmentation) -> int:
    """Longest candidate prefix (segments): the complete solution is not guidance, and no
    candidate covers more than --max-prefix-fraction of the solution's characters."""
    top = len(seg) if config.include_full_solution else len(seg) - 1
    while top > 0 and seg.fraction(top) > config.max_prefix_fraction:
        top -= 1
    return top


def provenance(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    """Where every exported row comes from (pope_data.export.PROVENANCE_FIELDS but the solution
    source, which is per problem)."""
    from pope_eval.models import model_revision
    from pope_eval.runinfo import package_versions

    try:
        model_rev = model_revision(config.engine.model, config.engine.cache_dir)
    except PopeError as exc:  # a served model name the Hub does not know
        log.info("model revision of %s unknown: %s", config.engine.model, exc)
        model_rev = "unknown"
    return {"source_dataset": inputs.revision.get("dataset", config.source),
            "source_revision": inputs.revision.get("revision", "unknown"),
            "search_model": config.engine.model, "search_model_revision": model_rev,
            "k": config.k, "n": config.n, "strategy": config.strategy, "seed": config.seed,
            "max_prefix_fraction": config.max_prefix_fraction,
            "guidance": config.guidance_template.name,
            "guidance_sha256": config.guidance_template.sha256,
            "pope_version": package_versions().get("pope", "unknown")}


def solution_sources(config: BuildConfig, loaded: list[Problem],
                     hard: list[Problem]) -> dict[str, str]:
    """Who wrote each problem's solution: the source's authors, or the oracle model."""
    origin = get_source(config.source).solution_origin
    had = {p.id for p in loaded if p.solution}
    oracle = f"model:{(config.oracle or config.engine).model}"
    return {p.id: (origin if p.id in had else oracle if p.solution else "none")
            for p in [*loaded, *hard]}


# -- the stages -------------------------------------------------------------------------------
def curate_stage(config: BuildConfig, service: SearchService, problems: list[Problem],
                 out: Path) -> tuple[list[Problem], list[Problem]]:
    """k unguided samples per problem, in waves that stop at the first correct one (unless
    --curate-schedule all); hard = none correct. Writes curate.parquet (`correct` is a lower
    bound under early stopping, the exact count out of k with "all"; `drawn` says which)."""
    results = service.run("curate", [
        SearchTask(p, make_strategy("curate", problem_id=p.id, min_prefix=0, max_prefix=0,
                                    n=config.k, wave_size=config.curate_wave,
                                    schedule=config.curate_schedule)) for p in problems])
    solved = service.journal.correct_counts("curate")
    drawn = service.journal.sample_counts("curate")
    hard = [p for p in problems if results[p.id].i_star is None]
    hard_ids = {p.id for p in hard}
    easy = [p for p in problems if p.id not in hard_ids]
    write_table([{**p.to_dict(), "k": config.k, "drawn": drawn.get(p.id, 0),
                  "correct": solved.get(p.id, 0), "hard": p.id in hard_ids} for p in problems],
                _problem_schema(extra=True), out / "curate.parquet")
    return hard, easy


def solve_stage(config: BuildConfig, service: SearchService, hard: list[Problem],
                oracle_engine: Engine | None,
                progress: ProgressFn | None) -> tuple[list[Problem], list[str]]:
    """Oracle solutions, when asked, for hard problems that have none."""
    if not config.solve:
        return hard, []
    missing = [p for p in hard if not p.solution]
    owned = oracle_engine is None and config.oracle is not None
    if oracle_engine is None:
        oracle_engine = LazyEngine(config.oracle) if config.oracle else service.engine
    oracle_service = SearchService(
        oracle_engine, service.journal,
        sampling=replace(config.sampling, max_tokens=config.solve_max_tokens),
        samples_per_batch=config.samples_per_batch, grading_timeout=config.grading_timeout,
        progress=progress,
        # The oracle stage reads its correct solutions back from the journal.
        retention="all" if config.retention == "all" else "correct")
    try:
        solved, unsolved = solve(missing, oracle_service, n=config.solve_n)
    finally:
        if owned:
            oracle_engine.close()
    with_solution = {p.id: p for p in solved}
    return [with_solution.get(p.id, p) for p in hard], unsolved


def prefix_stage(config: BuildConfig, service: SearchService, hard: list[Problem],
                 inputs: Inputs, out: Path) -> tuple[dict[str, PrefixChoice], list[str]]:
    """Minimal prefix per hard problem with a solution (fallback: a random cut < 1/4)."""
    segs: dict[str, Segmentation] = {}
    tasks, no_solution, direct_fallback = [], [], []
    for p in hard:
        if not p.solution:
            no_solution.append(p.id)
            continue
        # Oracle-written solutions were not segmented up front.
        seg = segs[p.id] = inputs.segmentations.get(p.id) or segment(
            p.solution, config.segmenter, tokenizer=inputs.tokenizer,
            chunk_tokens=config.segment_tokens)
        top = _top(config, seg)
        if top < 1:
            # A one-segment solution, or a first segment over --max-prefix-fraction: only the
            # random cut.
            direct_fallback.append(p.id)
            continue
        tasks.append(SearchTask(p, make_strategy(
            config.strategy, problem_id=p.id, min_prefix=1, max_prefix=top, n=config.n,
            wave_size=config.wave_size, seed=config.seed), seg))
    if no_solution:
        log.warning("%d hard problems have no solution and get no guided row (unguided rows are "
                    "still exported); build with --solve for answer-only sources",
                    len(no_solution))
    results = service.run("prefix", tasks)
    by_id = {p.id: p for p in hard}
    choices: dict[str, PrefixChoice] = {}
    for pid in [t.problem.id for t in tasks] + direct_fallback:
        seg, r = segs[pid], results.get(pid)
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
    return choices, no_solution


def _problem_schema(extra: bool = False) -> pa.Schema:
    fields = [("id", pa.string()), ("problem", pa.string()), ("answer", pa.string()),
              ("source", pa.string()), ("solution", pa.string()), ("difficulty", pa.float64()),
              ("domain", pa.string())]
    if extra:
        fields += [("k", pa.int64()), ("drawn", pa.int64()), ("correct", pa.int64()),
                   ("hard", pa.bool_())]
    return pa.schema(fields)
