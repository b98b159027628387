"""Pretrain the model organism from scratch and check its POPE regime, in one seeded command.

`python scripts/make_organism.py --out DIR --seed 0` writes the model folder, pretrain.json,
loss.png and regime.json (unguided and guided pass rates per difficulty) to DIR.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

from pope_eval.errors import ConfigError
from pope_train.organism_model import OrganismConfig, RegimeConfig, pretrain, regime_check

EXIT_INTERRUPTED = 130


# --help text of the OrganismConfig fields offered as options.
FIELD_HELP = {
    "hidden_size": "width of the transformer",
    "layers": "transformer layers",
    "heads": "attention heads (hidden size must be a multiple of it)",
    "intermediate_size": "width of the MLP",
    "examples": "pretraining demonstrations generated",
    "guided_fraction": "share of the demonstrations that show part of the solution as guidance",
    "max_steps": "optimizer steps of pretraining",
    "batch_size": "packed rows per step",
    "pack_length": "tokens per packed row",
    "rope_theta": "RoPE base (short-range positions)",
    "learning_rate": "peak learning rate (warm-up, then cosine decay)",
    "warmup_steps": "steps of linear learning-rate warm-up",
    "log_every": "steps between points of the loss curve",
    "threads": "CPU threads of torch",
    "snapshots": "steps after which the model is also saved to OUT/snapshots/step-N, "
                 "comma-separated",
}


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")
    return values


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def parse(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def parser() -> argparse.ArgumentParser:
    """The command line: every OrganismConfig field (but seed and restate, set by --seed and
    --no-restate) and the regime check's settings, each with its help text and default."""
    base, check = OrganismConfig(), RegimeConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="new or empty folder for the model")
    p.add_argument("--seed", type=_int, default=base.seed,
                   help="seed of the data, the initial weights and the regime check")
    p.add_argument("--no-restate", action="store_true",
                   help="the ablation organism: guided answers never restate the guidance")
    types = {int: _int, float: _float, tuple: _ints}
    for f in fields(OrganismConfig):
        if f.name in ("seed", "restate", "difficulties"):
            continue
        default = getattr(base, f.name)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=types[type(default)],
                       default=default, help=FIELD_HELP[f.name])
    p.add_argument("--difficulties", type=_ints, default=base.difficulties,
                   help="pretraining difficulties, comma-separated")
    p.add_argument("--check-difficulties", type=_ints, default=check.difficulties,
                   help="regime check: difficulties whose unguided pass rate is measured")
    p.add_argument("--check-guided", type=_ints, default=check.guided_difficulties,
                   help="regime check: difficulties whose guided pass rate is measured at every "
                        "prefix length")
    p.add_argument("--check-problems", type=_int, default=check.problems,
                   help="regime check: problems per difficulty")
    p.add_argument("--k", type=_int, default=check.k,
                   help="regime check: unguided samples per problem")
    p.add_argument("--n", type=_int, default=check.n,
                   help="regime check: guided samples per problem and prefix length")
    p.add_argument("--max-tokens", type=_int, default=check.max_tokens,
                   help="regime check: max generated tokens per sample")
    p.add_argument("--skip-check", action="store_true", help="pretrain only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        _run(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = Path(args.out)
        kept = (f"the pretrained model in {out} is kept; the regime check did not finish "
                "(no regime.json)" if (out / "pretrain.json").exists()
                else f"pretraining did not finish; no model was saved in {out}")
        print(f"interrupted: {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import datasets

    datasets.disable_progress_bars()
    values = {f.name: getattr(args, f.name) for f in fields(OrganismConfig)
              if f.name not in ("seed", "restate")}
    cfg = OrganismConfig(seed=args.seed, restate=not args.no_restate, **values)
    record = pretrain(cfg, args.out)
    print(f"pretrained {record['parameters']:,} parameters in {record['wall_s']} s, "
          f"final loss {record['final_loss']:.4f} -> {args.out}")
    if args.skip_check:
        return
    check = RegimeConfig(difficulties=args.check_difficulties,
                         guided_difficulties=args.check_guided, problems=args.check_problems,
                         k=args.k, n=args.n, max_tokens=args.max_tokens, seed=args.seed)
    started = time.monotonic()
    result = regime_check(args.out, check, progress=lambda line: print(
        f"[{time.monotonic() - started:6.0f} s] {line}", flush=True))
    result["wall_s"] = round(time.monotonic() - started, 1)
    path = Path(args.out) / "regime.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"regime check in {result['wall_s']} s -> {path}")


if __name__ == "__main__":
    raise SystemExit(main())
