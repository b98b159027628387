"""Guided and unguided training rows in verl's schema (plus plain columns), the 1:1 mix, splits.

`write_export(out_dir, hard, prefixes, easy=...)` writes export/{hard,guided,mix,easy,prefixes}/
{train,validation}.parquet (docs/design.md, "Data contracts"); `verl_row` builds one row, also for
the benchmarks pope-train validates on. Every row names its `level` (LEVELS), the column by which
Pipeline-RL's POPE loaders split a set.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pope_data.records import Problem
from pope_eval.prompts import Guidance, guided_messages, problem_messages
from pope_eval.runinfo import atomic_path
from pope_eval.seeds import stable_unit

DATA_SOURCE = "pope"
CONFIGS = ("hard", "guided", "mix", "easy", "prefixes")
SPLITS = ("train", "validation")

# The `level` column, as Pipeline-RL's POPE loaders read it: a hard problem's unguided row, its
# guided twin, and an easy problem's row.
UNGUIDED, GUIDED, EASY = "hard-without-guidance", "hard-with-guidance", "easy"
LEVELS = (UNGUIDED, GUIDED, EASY)


@dataclass(frozen=True)
class PrefixChoice:
    """The guidance chosen for one hard problem (a row of prefixes.parquet)."""

    problem_id: str
    num_segments: int
    i_star: int | None
    prefix_segments: int  # i* or 0 for the fallback cut
    prefix_fraction: float
    prefix_text: str
    fallback: bool
    probes: int
    samples: int
    tokens: int


def split_of(problem_id: str, validation_fraction: float, seed: int = 0) -> str:
    """Stable split by problem id: a problem and its guided twin always land together."""
    return "validation" if stable_unit(f"split:{seed}:{problem_id}") < validation_fraction \
        else "train"


PROVENANCE_FIELDS = (
    ("source_dataset", pa.string()),  # source name and where it was read (file or Hub id)
    ("source_revision", pa.string()),  # sha256 of the file / rows, or the generator's version
    ("search_model", pa.string()),
    ("search_model_revision", pa.string()),  # Hub commit, or sha256 of the local weights
    ("solution_source", pa.string()),  # human, dataset, generator, or model:<oracle>
    ("k", pa.int64()), ("n", pa.int64()), ("strategy", pa.string()), ("seed", pa.int64()),
    ("max_prefix_fraction", pa.float64()),  # the cap on the candidate prefixes (1.0: none)
    ("guidance", pa.string()),  # the template guided prompts are worded with (--guidance)
    ("guidance_sha256", pa.string()),  # pope_eval.prompts.Guidance.sha256
    ("pope_version", pa.string()),
)
PROVENANCE = pa.struct(list(PROVENANCE_FIELDS))


def verl_row(*, data_source: str, problem_id: str, problem: str, answer: str, split: str,
             index: int = 0, prefix: PrefixChoice | None = None, level: str | None = None,
             guidance: Guidance | None = None,
             provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """One training or validation row: verl's columns (data_source, prompt, ability,
    reward_model, extra_info) plus plain problem/answer/solution/messages for TRL and OpenRLHF,
    its `level` (LEVELS; None for benchmark rows) and where it came from (`provenance`, see
    PROVENANCE_FIELDS; None for benchmark rows). With `prefix` the prompt is the guided one
    (problem + oracle prefix + instruction, worded by `guidance`, default POPE's). The prompt
    is the user turn alone, so `prompt[0]` holds the task."""
    if prefix is not None:
        messages = guided_messages(problem, prefix.prefix_text, guidance=guidance)
    else:
        messages = problem_messages(problem)
    return {
        "data_source": data_source,
        "prompt": messages,
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {
            "index": index,
            "split": split,
            "problem_id": problem_id,
            "guided": prefix is not None,
            "prefix_segments": prefix.prefix_segments if prefix else 0,
            "prefix_fraction": float(prefix.prefix_fraction) if prefix else 0.0,
            "fallback": bool(prefix.fallback) if prefix else False,
        },
        "level": level,
        "problem": messages[-1]["content"],
        "answer": answer,
        "solution": answer,  # TRL's name for the reference answer column
        "messages": messages,
        "provenance": provenance,
    }


def _row(p: Problem, choice: PrefixChoice | None, split: str, level: str,
         guidance: Guidance | None, provenance: dict[str, Any] | None) -> dict[str, Any]:
    return verl_row(data_source=f"{DATA_SOURCE}/{p.source}", problem_id=p.id,
                    problem=p.problem, answer=p.answer, split=split, prefix=choice, level=level,
                    guidance=guidance, provenance=provenance)


ROW_SCHEMA = pa.schema([
    ("data_source", pa.string()),
    ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    ("extra_info", pa.struct([
        ("index", pa.int64()), ("split", pa.string()), ("problem_id", pa.string()),
        ("guided", pa.bool_()), ("prefix_segments", pa.int64()),
        ("prefix_fraction", pa.float64()), ("fallback", pa.bool_())])),
    ("level", pa.string()),
    ("problem", pa.string()),
    ("answer", pa.string()),
    ("solution", pa.string()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("provenance", PROVENANCE),
])

PREFIX_SCHEMA = pa.schema([
    ("problem_id", pa.string()), ("num_segments", pa.int64()), ("i_star", pa.int64()),
    ("prefix_segments", pa.int64()), ("prefix_fraction", pa.float64()),
    ("prefix_text", pa.string()), ("fallback", pa.bool_()), ("probes", pa.int64()),
    ("samples", pa.int64()), ("tokens", pa.int64()), ("provenance", PROVENANCE),
])


def write_table(rows: list[dict[str, Any]], schema: pa.Schema, path: Path) -> Path:
    """Parquet through a temporary file and rename."""
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    return path


def write_export(
    out_dir: str | Path, hard: Sequence[Problem], prefixes: dict[str, PrefixChoice], *,
    easy: Sequence[Problem] = (), validation_fraction: float = 0.1, seed: int = 0,
    guidance: Guidance | None = None, provenance: dict[str, Any] | None = None,
    solution_sources: dict[str, str] | None = None,
) -> dict[str, dict[str, int]]:
    """Write every config and split; returns row counts {config: {split: rows}}. Guided rows
    are worded by `guidance` (default POPE's); every row carries `provenance` with its
    problem's `solution_sources[id]`."""
    def prov(p: Problem) -> dict[str, Any] | None:
        if provenance is None:
            return None
        return {**provenance, "solution_source": (solution_sources or {}).get(p.id)}

    export = Path(out_dir) / "export"
    tables: dict[str, dict[str, list[dict[str, Any]]]] = {
        c: {s: [] for s in SPLITS} for c in CONFIGS}
    for p in hard:
        choice = prefixes.get(p.id)
        split = split_of(p.id, validation_fraction, seed)
        unguided = _row(p, None, split, UNGUIDED, None, prov(p))
        tables["hard"][split].append(unguided)
        if choice is None:
            continue  # no solution to guide with: unguided only (counted in the report)
        guided = _row(p, choice, split, GUIDED, guidance, prov(p))
        tables["guided"][split].append(guided)
        tables["mix"][split].extend([unguided, guided])
        tables["prefixes"][split].append({**asdict(choice), "provenance": prov(p)})
    for p in easy:
        split = split_of(p.id, validation_fraction, seed)
        tables["easy"][split].append(_row(p, None, split, EASY, None, prov(p)))
    rng = random.Random(seed)
    counts: dict[str, dict[str, int]] = {}
    for config, splits in tables.items():
        counts[config] = {}
        for split, rows in splits.items():
            if config == "mix":
                rng.shuffle(rows)
            rows = [dict(r, extra_info={**r["extra_info"], "index": i})
                    if "extra_info" in r else r for i, r in enumerate(rows)]
            schema = PREFIX_SCHEMA if config == "prefixes" else ROW_SCHEMA
            write_table(rows, schema, export / config / f"{split}.parquet")
            counts[config][split] = len(rows)
    return counts


def plot_prefix_fractions(choices: Sequence[PrefixChoice], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = [c.prefix_fraction for c in choices if not c.fallback]
    fallback = [c.prefix_fraction for c in choices if c.fallback]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    bins = [i / 20 for i in range(21)]
    ax.hist([found, fallback], bins=bins, stacked=True, label=["minimal prefix i*", "fallback (< 1/4)"])
    ax.set_xlabel("prefix length (fraction of the solution, chars)")
    ax.set_ylabel("hard problems")
    ax.set_title("Guidance given per hard problem")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
