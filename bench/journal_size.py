"""Journal size by retention mode: bytes per stored sample, and the projection to the paper's scale.

Run `python bench/journal_size.py [--json FILE]`. Sample texts are MATH-500 reference solutions
(tests/data) repeated to a target length, as a stand-in for model reasoning of that length.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pope_data.journal import Journal, ProbeRow  # noqa: E402
from pope_data.service import kept_texts  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "math500.jsonl"


def texts(count: int, chars: int, seed: int) -> list[str]:
    """`count` distinct texts of about `chars` characters built from real math solutions."""
    sols = [json.loads(line)["solution"] for line in DATA.read_text().splitlines()]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts, size = [], 0
        while size < chars:
            s = rng.choice(sols)
            parts.append(s)
            size += len(s) + 2
        out.append("\n\n".join(parts)[:chars])
    return out


def chars_per_token() -> float:
    """Characters per token of math text with the bundled model's tokenizer."""
    from pope_eval.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    sols = [json.loads(line)["solution"] for line in DATA.read_text().splitlines()]
    return sum(map(len, sols)) / sum(len(tok(s)["input_ids"]) for s in sols)


def measure(retention: str, *, probes: int, n: int, chars: int, tokens: int,
            correct_rate: float, seed: int = 0) -> dict:
    """Journal bytes per sample for probes of n samples, a share of them correct."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.sqlite"
        journal = Journal.open(path, {"bench": retention})
        rows = []
        for p in range(probes):
            statuses = ["correct" if rng.random() < correct_rate else "wrong" for _ in range(n)]
            # Distinct texts per sample, as model samples are (repeats would flatter zlib).
            sample_texts = texts(n, chars, seed * 1_000_003 + p)
            rows.append(ProbeRow(
                stage="curate", problem_id=f"problem-{p:06d}", prefix_segments=0, wave=0,
                prefix_fraction=0.0, samples=n, correct=statuses.count("correct"),
                tokens=n * tokens, finish_reasons=["stop"] * n,
                statuses=statuses, params={"max_tokens": 8192, "temperature": 0.7,
                                           "engine": "vllm", "model": "Qwen/Qwen3-4B"},
                seed=p, started=time.time(),
                texts=kept_texts(retention, sample_texts, statuses)))
            if len(rows) == 50:
                journal.record_many(rows)
                rows = []
        journal.record_many(rows)
        journal.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        journal.close()
        size = path.stat().st_size
    return {"retention": retention, "probes": probes, "n": n, "chars": chars,
            "correct_rate": correct_rate, "bytes": size, "bytes_per_sample": size / (probes * n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=8000, help="mean sample length in tokens")
    ap.add_argument("--correct-rate", type=float, default=0.05)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    cpt = chars_per_token()
    chars = int(args.tokens * cpt)
    results = [measure(r, probes=args.probes, n=args.n, chars=chars, tokens=args.tokens,
                       correct_rate=args.correct_rate) for r in ("all", "correct", "none")]
    # The paper's scale: 10k problems x k = 128 curate samples (plus the prefix search).
    scale = 10_000 * 128
    print(f"{args.probes} probes x n = {args.n}, ~{args.tokens} tokens ({chars} chars at "
          f"{cpt:.2f} chars/token) per sample, {args.correct_rate:.0%} correct\n")
    print("| retention | bytes per sample | 10k problems x k = 128 |")
    print("|---|---:|---:|")
    for r in results:
        r["projected_gb"] = r["bytes_per_sample"] * scale / 1e9
        print(f"| {r['retention']} | {r['bytes_per_sample']:,.0f} | {r['projected_gb']:,.1f} GB |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
