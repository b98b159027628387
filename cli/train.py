"""`pope-train`: GRPO on verl with pope's configs, reward and pass@k advantage.

`pope-train run pope --export OUT/export --model ID [verl overrides...]`; `--dry-run` prints the
command and verl's resolved config; `pope-train configs` lists the configs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pope_cli.common import console, handle_errors, out, print_table, setup_logging

app = typer.Typer(help="Train with verl (GRPO) on pope's guided datasets.", no_args_is_help=True)


@app.command("configs")
def configs_cmd() -> None:
    """List the training configs (each extends verl's ppo_trainer)."""
    from pope_train.launch import TRAIN_SETS, config_summary, list_configs

    rows = [[name, ", ".join(TRAIN_SETS.get(name, ())), config_summary(name)]
            for name in list_configs()]
    print_table("pope-train configs", ["config", "export subsets", "what"], rows)


@app.command("run")
def run_cmd(
    config: Annotated[str, typer.Argument(help="Config name (see `pope-train configs`).")],
    model: Annotated[str, typer.Option(help="Hub id, local model folder, or 'smollm2-135m'.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="verl/Hydra overrides, key=value.")] = None,
    train: Annotated[list[str] | None, typer.Option(help="Training parquet (repeatable).")] = None,
    val: Annotated[list[str] | None, typer.Option(help="Validation parquet (repeatable).")] = None,
    export: Annotated[Path | None, typer.Option(help="OUT/export of `pope-data build`: the config's train subsets and the hard/guided validation splits.")] = None,
    bench: Annotated[list[str] | None, typer.Option(help="Validation benchmark: aime2025, hmmt_feb_2025 or a problem file (repeatable).")] = None,
    work_dir: Annotated[Path, typer.Option(help="Where converted validation files go.")] = Path("pope-train-out"),
    nnodes: Annotated[int, typer.Option(help="Ray cluster nodes.")] = 1,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per node.")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="Existing Ray cluster (head address).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the command and verl's resolved config; do not train.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Check data, model and verl, then run `python -m verl.trainer.main_ppo` with CONFIG."""
    setup_logging(verbose)
    from pope_train.launch import LaunchConfig, plan_launch, resolved_config, run

    with handle_errors():
        cfg = LaunchConfig(
            config=config, model=model, train_files=tuple(train or ()),
            val_files=tuple(val or ()), export_dir=str(export) if export else None,
            benchmarks=tuple(bench or ()), work_dir=str(work_dir), nnodes=nnodes,
            gpus_per_node=gpus_per_node, ray_address=ray_address,
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
