"""`pope-data`: build POPE datasets (hard set, minimal oracle prefixes, guided mix) and merge shards.

`pope-data build` runs the offline demo; `pope-data build --source omni-math --path FILE --model ID`
runs a real curation. Re-running with the same --out resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pope_cli.common import (
    PlainProgress,
    command_line,
    console,
    engine_config,
    handle_errors,
    print_table,
    setup_logging,
)
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pope_data.config import RETENTION, BuildConfig, source_names
from pope_data.search import CURATE_SCHEDULES, strategy_names
from pope_data.segments import MODES
from pope_eval.engines import EngineConfig, Sampling, engine_names

app = typer.Typer(help="Curate hard sets and minimal-prefix guided datasets for POPE.",
                  no_args_is_help=True)


_D = BuildConfig()  # the defaults live in BuildConfig; the options repeat none of them


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option(help="Output folder (re-running with it resumes).")] = Path(_D.out),
    source: Annotated[str, typer.Option(help=f"One of {', '.join(source_names())}.")] = _D.source,
    path: Annotated[str | None, typer.Option(help="Local jsonl/json/parquet file for the source.")] = None,
    hub_id: Annotated[str | None, typer.Option(help="Hub dataset id (overrides the source's).")] = None,
    columns: Annotated[str | None, typer.Option(help="Column mapping, e.g. 'problem=question,answer=final'.")] = None,
    limit: Annotated[int | None, typer.Option(help="Problems to take (synthetic: how many to make).")] = _D.limit,
    difficulty_min: Annotated[float | None, typer.Option()] = None,
    difficulty_max: Annotated[float | None, typer.Option()] = None,
    domain: Annotated[str | None, typer.Option(help="Keep problems whose domain contains this.")] = None,
    synthetic_difficulty: Annotated[int, typer.Option(help="synthetic source: difficulty 1-5.")] = _D.synthetic_difficulty,
    model: Annotated[str, typer.Option(help="Hub id, local folder, or 'smollm2-135m'.")] = _D.engine.model,
    engine: Annotated[str, typer.Option(help=f"One of {', '.join(engine_names())}.")] = _D.engine.engine,
    endpoint: Annotated[list[str] | None, typer.Option(help="OpenAI-compatible base URL (repeat for several).")] = None,
    ray: Annotated[str | None, typer.Option("--ray", help="Ray cluster for engine replicas: local, auto or host:port.")] = None,
    replicas: Annotated[int, typer.Option(help="Engine replicas (Ray actors; needs --ray).")] = 1,
    k: Annotated[int, typer.Option(help="Unguided samples per problem for the hard set.")] = _D.k,
    curate_schedule: Annotated[str, typer.Option(help=f"Curation waves: {'; '.join(f'{k}: {v}' for k, v in CURATE_SCHEDULES.items())}.")] = _D.curate_schedule,
    curate_wave: Annotated[int, typer.Option(help="Curation: the fixed wave, or the cap of growing waves.")] = _D.curate_wave,
    n: Annotated[int, typer.Option(help="Samples per probed prefix.")] = _D.n,
    wave_size: Annotated[int, typer.Option(help="Samples per wave in sequential strategies.")] = _D.wave_size,
    strategy: Annotated[str, typer.Option(help=f"One of {', '.join(strategy_names())}.")] = _D.strategy,
    segmenter: Annotated[str, typer.Option(help=f"One of {', '.join(MODES)}.")] = _D.segmenter,
    segment_tokens: Annotated[int, typer.Option(help="--segmenter tokens: tokens per segment.")] = _D.segment_tokens,
    max_tokens: Annotated[int, typer.Option()] = _D.sampling.max_tokens,
    temperature: Annotated[float, typer.Option()] = _D.sampling.temperature,
    top_p: Annotated[float, typer.Option()] = _D.sampling.top_p,
    seed: Annotated[int, typer.Option()] = _D.sampling.seed,
    validation_fraction: Annotated[float, typer.Option()] = _D.validation_fraction,
    shard: Annotated[str | None, typer.Option(help="I/N: this machine's share of the problems.")] = None,
    batch_samples: Annotated[int, typer.Option(help="Samples per engine call.")] = _D.samples_per_batch,
    retention: Annotated[str, typer.Option(help=f"Sample texts the journal keeps: {', '.join(RETENTION)}.")] = _D.retention,
    concurrency: Annotated[int, typer.Option(help="openai: requests in flight per endpoint.")] = _D.engine.concurrency,
    request_timeout: Annotated[float, typer.Option(help="openai: seconds to wait for one reply.")] = _D.engine.request_timeout,
    max_retries: Annotated[int, typer.Option(help="openai: retries of a failed request.")] = _D.engine.max_retries,
    no_send_seed: Annotated[bool, typer.Option("--no-send-seed", help="openai: omit per-request seeds (vLLM CPU servers).")] = False,
    decontaminate: Annotated[bool, typer.Option(help="Drop problems overlapping the eval sets.")] = _D.decontaminate,
    decontam_against: Annotated[list[str] | None, typer.Option(help="Eval set name or file (repeat); default aime2025 + hmmt_feb_2025.")] = None,
    solve: Annotated[bool, typer.Option("--solve", help="Have an oracle model write solutions for hard problems without one (DAPO).")] = False,
    oracle_model: Annotated[str | None, typer.Option(help="Oracle model (default: --model).")] = None,
    oracle_engine: Annotated[str, typer.Option(help=f"Oracle engine: one of {', '.join(engine_names())}.")] = "auto",
    oracle_endpoint: Annotated[list[str] | None, typer.Option(help="Oracle OpenAI-compatible URL (repeat).")] = None,
    solve_n: Annotated[int, typer.Option(help="Oracle attempts per problem.")] = _D.solve_n,
    solve_max_tokens: Annotated[int, typer.Option()] = _D.solve_max_tokens,
    cache_dir: Annotated[str | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Hard set -> minimal prefixes -> guided rows, 1:1 mix, verl parquet and a report."""
    setup_logging(verbose)
    from pope_data.build import run_build

    started = False
    plain = PlainProgress()

    def hint() -> str | None:
        return f"Re-run the same command to resume from {out}." if started else None

    with handle_errors(hint):
        def engine_for(name: str, model_name: str, urls: list[str] | None) -> EngineConfig:
            return engine_config(engine=name, model=model_name, seed=seed, endpoints=urls,
                                 max_batch_size=64, concurrency=concurrency,
                                 cache_dir=cache_dir, ray_address=ray, replicas=replicas,
                                 request_timeout=request_timeout, max_retries=max_retries,
                                 send_seed=not no_send_seed)

        config = BuildConfig(
            out=str(out), source=source, path=path, hub_id=hub_id, columns=columns, limit=limit,
            difficulty_min=difficulty_min, difficulty_max=difficulty_max, domain=domain,
            synthetic_difficulty=synthetic_difficulty,
            engine=engine_for(engine, model, endpoint),
            sampling=Sampling(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                              seed=seed),
            k=k, curate_schedule=curate_schedule, curate_wave=curate_wave,
            n=n, wave_size=wave_size, strategy=strategy, segmenter=segmenter,
            segment_tokens=segment_tokens, validation_fraction=validation_fraction, shard=shard,
            samples_per_batch=batch_samples, retention=retention, decontaminate=decontaminate,
            solve=solve, solve_n=solve_n, solve_max_tokens=solve_max_tokens,
            oracle=(engine_for(oracle_engine, oracle_model, oracle_endpoint)
                    if oracle_model else None),
            **({"decontam_against": tuple(decontam_against)} if decontam_against else {}),
        )
        with Progress(
            TextColumn("[bold]{task.fields[stage]:>7}[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("problems · {task.fields[inflight]} probes in flight · "
                       "{task.fields[tokens]:,} tokens · {task.fields[tps]:.0f} tok/s"),
            TimeElapsedColumn(), console=console,
        ) as bar:
            tasks: dict[str, int] = {}

            def on_plan(plan) -> None:
                nonlocal started
                started = True
                for line in plan.lines():
                    console.print(line, highlight=False, markup=False)

            def progress(state) -> None:
                if state.stage not in tasks:
                    tasks[state.stage] = bar.add_task(state.stage, stage=state.stage, inflight=0,
                                                      tokens=0, tps=0.0, total=state.problems_total)
                bar.update(tasks[state.stage], completed=state.problems_done,
                           inflight=state.probes_in_flight, tokens=state.generated_tokens,
                           tps=state.tokens_per_s)
                plain(f"{state.stage}: {state.problems_done}/{state.problems_total} problems, "
                      f"{state.generated_tokens:,} tokens, {state.tokens_per_s:.0f} tok/s",
                      force=state.problems_done == state.problems_total)

            s = run_build(config, progress=progress, command=command_line(), on_plan=on_plan)
    rows = [[c, str(s.counts[c]["train"]), str(s.counts[c]["validation"])] for c in s.counts]
    print_table(f"{s.problems} problems · {s.hard} hard · {s.guided} guided "
                f"({s.fallback} fallback) · {sum(s.tokens.values()):,} tokens",
                ["config", "train", "validation"], rows)
    if s.quarantined:
        console.print(f"[yellow]{s.quarantined} rows quarantined[/]: see {out}/quarantine.jsonl",
                      highlight=False)
    for name, why in s.decontam_not_checked.items():
        console.print(f"decontamination not checked against {name}: {why}", highlight=False)
    console.print(f"wrote {out}/export/, report.md, prefix_fraction.png")


@app.command("merge")
def merge_cmd(
    shards: Annotated[list[Path], typer.Argument(help="Output folders of `build --shard i/N`.")],
    out: Annotated[Path, typer.Option(help="Merged output folder.")] = Path("pope-out-merged"),
) -> None:
    """Join shard builds into one export; refuses overlapping or missing shards."""
    from pope_data.shards import merge

    with handle_errors():
        counts = merge(shards, out)
    print_table("merged", ["config", "train", "validation"],
                [[c, str(v["train"]), str(v["validation"])] for c, v in counts.items()])


@app.command("publish")
def publish_cmd(
    out_dir: Annotated[Path, typer.Argument(help="A finished `pope-data build` folder.")],
    repo: Annotated[str, typer.Option(help="Hub dataset repo, ORG/NAME.")],
    private: Annotated[bool, typer.Option("--private")] = False,
    revision: Annotated[str | None, typer.Option(help="Push to this branch (created if missing).")] = None,
    create_pr: Annotated[bool, typer.Option("--create-pr", help="Open a pull request instead.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing repo's files.")] = False,
    dry_run: Annotated[Path | None, typer.Option("--dry-run", help="Write the upload folder here; upload nothing.")] = None,
    license: Annotated[str | None, typer.Option(help="Override the licence inherited from the source.")] = None,
    pretty_name: Annotated[str | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Push hard / guided / mix / prefixes configs with a dataset card (token: HF_TOKEN or login)."""
    setup_logging(verbose)
    from pope_data.hub import publish

    with handle_errors():
        result = publish(out_dir, repo, private=private, revision=revision, create_pr=create_pr,
                         overwrite=overwrite, dry_run_dir=dry_run, license=license,
                         pretty_name=pretty_name)
    where = f"staged in {dry_run}" if dry_run else f"pushed to https://huggingface.co/datasets/{repo}"
    console.print(f"{len(result.files)} files {where}")


@app.command("decontaminate")
def decontaminate_cmd(
    path: Annotated[str, typer.Argument(help="Training problems (jsonl/json/parquet).")],
    against: Annotated[list[str] | None, typer.Option(help="Eval set name or file (repeat); default AIME 2025 + HMMT Feb 2025.")] = None,
    columns: Annotated[str | None, typer.Option(help="Column mapping for the training file.")] = None,
    ngram: Annotated[int, typer.Option()] = 8,
    threshold: Annotated[float, typer.Option(help="Share of a problem's n-grams found in one eval item.")] = 0.5,
    out: Annotated[Path, typer.Option(help="Folder for kept.jsonl and decontamination.json.")] = Path("pope-decontam"),
) -> None:
    """Remove training problems that overlap evaluation sets; list what matched what."""
    import json

    from pope_data.decontam import (
        DEFAULT_EVAL_SETS,
        decontaminate,
        load_eval_sets,
        write_decontamination,
    )
    from pope_data.sources import load_problems
    from pope_eval.datafiles import Quarantine

    with handle_errors():
        q = Quarantine()
        problems = load_problems("generic", path=path, columns=columns, quarantine=q)
        eval_sets, not_checked = load_eval_sets(against or DEFAULT_EVAL_SETS, option="--against")
        result = decontaminate(problems, eval_sets=eval_sets, ngram=ngram, threshold=threshold)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "kept.jsonl").open("w", encoding="utf-8") as fh:
            for p in result.kept:
                fh.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
        write_decontamination(out, result, not_checked)
    print_table(f"{len(result.removed)} of {len(problems)} removed",
                ["problem", "eval set", "eval item", "method", "score"],
                [[r["problem_id"], r["eval_set"], r["eval_id"], r["method"], f"{r['score']:.2f}"]
                 for r in result.removed])
    for name, why in not_checked.items():
        console.print(f"[yellow]not checked:[/] {name}: {why}")
