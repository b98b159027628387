"""Console helpers shared by the CLI apps: one rich console, error reporting, engine options.

Commands wrap their body in `handle_errors()` and build engines with `engine_config(...)`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from pope_eval.engines import EngineConfig
from pope_eval.errors import PopeError

console = Console(stderr=True)
out = Console()

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


@contextlib.contextmanager
def handle_errors(resume_hint: str | None = None) -> Iterator[None]:
    """Turn library errors into one clear red line and a non-zero exit; Ctrl-C exits 130."""
    try:
        yield
    except PopeError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        if resume_hint:
            console.print(resume_hint, highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted.[/] Finished work is saved.", highlight=False)
        if resume_hint:
            console.print(resume_hint, highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def engine_config(
    *,
    engine: str,
    model: str,
    seed: int,
    endpoints: list[str] | None,
    max_batch_size: int,
    concurrency: int,
    cache_dir: str | None,
    ray_address: str | None = None,
    replicas: int = 1,
) -> EngineConfig:
    return EngineConfig(
        engine=engine,
        model=model,
        seed=seed,
        endpoints=tuple(endpoints or ()),
        max_batch_size=max_batch_size,
        concurrency=concurrency,
        cache_dir=cache_dir,
        ray_address=ray_address,
        replicas=replicas,
    )


def parse_ks(spec: str | None) -> tuple[int, ...] | None:
    """'1,2,4' -> (1, 2, 4); None stays None (the default list)."""
    if spec is None or not spec.strip():
        return None
    try:
        return tuple(int(part) for part in spec.split(",") if part.strip())
    except ValueError:
        console.print(f"[bold red]error:[/] --k: expected a comma list of integers, got {spec!r}")
        raise typer.Exit(EXIT_ERROR) from None


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="right" if i else "left")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def command_line() -> str:
    return " ".join(["pope-" + sys.argv[0].rsplit("pope-", 1)[-1], *sys.argv[1:]]) if sys.argv else ""
