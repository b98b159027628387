"""Keep a study's records in the repository, so a study that takes many sessions loses nothing
when the machine that ran a part is gone.

    python bench/study_records.py save STUDY RECORDS      # after a part: finished work only
    python bench/study_records.py restore RECORDS STUDY   # before the next part

`save` copies from a `bench/organism.py --out STUDY` folder every finished build (its
summary.json written) and every finished run that pope-eval has scored (final/config.json and
t*/eval/RUN/summary.json), with their logs and evaluations, but not what can be rebuilt or is
only needed to go on training: weights, optimizer states, checkpoints, journals, lock files,
figures and the evaluation's raw samples. Unfinished work is named and left out (a run cut
mid-way resumes from its checkpoint only on the machine that holds it). The study-level
results (results.json, results.md) are copied when present.

`restore` copies the records back into a study folder (never over a file that is there), so the
next `bench/organism.py` call with the same folder skips every build, run and evaluation they
hold and summarises them with the new ones. A restored run's final/ holds its config but not its
weights: it is summarised from its metrics and evaluation, never evaluated again.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# Left out of the records: rebuildable, or only needed to resume training on the same machine.
SKIP_SUFFIXES = (".safetensors", ".pt", ".bin", ".sqlite", ".sqlite-wal", ".sqlite-shm", ".png",
                 ".lock")
SKIP_DIRS = ("parts",)
SKIP_NAMES = ("samples.parquet",)
MARK = "WEIGHTS_NOT_KEPT"


def _kept(path: Path) -> bool:
    return (not path.name.endswith(SKIP_SUFFIXES) and path.name not in SKIP_NAMES
            and not any(p.startswith("checkpoint-") or p in SKIP_DIRS for p in path.parts))


def _copy_tree(src: Path, dest: Path, *, overwrite: bool) -> int:
    n = 0
    for f in sorted(src.rglob("*")):
        if f.is_file() and _kept(f.relative_to(src)):
            target = dest / f.relative_to(src)
            if overwrite or not target.exists():
                n += _copy_file(f, target)
    return n


def _copy_file(f: Path, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(f, target)
    return 1


def finished(study: Path) -> tuple[list[Path], list[Path], list[str]]:
    """(build folders, run folders ready to keep, what is left out and why)."""
    builds, runs, left = [], [], []
    for task in sorted(study.glob("t*")):
        if not task.is_dir():
            continue
        for b in sorted(task.glob("build*")):
            if b.is_dir():
                (builds.append(b) if (b / "summary.json").exists()
                 else left.append(f"{b.relative_to(study)}: build not finished"))
        for r in sorted((task / "runs").glob("*")) if (task / "runs").is_dir() else []:
            if not r.is_dir():
                continue
            scored = (task / "eval" / r.name / "summary.json").exists()
            if (r / "final" / "config.json").exists() and scored:
                runs.append(r)
            else:
                left.append(f"{r.relative_to(study)}: "
                            + ("not evaluated yet" if (r / "final").exists() else "training"))
    return builds, runs, left


def save(study: Path, records: Path) -> int:
    if not study.is_dir():
        raise SystemExit(f"save: {study} is not a study folder")
    builds, runs, left = finished(study)
    n = 0
    for b in builds:
        n += _copy_tree(b, records / b.relative_to(study), overwrite=True)
        log = b.parent / f"{b.name}.log"
        if log.exists():
            n += _copy_file(log, records / log.relative_to(study))
    for r in runs:
        rel = r.relative_to(study)
        n += _copy_tree(r, records / rel, overwrite=True)
        (records / rel / "final" / MARK).write_text(
            "The weights of this run were not kept in the records (bench/study_records.py).\n")
        ev = r.parent.parent / "eval" / r.name
        n += _copy_tree(ev, records / ev.relative_to(study), overwrite=True)
        for log in (r.parent / f"{r.name}.log", ev.parent / f"{r.name}.log"):
            if log.exists():
                n += _copy_file(log, records / log.relative_to(study))
    for base in sorted(study.glob("t*/eval/base")):
        if (base / "summary.json").exists():
            n += _copy_tree(base, records / base.relative_to(study), overwrite=True)
    for name in ("results.json", "results.md"):
        if (study / name).exists():
            n += _copy_file(study / name, records / name)
    print(f"saved {len(builds)} builds and {len(runs)} runs ({n} files) to {records}")
    for line in left:
        print(f"  left out: {line}")
    return 0


def restore(records: Path, study: Path) -> int:
    if not records.is_dir():
        raise SystemExit(f"restore: {records} is not a records folder")
    n = _copy_tree(records, study, overwrite=False)
    print(f"restored {n} files from {records} into {study}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="copy a study's finished work into a records folder")
    s.add_argument("study", type=Path)
    s.add_argument("records", type=Path)
    r = sub.add_parser("restore", help="copy records back into a study folder")
    r.add_argument("records", type=Path)
    r.add_argument("study", type=Path)
    args = ap.parse_args(argv)
    if args.command == "save":
        return save(args.study, args.records)
    return restore(args.records, args.study)


if __name__ == "__main__":
    sys.exit(main())
