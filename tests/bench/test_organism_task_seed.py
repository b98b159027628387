"""bench/organism.py's --task-seed reaches the build: another task seed draws other problems (ids)
and another split, through a real `pope-data build` on the committed organism at a tiny size."""

from __future__ import annotations

import polars as pl

from bench.organism import build, build_command, parse


def _split(build_dir) -> dict[str, str]:
    out = {}
    for part in ("hard", "easy"):
        for split in ("train", "validation"):
            path = build_dir / "export" / part / f"{split}.parquet"
            if path.exists():
                for pid in pl.read_parquet(path)["extra_info"].struct.field("problem_id"):
                    out[pid] = split
    return out


def test_the_task_seed_changes_the_problems_and_the_split(tmp_path):
    # 24 tokens: every problem fails (all hard), so the build and its search stay short
    args = parse(["--out", str(tmp_path), "--problems", "8", "--k", "4", "--n", "2",
                  "--max-tokens", "24", "--validation-fraction", "0.5", "--min-held-out", "1", "--task-seeds", "0,1",
                  "--eval-seed", "3"])
    assert args.task_seeds == [0, 1] and args.eval_seed == 3
    cmd = build_command(args, args.model, "pope", tmp_path / "b", 7)
    assert cmd[cmd.index("--seed") + 1] == "7"
    assert cmd[cmd.index("--validation-fraction") + 1] == "0.5"
    dirs = {t: build(args, args.model, "pope", tmp_path / f"t{t}" / "build", t) for t in (0, 1)}
    ids = {t: set(pl.read_parquet(d / "problems.parquet")["id"]) for t, d in dirs.items()}
    assert len(ids[0]) == len(ids[1]) == 8 and not ids[0] & ids[1]
    assert all(i.startswith("organism-s1-") for i in ids[1])
    splits = {t: _split(d) for t, d in dirs.items()}
    # the same problem positions land in other splits: compare by index within the draw
    by_index = {t: [splits[t].get(i) for i in sorted(ids[t], key=lambda x: x[-5:])] for t in dirs}
    assert by_index[0] != by_index[1]
    for d in dirs.values():  # the held-out hard split was written for the evaluation
        assert (d / "held_out_hard.jsonl").read_text().strip()
    # finished: a second call skips the build
    stamp = (dirs[0] / "summary.json").stat().st_mtime
    build(args, args.model, "pope", dirs[0], 0)
    assert (dirs[0] / "summary.json").stat().st_mtime == stamp
