"""`pope-train`: GRPO with pope's configs on any registered backend: verl (clusters) or TRL (one machine).

`pope-train run pope --export OUT/export --model ID [verl overrides...]` launches verl;
`--backend trl --max-steps 20 --out DIR` trains in-process with TRL; `--preset paper` starts from the
paper's values; `pope-train configs` lists both.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from pope_cli.common import (
    PlainProgress,
    console,
    error_line,
    handle_errors,
    info_line,
    out,
    print_table,
    setup_logging,
)
from pope_cli.options import (
    config_options,
    describe_preset,
    given_on_command_line,
    option_flags,
    preset_values,
)
from rich.text import Text

from pope_eval.errors import ConfigError
from pope_eval.options import flag_of, meta
from pope_eval.presets import PRESETS
from pope_train.backends import BACKENDS, Plan, TrainBackend
from pope_train.recipes import RECIPES, Recipe
from pope_train.sft import SftOptions

PRESET_COMMAND = "train"  # the command's values in pope_eval.presets
SFT_PANEL = "Options of configs with an SFT stage: " + ", ".join(
    r.name for r in RECIPES.values() if r.sft)

app = typer.Typer(help="Train with GRPO on pope's guided datasets (verl or TRL).",
                  no_args_is_help=True)


def _support(recipe: Recipe, backend: str) -> str:
    if not recipe.supports(backend):
        return "no"
    settings = recipe.settings(backend)
    return "yes" + (f" ({', '.join(f'{k}={v}' for k, v in settings.items())})" if settings else "")


@app.command("configs")
def configs_cmd() -> None:
    """List the training configs, their export subsets and which backend runs them."""
    names = BACKENDS.names()
    rows = [[r.name, ", ".join(r.subsets), *(_support(r, b) for b in names), r.summary]
            for r in RECIPES.values()]
    print_table("pope-train configs", ["config", "export subsets", *names, "what"], rows)
    for r in RECIPES.values():
        for b in names:
            why = r.why_not(b)
            if why is not None:
                out.print(f"{r.name} on {b}: {why}", highlight=False, markup=False,
                          soft_wrap=True)


def _backend_options(command: Callable[..., None]) -> Callable[..., None]:
    """Every backend's option dataclass as typer options, one help panel per backend: the
    command's `options` parameter becomes them, and the command gets an object with one
    attribute per backend name holding that backend's options. Options (and key=value
    overrides) of a backend other than --backend are refused before any option is built, so
    the error names the backend that takes them, not a check of their values.

    The one place options are generated (pope_cli.options.config_options)."""
    specs = {b.name: b.options for b in BACKENDS.values()}
    every = dataclasses.make_dataclass(
        "BackendOptions", [(name, cls, dataclasses.field(default_factory=cls))
                           for name, cls in specs.items()], frozen=True)
    wrapped = config_options(options=every)(command)
    sft_flags = option_flags(SftOptions)
    for param in inspect.signature(wrapped).parameters.values():
        if typing.get_origin(param.annotation) is not Annotated:
            continue
        info = typing.get_args(param.annotation)[1]
        # typer keeps an Annotated option's first name in `default`, the others in param_decls.
        names = {info.default, *(info.param_decls or ())}
        for name, cls in specs.items():
            if names & option_flags(cls):
                info.rich_help_panel = f"Options of --backend {name}"
        if names & sft_flags:  # declared once, taken by every backend
            info.rich_help_panel = SFT_PANEL

    @functools.wraps(wrapped)
    def refusing(**kwargs: Any) -> None:
        with handle_errors():
            _refuse_other_backends(kwargs["ctx"], BACKENDS[kwargs["backend"]],
                                   kwargs["overrides"] or [])
        wrapped(**kwargs)

    del refusing.__wrapped__  # typer reads the generated signature, not the command's
    return refusing


def _refuse_other_backends(ctx: typer.Context, backend: TrainBackend,
                           overrides: list[str]) -> None:
    """ConfigError for options (and key=value overrides) the chosen backend does not take,
    naming the backend that does: "--max-steps: only for --backend trl"."""
    mine = option_flags(backend.options)
    owners = {b.name: option_flags(b.options) for b in BACKENDS.values() if b is not backend}
    refused: dict[str, list[str]] = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)  # typer's own click: compare by name
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        flag = param.opts[0]
        if flag in mine:
            continue
        having = [name for name, flags in owners.items() if flag in flags]
        if having:
            refused.setdefault(" or ".join(f"--backend {n}" for n in having), []).append(flag)
    if overrides and backend.overrides is None:
        taking = [b for b in BACKENDS.values() if b.overrides]
        what = " / ".join(f"{b.overrides} (key=value)" for b in taking) or "key=value overrides"
        refused.setdefault(" or ".join(f"--backend {b.name}" for b in taking), []).append(what)
    if refused:
        raise ConfigError("; ".join(f"{', '.join(flags)}: only for {where}"
                                    for where, flags in refused.items())
                          + f" (this run uses --backend {backend.name})")


def _refuse_sft_options(ctx: typer.Context, recipe: Recipe) -> None:
    """ConfigError for SFT options given with a config that has no SFT stage."""
    if recipe.sft:
        return
    sft_flags = option_flags(SftOptions)
    given = [p.opts[0] for p in ctx.command.params
             if p.opts and p.opts[0] in sft_flags and given_on_command_line(ctx, p.name)]
    if given:
        raise ConfigError(f"{', '.join(given)}: only for configs with an SFT stage ("
                          f"{', '.join(r.name for r in RECIPES.values() if r.sft)}); "
                          f"{recipe.name} has none")


def _apply_preset(ctx: typer.Context, name: str | None, backend: TrainBackend, options: Any,
                  model: str | None) -> tuple[Any, str | None]:
    """The backend's options and the model with preset `name`'s train values where the user gave
    none (pope_cli.options.preset_values), its "preset NAME: ..." line printed. Values for flags
    the backend does not take are reported as not applied; a backend whose options have a
    `preset` field gets the record (TRL: run_config.json)."""
    fields = {flag_of(f): f.name for f in dataclasses.fields(backend.options) if meta(f)["cli"]}
    # typer's parameter names: the flag without dashes (pope_cli.options' generated options).
    params = {flag: flag[2:].replace("-", "_") for flag in fields}
    values, record = preset_values(ctx, name, PRESET_COMMAND, {**params, "--model": "model"})
    if record is None:
        return options, model
    model = values.pop("model", model)
    field_of = {params[flag]: field for flag, field in fields.items()}
    changes = {field_of[param]: value for param, value in values.items()}
    if "preset" in {f.name for f in dataclasses.fields(options)}:
        changes["preset"] = record
    info_line(describe_preset(record))
    return dataclasses.replace(options, **changes), model


def _preset_help() -> str:
    names = ", ".join(n for n, p in PRESETS.items() if p.values_for(PRESET_COMMAND))
    return (f"Published settings to start from: {names} (explicit options win; values a backend "
            "has no option for are named; see docs/presets.md).")


def _train(backend: TrainBackend, plan: Plan) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if plan.steps is None:  # the backend shows its own progress
        outcome = backend.train(plan)
    else:
        plain = PlainProgress()
        with Progress(TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            task = bar.add_task("train", total=plan.steps, info="loading model")

            def progress(step: int, total: int, info: str) -> None:
                bar.update(task, completed=step, total=total, info=info)
                plain(f"step {step}/{total}: {info}")

            outcome = backend.train(plan, progress)
    if outcome.exit_code != 0:
        for line in outcome.lines:
            error_line(line)
        raise typer.Exit(outcome.exit_code)
    first, *rest = outcome.lines or ("trained",)
    # Plain lines that never wrap: the paths in them stay whole (and copyable).
    console.print(Text.assemble(("done", "bold green"), f": {first}"), highlight=False,
                  soft_wrap=True)
    for line in rest:
        info_line(line)


def _overrides_help() -> str:
    return "; ".join(f"{b.overrides}, key=value (--backend {b.name} only)."
                     for b in BACKENDS.values() if b.overrides)


class _PlainUsage(typer.core.TyperCommand):
    """Usage line with arguments named plainly (`CONFIG [KEY=VALUE]...`, not `{CONFIG}`)."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        return [piece.replace("{", "").replace("}", "") for piece in super().collect_usage_pieces(ctx)]


@app.command("run", cls=_PlainUsage)
@_backend_options
def run_cmd(
    ctx: typer.Context,
    config: Annotated[str, typer.Argument(
        metavar="CONFIG", show_default=False,
        help=f"Training config: {', '.join(RECIPES)} (see `pope-train configs`).")],
    model: Annotated[str | None, typer.Option(
        help="Hub id, local model folder, or 'smollm2-135m' (required unless --preset names "
             "one).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="KEY=VALUE", show_default=False, help=_overrides_help())] = None,
    backend: Annotated[str, typer.Option(help="; ".join(
        f"{b.name}: {b.summary}" for b in BACKENDS.values()) + ".")] = BACKENDS.names()[0],
    train: Annotated[list[str] | None, typer.Option(help="Training parquet (repeatable).")] = None,
    export: Annotated[Path | None, typer.Option(help="OUT/export of `pope-data build`: the config's train subsets (and, for verl, the hard/guided validation splits).")] = None,
    # Not named `preset`: pope_cli.options.config_options takes a parameter of that name as its own.
    preset_name: Annotated[str | None, typer.Option("--preset", help=_preset_help())] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (verl: command and resolved config; trl: GRPOConfig); do not train.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    *,
    options: Any,
) -> None:
    """Check data, model and backend, then train CONFIG with verl (default) or TRL."""
    setup_logging(verbose)
    with handle_errors():
        launched = os.environ.get("WORLD_SIZE", "1")
        if launched.isdigit() and int(launched) > 1:
            # Every process would check and lock --out; pope-train starts its own processes.
            raise ConfigError(f"--processes: pope-train run was started by a launcher "
                              f"(WORLD_SIZE={launched}); run it plainly with --backend trl "
                              f"--processes {launched}: it starts the training processes itself")
        chosen = BACKENDS[backend]  # options of the others are refused (_backend_options)
        recipe = RECIPES[config]
        _refuse_sft_options(ctx, recipe)
        mine, model = _apply_preset(ctx, preset_name, chosen, getattr(options, chosen.name), model)
        if model is None:
            raise ConfigError("--model: give a Hub id, a local model folder or 'smollm2-135m' "
                              "(or a --preset that names one)")
        plan = chosen.plan(recipe, model=model, export=str(export) if export else None,
                           train_files=tuple(train or ()), options=mine,
                           overrides=tuple(overrides or ()))
        if not dry_run:  # a Hub id offline: one line now, not the Hub clients' retries later
            from pope_eval.models import check_hub_model

            check_hub_model(model)
        for label, text in plan.lines:
            console.print(Text.assemble((label, "bold"), f": {text}"), highlight=False,
                          soft_wrap=True)
        if dry_run:
            out.print(chosen.dry_run(plan), highlight=False, markup=False, soft_wrap=True)
            return
        _train(chosen, plan)


if __name__ == "__main__":
    app()
