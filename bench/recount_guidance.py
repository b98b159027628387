"""Recount the solution tokens a finished run showed its policy, from its own trace and its build.

    python bench/recount_guidance.py RUN [RUN ...] [--write]

Every step of a `pope-train run --backend trl` run writes, in RUN/guidance/steps.jsonl, each
group's problem, whether it was guided and its prefix in whole segments, for the first rollouts
and for every regenerated group. With the build the run trained on (RUN/../../build/export in a
`bench/organism.py` study, else the run's `--export`) and the run's tokenizer, that is enough to
count again what the policy was shown, with pope's own count (`prefix_tokens`).

Runs made before the count of fallback prefixes was mended (a static row whose build found no i*
shows a cut inside a segment, and its whole-segment prefix is 0) logged such a row as 0 tokens, or
logged no count at all. The recount is checked against the run's own log first: it must give
every logged step's value exactly, either as it stands (a log made after the mend) or with
fallback rows counted 0 (a log made before); a run that fails the check is refused. With
`--write` it saves RUN/guidance_recount.json (per step, the total, the logged total and how many
steps differ); `bench/organism.py` reads a run's guidance tokens from that file when it is there
and from metrics.jsonl otherwise. metrics.jsonl is left as the run wrote it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pope_eval.errors import PopeError  # noqa: E402

RECOUNT = "guidance_recount.json"


class RecountError(Exception):
    """A run that cannot be recounted, or whose recount does not reproduce its log."""


def _export_dir(run: Path, config: dict[str, Any]) -> Path:
    beside = run.parent.parent / "build" / "export"
    if (beside / "prefixes" / "train.parquet").is_file():
        return beside
    given = Path(config.get("export_dir") or "")
    if not given.is_absolute():
        given = ROOT / given
    if (given / "prefixes" / "train.parquet").is_file():
        return given
    raise RecountError(f"{run}: no build export at {beside} or {given}")


def _records(run: Path) -> list[dict[str, Any]]:
    from pope_train.backends.trl.trainer import STEPS_LOG
    from pope_train.guidance.online import GUIDANCE_DIR

    path = run / GUIDANCE_DIR / STEPS_LOG
    if not path.is_file():
        raise RecountError(f"{path}: missing (the run logged no per-step trace)")
    steps = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            steps.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RecountError(f"{path} line {n}: not JSON ({exc})") from None
    return steps


def shown_groups(step: dict[str, Any]) -> list[dict[str, Any]]:
    """The groups whose prompts the policy saw in one step: the first rollouts and every
    regenerated group (a regenerated group's prompt is counted again, as the trainer does)."""
    return list(step["first"]) + [r for rnd in step.get("rounds", []) for r in rnd["new"]]


def recount(run: Path) -> dict[str, Any]:
    """The recount of one run (see the module doc), its tokens counted with the run's tokenizer
    as the trainer counts them."""
    from transformers import AutoTokenizer

    from pope_train.backends.trl.metrics import read_metrics
    from pope_train.guidance.table import load_guided_problems, prefix_tokens

    config = json.loads((run / "run_config.json").read_text())["config"]
    steps = _records(run)
    ids = {g["problem_id"] for s in steps for g in shown_groups(s)}
    problems, _ = load_guided_problems(_export_dir(run, config), ids, "the recount")
    tok = AutoTokenizer.from_pretrained(config["model"])

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    table = argparse.Namespace(problems=problems)
    logged = {x["step"]: x.get("guidance_tokens")
              for x in read_metrics(run / "metrics.jsonl") if "step" in x}
    per_step, old_rule, fallback_groups = {}, {}, 0
    for s in steps:
        rows = []
        for g in shown_groups(s):
            p = problems.get(g["problem_id"])
            fallback = p is not None and bool(p.cut)
            fallback_groups += bool(g.get("guided") and fallback and not g.get("prefix_segments"))
            rows.append({"extra_info": {"problem_id": g["problem_id"], "guided": g.get("guided"),
                                        "prefix_segments": g.get("prefix_segments") or 0,
                                        "fallback": fallback}})
        per_step[s["step"]] = prefix_tokens(table, rows, 1, count)
        old_rule[s["step"]] = prefix_tokens(
            table, [{"extra_info": {**r["extra_info"], "fallback": False}} for r in rows], 1, count)
    if set(per_step) != set(logged):
        raise RecountError(f"{run}: the trace has steps {min(per_step)}..{max(per_step)} "
                           f"({len(per_step)}), metrics.jsonl {len(logged)}")
    checked = [k for k, v in logged.items() if v is not None]
    if all(per_step[k] == logged[k] for k in checked):
        rule = "as recounted" if checked else "none logged"
    elif all(old_rule[k] == logged[k] for k in checked):
        rule = "fallback as 0"
    else:
        # the first step that neither count gives (else the first the recount does not give)
        k = next((k for k in checked if logged[k] not in (per_step[k], old_rule[k])),
                 next(k for k in checked if per_step[k] != logged[k]))
        raise RecountError(f"{run}: step {k} logged {logged[k]} guidance tokens; the recount "
                           f"gives {per_step[k]} (fallback rows as 0: {old_rule[k]}): the trace, "
                           "the build or the tokenizer is not the run's; not recounted")
    return {"per_step": {str(k): v for k, v in sorted(per_step.items())},
            "total": sum(per_step.values()),
            "logged_total": sum(logged[k] for k in checked) if checked else None,
            "logged_steps": len(checked), "logged_rule": rule, "steps": len(per_step),
            "steps_differing": sum(per_step[k] != logged[k] for k in checked),
            "fallback_groups": fallback_groups,
            "method": "bench/recount_guidance.py: pope_train.guidance.table.prefix_tokens over "
                      "guidance/steps.jsonl, fallback rows counted by their exported cut; "
                      "checked to give every logged step's value, as it stands or with fallback "
                      "rows counted 0 (logged_rule)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run folders (pope-train --out)")
    ap.add_argument("--write", action="store_true",
                    help=f"save RUN/{RECOUNT} for each run that passes the check")
    args = ap.parse_args(argv)
    for run in args.runs:
        if not (run / "run_config.json").is_file() or not (run / "metrics.jsonl").is_file():
            ap.error(f"{run}: not a finished pope-train run (needs run_config.json and "
                     "metrics.jsonl)")
    failed = 0
    print("| run | steps | logged steps | log counted | logged total | recount | steps differing "
          "| fallback groups |")
    print("|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        try:
            r = recount(run)
        except (RecountError, PopeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"| {run} | {r['steps']} | {r['logged_steps']} | {r['logged_rule']} | "
              f"{r['logged_total']} | "
              f"{r['total']} | {r['steps_differing']} | {r['fallback_groups']} |")
        if args.write:
            (run / RECOUNT).write_text(json.dumps(r, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
