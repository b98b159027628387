"""`BuildConfig`: everything `pope-data build` decides, validated once with errors naming the option.

The CLI builds exactly one; `run_build` records its fingerprint in run_config.json and the journal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pope_data.search import (
    CURATE_SCHEDULES,
    DEFAULT_CURATE_SCHEDULE,
    DEFAULT_CURATE_WAVE_SIZE,
    DEFAULT_STRATEGY,
    DEFAULT_WAVE_SIZE,
    strategy_names,
)
from pope_data.segments import MODES
from pope_data.shards import parse_shard
from pope_eval.engines import EngineConfig, Sampling
from pope_eval.errors import ConfigError
from pope_eval.options import option

# The offline demo's sampling (bench/RESULTS.md, "Default demo"): the bundled 135M model states
# the answer of a guided prompt in its first sentence or not at all, so 128 tokens lose few
# answers; at T = 0.5 it copies the partial solution's conclusion more often than at 0.8 (20% vs
# 8-16% of samples at the longest prefix) and still solves none of the problems unguided.
DEMO_SAMPLING = Sampling(max_tokens=128, temperature=0.5, top_p=0.95, seed=0)
RETENTION = ("all", "correct", "none")


def source_names() -> list[str]:
    """Choices for --source: the registered loaders and the offline generator."""
    from pope_data.sources import SOURCES

    return ["synthetic", *SOURCES]


@dataclass(frozen=True)
class BuildConfig:
    """Everything `pope-data build` decides; recorded in run_config.json and checked on resume.

    Defaults are the offline demo: synthetic problems, the bundled tiny model, short rollouts
    (minutes on a 2-core CPU). For the paper's setup use k=128, n=8 and long rollouts.
    """

    out: str = "pope-out"
    source: str = "synthetic"
    path: str | None = None
    hub_id: str | None = None
    columns: str | None = None
    limit: int | None = 16
    difficulty_min: float | None = None
    difficulty_max: float | None = None
    domain: str | None = None
    synthetic_difficulty: int = 2
    engine: EngineConfig = field(default_factory=EngineConfig)
    sampling: Sampling = DEMO_SAMPLING
    k: int = 4  # unguided samples per problem for the hard set (paper: 128)
    # Curation draws the k samples in waves and stops a problem at its first correct sample;
    # "all" draws all k (exact pass rates, e.g. for an easy set by pass-rate band).
    curate_schedule: str = DEFAULT_CURATE_SCHEDULE
    curate_wave: int = DEFAULT_CURATE_WAVE_SIZE
    n: int = 8  # samples per probed prefix (the group size of the training rollouts)
    wave_size: int | None = DEFAULT_WAVE_SIZE
    strategy: str = DEFAULT_STRATEGY
    segmenter: str = "steps"
    segment_tokens: int = 64  # tokens per segment for --segmenter tokens
    include_full_solution: bool = False  # the complete solution is not guidance
    validation_fraction: float = 0.1
    shard: str | None = None
    samples_per_batch: int = option(256, "Samples per engine call.", flag="--batch-samples",
                                    operational=True)
    grading_timeout: float = 5.0
    # Which sample texts the journal keeps: all, correct (default: the evidence for every
    # success, ~10x smaller than all at the paper's scale, see bench/RESULTS.md), none.
    retention: str = "correct"
    # Drop training problems that overlap the evaluation sets (names or files). Synthetic
    # problems are generated here and cannot overlap them: the step is skipped for them.
    decontaminate: bool = True
    decontam_against: tuple[str, ...] = ("aime2025", "hmmt_feb_2025")
    decontam_ngram: int = 8
    decontam_threshold: float = 0.5
    # Oracle solutions for hard problems without one (answer-only sources such as DAPO).
    solve: bool = False
    # The stronger model; None = the base model's engine. Its other engine options (seed,
    # timeouts, Ray) are the base engine's.
    oracle: EngineConfig | None = option(None, "Oracle model (--oracle-model, default: --model).",
                                         prefix="oracle-", only=("engine", "model", "endpoints"),
                                         none_unless="model", inherit="engine")
    solve_n: int = 4
    solve_max_tokens: int = 4096

    def __post_init__(self) -> None:
        for name in ("k", "n", "samples_per_batch", "solve_n", "solve_max_tokens",
                     "segment_tokens", "curate_wave"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{_option(name)}: must be an integer >= 1, got {value!r}")
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
            raise ConfigError(f"grading_timeout: must be > 0, got {self.grading_timeout}")
        if self.source not in source_names():
            raise ConfigError(f"--source: unknown {self.source!r}; choose one of "
                              f"{', '.join(source_names())}")
        if self.source == "generic" and not (self.path or self.hub_id):
            raise ConfigError("--path: the generic source needs --path FILE or --hub-id ID")
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
        parse_shard(self.shard)

    @property
    def seed(self) -> int:
        return self.sampling.seed

    def fingerprint(self) -> dict[str, Any]:
        """The fields that decide results (resume is refused when one changes)."""
        d = asdict(self)
        d["engine"] = self.engine.fingerprint()
        d["sampling"] = self.sampling.to_dict()
        d["decontam_against"] = list(self.decontam_against)
        if self.oracle is not None:
            d["oracle"] = self.oracle.fingerprint()
        # Operational: how work is batched or how much text is kept, never what is sampled.
        for key in ("out", "samples_per_batch", "retention"):
            d.pop(key)
        return d


def _option(name: str) -> str:
    """The command-line option of a BuildConfig field."""
    return {"samples_per_batch": "--batch-samples"}.get(name, "--" + name.replace("_", "-"))
