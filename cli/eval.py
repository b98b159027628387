"""`pope-eval`: pass@k of a model on AIME 2025, HMMT Feb 2025 or any problem file.

`pope-eval pass-at-k --data aime2025 --model ID --n 16 --out DIR`; `pope-eval compare DIR1 DIR2`.
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
    parse_ks,
    print_table,
    setup_logging,
)
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pope_eval.benchmarks import BENCHMARKS
from pope_eval.engines import Sampling, engine_names

app = typer.Typer(help="Measure pass@k with math-verify grading.", no_args_is_help=True)
BENCHMARK_NAMES = tuple(BENCHMARKS)


@app.command("pass-at-k")
def pass_at_k_cmd(
    data: Annotated[str, typer.Option(help=f"Benchmark name ({', '.join(BENCHMARK_NAMES)}; bundled, offline), hub:ORG/NAME[:split], or a .jsonl/.json/.parquet file.")] = "aime2025",
    model: Annotated[str, typer.Option(help="Hub id, local folder, or 'smollm2-135m' (bundled, offline).")] = "smollm2-135m",
    engine: Annotated[str, typer.Option(help=f"One of {', '.join(engine_names())}.")] = "auto",
    endpoint: Annotated[list[str] | None, typer.Option(help="OpenAI-compatible base URL (repeat for several).")] = None,
    ray: Annotated[str | None, typer.Option("--ray", help="Ray cluster for engine replicas: local, auto or host:port.")] = None,
    replicas: Annotated[int, typer.Option(help="Engine replicas (Ray actors; needs --ray).")] = 1,
    n: Annotated[int, typer.Option(help="Samples per problem.")] = 16,
    k: Annotated[str | None, typer.Option(help="Comma list of k; default powers of two up to n.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Max generated tokens per sample.")] = 4096,
    temperature: Annotated[float, typer.Option()] = 0.7,
    top_p: Annotated[float, typer.Option()] = 0.8,
    seed: Annotated[int, typer.Option()] = 0,
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = None,
    columns: Annotated[str | None, typer.Option(help="Column mapping, e.g. 'problem=question,answer=final'.")] = None,
    out: Annotated[Path, typer.Option(help="Run folder (re-running with it resumes).")] = Path("pope-eval-out"),
    batch_size: Annotated[int, typer.Option(help="transformers: sequences per padded batch.")] = 64,
    concurrency: Annotated[int, typer.Option(help="openai: requests in flight per endpoint.")] = 32,
    request_timeout: Annotated[float, typer.Option(help="openai: seconds to wait for one reply.")] = 600.0,
    max_retries: Annotated[int, typer.Option(help="openai: retries of a failed request.")] = 4,
    no_send_seed: Annotated[bool, typer.Option("--no-send-seed", help="openai: omit per-request seeds (vLLM CPU servers).")] = False,
    cache_dir: Annotated[str | None, typer.Option(help="Converted-model cache (default ~/.cache/pope).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Sample n answers per problem, grade them, and report unbiased pass@k with CIs."""
    setup_logging(verbose)
    from pope_eval.evaluate import PassAtKConfig, run_pass_at_k

    started = False
    plain = PlainProgress()

    def hint() -> str | None:
        return f"Re-run the same command to resume from {out}." if started else None

    with handle_errors(hint):
        config = PassAtKConfig(
            data=data, out=str(out), columns=columns, n=n, ks=parse_ks(k), limit=limit,
            sampling=Sampling(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                              seed=seed),
            engine=engine_config(engine=engine, model=model, seed=seed, endpoints=endpoint,
                                 max_batch_size=batch_size, concurrency=concurrency,
                                 cache_dir=cache_dir, ray_address=ray, replicas=replicas,
                                 request_timeout=request_timeout, max_retries=max_retries,
                                 send_seed=not no_send_seed),
        )
        with Progress(
            TextColumn("[bold]pass@k[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("problems · {task.fields[tokens]:,} tokens"), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=False,
        ) as bar:
            task = bar.add_task("eval", total=None, tokens=0)

            def progress(state) -> None:
                nonlocal started
                if not started and state.quarantined:
                    console.print(f"[yellow]{state.quarantined} rows quarantined[/] (reasons in "
                                  f"{out}/quarantine.jsonl)", highlight=False)
                started = True
                bar.update(task, total=state.problems_total, completed=state.problems_done,
                           tokens=state.generated_tokens)
                plain(f"pass@k: {state.problems_done}/{state.problems_total} problems, "
                      f"{state.generated_tokens:,} tokens",
                      force=state.problems_done == state.problems_total)

            summary = run_pass_at_k(config, progress=progress, command=command_line())
    rows = []
    for kk, v in sorted(summary["pass_at_k"].items(), key=lambda kv: int(kv[0])):
        maj = summary["maj_at_k"].get(kk)
        rows.append([kk, f"{v['estimate']:.3f}", f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]",
                     f"{maj:.3f}" if maj is not None else "-"])
    print_table(f"{summary['data']} · {summary['model']} · {summary['problems']} problems, n = {summary['n']}",
                ["k", "pass@k", "95% CI", "maj@k"], rows)
    if summary["quarantined_rows"]:
        console.print(f"[yellow]{summary['quarantined_rows']} rows quarantined[/]: see "
                      f"{out}/quarantine.jsonl", highlight=False)
    reasons = summary["finish_reasons"]
    total = sum(reasons.values())
    if total and reasons.get("length", 0) / total > 0.5:
        console.print(f"[yellow]{reasons['length']} of {total} samples hit --max-tokens "
                      f"{max_tokens}[/] before answering (see report.md)", highlight=False)
    console.print(f"wrote {out}/summary.json, per_problem.parquet, samples.parquet, report.md, pass_at_k.png")


@app.command("compare")
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Two or more pass-at-k run folders.")],
    plot: Annotated[Path, typer.Option(help="Where to draw the comparison.")] = Path("compare.png"),
) -> None:
    """Print and plot several pass@k runs side by side."""
    from pope_eval.report import compare_runs

    with handle_errors():
        if len(runs) < 2:
            console.print("[bold red]error:[/] compare needs at least two run folders")
            raise typer.Exit(2)
        header, rows = compare_runs(runs, plot)
    print_table("pass@k", header, rows)
    console.print(f"wrote {plot}")
