"""`pope-eval`: pass@k of a model on AIME 2025, HMMT Feb 2025 or any problem file.

`pope-eval pass-at-k --data aime2025 --model ID --n 16 --out DIR`; `pope-eval compare DIR1 DIR2`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pope_cli.common import (
    command_line,
    error_line,
    handle_errors,
    info_line,
    print_table,
    run_command,
    warn_line,
)
from pope_cli.options import config_options
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pope_eval.evaluate import PassAtKConfig

app = typer.Typer(help="Measure pass@k with math-verify grading.", no_args_is_help=True)


@app.command("pass-at-k")
@config_options(config=PassAtKConfig, preset="pass-at-k")
def pass_at_k_cmd(
    config: PassAtKConfig,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs.")] = False,
) -> None:
    """Sample n answers per problem, grade them, and report unbiased pass@k with CIs."""
    from pope_eval.evaluate import run_pass_at_k

    columns = (TextColumn("[bold]pass@k[/]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("problems · {task.fields[tokens]:,} tokens"), TimeElapsedColumn(),
               TimeRemainingColumn())
    with run_command(verbose, Path(config.out), *columns) as run:
        task: int | None = None

        def progress(state) -> None:
            nonlocal task
            if task is None:
                if state.quarantined:
                    warn_line(f"{state.quarantined} rows quarantined",
                              f" (reasons in {config.out}/quarantine.jsonl)")
                task = run.progress.add_task("eval", total=None, tokens=0)
            run.started = True
            run.progress.update(task, total=state.problems_total, completed=state.problems_done,
                                tokens=state.generated_tokens)
            run.plain(f"pass@k: {state.problems_done}/{state.problems_total} problems, "
                      f"{state.generated_tokens:,} tokens",
                      force=state.problems_done == state.problems_total)

        summary = run_pass_at_k(config, progress=progress, command=command_line())
    rows = []
    for kk, v in sorted(summary["pass_at_k"].items(), key=lambda kv: int(kv[0])):
        maj = summary["maj_at_k"].get(kk)
        rows.append([kk, f"{v['estimate']:.3f}", f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]",
                     f"{maj:.3f}" if maj is not None else "-"])
    print_table(f"{summary['data']} · {summary['model']} · {summary['problems']} problems, "
                f"n = {summary['n']}", ["k", "pass@k", "95% CI", "maj@k"], rows)
    if summary["quarantined_rows"]:
        warn_line(f"{summary['quarantined_rows']} rows quarantined",
                  f": see {config.out}/quarantine.jsonl")
    reasons = summary["finish_reasons"]
    total = sum(reasons.values())
    if total and reasons.get("length", 0) / total > 0.5:
        warn_line(f"{reasons['length']} of {total} samples hit --max-tokens "
                  f"{config.sampling.max_tokens}", " before answering (see report.md)")
    info_line(f"wrote {config.out}/summary.json, per_problem.parquet, samples.parquet, "
              "report.md, pass_at_k.png")


@app.command("compare")
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Two or more pass-at-k run folders.")],
    # Text, not a Path: a trailing slash (a folder to be made) must survive parsing.
    plot: Annotated[str, typer.Option(help="PNG file to draw the comparison in (.png is added "
                                           "to a name without one; a folder gets "
                                           "compare.png).")] = "compare.png",
) -> None:
    """Print and plot several pass@k runs side by side."""
    from pope_eval.report import check_plot_path, compare_runs

    with handle_errors():
        if len(runs) < 2:
            error_line("compare needs at least two run folders")
            raise typer.Exit(2)
        plot_file = check_plot_path(plot)
        header, rows = compare_runs(runs, plot_file)
    print_table("pass@k", header, rows)
    info_line(f"wrote {plot_file}")
