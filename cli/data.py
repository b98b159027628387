"""`pope-data`: build POPE datasets (hard set, minimal oracle prefixes, guided mix) and merge shards.

`pope-data build` runs the offline demo; `pope-data build --source omni-math --path FILE --model ID`
runs a real curation. Re-running with the same --out resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pope_cli.common import (
    command_line,
    console,
    engine_config,
    handle_errors,
    print_table,
    setup_logging,
)
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(help="Curate hard sets and minimal-prefix guided datasets for POPE.",
                  no_args_is_help=True)


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option(help="Output folder (re-running with it resumes).")] = Path("pope-out"),
    source: Annotated[str, typer.Option(help="synthetic, omni-math, dapo, dapo-processed or generic.")] = "synthetic",
    path: Annotated[str | None, typer.Option(help="Local jsonl/json/parquet file for the source.")] = None,
    hub_id: Annotated[str | None, typer.Option(help="Hub dataset id (overrides the source's).")] = None,
    columns: Annotated[str | None, typer.Option(help="Column mapping, e.g. 'problem=question,answer=final'.")] = None,
    limit: Annotated[int | None, typer.Option(help="Problems to take (synthetic: how many to make).")] = 16,
    difficulty_min: Annotated[float | None, typer.Option()] = None,
    difficulty_max: Annotated[float | None, typer.Option()] = None,
    domain: Annotated[str | None, typer.Option(help="Keep problems whose domain contains this.")] = None,
    model: Annotated[str, typer.Option(help="Hub id, local folder, or 'smollm2-135m'.")] = "smollm2-135m",
    engine: Annotated[str, typer.Option(help="auto, transformers, vllm or openai.")] = "auto",
    endpoint: Annotated[list[str] | None, typer.Option(help="OpenAI-compatible base URL (repeat for several).")] = None,
    ray: Annotated[str | None, typer.Option("--ray", help="Ray cluster for engine replicas: local, auto or host:port.")] = None,
    replicas: Annotated[int, typer.Option(help="Engine replicas (Ray actors; needs --ray).")] = 1,
    k: Annotated[int, typer.Option(help="Unguided samples per problem for the hard set.")] = 4,
    n: Annotated[int, typer.Option(help="Samples per probed prefix.")] = 4,
    wave_size: Annotated[int, typer.Option(help="Samples per wave in sequential strategies.")] = 2,
    strategy: Annotated[str, typer.Option(help="sweep, bisect, sweep-seq or bisect-seq.")] = "bisect-seq",
    segmenter: Annotated[str, typer.Option(help="steps, sentences or tokens.")] = "steps",
    max_tokens: Annotated[int, typer.Option()] = 192,
    temperature: Annotated[float, typer.Option()] = 0.8,
    top_p: Annotated[float, typer.Option()] = 0.95,
    seed: Annotated[int, typer.Option()] = 0,
    validation_fraction: Annotated[float, typer.Option()] = 0.1,
    shard: Annotated[str | None, typer.Option(help="I/N: this machine's share of the problems.")] = None,
    batch_samples: Annotated[int, typer.Option(help="Samples per engine call.")] = 256,
    concurrency: Annotated[int, typer.Option(help="openai: requests in flight per endpoint.")] = 32,
    no_send_seed: Annotated[bool, typer.Option("--no-send-seed", help="openai: omit per-request seeds (vLLM CPU servers).")] = False,
    decontaminate: Annotated[bool, typer.Option(help="Drop problems overlapping the eval sets.")] = True,
    decontam_against: Annotated[list[str] | None, typer.Option(help="Eval set name or file (repeat); default aime2025 + hmmt_feb_2025.")] = None,
    solve: Annotated[bool, typer.Option("--solve", help="Have an oracle model write solutions for hard problems without one (DAPO).")] = False,
    oracle_model: Annotated[str | None, typer.Option(help="Oracle model (default: --model).")] = None,
    oracle_engine: Annotated[str, typer.Option(help="Oracle engine: auto, transformers, vllm or openai.")] = "auto",
    oracle_endpoint: Annotated[list[str] | None, typer.Option(help="Oracle OpenAI-compatible URL (repeat).")] = None,
    solve_n: Annotated[int, typer.Option(help="Oracle attempts per problem.")] = 4,
    solve_max_tokens: Annotated[int, typer.Option()] = 4096,
    cache_dir: Annotated[str | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Hard set -> minimal prefixes -> guided rows, 1:1 mix, verl parquet and a report."""
    setup_logging(verbose)
    from dataclasses import replace

    from pope_data.build import BuildConfig, run_build

    with handle_errors(f"Re-run the same command to resume from {out}."):
        ecfg = engine_config(engine=engine, model=model, seed=seed, endpoints=endpoint,
                             max_batch_size=64, concurrency=concurrency, cache_dir=cache_dir,
                             ray_address=ray, replicas=replicas)
        if no_send_seed:
            ecfg = replace(ecfg, send_seed=False)
        config = BuildConfig(
            out=str(out), source=source, path=path, hub_id=hub_id, columns=columns, limit=limit,
            difficulty_min=difficulty_min, difficulty_max=difficulty_max, domain=domain,
            engine=ecfg, k=k, n=n, wave_size=wave_size, strategy=strategy, segmenter=segmenter,
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
            validation_fraction=validation_fraction, shard=shard, samples_per_batch=batch_samples,
            decontaminate=decontaminate, solve=solve, solve_n=solve_n,
            solve_max_tokens=solve_max_tokens,
            oracle=(engine_config(engine=oracle_engine, model=oracle_model, seed=seed,
                                  endpoints=oracle_endpoint, max_batch_size=64,
                                  concurrency=concurrency, cache_dir=cache_dir)
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

            def progress(state) -> None:
                if state.stage not in tasks:
                    tasks[state.stage] = bar.add_task(state.stage, stage=state.stage, inflight=0,
                                                      tokens=0, tps=0.0, total=state.problems_total)
                bar.update(tasks[state.stage], completed=state.problems_done,
                           inflight=state.probes_in_flight, tokens=state.generated_tokens,
                           tps=state.tokens_per_s)

            s = run_build(config, progress=progress, command=command_line())
    rows = [[c, str(s.counts[c]["train"]), str(s.counts[c]["validation"])] for c in s.counts]
    print_table(f"{s.problems} problems · {s.hard} hard · {s.guided} guided "
                f"({s.fallback} fallback) · {sum(s.tokens.values()):,} tokens",
                ["config", "train", "validation"], rows)
    console.print(f"wrote {out}/export/, report.md, prefix_fraction.png")


@app.command("merge")
def merge_cmd(
    shards: Annotated[list[Path], typer.Argument(help="Output folders of `build --shard i/N`.")],
    out: Annotated[Path, typer.Option(help="Merged output folder.")] = Path("pope-out-merged"),
) -> None:
    """Join shard builds into one export; refuses overlapping or missing shards."""
    from pope_data.build import merge

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
        eval_sets, not_checked = load_eval_sets(against or DEFAULT_EVAL_SETS)
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
