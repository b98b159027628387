"""`pope-train`: GRPO with pope's configs on verl (clusters) or TRL (one machine, CPU included).

`pope-train run pope --export OUT/export --model ID [verl overrides...]` launches verl;
`--backend trl --max-steps 20 --out DIR` trains in-process with TRL; `pope-train configs` lists both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pope_cli.common import (
    EXIT_ERROR,
    PlainProgress,
    console,
    handle_errors,
    out,
    print_table,
    setup_logging,
)

app = typer.Typer(help="Train with GRPO on pope's guided datasets (verl or TRL).",
                  no_args_is_help=True)

BACKENDS = ("verl", "trl")


@app.command("configs")
def configs_cmd() -> None:
    """List the training configs, their export subsets and which backend runs them."""
    from pope_train.launch import TRAIN_SETS, config_summary, list_configs
    from pope_train.trl_backend import TRL_CONFIGS, TRL_UNSUPPORTED

    rows = []
    for name in list_configs():
        trl = "yes" if name in TRL_CONFIGS else ("no" if name in TRL_UNSUPPORTED else "-")
        rows.append([name, ", ".join(TRAIN_SETS.get(name, ())), "yes", trl, config_summary(name)])
    print_table("pope-train configs", ["config", "export subsets", "verl", "trl", "what"], rows)


def _refuse(backend: str, given: dict[str, bool]) -> None:
    names = [name for name, present in given.items() if present]
    if names:
        other = "verl" if backend == "trl" else "trl"
        console.print(f"[bold red]error:[/] {', '.join(names)}: only for --backend {other} "
                      f"(this run uses --backend {backend})", highlight=False)
        raise typer.Exit(EXIT_ERROR)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def _run_trl(cfg_kwargs: dict[str, Any], dry_run: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pope_train.trl_backend import TrlConfig, plan_trl, train

    with handle_errors():
        plan = plan_trl(TrlConfig(**cfg_kwargs))
        console.print(f"[bold]train[/]: {', '.join(plan.train_files)}", highlight=False)
        console.print(f"[bold]model[/]: {plan.model_path}  [bold]out[/]: {plan.config.out_dir}",
                      highlight=False)
        if dry_run:
            out.print(json.dumps(plan.describe(), indent=2), highlight=False, markup=False,
                      soft_wrap=True)
            return
        plain = PlainProgress()
        with Progress(TextColumn("[bold]GRPO[/]"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            task = bar.add_task("train", total=plan.config.max_steps, info="loading model")

            def progress(record: dict[str, Any], max_steps: int) -> None:
                info = (f"reward guided {_fmt(record['reward_guided'])} "
                        f"unguided {_fmt(record['reward_unguided'])}  "
                        f"solvable {_fmt(record['solvable'])}  "
                        f"entropy {_fmt(record['entropy'])}  "
                        f"length {_fmt(record['response_length'])}")
                bar.update(task, completed=record["step"], total=max_steps, info=info)
                plain(f"step {record['step']}/{max_steps}: {info}")

            result = train(plan, progress=progress)
    console.print(f"[bold green]done[/]: {result.steps} steps; final model {result.final_model}",
                  highlight=False)
    for ckpt in result.checkpoints:
        console.print(f"checkpoint: {ckpt}", highlight=False)
    console.print(f"metrics: {result.metrics}  plot: {result.plot}", highlight=False)


@app.command("run")
def run_cmd(
    config: Annotated[str, typer.Argument(help="Config name (see `pope-train configs`).")],
    model: Annotated[str, typer.Option(help="Hub id, local model folder, or 'smollm2-135m'.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="verl only: verl/Hydra overrides, key=value.")] = None,
    backend: Annotated[str, typer.Option(help="verl (Ray cluster, GPUs) or trl (in-process, one machine, CPU included).")] = "verl",
    train: Annotated[list[str] | None, typer.Option(help="Training parquet (repeatable).")] = None,
    val: Annotated[list[str] | None, typer.Option(help="verl only: validation parquet (repeatable).")] = None,
    export: Annotated[Path | None, typer.Option(help="OUT/export of `pope-data build`: the config's train subsets (and, for verl, the hard/guided validation splits).")] = None,
    bench: Annotated[list[str] | None, typer.Option(help="verl only: validation benchmark: aime2025, hmmt_feb_2025 or a problem file (repeatable).")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="verl only: where converted validation files go [default: pope-train-out].")] = None,
    nnodes: Annotated[int | None, typer.Option(help="verl only: Ray cluster nodes [default: 1].")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(help="verl only: GPUs per node [default: 1].")] = None,
    ray_address: Annotated[str | None, typer.Option(help="verl only: existing Ray cluster (head address).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="trl only: run folder (metrics.jsonl, metrics.png, checkpoint-N/, final/) [default: pope-train-trl].")] = None,
    max_steps: Annotated[int | None, typer.Option(help="trl only: GRPO steps [default: 20].")] = None,
    seed: Annotated[int | None, typer.Option(help="trl only: seed for sampling, shuffling and init [default: 0].")] = None,
    prompts_per_step: Annotated[int | None, typer.Option(help="trl only: prompts per step, each with --num-generations rollouts [default: 2].")] = None,
    num_generations: Annotated[int | None, typer.Option(help="trl only: rollouts per prompt (group size) [default: 8].")] = None,
    max_completion_length: Annotated[int | None, typer.Option(help="trl only: max generated tokens per rollout [default: 512].")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="trl only: AdamW learning rate [default: the config's, 1e-6].")] = None,
    temperature: Annotated[float | None, typer.Option(help="trl only: sampling temperature [default: the config's, 1.0].")] = None,
    save_steps: Annotated[int | None, typer.Option(help="trl only: save a checkpoint every N steps [default: 10].")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (verl: command and resolved config; trl: GRPOConfig); do not train.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Check data, model and backend, then train CONFIG with verl (default) or TRL."""
    setup_logging(verbose)
    if backend not in BACKENDS:
        console.print(f"[bold red]error:[/] --backend: choose one of {', '.join(BACKENDS)}, "
                      f"got {backend!r}", highlight=False)
        raise typer.Exit(EXIT_ERROR)
    trl_options = {"--out": out_dir, "--max-steps": max_steps, "--seed": seed,
                   "--prompts-per-step": prompts_per_step, "--num-generations": num_generations,
                   "--max-completion-length": max_completion_length,
                   "--learning-rate": learning_rate, "--temperature": temperature,
                   "--save-steps": save_steps}
    if backend == "trl":
        _refuse("trl", {
            "verl overrides (key=value; use the --max-steps/--learning-rate/... options)":
                bool(overrides),
            "--val": bool(val), "--bench": bool(bench), "--work-dir": work_dir is not None,
            "--nnodes": nnodes is not None, "--gpus-per-node": gpus_per_node is not None,
            "--ray-address": ray_address is not None,
        })
        names = {"--out": "out_dir", "--max-steps": "max_steps", "--seed": "seed",
                 "--prompts-per-step": "prompts_per_step", "--num-generations": "num_generations",
                 "--max-completion-length": "max_completion_length",
                 "--learning-rate": "learning_rate", "--temperature": "temperature",
                 "--save-steps": "save_steps"}
        kwargs: dict[str, Any] = {names[k]: (str(v) if k == "--out" else v)
                                  for k, v in trl_options.items() if v is not None}
        kwargs.update(config=config, model=model, train_files=tuple(train or ()),
                      export_dir=str(export) if export else None)
        _run_trl(kwargs, dry_run)
        return
    _refuse("verl", {k: v is not None for k, v in trl_options.items()})
    from pope_train.launch import LaunchConfig, plan_launch, resolved_config, run

    with handle_errors():
        cfg = LaunchConfig(
            config=config, model=model, train_files=tuple(train or ()),
            val_files=tuple(val or ()), export_dir=str(export) if export else None,
            benchmarks=tuple(bench or ()), work_dir=str(work_dir or "pope-train-out"),
            nnodes=1 if nnodes is None else nnodes,
            gpus_per_node=1 if gpus_per_node is None else gpus_per_node, ray_address=ray_address,
            overrides=tuple(overrides or ()),
        )
        plan = plan_launch(cfg)
        console.print(f"[bold]train[/]: {', '.join(plan.train_files)}", highlight=False)
        console.print(f"[bold]validation[/]: {', '.join(plan.val_files) or '(none)'}",
                      highlight=False)
        if dry_run:
            out.print(plan.shell(), highlight=False, markup=False, soft_wrap=True)
            out.print(resolved_config(plan), highlight=False, markup=False, soft_wrap=True)
            return
        code = run(plan)
    if code != 0:
        console.print(f"[bold red]error:[/] verl exited with {code}", highlight=False)
        raise typer.Exit(code)


if __name__ == "__main__":
    app()
