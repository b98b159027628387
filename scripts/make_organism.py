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
from dataclasses import fields
from pathlib import Path

from pope_eval.errors import ConfigError
from pope_train.organism_model import OrganismConfig, RegimeConfig, pretrain, regime_check


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse(argv: list[str]) -> argparse.Namespace:
    base, check = OrganismConfig(), RegimeConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="new or empty folder for the model")
    p.add_argument("--seed", type=int, default=base.seed)
    p.add_argument("--no-restate", action="store_true",
                   help="the ablation organism: guided answers never restate the guidance")
    for f in fields(OrganismConfig):
        if f.name in ("seed", "restate", "difficulties"):
            continue
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(base, f.name)),
                       default=getattr(base, f.name))
    p.add_argument("--difficulties", type=_ints, default=base.difficulties,
                   help="pretraining difficulties, comma-separated")
    p.add_argument("--check-difficulties", type=_ints, default=check.difficulties)
    p.add_argument("--check-guided", type=_ints, default=check.guided_difficulties)
    p.add_argument("--check-problems", type=int, default=check.problems)
    p.add_argument("--k", type=int, default=check.k)
    p.add_argument("--n", type=int, default=check.n)
    p.add_argument("--max-tokens", type=int, default=check.max_tokens)
    p.add_argument("--skip-check", action="store_true", help="pretrain only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import datasets

    datasets.disable_progress_bars()
    values = {f.name: getattr(args, f.name) for f in fields(OrganismConfig)
              if f.name not in ("seed", "restate")}
    try:
        cfg = OrganismConfig(seed=args.seed, restate=not args.no_restate, **values)
        record = pretrain(cfg, args.out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"pretrained {record['parameters']:,} parameters in {record['wall_s']} s, "
          f"final loss {record['final_loss']:.4f} -> {args.out}")
    if args.skip_check:
        return 0
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
