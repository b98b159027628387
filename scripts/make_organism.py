"""Pretrain the model organism from scratch and check its POPE regime, in one seeded command.

`python scripts/make_organism.py --out DIR --seed 0` writes the model folder, pretrain.json,
loss.png and regime.json (unguided and guided pass rates per difficulty) to DIR.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from pope_eval.errors import ConfigError
from pope_train.organism_args import add_config_arguments, config_from_args, integer, ints
from pope_train.organism_model import RegimeConfig, pretrain, regime_check

EXIT_INTERRUPTED = 130


def parse(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def parser() -> argparse.ArgumentParser:
    """The command line: every OrganismConfig field (restate by --no-restate) and the regime
    check's settings, each with its help text and default."""
    check = RegimeConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="new or empty folder for the model")
    p.add_argument("--no-restate", action="store_true",
                   help="the ablation organism: guided answers never restate the guidance")
    add_config_arguments(p)
    p.add_argument("--check-difficulties", type=ints, default=check.difficulties,
                   help="regime check: difficulties whose unguided pass rate is measured")
    p.add_argument("--check-guided", type=ints, default=check.guided_difficulties,
                   help="regime check: difficulties whose guided pass rate is measured at every "
                        "prefix length")
    p.add_argument("--check-problems", type=integer, default=check.problems,
                   help="regime check: problems per difficulty")
    p.add_argument("--k", type=integer, default=check.k,
                   help="regime check: unguided samples per problem")
    p.add_argument("--n", type=integer, default=check.n,
                   help="regime check: guided samples per problem and prefix length")
    p.add_argument("--max-tokens", type=integer, default=check.max_tokens,
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
    cfg = config_from_args(args, restate=not args.no_restate)
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
