"""Resuming a TRL run folder: whether DIR holds a new, an unfinished (resumable) or a finished run, and what a resumed run restores.

`inspect_folder(out, fingerprint, max_steps)` reads DIR without changing it (a changed config is
refused with its diff, as builds do); `cut_records(out, step)` drops records past the checkpoint
it resumes from; `resume_callback(scheme)` saves the guidance scheme's state into every
checkpoint and fast-forwards TRL's prompt sampler past the epochs a resumed run already trained.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pope_eval.errors import DataError
from pope_eval.options import operational_fields
from pope_eval.runinfo import atomic_path, check_run_config, write_json_atomic
from pope_train.guidance.base import GuidanceScheme
from pope_train.guidance.online import GUIDANCE_DIR

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
FINAL = "final"
# Written into checkpoint-N/ after transformers has saved the rest: the guidance scheme's state.
# A checkpoint without it was cut short by a kill and is not resumed from.
SCHEME_STATE = "pope_state.json"
# What a checkpoint needs to resume with the optimizer, scheduler and RNG where they were (the
# RNG state: rng_state.pth from one process, rng_state_R.pth from each of several).
TRAINER_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
RNG_STATES = ("rng_state.pth", "rng_state_0.pth")
# The keys that place a record of metrics.jsonl or OUT/guidance/*.jsonl at an optimizer step.
STEP_KEYS = ("step", "eval_step", "refresh_step")
# Options of a run that never change what it computes: left out of the compared config.
NOT_COMPARED = ("out_dir", "preset")


def fingerprint(config: Any) -> dict[str, Any]:
    """The fields of a TrlConfig that decide its results: a rerun into the same folder with
    another value of one of them is refused. --out, the preset's record and the operational
    options (e.g. --eval-batch-size) are left out."""
    d = json.loads(json.dumps(asdict(config), default=str))
    for key in (*NOT_COMPARED, *operational_fields(type(config))):
        d.pop(key, None)
    return d


@dataclass(frozen=True)
class RunFolder:
    """What --out holds: `checkpoint` (the last complete one, resumed from; None: start at step
    0), `step` (its optimizer steps) and `finished` (final/ saved and every step recorded)."""

    out: Path
    checkpoint: Path | None = None
    step: int = 0
    finished: bool = False
    earlier: bool = False  # an earlier attempt left records (cut on start)

    def line(self) -> str | None:
        """One line for the console, None for a new run."""
        if self.finished:
            return (f"{self.out} holds this run, finished ({self.step} steps; final model "
                    f"{self.out / FINAL}): nothing to train")
        if self.checkpoint is not None:
            return f"resuming from {self.checkpoint} (step {self.step})"
        if self.earlier:
            return "an earlier attempt saved no checkpoint: training starts at step 0"
        return None


def _step_of(path: Path) -> int | None:
    head, _, tail = path.name.partition("-")
    return int(tail) if head == "checkpoint" and tail.isdigit() else None


def checkpoints(out: Path, complete: bool = True) -> list[Path]:
    """checkpoint-N/ folders of `out` by N; `complete`: only those a run can resume from."""
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and _step_of(p) is not None]
    if complete:
        found = [p for p in found
                 if all((p / f).is_file() for f in (*TRAINER_FILES, SCHEME_STATE))
                 and any((p / f).is_file() for f in RNG_STATES)]
    return sorted(found, key=lambda p: _step_of(p) or 0)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a JSONL file; a last line cut short by a kill is left out."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _last_step(out: Path) -> int:
    path = out / METRICS
    if not path.exists():
        return 0
    return max((r["step"] for r in read_records(path) if "step" in r), default=0)


def has_results(out: Path) -> bool:
    """Whether `out` holds something a rerun would lose: a checkpoint, final/, refresh probes."""
    from pope_data.journal import Journal

    journal = out / GUIDANCE_DIR / "journal.sqlite"
    return bool(checkpoints(out)) or (out / FINAL).exists() or (
        journal.exists() and Journal.has_probes(journal))


def inspect_folder(out: Path, config: Mapping[str, Any], max_steps: int) -> RunFolder:
    """What --out holds for a run of `config` (`fingerprint`): ConfigError listing the changed
    fields when it holds results of another config; nothing is written."""
    if not out.exists():
        return RunFolder(out)
    mode = check_run_config(out, config, has_results=has_results)
    earlier = (out / METRICS).exists() or bool(checkpoints(out, complete=False))
    if mode == "replace":  # another config, but nothing that would be lost
        return RunFolder(out, earlier=earlier)
    done = _last_step(out)
    if (out / FINAL / "config.json").is_file() and done >= max_steps:
        return RunFolder(out, step=done, finished=True)
    found = checkpoints(out)
    if found:
        return RunFolder(out, checkpoint=found[-1], step=_step_of(found[-1]) or 0)
    return RunFolder(out, earlier=earlier)


def _cut(path: Path, step: int) -> None:
    """Keep the records of `path` at or before `step` (every record when none is past it)."""
    records = read_records(path)
    kept = [r for r in records if all(r.get(k, 0) <= step for k in STEP_KEYS)]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    if len(kept) < len(records):
        log.info("%s: %d record(s) past step %d dropped", path, len(records) - len(kept), step)


def cut_records(out: Path, step: int) -> None:
    """Before a run resumes at `step` (0: from the start): metrics.jsonl and the guidance
    scheme's JSONL files keep what happened up to that step; checkpoints past it (cut short) and
    a run started from scratch's records go. The refresh journal stays (its probes replay)."""
    for ckpt in checkpoints(out, complete=False):
        if (_step_of(ckpt) or 0) > step or (step == 0):
            shutil.rmtree(ckpt)
    files = [out / METRICS, *sorted((out / GUIDANCE_DIR).glob("*.jsonl"))]
    for path in files:
        if not path.exists():
            continue
        if step == 0:
            path.unlink()
        else:
            _cut(path, step)


def load_scheme_state(scheme: GuidanceScheme, checkpoint: Path) -> None:
    """The scheme continues from the state saved in `checkpoint`."""
    path = checkpoint / SCHEME_STATE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the guidance state: {exc}") from exc
    if saved.get("scheme") != scheme.name:
        raise DataError(f"{path}: guidance state of scheme {saved.get('scheme')!r}, this run's "
                        f"is {scheme.name!r}")
    scheme.load_state(saved["state"])


def _prompt_sampler(dataloader: Any) -> Any:
    """TRL's RepeatSampler under the prepared training dataloader (accelerate wraps it)."""
    from trl.trainer.utils import RepeatSampler

    todo, seen = [dataloader], 0
    while todo and seen < 16:
        obj = todo.pop(0)
        seen += 1
        if isinstance(obj, RepeatSampler):
            return obj
        todo += [getattr(obj, a) for a in ("batch_sampler", "sampler", "base_dataloader")
                 if getattr(obj, a, None) is not None]
    return None


def resume_callback(scheme: GuidanceScheme) -> Any:
    """A TrainerCallback: after each checkpoint is saved, the scheme's state into
    checkpoint-N/pope_state.json; when a resumed run begins, TRL's prompt sampler drawn forward
    past the epochs already trained (its shuffling generator is not part of the checkpoint, and
    each epoch draws one permutation from it), so the prompts come in the uninterrupted order."""
    import torch
    from transformers import TrainerCallback

    class ResumeState(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            # transformers saves each process's RNG state with no barrier after it: wait for
            # every process, so that the file marking the checkpoint complete comes last
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.barrier()
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_json_atomic(folder / SCHEME_STATE, {"scheme": scheme.name,
                                                      "step": state.global_step,
                                                      "state": scheme.state()})

        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            if state.global_step == 0 or args.ignore_data_skip:
                return
            sampler = _prompt_sampler(train_dataloader)
            if sampler is None:
                import trl

                raise RuntimeError(f"resume: TRL {trl.__version__}'s training dataloader has no "
                                   "RepeatSampler; the prompt order cannot be restored")
            per_epoch = max(len(train_dataloader) // args.gradient_accumulation_steps, 1)
            if getattr(sampler, "shuffle", False):
                for _ in range(state.global_step // per_epoch):
                    torch.randperm(sampler.num_samples, generator=sampler.generator)

    return ResumeState()
