"""Pretrain the second model organism (the opchain task family) and check its regime, in one command.

`python scripts/make_opchain_organism.py --out DIR --seed 0` writes the model folder, pretrain.json,
loss.png and regime.json (unguided pass rates per number of rare operations, guided curves per
prefix length under three guidance wordings, i* per problem) to DIR.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from pope_train.organism_args import add_config_arguments, config_from_args


def _ints(option: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option}: expected comma-separated integers, got {text!r}") from None
    parse.__name__ = option
    return parse


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rare-weights: expected comma-separated numbers, got {text!r}") from None


def parse(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def parser() -> argparse.ArgumentParser:
    """The command line: every OrganismConfig field but the difficulties (restate by
    --no-restate), the demonstrations' rare-operation weights and the regime check's settings."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="new or empty folder for the model")
    p.add_argument("--no-restate", action="store_true",
                   help="the twin organism: guided answers never revisit the given lines")
    p.add_argument("--rare-weights", type=_floats, default=(0.6, 0.3, 0.1),
                   help="weights of 0, 1, 2, ... rare operations per demonstration")
    # Every OrganismConfig field but the pretraining difficulties (all rare counts 0..LENGTH).
    add_config_arguments(p, skip=("restate", "difficulties"))
    p.add_argument("--check-difficulties", type=_ints("--check-difficulties"),
                   default=(0, 1, 2, 4, 6, 8, 10), help="rare counts checked unguided")
    p.add_argument("--check-guided", type=_ints("--check-guided"), default=(6, 8),
                   help="rare counts whose guided curve is measured")
    p.add_argument("--check-problems", type=int, default=8, help="problems per rare count")
    p.add_argument("--k", type=int, default=64, help="unguided samples per problem")
    p.add_argument("--n", type=int, default=8, help="guided samples per problem and prefix")
    p.add_argument("--max-tokens", type=int, default=256, help="generation limit of the check")
    p.add_argument("--skip-check", action="store_true", help="pretrain only")
    p.add_argument("--check-only", action="store_true",
                   help="check the organism already in --out (no pretraining)")
    p.add_argument("--readme-only", action="store_true",
                   help="write README.md from the folder's pretrain.json and regime.json")
    return p


def istar(rows: dict[str, dict]) -> list[int | None]:
    """Per problem, the shortest prefix (lines) with >= 1 correct guided sample (None: none)."""
    lengths = sorted(rows, key=int)
    count = len(rows[lengths[0]]["per_problem"])
    return [next((int(i) for i in lengths if rows[i]["per_problem"][j] > 0), None)
            for j in range(count)]


def adopt_run_record(out: Path) -> None:
    """A snapshot folder (RUN/snapshots/step-N, `--snapshots`) takes its run's pretrain.json,
    with `snapshot_step` N, and loss.png, so that it explains itself once copied elsewhere."""
    if (out / "pretrain.json").exists() or out.parent.name != "snapshots":
        return
    run = out.parent.parent
    step = out.name.removeprefix("step-")
    if not (run / "pretrain.json").exists() or not step.isdigit():
        return
    record = json.loads((run / "pretrain.json").read_text())
    record["snapshot_step"] = int(step)
    (out / "pretrain.json").write_text(json.dumps(record, indent=2) + "\n")
    if (run / "loss.png").exists():
        shutil.copyfile(run / "loss.png", out / "loss.png")


def readme(out: Path) -> str:
    """README.md of an organism folder from its pretrain.json and regime.json."""
    record = json.loads((out / "pretrain.json").read_text())
    regime = json.loads((out / "regime.json").read_text())
    cfg = record["config"]
    snapshot = record.get("snapshot_step")
    if snapshot is None:
        made = [f"{cfg['max_steps']} steps of {cfg['batch_size']} x {cfg['pack_length']} "
                f"tokens; final loss {record['final_loss']:.4f} (loss.png).", ""]
    else:
        logged = [p for p in record["loss_curve"] if p["step"] <= snapshot]
        at = f"; loss {logged[-1]['loss']:.4f} at step {logged[-1]['step']}" if logged else ""
        made = [f"**This is the model saved after step {snapshot}** of that pretraining's "
                f"{cfg['max_steps']} steps of {cfg['batch_size']} x {cfg['pack_length']} tokens "
                f"(`--snapshots`{at}; the run's final loss {record['final_loss']:.4f}, "
                "loss.png).", ""]
    lines = [
        "# The opchain organism (pope's second model organism)", "",
        f"A {record['parameters']:,}-parameter Llama ({cfg['layers']} layers, hidden "
        f"{cfg['hidden_size']}, {cfg['heads']} heads, rope theta {cfg['rope_theta']:g}) with a "
        f"character-level tokenizer of {record['vocab_size']} tokens, pretrained from scratch on "
        "`pope_data.opchain` demonstrations (docs/organism.md). It carries the repository's "
        "licence (Apache-2.0); no outside weights or data went into it.", "",
        f"Made in {record['wall_s']:,.0f} s of pretraining ({cfg['threads']} "
        f"thread{'s' if cfg['threads'] > 1 else ''}) by:", "",
        f"    {record['command']}", "",
        f"{record['demonstrations']['count']:,} demonstrations, rare-operation weights "
        f"{record['rare_weights']}, {record['demonstrations']['guided']:,} guided (wordings pope, "
        f"no-revisit, continue; restate {cfg['restate']})" + ("; " if snapshot is None else ". ")
        + made[0], made[1],
        f"regime.json ({regime['config']['problems']} problems per row, temperature "
        f"{regime['config']['temperature']:g}, {regime['wall_s']:,.0f} s):", "",
        "| rare operations | unguided correct | problems solved |", "|---:|---:|---:|"]
    for d, row in sorted(regime["unguided"].items(), key=lambda x: int(x[0])):
        lines.append(f"| {d} | {row['correct']} of {row['samples']} | {row['problems_solved']} "
                     f"of {row['problems']} |")
    for key in sorted(k for k in regime if k.startswith("guided")):
        for d, rows in sorted(regime[key].items(), key=lambda x: int(x[0])):
            wording = key.split(":")[1] if ":" in key else "pope"
            curve = ", ".join(f"{i}: {rows[i]['correct']}" for i in sorted(rows, key=int))
            stars = regime["istar"][key][d]
            lines += ["", f"{d} rare operations, `{wording}` wording, guided correct of "
                      f"{rows['1']['samples']} per prefix length (lines shown): {curve}. "
                      f"i* per problem (>= 1 of {regime['config']['n']}): {stars}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.readme_only:
        adopt_run_record(Path(args.out))
        (Path(args.out) / "README.md").write_text(readme(Path(args.out)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from pope_data.opchain import LENGTH, demonstrations, generate_opchain
    from pope_eval.errors import ConfigError
    from pope_train.organism_model import (
        RegimeConfig,
        opchain_words,
        pretrain,
        regime_check,
    )

    try:
        if not args.check_only:
            cfg = config_from_args(args, restate=not args.no_restate,
                                   difficulties=tuple(range(LENGTH + 1)))
            demos = demonstrations(args.examples, seed=args.seed, rare_weights=args.rare_weights,
                                   guided_fraction=args.guided_fraction,
                                   restate=not args.no_restate)
            record = pretrain(cfg, args.out, demos=demos, words=opchain_words(),
                              generator="pope_data.opchain.demonstrations")
            record["rare_weights"] = list(args.rare_weights)
            record["command"] = " ".join(["python", "scripts/make_opchain_organism.py",
                                          *(sys.argv[1:] if argv is None else argv)])
            (Path(args.out) / "pretrain.json").write_text(json.dumps(record, indent=2) + "\n")
            print(f"pretrained {record['parameters']:,} parameters in {record['wall_s']} s, "
                  f"final loss {record['final_loss']:.4f} -> {args.out}", flush=True)
        if args.skip_check:
            return 0
        check = RegimeConfig(difficulties=args.check_difficulties,
                             guided_difficulties=args.check_guided, problems=args.check_problems,
                             k=args.k, n=args.n, max_tokens=args.max_tokens, seed=args.seed)
        started = time.monotonic()
        result = regime_check(args.out, check, generate=generate_opchain,
                              wordings=("pope", "no-revisit", "continue"),
                              progress=lambda line: print(
                                  f"[{time.monotonic() - started:6.0f} s] {line}", flush=True))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    result["istar"] = {key: {d: istar(rows) for d, rows in by_d.items()}
                       for key, by_d in result.items() if key.startswith("guided")}
    result["wall_s"] = round(time.monotonic() - started, 1)
    path = Path(args.out) / "regime.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    adopt_run_record(Path(args.out))
    if (Path(args.out) / "pretrain.json").exists():
        (Path(args.out) / "README.md").write_text(readme(Path(args.out)))
    print(f"regime check in {result['wall_s']} s -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
