"""Several training processes on one machine for `pope-train run --backend trl --processes N`.

`run_processes(plan, progress, note)` runs in the process that holds DIR's lock and prepared DIR:
it starts N processes with torchrun, each `python -m pope_train.backends.trl.launch FOLDER`
training its share of every step (`backend.run`), follows the main one's progress and returns
the run's result. Only the main process (rank 0) writes DIR; none of them takes its lock.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pope_eval.errors import PopeError

log = logging.getLogger(__name__)

PLAN = "plan.pickle"  # the checked TrlPlan, written once, read by every process
EVENTS = "events.jsonl"  # the main process's progress: {"step": record} / {"note": line}
OUTPUT = "processes.log"  # what the processes print (torchrun's and theirs)
TAIL = 40  # lines of it in the error of a failed launch
POLL = 0.5  # seconds between reads of EVENTS


class TrainingError(PopeError, RuntimeError):
    """A training process failed; the message ends with the processes' last output lines."""


def die_with_parent() -> None:
    """Linux: this process is sent SIGKILL when the process that started it ends, so a `kill -9`
    of `pope-train run` ends torchrun, and torchrun's end every training process: none is left
    writing to DIR for a rerun to collide with. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, int(signal.SIGKILL)) != 0:  # 1: PR_SET_PDEATHSIG
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def launch_command(folder: Path, processes: int) -> list[str]:
    """torchrun (torch's own launcher: it sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
    accelerate reads) on a free local port, running this module in `processes` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={processes}", "-m", __name__, str(folder)]


def run_processes(plan: Any, progress: Callable[[dict[str, Any], int], None] | None = None,
                  note: Callable[[str], None] | None = None) -> Any:
    """Train `plan` (a TrlPlan whose `folder` says where DIR starts) in plan.config.processes
    processes; TrainingError (with their last output lines) when one fails."""
    from pope_train.backends.trl.backend import TrlResult

    with tempfile.TemporaryDirectory(prefix="pope-train-") as tmp:
        folder = Path(tmp)
        (folder / PLAN).write_bytes(pickle.dumps(plan))
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        log.info("starting %d training processes: %s", plan.config.processes,
                 " ".join(launch_command(folder, plan.config.processes)))
        with (folder / OUTPUT).open("wb") as output:
            proc = subprocess.Popen(launch_command(folder, plan.config.processes),
                                    stdout=output, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, preexec_fn=die_with_parent)
            try:
                _follow(proc, folder / EVENTS, progress, note)
            except BaseException:
                _stop(proc)
                raise
        if proc.returncode != 0:
            raise TrainingError(_failure(folder, proc.returncode))
        results = [json.loads(p.read_text()) for p in sorted(folder.glob("result-*.json"))]
    if len(results) != plan.config.processes:
        raise TrainingError(f"training processes: {len(results)} of {plan.config.processes} "
                            "reported a result")
    main = results[0]
    rows: dict[str, int] = {}
    for r in results:
        for kind, count in r["rows_graded"].items():
            rows[kind] = rows.get(kind, 0) + count
    path = lambda v: None if v is None else Path(v)  # noqa: E731
    return TrlResult(out_dir=Path(main["out_dir"]), final_model=Path(main["final_model"]),
                     checkpoints=[Path(c) for c in main["checkpoints"]],
                     metrics=Path(main["metrics"]), plot=path(main["plot"]), rows_graded=rows,
                     steps=main["steps"], sft_model=path(main["sft_model"]), folder=plan.folder)


def _failure(folder: Path, code: int) -> str:
    """What ended a failed launch: the first failing process's error (its last line first,
    then its traceback), else the processes' last output lines."""
    errors = sorted(folder.glob("error-*.txt"), key=lambda p: p.stat().st_mtime)
    if errors:
        text = errors[0].read_text(errors="replace").strip().splitlines()
        rank = errors[0].stem.split("-")[1]
        return (f"training process {rank} failed: {text[-1] if text else '?'}\n"
                + "\n".join(text[-TAIL:]))
    lines = (folder / OUTPUT).read_text(errors="replace").splitlines()[-TAIL:]
    return (f"training processes: torchrun exited {code}; their last {len(lines)} lines:\n"
            + "\n".join(lines))


def _follow(proc: subprocess.Popen, events: Path,
            progress: Callable[[dict[str, Any], int], None] | None,
            note: Callable[[str], None] | None) -> None:
    """Until `proc` exits, hand each new event of the main process to `progress` / `note`."""
    read, rest = 0, b""
    while True:
        done = proc.poll() is not None
        if events.exists():
            with events.open("rb") as f:
                f.seek(read)
                chunk = f.read()
            read += len(chunk)
            # A line without its newline yet waits for the next pass.
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                event = json.loads(line)
                if "step" in event and progress is not None:
                    progress(event["step"], event["max_steps"])
                elif "note" in event and note is not None:
                    note(event["note"])
        if done:
            return
        time.sleep(POLL)


def _stop(proc: subprocess.Popen) -> None:
    """End the launch (torchrun and its processes: their own session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _rank_main(folder: Path) -> None:
    """One training process: the plan from `folder`, its share of the run, its result there."""
    from pope_train.backends.trl.backend import is_main_process, run

    die_with_parent()  # torchrun's end (a kill -9 of the run) ends this process too
    plan = pickle.loads((folder / PLAN).read_bytes())
    rank = int(os.environ.get("RANK", "0"))
    events = folder / EVENTS

    def emit(event: dict[str, Any]) -> None:
        with events.open("a") as f:
            f.write(json.dumps(event) + "\n")

    main = is_main_process()
    try:
        result = run(plan, plan.folder,
                     progress=(lambda record, max_steps: emit({"step": record,
                                                               "max_steps": max_steps}))
                     if main else None,
                     note=(lambda line: emit({"note": line})) if main else None)
    except BaseException:
        # The launcher's own report names the process, not the error: keep it for the parent.
        (folder / f"error-{rank}.txt").write_text(traceback.format_exc())
        raise
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()
              if k != "folder"}
    record["checkpoints"] = [str(c) for c in result.checkpoints]
    (folder / f"result-{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=f"[rank {os.environ.get('RANK', '0')}] "
                        "%(levelname)s %(name)s: %(message)s")
    _rank_main(Path(sys.argv[1]))
