"""Console helpers shared by the CLI apps: one rich console, error lines, the run skeleton.

Commands wrap their body in `run_command(...)` (or `handle_errors()`); user text is printed
without markup, so brackets in messages and values survive.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import typer.rich_utils
from rich.console import Console
from rich.logging import RichHandler
from rich.measure import Measurement
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from pope_eval.errors import PopeError

console = Console(stderr=True)
out = Console()
# Option names must never be cut in --help: render it at least 120 columns wide.
typer.rich_utils.MAX_WIDTH = max(typer.rich_utils.MAX_WIDTH or 0,
                                 shutil.get_terminal_size((120, 24)).columns, 120)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


# pope's own loggers: INFO with -v, warnings and errors without (the root logger's level).
OUR_LOGGERS = ("pope_cli", "pope_data", "pope_eval", "pope_train")
# The engines and trainers pope drives: their INFO (what they load, how they run) with -v,
# errors only without. Every other library (matplotlib, httpx, filelock, ...) logs warnings
# and errors only, -v or not: its DEBUG is no help to a pope user.
ENGINE_LOGGERS = ("vllm", "trl")
# Libraries whose INFO is noise even with -v (file-by-file loading, config dumps): warnings
# with -v, errors only without.
QUIET_LOGGERS = ("transformers", "huggingface_hub", "datasets", "torch", "accelerate")
# Warnings that say nothing a pope user can act on. TRL warns at every import that pope's
# vLLM is outside the range it was tested with (pyproject.toml pins the pair that pope tests):
# hidden without -v, shown once with it.
QUIET_WARNINGS = ("TRL currently supports vLLM versions",)


def setup_logging(verbose: bool) -> None:
    """Log through the rich console: pope's own warnings, and with -v pope's and the engines'
    (vLLM, TRL) INFO; other libraries log only their warnings (-v) or errors.

    Libraries' own progress bars (huggingface_hub, datasets, transformers) are off either way:
    the command draws its own. Libraries imported later (vLLM also in its engine processes)
    read that from the environment; one already imported is set directly. A variable the user
    set is left as it is. vLLM's own weight-loading bars follow its `use_tqdm_on_load` engine
    option. Known noise (QUIET_WARNINGS) is filtered here, in this process and (through
    PYTHONWARNINGS) in the processes it starts.
    """
    import os
    import warnings

    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    for name in OUR_LOGGERS:  # without -v: the root's WARNING
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.NOTSET)
    for name in ENGINE_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("once" if verbose else "ignore", message=re.escape(message))
    defaults = [("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
                ("VLLM_LOGGING_LEVEL", "INFO" if verbose else "ERROR"),
                ("TRANSFORMERS_VERBOSITY", "warning" if verbose else "error")]
    if not verbose:
        defaults.append(("PYTHONWARNINGS", ",".join(f"ignore:{m}" for m in QUIET_WARNINGS)))
    for key, value in defaults:
        os.environ.setdefault(key, value)
    for module, turn_off in (("huggingface_hub.utils", "disable_progress_bars"),
                             ("transformers.utils.logging", "disable_progress_bar"),
                             ("datasets.utils.logging", "disable_progress_bar")):
        if module in sys.modules:
            getattr(sys.modules[module], turn_off)()


def error_line(message: str) -> None:
    """`error: MESSAGE` in red; the message is printed as it is (brackets kept, no markup)."""
    console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False,
                  soft_wrap=True)


def warn_line(message: str, detail: str = "") -> None:
    """A yellow `message` and a plain `detail`, both printed as they are."""
    console.print(Text.assemble((message, "yellow"), detail), highlight=False, soft_wrap=True)


def info_line(message: str) -> None:
    """A plain line, printed as it is and never wrapped (log files keep it whole)."""
    console.print(message, highlight=False, markup=False, soft_wrap=True)


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
            console.print(line, highlight=False, markup=False)

    try:
        yield
    except PopeError as exc:
        error_line(str(exc))
        hint()
        raise typer.Exit(EXIT_ERROR) from None
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        error_line(f"{exc.strerror or exc}{where}")
        hint()
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        warn_line("interrupted.", " Finished work is saved.")
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


class LazyProgress:
    """A rich progress bar that appears with its first task: a command that fails its checks
    prints its one error line and no empty bar above it."""

    def __init__(self, *columns: Any) -> None:
        self.columns = columns
        self.bar: Progress | None = None

    def add_task(self, description: str, **kwargs: Any) -> int:
        if self.bar is None:
            self.bar = Progress(*self.columns, console=console, transient=False)
            self.bar.start()
        return self.bar.add_task(description, **kwargs)

    def update(self, task: int, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(task, **kwargs)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@dataclass
class RunState:
    """What a running command knows about its run: whether work started (so a resume hint
    makes sense), its progress bar and the plain progress lines for non-terminal logs."""

    out: Path
    progress: LazyProgress
    plain: PlainProgress = field(default_factory=PlainProgress)
    started: bool = False

    def hint(self) -> str | None:
        return f"Re-run the same command to resume from {self.out}." if self.started else None


@contextlib.contextmanager
def run_command(verbose: bool, out: Path, *columns: Any) -> Iterator[RunState]:
    """The skeleton of a command that writes a run folder: logging, a progress bar made of
    `columns` (shown from its first task on), errors as one line, and the resume hint once work
    has started."""
    setup_logging(verbose)
    state = RunState(out=Path(out), progress=LazyProgress(*columns))
    try:
        with handle_errors(state.hint):
            yield state
    finally:
        state.progress.stop()


# A cell of numbers (counts, estimates, CIs, deltas): its column is right-aligned.
_NUMBER_CELL = re.compile(r"^[-+\[\]\d.,%: ]*$")


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A table on stdout, at least as wide as its title (which is never wrapped). On a terminal
    it fits the window; in a log or a pipe (rich assumes 80 columns there) it is drawn at its
    full width, so no cell or title is cut or broken mid-phrase."""
    table = Table(title=Text(title), min_width=len(title) + 4)
    for i, h in enumerate(header):
        numbers = all(_NUMBER_CELL.match(row[i]) for row in rows if i < len(row))
        table.add_column(Text(h), justify="right" if i and numbers else "left")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    if out.is_terminal:
        out.print(table)
        return
    full = Measurement.get(out, out.options.update(width=10_000), table).maximum
    Console(file=out.file, width=max(out.width, full), color_system=None).print(table)


def command_line() -> str:
    return " ".join(["pope-" + sys.argv[0].rsplit("pope-", 1)[-1], *sys.argv[1:]]) if sys.argv else ""
