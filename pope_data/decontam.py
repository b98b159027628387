"""Decontamination: drop training problems that overlap the evaluation sets (AIME, HMMT, any file).

`decontaminate(problems, eval_sets=load_eval_sets(["aime2025", "x.jsonl"])[0])` -> kept problems
and one removal record per dropped problem; `write_decontamination` stores it for the report and card.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_data.records import Problem
from pope_eval.benchmarks import default_benchmarks
from pope_eval.errors import ConfigError, PopeError

log = logging.getLogger(__name__)

# The evaluation sets training data is checked against (pope_eval.benchmarks.default_benchmarks).
DEFAULT_EVAL_SETS: tuple[str, ...] = default_benchmarks()
DEFAULT_NGRAM = 8  # word n-gram length of the overlap check
DEFAULT_THRESHOLD = 0.5  # share of a problem's n-grams found in one eval item that removes it
DECONTAMINATION_FILE = "decontamination.json"

# LaTeX that changes spacing or sizing but not content: \, \; \: \! "\ " ~ \left \right, and
# the math delimiters $ \( \) \[ \].
_LATEX_NOISE = re.compile(r"\\[,;:! ]|~|\\left\b|\\right\b|\\[()\[\]]|\$")
_BRACES = re.compile(r"[{}]")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> str:
    """Case, whitespace, LaTeX spacing, `$` delimiters, \\left/\\right and braces do not count."""
    t = _LATEX_NOISE.sub(" ", text.lower())
    t = _BRACES.sub(" ", t)
    return _SPACE.sub(" ", t).strip()


def exact_key(text: str) -> str:
    """Key for exact matching: the normalised text without any whitespace, so 'b > 9' == 'b>9'."""
    return _SPACE.sub("", normalise(text))


def words(text: str) -> list[str]:
    """Word tokens of the normalised text (letters and digits; operators and punctuation drop)."""
    return _WORD.findall(normalise(text))


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class DecontamResult:
    """Problems kept, and one record per removed problem with the eval item it matched."""

    kept: list[Problem]
    removed: list[dict[str, Any]]
    checked: dict[str, int] = field(default_factory=dict)  # eval set -> items compared against
    ngram: int = DEFAULT_NGRAM
    threshold: float = DEFAULT_THRESHOLD

    def to_dict(self, not_checked: Mapping[str, str] | None = None) -> dict[str, Any]:
        return {
            "removed": list(self.removed),
            "checked": dict(self.checked),
            "not_checked": dict(not_checked or {}),
            "ngram": self.ngram,
            "threshold": self.threshold,
            "kept": len(self.kept),
        }


def decontaminate(
    problems: Sequence[Problem], *, eval_sets: Mapping[str, Sequence[tuple[str, str]]],
    ngram: int = DEFAULT_NGRAM, threshold: float = DEFAULT_THRESHOLD,
) -> DecontamResult:
    """Remove problems that match an eval item exactly (after `normalise`) or share at least
    `threshold` of their word `ngram`-grams with one eval item.

    `eval_sets` maps a set name to (item id, problem text) pairs. Problems shorter than `ngram`
    words are checked by exact match only: a handful of words is no evidence of a copy.
    """
    if ngram < 1:
        raise ConfigError(f"decontaminate.ngram: must be >= 1, got {ngram}")
    if not 0 < threshold <= 1:
        raise ConfigError(f"decontaminate.threshold: must be in (0, 1], got {threshold}")
    items: list[tuple[str, str]] = []  # (set name, item id), indexed by position
    exact: dict[str, int] = {}
    index: dict[tuple[str, ...], list[int]] = {}
    for set_name, pairs in eval_sets.items():
        for item_id, text in pairs:
            pos = len(items)
            items.append((set_name, str(item_id)))
            exact.setdefault(exact_key(text), pos)
            for gram in ngrams(words(text), ngram):
                index.setdefault(gram, []).append(pos)

    kept: list[Problem] = []
    removed: list[dict[str, Any]] = []
    for p in problems:
        match = _match(p.problem, exact, index, ngram)
        if match is None or match[2] < threshold:
            kept.append(p)
            continue
        pos, method, score = match
        set_name, item_id = items[pos]
        removed.append({"problem_id": p.id, "source": p.source, "eval_set": set_name,
                        "eval_id": item_id, "method": method, "score": round(score, 4)})
        log.info("decontamination: removed %s (%s match %.2f with %s %s)",
                 p.id, method, score, set_name, item_id)
    checked = {name: len(pairs) for name, pairs in eval_sets.items()}
    return DecontamResult(kept=kept, removed=removed, checked=checked, ngram=ngram,
                          threshold=threshold)


def _match(text: str, exact: Mapping[str, int], index: Mapping[tuple[str, ...], list[int]],
           n: int) -> tuple[int, str, float] | None:
    """(eval item position, method, score) of the best match, or None."""
    pos = exact.get(exact_key(text))
    if pos is not None:
        return pos, "exact", 1.0
    grams = ngrams(words(text), n)
    if not grams:
        return None
    hits: Counter[int] = Counter()
    for gram in grams:
        for item in set(index.get(gram, ())):
            hits[item] += 1
    if not hits:
        return None
    # Highest score; ties go to the first eval item so reports are stable.
    best, count = min(hits.items(), key=lambda kv: (-kv[1], kv[0]))
    return best, "ngram", count / len(grams)


def load_eval_sets(
    names_or_paths: Iterable[str] = DEFAULT_EVAL_SETS, *, option: str = "--decontam-against",
) -> tuple[dict[str, list[tuple[str, str]]], dict[str, str]]:
    """Load eval sets with `pope_eval.benchmarks.load_benchmark`: bundled names (offline),
    files, or `hub:ORG/NAME[:split]`. `option` is the flag the names came from, named in errors.

    Returns (eval_sets, not_checked): a set that cannot be loaded (offline Hub, bad file) is
    reported in `not_checked` with the reason instead of stopping the build.
    """
    from pope_eval.benchmarks import load_benchmark

    eval_sets: dict[str, list[tuple[str, str]]] = {}
    not_checked: dict[str, str] = {}
    for spec in names_or_paths:
        try:
            bench = load_benchmark(spec, option=option)
        except (PopeError, OSError) as exc:
            log.warning("decontamination: eval set %s not checked: %s", spec, exc)
            not_checked[spec] = str(exc)
            continue
        name = bench.name if bench.name not in eval_sets else spec
        eval_sets[name] = [(item.id, item.problem) for item in bench.items]
    return eval_sets, not_checked


def write_decontamination(out_dir: str | Path, result: DecontamResult,
                          not_checked: Mapping[str, str] | None = None) -> Path:
    """Write decontamination.json into a build folder (read by the report and the dataset card)."""
    from pope_eval.runinfo import write_json_atomic

    return write_json_atomic(Path(out_dir) / DECONTAMINATION_FILE, result.to_dict(not_checked))
