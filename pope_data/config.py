"""`BuildConfig`: everything `pope-data build` decides, validated once with errors naming the option.

The CLI builds exactly one; `run_build` records its fingerprint in run_config.json and the journal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import Any

from pope_data.decontam import DEFAULT_EVAL_SETS, DEFAULT_NGRAM, DEFAULT_THRESHOLD
from pope_data.search import (
    CURATE_SCHEDULES,
    DEFAULT_CURATE_SCHEDULE,
    DEFAULT_CURATE_WAVE_SIZE,
    DEFAULT_STRATEGY,
    DEFAULT_WAVE_SIZE,
    strategy_names,
)
from pope_data.segments import MODES
from pope_data.sharding import parse_shard
from pope_data.sources import SOURCES, get_source, source_names
from pope_eval.engines import EngineConfig, Sampling
from pope_eval.errors import ConfigError
from pope_eval.options import flag_of, operational_fields, option
from pope_eval.prompts import DEFAULT_GUIDANCE, GUIDANCE, Guidance, load_guidance

# The offline demo's sampling (bench/RESULTS.md, "Default demo"): the bundled 135M model states
# the answer of a guided prompt in its first sentence or not at all, so 128 tokens lose few
# answers; at T = 0.5 it copies the partial solution's conclusion more often than at 0.8 (20% vs
# 8-16% of samples at the longest prefix) and still solves none of the problems unguided.
DEMO_SAMPLING = Sampling(max_tokens=128, temperature=0.5, top_p=0.95, seed=0)
RETENTION = ("all", "correct", "none")


def _limit_help() -> str:
    made = "; ".join(f"{name}: how many to make, default {spec.default_limit}"
                     for name, spec in SOURCES.items() if spec.generate is not None)
    return f"Problems to take after --shard and the filters (default: every row; {made})."


@dataclass(frozen=True)
class BuildConfig:
    """Everything `pope-data build` decides; recorded in run_config.json and checked on resume.

    Defaults are the offline demo: synthetic problems, the bundled tiny model, short rollouts
    (minutes on a 2-core CPU). For the paper's setup use k=128, n=8 and long rollouts. Each field
    carries its --help text and flag (`pope_eval.options.option`).
    """

    out: str = option("pope-out", "Output folder (re-running with it resumes).",
                      operational=True)
    source: str = option("synthetic", lambda: f"One of {', '.join(source_names())}.")
    path: str | None = option(None, "Local jsonl/json/parquet file for the source.")
    hub_id: str | None = option(None, "Hub dataset id (overrides the source's).")
    columns: str | None = option(None, "Column mapping, e.g. 'problem=question,answer=final'.")
    limit: int | None = option(None, _limit_help)
    difficulty_min: float | None = option(None, "Keep problems of at least this difficulty.")
    difficulty_max: float | None = option(None, "Keep problems of at most this difficulty.")
    domain: str | None = option(None, "Keep problems whose domain contains this.")
    synthetic_difficulty: int = option(2, "synthetic source: difficulty 1-5.")
    source_options: tuple[str, ...] = option(
        (), "A generator source's own option, KEY=VALUE (repeat), e.g. difficulty=10.",
        flag="--source-option")
    engine: EngineConfig = option(help="The model that is searched with, and its engine.",
                                  default_factory=EngineConfig)
    sampling: Sampling = option(DEMO_SAMPLING, "How every sample is drawn (--max-tokens, "
                                "--temperature, --top-p, --seed).")
    k: int = option(4, "Unguided samples per problem for the hard set.")  # paper: 128
    # Curation draws the k samples in waves and stops a problem at its first correct sample;
    # "all" draws all k (exact pass rates, e.g. for an easy set by pass-rate band).
    curate_schedule: str = option(DEFAULT_CURATE_SCHEDULE, "Curation waves: " + "; ".join(
        f"{k}: {v}" for k, v in CURATE_SCHEDULES.items()) + ".")
    curate_wave: int = option(DEFAULT_CURATE_WAVE_SIZE,
                              "Curation: the fixed wave, or the cap of growing waves.")
    # n is the group size of the training rollouts.
    n: int = option(8, "Samples per probed prefix.")
    wave_size: int | None = option(DEFAULT_WAVE_SIZE, "Samples per wave in sequential strategies.")
    strategy: str = option(DEFAULT_STRATEGY, lambda: f"One of {', '.join(strategy_names())}.")
    segmenter: str = option("steps", f"One of {', '.join(MODES)}.")
    segment_tokens: int = option(64, "--segmenter tokens: tokens per segment.")
    include_full_solution: bool = option(False, "Also probe the complete solution as a prefix "
                                         "(it is the answer, not guidance).")
    # The paper's secondary account grows prefixes only up to a quarter of the solution (0.25).
    max_prefix_fraction: float = option(
        1.0, "Probe only prefixes covering at most this share of the solution's characters "
        "(0.25: up to a quarter); the fallback cut under 1/4 is unchanged.")
    guidance: str = option(DEFAULT_GUIDANCE, lambda: "How guided prompts are worded, in the "
                           f"search and the export: {', '.join(GUIDANCE)}, or a template file.")
    validation_fraction: float = option(0.1, "Share of the problems in the validation split.")
    shard: str | None = option(None, "I/N: this machine's share of the problems.")
    samples_per_batch: int = option(1024, "Samples in flight in the engine (the streaming "
                                          "window; see docs/engines.md).",
                                    flag="--batch-samples", operational=True)
    grading_timeout: float = option(5.0, "Seconds math-verify may spend on one sample.")
    # Which sample texts the journal keeps: all, correct (default: the evidence for every
    # success, ~10x smaller than all at the paper's scale, see bench/RESULTS.md), none.
    retention: str = option("correct", f"Sample texts the journal keeps: {', '.join(RETENTION)}.",
                            operational=True)
    # Drop training problems that overlap the evaluation sets (names or files). A source whose
    # problems are made here cannot overlap them: the step is skipped for it.
    decontaminate: bool = option(True, "Drop problems overlapping the eval sets.")
    decontam_against: tuple[str, ...] = option(
        DEFAULT_EVAL_SETS, "Eval set name or file (repeat); default "
        f"{' + '.join(DEFAULT_EVAL_SETS)}.")
    decontam_ngram: int = option(DEFAULT_NGRAM, "Word n-gram length of the overlap check.")
    decontam_threshold: float = option(
        DEFAULT_THRESHOLD, "Share of a problem's n-grams found in one eval item that removes it.")
    # Oracle solutions for hard problems without one (answer-only sources such as DAPO).
    solve: bool = option(False, "Have an oracle model write solutions for hard problems without "
                         "one (DAPO).", flag="--solve")
    # The stronger model; None = the base model's engine. Its other engine options (seed,
    # timeouts, Ray) are the base engine's.
    oracle: EngineConfig | None = option(None, "Oracle model (--oracle-model, default: --model).",
                                         prefix="oracle-", only=("engine", "model", "endpoints"),
                                         none_unless="model", inherit="engine")
    solve_n: int = option(4, "Oracle attempts per problem.")
    solve_max_tokens: int = option(4096, "Max tokens of one oracle solution.")
    # What --preset set (pope_eval.presets.record), kept in run_config.json; never compared.
    preset: dict[str, Any] | None = option(None, "What --preset set.", cli=False,
                                           operational=True, repr=False)

    def __post_init__(self) -> None:
        for name in ("k", "n", "samples_per_batch", "solve_n", "solve_max_tokens",
                     "segment_tokens", "curate_wave"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{_option(name)}: must be an integer >= 1, got {value!r}")
        for name in ("difficulty_min", "difficulty_max", "max_prefix_fraction",
                     "validation_fraction", "grading_timeout", "decontam_threshold"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise ConfigError(f"{_option(name)}: must be a finite number, got {value!r}")
        if self.wave_size is not None and self.wave_size < 1:
            raise ConfigError(f"--wave-size: must be >= 1, got {self.wave_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit: must be >= 1, got {self.limit}")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(f"--validation-fraction: must be in [0, 1), got "
                              f"{self.validation_fraction}")
        if self.sampling.temperature <= 0:
            raise ConfigError("--temperature: the search samples, so it needs temperature > 0")
        if self.grading_timeout <= 0:
            raise ConfigError(f"--grading-timeout: must be > 0, got {self.grading_timeout}")
        spec = get_source(self.source)
        if spec.generate is None and spec.hub_id is None and not (self.path or self.hub_id):
            raise ConfigError(f"--path: the {self.source} source needs --path FILE or --hub-id ID")
        if self.strategy not in strategy_names():
            raise ConfigError(f"--strategy: unknown {self.strategy!r}; choose one of "
                              f"{', '.join(strategy_names())}")
        if self.segmenter not in MODES:
            raise ConfigError(f"--segmenter: unknown {self.segmenter!r}; choose one of "
                              f"{', '.join(MODES)}")
        if self.curate_schedule not in CURATE_SCHEDULES:
            raise ConfigError(f"--curate-schedule: unknown {self.curate_schedule!r}; choose one "
                              f"of {', '.join(CURATE_SCHEDULES)}")
        if self.retention not in RETENTION:
            raise ConfigError(f"--retention: unknown {self.retention!r}; choose one of "
                              f"{', '.join(RETENTION)}")
        if not 1 <= self.synthetic_difficulty <= 5:
            raise ConfigError(f"--synthetic-difficulty: must be in 1..5, got "
                              f"{self.synthetic_difficulty}")
        if self.difficulty_min is not None and self.difficulty_max is not None \
                and self.difficulty_min > self.difficulty_max:
            raise ConfigError(f"--difficulty-min {self.difficulty_min} is above --difficulty-max "
                              f"{self.difficulty_max}")
        if self.decontam_ngram < 1:
            raise ConfigError(f"--decontam-ngram: must be >= 1, got {self.decontam_ngram}")
        if not 0 < self.decontam_threshold <= 1:
            raise ConfigError(f"--decontam-threshold: must be in (0, 1], got "
                              f"{self.decontam_threshold}")
        if not 0 < self.max_prefix_fraction <= 1:
            raise ConfigError(f"--max-prefix-fraction: must be in (0, 1], got "
                              f"{self.max_prefix_fraction}")
        if isinstance(self.source_options, str):
            object.__setattr__(self, "source_options", (self.source_options,))
        else:
            object.__setattr__(self, "source_options", tuple(self.source_options))
        get_source(self.source).parse_source_options(self.source_options)
        parse_shard(self.shard)
        # A template name or file that cannot be read fails here, before anything is written.
        _ = self.guidance_template

    @property
    def seed(self) -> int:
        return self.sampling.seed

    @cached_property
    def guidance_template(self) -> Guidance:
        """The --guidance template, read once (a file is read when the config is made)."""
        return load_guidance(self.guidance)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that decide results (resume is refused when one changes); the operational
        ones (how work is batched or how much text is kept, never what is sampled) are left out."""
        d = asdict(self)
        d["engine"] = self.engine.fingerprint()
        d["sampling"] = self.sampling.to_dict()
        d["decontam_against"] = list(self.decontam_against)
        # The limit in effect: a generator's default count is recorded as if given.
        d["limit"] = self.limit if self.limit is not None else get_source(self.source).default_limit
        if self.oracle is not None:
            d["oracle"] = self.oracle.fingerprint()
        # Recorded only when not the default, so folders built before these options existed
        # (without the keys) resume with the defaults.
        if self.guidance_template == load_guidance(DEFAULT_GUIDANCE):
            d.pop("guidance")
        else:
            d["guidance"] = {"name": self.guidance_template.name,
                             "sha256": self.guidance_template.sha256}
        if self.max_prefix_fraction == 1.0:
            d.pop("max_prefix_fraction")
        if self.source_options:
            d["source_options"] = get_source(self.source).parse_source_options(self.source_options)
        else:
            d.pop("source_options")
        for key in operational_fields(BuildConfig):
            d.pop(key)
        return d


def _option(name: str) -> str:
    """The command-line option of a BuildConfig field."""
    return flag_of(next(f for f in fields(BuildConfig) if f.name == name))
