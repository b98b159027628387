"""Console helpers shared by the CLI apps: one rich console, error reporting, engine options.

Commands wrap their body in `handle_errors()` and build engines with `engine_config(...)`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator

import typer
import typer.rich_utils
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from pope_eval.engines import EngineConfig
from pope_eval.errors import PopeError

console = Console(stderr=True)
out = Console()
# Option names must never be cut in --help: render it at least 120 columns wide.
typer.rich_utils.MAX_WIDTH = max(typer.rich_utils.MAX_WIDTH or 0,
                                 shutil.get_terminal_size((120, 24)).columns, 120)

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
def handle_errors(resume_hint: Callable[[], str | None] | None = None) -> Iterator[None]:
    """Turn library errors into one clear red line and a non-zero exit; Ctrl-C exits 130.

    `resume_hint()` is asked at error time and returns a line only when there is work to resume
    (a run that failed its checks has nothing to resume). OS errors (full disk, read-only
    folder) are one line naming the file, never a traceback.
    """
    def hint() -> None:
        line = resume_hint() if resume_hint else None
        if line:
            console.print(line, highlight=False)

    try:
        yield
    except PopeError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        hint()
        raise typer.Exit(EXIT_ERROR) from None
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        console.print(f"[bold red]error:[/] {exc.strerror or exc}{where}", highlight=False)
        hint()
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted.[/] Finished work is saved.", highlight=False)
        hint()
        raise typer.Exit(EXIT_INTERRUPTED) from None


class PlainProgress:
    """Progress lines for logs that are not a terminal (CI, nohup): rich's live bar draws
    nothing there, so a plain line is printed at most every `every` seconds."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self.last = 0.0

    def __call__(self, line: str, force: bool = False) -> None:
        if console.is_terminal:
            return
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            console.print(line, highlight=False, markup=False)


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
    request_timeout: float = 600.0,
    max_retries: int = 4,
    send_seed: bool = True,
) -> EngineConfig:
    return EngineConfig(
        request_timeout=request_timeout,
        max_retries=max_retries,
        send_seed=send_seed,
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
