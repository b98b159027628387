"""The backend-agnostic parts of guidance: the build's guided problems, the prefix table, the refresh, ratios and hints.

`load_guided_problems(export_dir, hard_ids)` reads and checks the build beside an export;
`GuidanceTable` renders a training row with a problem's current prefix; `refresh(table, engine,
journal, step)` re-runs the prefix search with the live policy through pope's `SearchService`
(bisect-seq over [0, current prefix], >= 1 correct of n; never longer; i* = 0 graduates), in a
journal stage named after the step, so a killed refresh resumes with the same prefixes;
`ratio_prefix(seg, ratio)` is the longest prefix within a share of the solution; `GroupHints`
picks GHPO's all-failed groups. The schemes that use them: pope_train.guidance.*.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_data.journal import Journal
from pope_data.records import Problem
from pope_data.search import make_strategy
from pope_data.segments import Segmentation, segment
from pope_data.service import SearchService, SearchTask, ServiceProgress
from pope_eval.engines import Engine, Sampling
from pope_eval.errors import ConfigError, DataError
from pope_eval.prompts import Guidance, guided_messages

REFRESH_STRATEGY = "bisect-seq"
REFRESH_WAVE = 2  # samples per wave: a probe stops at its first correct sample


def parse_ratios(spec: str, flag: str) -> tuple[float, ...]:
    """'0.5,0.25' -> (0.5, 0.25); each in (0, 1), ConfigError naming `flag` otherwise."""
    try:
        values = tuple(float(x) for x in str(spec).split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{flag}: expected a comma list of numbers in (0, 1), got "
                          f"{spec!r}") from None
    if not values or not all(0 < v < 1 for v in values):
        raise ConfigError(f"{flag}: expected a comma list of numbers in (0, 1), got {spec!r}")
    return values


def ratio_prefix(seg: Segmentation, ratio: float) -> int:
    """The longest prefix (in segments) whose share of the solution's characters is <= ratio,
    at least one segment, never the whole solution (that would be the answer): a solution of one
    segment has no such prefix and gets 0 (its guided rows are shown unguided)."""
    best = 1
    for i in range(1, len(seg)):
        if seg.fraction(i) <= ratio:
            best = i
    return max(min(best, len(seg) - 1), 0)


def ratio_at(schedule: Sequence[float], step: int, max_steps: int) -> float:
    """The share of solution shown at `step` (0-based step about to be taken): the steps are split
    into len(schedule) equal phases, phase j shows schedule[j]."""
    phase = min(len(schedule) - 1, step * len(schedule) // max(max_steps, 1))
    return schedule[phase]


@dataclass(frozen=True)
class GuidedProblem:
    """A training hard problem as guidance sees it: text, answer, segmented solution, and the
    build's prefix (`start`: i*; when `found` is False, the whole segments of the build's fallback
    cut, at least one; 0 when the solution is a single segment)."""

    id: str
    problem: str
    answer: str
    segmentation: Segmentation
    start: int
    found: bool
    cut: str = ""  # the exported fallback prefix (a cut inside a segment), "" when i* was found


def _read_rows(path: Path, what: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ConfigError(f"export: {what} needs {path} (a pope-data build folder beside the "
                          "export); give --export OUT/export of a pope-data build")
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
        raise DataError(f"{path}: not a readable parquet file: {exc}") from exc


def load_guided_problems(export_dir: str | Path, hard_ids: frozenset[str] | set[str],
                         what: str = "guidance during training"
                         ) -> tuple[dict[str, GuidedProblem], Guidance]:
    """The build's training hard problems (those in `hard_ids` that have a prefix row) and its
    guidance wording, checked: each problem's solution re-segmented with the build's segmenter
    gives back the exported prefix text, so rows rendered here match the export's."""
    export = Path(export_dir).resolve()
    build = export.parent
    config_path = build / "run_config.json"
    if not config_path.is_file():
        raise ConfigError(f"export: {what} needs {config_path} (the build's settings)")
    run_config = json.loads(config_path.read_text())
    g = run_config.get("guidance") or {}
    if not g.get("template"):
        raise DataError(f"{config_path}: no 'guidance' wording recorded")
    guidance = Guidance(name=g.get("name", "pope"), template=g["template"],
                        instruction=g.get("instruction", ""))
    mode = run_config.get("config", {}).get("segmenter", "steps")
    if mode == "tokens":
        raise ConfigError(f"export: {what} re-segments the solutions; the build used "
                          "--segmenter tokens, which needs the build's tokenizer: rebuild with "
                          "--segmenter steps or sentences")
    problems = {r["id"]: r for r in _read_rows(build / "problems.parquet", what)}
    out: dict[str, GuidedProblem] = {}
    prefix_file = export / "prefixes" / "train.parquet"
    for i, row in enumerate(_read_rows(prefix_file, what)):
        pid = row["problem_id"]
        if pid not in hard_ids:
            continue
        source = problems.get(pid)
        if source is None or not source.get("solution"):
            raise DataError(f"{prefix_file} row {i + 1}: problem {pid!r} has no solution in "
                            f"{build / 'problems.parquet'}")
        seg = segment(source["solution"], mode)
        start = int(row["prefix_segments"])
        text = row["prefix_text"]
        if row["fallback"] and len(seg) == row["num_segments"] and seg.text.startswith(text):
            # POPE's fallback is a random cut under 1/4 at a whitespace, not at a segment end:
            # a scheme that moves prefixes by segments starts from the whole segments it covers,
            # at least one (a guided row shows guidance), never the whole solution (a solution of
            # one segment starts at 0: shown unguided).
            start = ratio_prefix(seg, len(text) / len(seg.text))
        elif len(seg) != row["num_segments"] or seg.prefix(start) != text:
            raise DataError(f"{prefix_file} row {i + 1}: problem {pid!r}: its solution, segmented "
                            f"with {mode!r}, does not give back the exported prefix")
        out[pid] = GuidedProblem(pid, source["problem"], str(source["answer"]), seg, start,
                                 row["i_star"] is not None and not row["fallback"],
                                 text if row["fallback"] else "")
    if not out:
        raise ConfigError(f"export: {what} found none of the training hard problems in "
                          f"{prefix_file}")
    return out, guidance


@dataclass
class GuidanceTable:
    """Each training hard problem's current prefix, and the rendering of training rows with it."""

    problems: Mapping[str, GuidedProblem]
    guidance: Guidance
    prefix: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per refresh

    def __post_init__(self) -> None:
        if not self.prefix:
            self.prefix = {pid: p.start for pid, p in self.problems.items()}

    @property
    def graduated(self) -> list[str]:
        return sorted(pid for pid, i in self.prefix.items() if i == 0)

    def messages(self, pid: str, segments: int) -> list[dict[str, str]]:
        p = self.problems[pid]
        return guided_messages(p.problem, p.segmentation.prefix(segments), guidance=self.guidance)

    def render(self, row: Mapping[str, Any], segments: int | None = None) -> dict[str, Any]:
        """A training row with its guided prompt showing `segments` (default the problem's
        current prefix). Rows that are not guided, or of problems the table does not hold, come
        back unchanged. A prefix of 0 gives the unguided prompt, marked `graduated`."""
        info = dict(row.get("extra_info") or {})
        pid = info.get("problem_id")
        if not (info.get("guided") or info.get("graduated")) or pid not in self.problems:
            return dict(row)
        i = self.prefix[pid] if segments is None else segments
        seg = self.problems[pid].segmentation
        info.update(guided=i > 0, graduated=i == 0, prefix_segments=i,
                    prefix_fraction=seg.fraction(i))
        return {**row, "prompt": self.messages(pid, i), "extra_info": info}

    def histogram(self) -> dict[str, int]:
        return {str(i): c for i, c in sorted(Counter(self.prefix.values()).items())}

    def snapshot(self) -> dict[str, Any]:
        return {"prefix": dict(sorted(self.prefix.items())), "histogram": self.histogram(),
                "graduated": self.graduated}


def refresh_fingerprint(model: str, seed: int, n: int, sampling: Sampling,
                        guidance: Guidance) -> dict[str, Any]:
    """What a refresh journal is bound to: a resumed run with other settings is refused."""
    return {"what": "pope-train guidance refresh", "model": model, "seed": seed, "n": n,
            "strategy": REFRESH_STRATEGY, "wave_size": REFRESH_WAVE,
            "sampling": sampling.to_dict(), "guidance_sha256": guidance.sha256}


def refresh_stage(step: int) -> str:
    """The journal stage of the refresh made with the policy after `step` optimizer steps."""
    return f"refresh-step-{step:06d}"


def refresh(table: GuidanceTable, engine: Engine, journal: Journal, step: int, *, n: int,
            sampling: Sampling, progress: Callable[[ServiceProgress], None] | None = None,
            batch_samples: int = 256) -> dict[str, Any]:
    """Re-search each non-graduated problem's prefix with `engine` (the current policy): bisect-seq
    over [0, current prefix], success = at least one correct of n. Shorter prefixes replace the
    table's; a search that finds none keeps the current one (never longer). Returns the refresh's
    metrics record (also appended to `table.history`)."""
    started = time.perf_counter()
    stage = refresh_stage(step)
    before = dict(table.prefix)
    tasks = [SearchTask(Problem(id=pid, problem=p.problem, answer=p.answer, source="pope-train"),
                        make_strategy(REFRESH_STRATEGY, problem_id=pid, min_prefix=0,
                                      max_prefix=before[pid], n=n, wave_size=REFRESH_WAVE,
                                      seed=sampling.seed),
                        p.segmentation)
             for pid, p in sorted(table.problems.items()) if before[pid] > 0]
    service = SearchService(engine, journal, sampling=sampling, samples_per_batch=batch_samples,
                            progress=progress, guidance=table.guidance)
    results = service.run(stage, tasks) if tasks else {}
    shortened = kept = 0
    for pid, result in results.items():
        if result.i_star is not None and result.i_star < before[pid]:
            table.prefix[pid] = result.i_star
            shortened += 1
        else:
            kept += 1
    new_graduates = sorted(pid for pid in results if table.prefix[pid] == 0)
    record = {
        "refresh_step": step,
        "refresh_searched": len(tasks),
        "refresh_shortened": shortened,
        "refresh_kept": kept,
        "refresh_new_graduates": new_graduates,
        "refresh_graduated": len(table.graduated),
        "refresh_istar_hist": table.histogram(),
        "refresh_prefix_mean": sum(table.prefix.values()) / len(table.prefix),
        "refresh_samples": sum(r.samples for r in results.values()),
        "refresh_tokens": sum(r.tokens for r in results.values()),
        "refresh_time": time.perf_counter() - started,
    }
    table.history.append({**record, "prefix": dict(sorted(table.prefix.items()))})
    return record


@dataclass
class GroupHints:
    """GHPO-style regeneration: which groups of a batch failed entirely, and their hinted rows."""

    ratios: tuple[float, ...]
    table: GuidanceTable

    def failed_groups(self, scores: Sequence[float], rows: Sequence[Mapping[str, Any]],
                      group: int) -> list[int]:
        """Indices of the groups (of `group` consecutive rows, one prompt each) whose rollouts
        all scored 0 and whose problem has a solution to hint with."""
        if len(scores) != len(rows) or len(rows) % group:
            raise ValueError(f"hinting: {len(rows)} rows, {len(scores)} scores, groups of {group}")
        out = []
        for g in range(len(rows) // group):
            lo, hi = g * group, (g + 1) * group
            pid = (rows[lo].get("extra_info") or {}).get("problem_id")
            if any((r.get("extra_info") or {}).get("problem_id") != pid for r in rows[lo:hi]):
                raise ValueError(f"hinting: rows {lo}..{hi - 1} are not one prompt's group")
            if pid in self.table.problems and not any(s > 0 for s in scores[lo:hi]):
                out.append(g)
        return out

    def hinted(self, row: Mapping[str, Any], ratio: float) -> dict[str, Any]:
        """The row with `ratio` of its problem's solution shown in POPE's guided wording."""
        pid = row["extra_info"]["problem_id"]
        i = ratio_prefix(self.table.problems[pid].segmentation, ratio)
        out = self.table.render({**row, "extra_info": {**row["extra_info"], "guided": True}}, i)
        out["extra_info"]["hint_ratio"] = ratio
        return out


def prefix_tokens(table: GuidanceTable, rows: Sequence[Mapping[str, Any]], group: int,
                  count: Callable[[str], int]) -> int:
    """Tokens of solution shown to the policy in a batch: each distinct prompt (a group of `group`
    rows) counts its prefix once."""
    total = 0
    for lo in range(0, len(rows), group):
        info = rows[lo].get("extra_info") or {}
        pid, i = info.get("problem_id"), info.get("prefix_segments") or 0
        if not info.get("guided") or pid not in table.problems:
            continue
        p = table.problems[pid]
        if i:
            total += count(p.segmentation.prefix(i))
        elif info.get("fallback"):
            # a row as exported (static guidance) shows the fallback cut: no whole segment
            total += count(p.cut)
    return total
