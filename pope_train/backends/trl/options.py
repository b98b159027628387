"""The options of `pope-train run --backend trl`: the run's, the rollouts', the evaluation's and each guidance scheme's.

`TrlOptions` is all of them as one flat set of command-line flags; each part is its own frozen
dataclass, validated by itself, with errors that name the flag (`--refresh-every: ...`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from pope_eval.errors import ConfigError
from pope_eval.options import option
from pope_train.guidance import SCHEMES, scheme_options
from pope_train.guidance.base import check_options
from pope_train.sft import SftOptions

DEFAULT_OUT = "pope-train-trl"

# How rollouts are generated (--vllm): TRL's transformers generate() or TRL's vLLM integration.
VLLM_CHOICES: dict[str, str] = {
    "auto": "colocate on CUDA when vllm is importable, else off",
    "colocate": "vLLM in this process, sharing the GPU with training (TRL's vllm_mode colocate)",
    "server": "a separate `trl vllm-serve` server (TRL's vllm_mode server, see --vllm-server)",
    "off": "transformers generate()",
}

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The run: its folder, length, seed, optimizer and checkpoints."""

    out_dir: str = option(DEFAULT_OUT, "Run folder: metrics.jsonl, metrics.png, checkpoint-N/, "
                          "final/.", flag="--out")
    max_steps: int = option(20, "GRPO steps.")
    seed: int = option(0, "Seed for sampling, shuffling and init.")
    learning_rate: float | None = option(None, "AdamW learning rate; default the config's (1e-6).")
    save_steps: int = option(10, "Save a checkpoint every N steps.")
    max_grad_norm: float = option(1.0, "Gradient clipping: max global L2 norm (TRL's default 1.0).")
    lr_scheduler: str = option("linear", "Learning-rate schedule over --max-steps, a transformers "
                               "SchedulerType: linear (TRL's default), cosine, constant, ...")
    beta: float = option(0.0, "KL coefficient against the initial policy; 0 (the paper's) loads "
                         "no reference model.")
    processes: int = option(1, "Training processes on this machine (data parallel: each "
                            "generates and trains on --prompts-per-step / N prompts; CPU: gloo, "
                            "GPU: one GPU each). pope-train starts them itself (torchrun).")
    preset: dict[str, Any] | None = option(None, "What --preset set (recorded in run_config.json).",
                                           cli=False)

    def __post_init__(self) -> None:
        if not self.out_dir or not str(self.out_dir).strip():
            raise ConfigError("--out: give --out DIR")
        for flag, value in (("--max-steps", self.max_steps), ("--save-steps", self.save_steps)):
            if value < 1:
                raise ConfigError(f"{flag}: must be >= 1, got {value}")
        if self.seed < 0:
            raise ConfigError(f"--seed: must be >= 0, got {self.seed}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ConfigError(f"--learning-rate: must be in (0, 1), got {self.learning_rate}")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"--max-grad-norm: must be > 0, got {self.max_grad_norm}")
        if self.beta < 0:
            raise ConfigError(f"--beta: must be >= 0, got {self.beta}")
        if self.processes < 1:
            raise ConfigError(f"--processes: must be >= 1, got {self.processes}")


@dataclass(frozen=True, kw_only=True)
class RolloutOptions:
    """The rollouts: prompts and groups per step, length, temperature, the generation engine."""

    prompts_per_step: int = option(2, "Prompts per step, each with --num-generations rollouts.")
    num_generations: int = option(8, "Rollouts per prompt (group size).")
    max_completion_length: int = option(512, "Max generated tokens per rollout.")
    temperature: float | None = option(None, "Sampling temperature; default the config's (1.0).")
    vllm: str = option("auto", lambda: "Rollout generation: " + "; ".join(
        f"{name}: {what}" for name, what in VLLM_CHOICES.items()) + ".")
    vllm_server: str | None = option(None, "Base URL of the `trl vllm-serve` server for --vllm "
                                     "server (default TRL's, port 8000 on this machine).")

    def __post_init__(self) -> None:
        for flag, value in (("--prompts-per-step", self.prompts_per_step),
                            ("--max-completion-length", self.max_completion_length)):
            if value < 1:
                raise ConfigError(f"{flag}: must be >= 1, got {value}")
        if self.num_generations < 2:
            raise ConfigError(f"--num-generations: GRPO compares rollouts of a prompt, needs >= 2, "
                              f"got {self.num_generations}")
        if self.temperature is not None and not 0 < self.temperature <= 5:
            raise ConfigError(f"--temperature: must be in (0, 5], got {self.temperature}")
        if self.vllm not in VLLM_CHOICES:
            raise ConfigError(f"--vllm: unknown {self.vllm!r}; choose one of "
                              f"{', '.join(VLLM_CHOICES)}")


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """Evaluation during training (pope_train.backends.trl.eval)."""

    eval_every: int = option(0, "Evaluate the policy before training, every N steps and at the "
                             "last step (0: off).")
    eval_samples: int = option(32, "Evaluation samples per problem: solvable = >= 1 correct.")
    eval_problems: int | None = option(None, "Evaluate at most N problems of each set (default "
                                       "all).")
    eval_data: str | None = option(None, "Held-out set for pass@k: a parquet in verl's schema or "
                                   "any pope-eval --data; default the export's "
                                   "hard/validation.parquet.")
    eval_temperature: float | None = option(None, "Evaluation temperature; default the "
                                            "rollouts'.")
    eval_max_tokens: int | None = option(None, "Max tokens per evaluation sample; default "
                                         "--max-completion-length.")
    eval_batch_size: int = option(64, "Sequences per evaluation batch.", operational=True)

    def __post_init__(self) -> None:
        for f in fields(EvalOptions):
            if f.name in ("eval_data", "eval_temperature"):
                continue
            value, low = getattr(self, f.name), 0 if f.name == "eval_every" else 1
            if value is not None and value < low:
                raise ConfigError(f"--{f.name.replace('_', '-')}: must be >= {low}, got {value}")
        if self.eval_temperature is not None and not 0 < self.eval_temperature <= 5:
            raise ConfigError(f"--eval-temperature: must be in (0, 5], got "
                              f"{self.eval_temperature}")
        if self.eval_every == 0:
            for f in fields(EvalOptions):
                if f.name != "eval_every" and getattr(self, f.name) != f.default:
                    raise ConfigError(f"--{f.name.replace('_', '-')}: evaluation is off; add "
                                      "--eval-every N (N >= 1)")


PARTS: tuple[type, ...] = (RunOptions, SftOptions, RolloutOptions, EvalOptions, *scheme_options())


def part(options: Any, cls: type[T]) -> T:
    """The `cls` part of a TrlOptions (or TrlConfig), as its own dataclass (validated)."""
    return cls(**{f.name: getattr(options, f.name) for f in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class TrlOptions(*reversed(PARTS)):  # type: ignore[misc]
    """The options of `pope-train run --backend trl` (beside the config, model and data): the
    run's, the SFT stage's (pope_train.sft.SftOptions, configs with one), the rollouts', the
    evaluation's and every guidance scheme's (pope_train.guidance; refused with a config whose
    scheme does not take them). Each part validates itself."""

    def __post_init__(self) -> None:
        for cls in PARTS:
            part(self, cls)
        if self.prompts_per_step % self.processes:
            # TRL splits a step's rollouts evenly; a guidance scheme reads whole groups.
            raise ConfigError(f"--prompts-per-step: {self.prompts_per_step} prompts cannot be "
                              f"split over --processes {self.processes} (each process generates "
                              f"whole groups); give a multiple of {self.processes}")

    def check_scheme(self, config: str, scheme: str) -> None:
        """ConfigError naming the flag of a guidance option the run's scheme does not take."""
        from pope_train.recipes import RECIPES

        mine = SCHEMES[scheme].options
        for name, cls in SCHEMES.items():
            if cls.options is mine or name == scheme:
                continue
            users = " or ".join(r.name for r in RECIPES.values() if r.guidance == name)
            check_options(part(self, cls.options), lambda u=users: u, config)
