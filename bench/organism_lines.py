"""Which solution lines an organism has learned: teacher-forced probability of each gold line and of
each token of the first two, per prompt ending (unguided and each guidance wording).

    python bench/organism_lines.py MODEL_DIR [--family opchain] [--count 300] [--seed 777]
                                   [--guided-fraction 0.5] [--json out.json]

The demonstrations come from another seed than pretraining's (`--seed`), with no rare operations
(opchain) or difficulty 4 (the running-sum family): what the table shows is whether the organism
computes a line from the line above it, not how it applies rare operations. A line's probability
is the product of its tokens' probabilities given the gold text before them (temperature 1); the
table gives its geometric mean over demonstrations, the token columns the arithmetic mean.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import float_in, int_at_least, markdown_table  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="an organism folder")
    p.add_argument("--family", choices=("opchain", "organism"), default="opchain",
                   help="the task family the organism was pretrained on")
    p.add_argument("--count", type=int_at_least("--count", 1), default=300,
                   help="demonstrations drawn")
    p.add_argument("--seed", type=int, default=777, help="seed of the demonstrations")
    p.add_argument("--guided-fraction", type=float_in("--guided-fraction", 0, 1), default=0.5,
                   help="share of guided demonstrations")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if not (args.model / "config.json").is_file():
        p.error(f"model: {args.model} holds no config.json (not a model folder)")
    return args


def demos(args: argparse.Namespace) -> list:
    if args.family == "opchain":
        from pope_data.opchain import demonstrations
        return demonstrations(args.count, seed=args.seed, rare_weights=(1.0,),
                              guided_fraction=args.guided_fraction, restate=True)
    from pope_data.organism import demonstrations
    return demonstrations(args.count, seed=args.seed, difficulties=(4,),
                          guided_fraction=args.guided_fraction, restate=True)


def measure(args: argparse.Namespace) -> dict[str, dict]:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from pope_train.organism_model import conversation_ids

    torch.set_num_threads(1)
    tok = PreTrainedTokenizerFast.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    newline = tok.convert_tokens_to_ids("\n")
    rows: dict[str, dict] = defaultdict(lambda: {"n": 0, "lines": [], "first": [], "second": []})
    for d in demos(args):
        b, start = conversation_ids(tok, d)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([b])).logits[0].float(), -1)
        token_lp = [logp[p - 1, b[p]].item() for p in range(start, len(b))]
        lines, cur, cuts = [], 0.0, []
        for k, t in enumerate(b[start:]):
            cur += token_lp[k]
            if t == newline or k == len(token_lp) - 1:
                lines.append(cur)
                cuts.append(k)
                cur = 0.0
        row = rows[getattr(d, "wording", "") or ("guided" if d.shown else "unguided")]
        row["n"] += 1
        row["lines"].append(lines)
        row["first"].append([math.exp(x) for x in token_lp[:cuts[0]]])
        if len(cuts) > 2:
            row["second"].append([math.exp(x) for x in token_lp[cuts[0] + 1:cuts[1]]])
    out = {}
    for name, row in sorted(rows.items()):
        width = min(len(x) for x in row["lines"])
        out[name] = {
            "demonstrations": row["n"],
            "line_p": [round(math.exp(sum(x[j] for x in row["lines"]) / row["n"]), 3)
                       for j in range(width - 1)] + [
                round(math.exp(sum(x[-1] for x in row["lines"]) / row["n"]), 3)],
            "first_line_tokens": _mean_columns(row["first"]),
            "second_line_tokens": _mean_columns(row["second"]),
        }
    return out


def _mean_columns(rows: list[list[float]]) -> list[float]:
    if not rows:
        return []
    width = min(len(r) for r in rows)
    return [round(sum(r[j] for r in rows) / len(rows), 3) for j in range(width)]


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    result = measure(args)
    def ps(values: list[float]) -> str:
        return " ".join(f"{x:.2f}" for x in values)

    print("\n".join(markdown_table(
        ["prompt", "n", "line p (first lines ... answer)", "first line's first 6 tokens",
         "second line's"],
        [[name, r["demonstrations"], f"{ps(r['line_p'][:5])} ... {r['line_p'][-1]:.2f}",
          ps(r["first_line_tokens"][:6]), ps(r["second_line_tokens"][:6])]
         for name, r in result.items()])))
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "family": args.family,
                                         "count": args.count, "seed": args.seed,
                                         "by_prompt": result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
