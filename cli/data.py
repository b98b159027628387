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
    handle_errors,
    info_line,
    print_table,
    run_command,
    setup_logging,
    warn_line,
)
from pope_cli.options import config_options
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from pope_data.config import BuildConfig
from pope_data.decontam import DEFAULT_NGRAM, DEFAULT_THRESHOLD

app = typer.Typer(help="Curate hard sets and minimal-prefix guided datasets for POPE.",
                  no_args_is_help=True)


@app.command("build")
@config_options(config=BuildConfig, preset="build")
def build_cmd(
    config: BuildConfig,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs.")] = False,
) -> None:
    """Hard set -> minimal prefixes -> guided rows, 1:1 mix, verl parquet and a report."""
    from pope_data.build import run_build

    columns = (TextColumn("[bold]{task.fields[stage]:>7}[/]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("problems · {task.fields[inflight]} probes in flight · "
                          "{task.fields[tokens]:,} tokens · {task.fields[tps]:.0f} tok/s"),
               TimeElapsedColumn())
    out = config.out
    with run_command(verbose, Path(out), *columns) as run:
        tasks: dict[str, int] = {}

        def on_plan(plan) -> None:
            run.started = True
            for line in plan.lines():
                info_line(line)

        def progress(state) -> None:
            if state.stage not in tasks:
                tasks[state.stage] = run.progress.add_task(
                    state.stage, stage=state.stage, inflight=0, tokens=0, tps=0.0,
                    total=state.problems_total)
            run.progress.update(tasks[state.stage], completed=state.problems_done,
                                inflight=state.probes_in_flight, tokens=state.generated_tokens,
                                tps=state.tokens_per_s)
            run.plain(f"{state.stage}: {state.problems_done}/{state.problems_total} problems, "
                      f"{state.generated_tokens:,} tokens, {state.tokens_per_s:.0f} tok/s",
                      force=state.problems_done == state.problems_total)

        s = run_build(config, progress=progress, command=command_line(), on_plan=on_plan)
    rows = [[c, str(s.counts[c]["train"]), str(s.counts[c]["validation"])] for c in s.counts]
    print_table(f"{s.problems} problems · {s.hard} hard · {s.guided} guided "
                f"({s.fallback} fallback) · {sum(s.tokens.values()):,} tokens",
                ["config", "train", "validation"], rows)
    if s.quarantined:
        warn_line(f"{s.quarantined} rows quarantined", f": see {out}/quarantine.jsonl")
    for name, why in s.decontam_not_checked.items():
        info_line(f"decontamination not checked against {name}: {why}")
    info_line(f"wrote {out}/export/, report.md, prefix_fraction.png")


@app.command("merge")
def merge_cmd(
    shards: Annotated[list[Path], typer.Argument(help="Output folders of `build --shard i/N`.")],
    out: Annotated[Path, typer.Option(help="Merged output folder.")] = Path("pope-out-merged"),
) -> None:
    """Join shard builds into one export; refuses overlapping or missing shards."""
    from pope_data.shards import merge

    with handle_errors():
        counts = merge(shards, out, command=command_line())
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
    token_file: Annotated[Path | None, typer.Option(help="Read the Hub token from this file ('-': one line of standard input); default HF_TOKEN or the stored login.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Push hard / guided / mix / all / prefixes configs with a dataset card (token: HF_TOKEN or login)."""
    setup_logging(verbose)
    from pope_data.hub import publish, read_token_file

    with handle_errors():
        token = read_token_file(token_file) if token_file is not None else None
        result = publish(out_dir, repo, private=private, revision=revision, create_pr=create_pr,
                         overwrite=overwrite, dry_run_dir=dry_run, license=license,
                         pretty_name=pretty_name, token=token)
    where = f"staged in {dry_run}" if dry_run else f"pushed to https://huggingface.co/datasets/{repo}"
    info_line(f"{len(result.files)} files {where}")


@app.command("decontaminate")
def decontaminate_cmd(
    path: Annotated[str, typer.Argument(help="Training problems (jsonl/json/parquet).")],
    against: Annotated[list[str] | None, typer.Option(help="Eval set name or file (repeat); default AIME 2025 + HMMT Feb 2025.")] = None,
    columns: Annotated[str | None, typer.Option(help="Column mapping for the training file.")] = None,
    ngram: Annotated[int, typer.Option(help="Word n-gram length of the overlap check.")] = DEFAULT_NGRAM,
    threshold: Annotated[float, typer.Option(help="Share of a problem's n-grams found in one eval item.")] = DEFAULT_THRESHOLD,
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
    from pope_eval.errors import ConfigError

    with handle_errors():
        # The flags are checked before any file is read or written, and named as typed.
        if ngram < 1:
            raise ConfigError(f"--ngram: must be an integer >= 1, got {ngram}")
        if not 0 < threshold <= 1:  # NaN fails this too
            raise ConfigError(f"--threshold: must be a number in (0, 1], got {threshold}")
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
        warn_line("not checked:", f" {name}: {why}")
