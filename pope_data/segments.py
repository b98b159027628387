"""Solutions cut into ordered segments (steps, sentences or token chunks); prefixes are cut here.

`seg = segment(solution, "steps")`; `seg.prefix(i)` is exactly `solution[:offset]` after i segments,
`seg.fraction(i)` its share of characters. `fallback_prefix` is POPE's random cut under 1/4.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pope_eval.errors import ConfigError, DataError
from pope_eval.seeds import stable_int

MODES = ("steps", "sentences", "tokens")


@dataclass(frozen=True)
class Segmentation:
    """A solution and the end offsets of its segments (the last one is len(text))."""

    text: str
    ends: tuple[int, ...]
    mode: str

    def __len__(self) -> int:
        return len(self.ends)

    def prefix(self, i: int) -> str:
        """The first i segments joined exactly as in the original text ('' for i = 0)."""
        if not 0 <= i <= len(self.ends):
            raise ConfigError(f"prefix: i = {i} outside 0..{len(self.ends)}")
        return self.text[: self.ends[i - 1]] if i else ""

    def fraction(self, i: int) -> float:
        return len(self.prefix(i)) / len(self.text)

    def segments(self) -> list[str]:
        starts = (0, *self.ends[:-1])
        return [self.text[a:b] for a, b in zip(starts, self.ends)]


def _split_steps(text: str) -> list[int]:
    """Paragraphs when the text has blank lines, else lines. A segment keeps its trailing
    newline(s), so the next one starts at its content; display math blocks stay whole."""
    sep = re.compile(r"\n[ \t]*\n\s*") if re.search(r"\n[ \t]*\n", text) else re.compile(r"\n\s*")
    protected = _protected_spans(text)
    ends = []
    for m in sep.finditer(text):
        if _inside(m.start(), protected):
            continue
        if m.end() < len(text):
            ends.append(m.end())
    return ends


_MATH = re.compile(
    r"\$\$.*?\$\$|\\\[.*?\\\]|\\\(.*?\\\)|\$(?:\\.|[^$\\])+\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}",
    re.DOTALL,
)
_ABBREV = ("i.e.", "e.g.", "etc.", "cf.", "vs.", "Fig.", "fig.", "Eq.", "eq.", "Mr.", "Dr.",
           "resp.", "approx.", "No.", "Thm.", "Lem.")


def _protected_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _MATH.finditer(text)]


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def _split_sentences(text: str) -> list[int]:
    """After '.', '!' or '?' followed by whitespace and a capital, digit, '$' or '\\', outside math,
    not after an abbreviation or inside a decimal; newlines between paragraphs also split."""
    protected = _protected_spans(text)
    ends = []
    for m in re.finditer(r"[.!?](?=\s+(?:[A-Z0-9$\\(]))|\n[ \t]*\n", text):
        pos = m.end()
        if _inside(m.start(), protected):
            continue
        if m.group().startswith((".", "!", "?")):
            before = text[: pos]
            if any(before.endswith(a) for a in _ABBREV):
                continue
            if re.search(r"\b[A-Z]\.$", before):  # initials: "J. Smith"
                continue
        # The segment takes the whitespace after it, so segments re-join to the text.
        ws = re.match(r"\s*", text[pos:]).end()
        if pos + ws < len(text):
            ends.append(pos + ws)
    return sorted(set(ends))


def _split_tokens(text: str, tokenizer: Any, chunk_tokens: int) -> list[int]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    ends = []
    for i in range(chunk_tokens, len(offsets), chunk_tokens):
        ends.append(offsets[i][0])
    return [e for e in ends if 0 < e < len(text)]


SPLITTERS: dict[str, Callable[..., list[int]]] = {
    "steps": lambda text, **_: _split_steps(text),
    "sentences": lambda text, **_: _split_sentences(text),
    "tokens": lambda text, tokenizer=None, chunk_tokens=None, **_: _split_tokens(
        text, tokenizer, chunk_tokens),
}


def segment(solution: str, mode: str = "steps", *, tokenizer: Any = None,
            chunk_tokens: int | None = None) -> Segmentation:
    """Cut a solution into segments; an empty solution is a DataError."""
    if mode not in SPLITTERS:
        raise ConfigError(f"segment mode: unknown {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(solution, str) or not solution.strip():
        raise DataError("segment: empty solution")
    if mode == "tokens" and (tokenizer is None or not chunk_tokens or chunk_tokens < 1):
        raise ConfigError("segment mode 'tokens' needs a tokenizer and chunk_tokens >= 1")
    inner = SPLITTERS[mode](solution, tokenizer=tokenizer, chunk_tokens=chunk_tokens)
    ends = tuple(sorted(set(e for e in inner if 0 < e < len(solution)))) + (len(solution),)
    return Segmentation(text=solution, ends=ends, mode=mode)


def fallback_prefix(solution: str, seed: int | str) -> tuple[str, float]:
    """POPE's fallback when no prefix works: a seeded random cut strictly shorter than 1/4 of
    the solution, at a whitespace boundary when one exists. Returns (text, char fraction)."""
    if not isinstance(solution, str) or not solution.strip():
        raise DataError("fallback_prefix: empty solution")
    limit = (len(solution) - 1) // 4  # longest allowed prefix: len < len(solution) / 4
    if limit < 1:
        return "", 0.0
    rng = random.Random(stable_int(f"fallback:{seed}"))
    cut = rng.randint(max(1, limit // 2), limit)
    boundaries = [m.start() for m in re.finditer(r"\s", solution[: cut + 1]) if 0 < m.start() <= cut]
    if boundaries:
        cut = boundaries[-1]
    text = solution[:cut]
    return text, len(text) / len(solution)
