"""Build, check and run `python -m verl.trainer.main_ppo` with a pope config and its data.

`plan = plan_launch(LaunchConfig(...))` resolves files and the command (for a config with an SFT
stage, `verl.trainer.sft_trainer_ray` first); `resolved_config(plan)` asks verl itself for the
composed configs; `run(plan)` trains. `pope-train run` wraps these.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pope_eval.errors import ConfigError, DataError, MissingExtraError
from pope_eval.options import option
from pope_eval.runinfo import atomic_path
from pope_train.data import check_data_file, check_inputs, check_same_schema, export_train_files
from pope_train.recipes import RECIPES, Recipe
from pope_train.sft import SftData, SftOptions, sft_data, write_sft_data

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"  # pope_train/config/
EXTERNAL_MODULES = "pope_train.advantages"
SETUP_HINT = (
    "verl is not importable in this Python ({python}): training lives in its own venv "
    "(verl needs transformers < 5.11). Create it with `bash scripts/setup_train_env.sh` and run "
    "`.venv-train/bin/pope-train`, or install the 'train' extra (pip install 'pope[train]')."
)

# The SFT stage of configs with one (pope_train/config/_sft.yaml extends verl's sft_trainer_engine);
# `sft.KEY=VALUE` overrides go to it, the others to GRPO.
SFT_CONFIG = "_sft"
SFT_OVERRIDE = "sft."

# Validation from an export: the hard set unguided and guided, each its own data source so verl
# reports pass@k (best@n of `acc`) separately: solvability with and without guidance.
VAL_SETS: dict[str, str] = {"hard": "pope/hard", "guided": "pope/hard_guided"}


def config_file(recipe: Recipe) -> Path:
    """verl's config of a recipe, pope_train/config/NAME.yaml (it extends verl's ppo_trainer)."""
    path = CONFIG_DIR / f"{recipe.name}.yaml"
    if not path.is_file():
        raise ConfigError(f"config: {recipe.name!r} runs on verl but {path} is missing")
    return path


def _bench_help() -> str:
    from pope_eval.benchmarks import BENCHMARKS

    return f"Validation benchmark: {', '.join(BENCHMARKS)} or a problem file (repeatable)."


@dataclass(frozen=True, kw_only=True)
class VerlOptions(SftOptions):
    """The options of `pope-train run --backend verl` (beside the config, model and data); the
    SFT stage's (pope_train.sft.SftOptions) apply to configs with one."""

    val_files: tuple[str, ...] = option((), "Validation parquet (repeatable).", flag="--val")
    benchmarks: tuple[str, ...] = option((), _bench_help, flag="--bench")
    work_dir: str = option("pope-train-out", "Where converted validation files go.")
    nnodes: int = option(1, "Ray cluster nodes.")
    gpus_per_node: int = option(1, "GPUs per node.")
    ray_address: str | None = option(None, "Existing Ray cluster (head address).")

    def __post_init__(self) -> None:
        if self.nnodes < 1:
            raise ConfigError(f"nnodes: must be >= 1, got {self.nnodes}")
        if self.gpus_per_node < 1:
            raise ConfigError(f"gpus_per_node: must be >= 1, got {self.gpus_per_node}")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class LaunchConfig(VerlOptions):
    """Everything one verl launch needs; exactly one is built per launch."""

    config: str
    model: str
    train_files: tuple[str, ...] = ()
    export_dir: str | None = None
    overrides: tuple[str, ...] = ()
    python: str = field(default_factory=lambda: sys.executable)

    def __post_init__(self) -> None:
        config_file(check_inputs(self.config, "verl", self.model, self.train_files,
                                 self.export_dir))
        super().__post_init__()
        for item in self.overrides:
            if "=" not in item or item.startswith("-"):
                raise ConfigError(
                    f"overrides: {item!r} is not a verl/Hydra override of the form key=value "
                    "(e.g. trainer.total_epochs=3, +algorithm.extra=1)"
                )
            if item.startswith(SFT_OVERRIDE) and not RECIPES[self.config].sft:
                raise ConfigError(f"overrides: {item!r} is for the SFT stage, and config "
                                  f"{self.config} has none (configs with one: "
                                  f"{', '.join(r.name for r in RECIPES.values() if r.sft)})")


@dataclass(frozen=True)
class LaunchPlan:
    """The checked launch: data files, the exact command and its environment additions; for a
    config with an SFT stage, its command first (`sft_command`), whose final checkpoint
    (`sft_model`) is the model the GRPO command starts from."""

    config: LaunchConfig
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    model_path: str
    command: tuple[str, ...]
    env: dict[str, str]
    sft_command: tuple[str, ...] | None = None
    sft_model: str | None = None
    sft_data: SftData | None = None

    def shell(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        prefix += " " if prefix else ""
        return " && ".join(prefix + shlex.join(c) for c in self.commands())

    def commands(self) -> tuple[tuple[str, ...], ...]:
        """The commands in the order they run."""
        return (self.sft_command, self.command) if self.sft_command else (self.command,)


def verl_available(python: str | None = None) -> bool:
    """Whether verl is importable in `python` (default: this interpreter)."""
    # Compare unresolved paths: a venv's python is a symlink to the base interpreter.
    if python is None or os.path.abspath(python) == os.path.abspath(sys.executable):
        return importlib.util.find_spec("verl") is not None
    probe = subprocess.run([python, "-c", "import importlib.util as u, sys; "
                            "sys.exit(0 if u.find_spec('verl') else 1)"], capture_output=True)
    return probe.returncode == 0


def require_verl(python: str | None = None) -> None:
    if not verl_available(python):
        raise MissingExtraError(SETUP_HINT.format(python=python or sys.executable))


def _benchmark_table(spec: str, like):
    """A benchmark (name or file) as verl rows with unguided prompts (`pope_data.export.verl_row`),
    in the schema of the export file `like` (so verl can concatenate them)."""
    import pyarrow as pa

    from pope_data.export import verl_row
    from pope_eval.benchmarks import load_benchmark

    bench = load_benchmark(spec, option="--bench")
    if not bench.items:
        raise DataError(f"benchmark {spec}: no usable rows in {bench.source}")
    rows = [verl_row(data_source=bench.name, problem_id=item.id, problem=item.problem,
                     answer=item.answer, split="test", index=i)
            for i, item in enumerate(bench.items)]
    if like is None:
        return pa.Table.from_pylist(rows)
    missing = [n for n in like.names if n not in rows[0]]
    if missing:
        raise DataError(f"benchmark {spec}: the training files have column(s) {missing} that "
                        "benchmark rows cannot fill; convert it with pope-data instead")
    return pa.Table.from_pylist(rows, schema=like)


def _relabel(path: str, data_source: str, out: Path) -> str:
    """Copy of a validation file with its data_source set (validation metrics are per source)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    col = pa.array([data_source] * table.num_rows, type=table.schema.field("data_source").type)
    table = table.set_column(table.schema.get_field_index("data_source"), "data_source", col)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return str(out)


def prepare_data(cfg: LaunchConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train files, validation files): explicit files first, then the config's export subsets,
    the export's hard/guided validation splits (relabelled) and the benchmarks (converted)."""
    import pyarrow.parquet as pq

    train = list(cfg.train_files)
    val = list(cfg.val_files)
    work = Path(cfg.work_dir) / "data"
    if cfg.export_dir:
        export = Path(cfg.export_dir)
        train += export_train_files(export, RECIPES[cfg.config])
        for subset, source in VAL_SETS.items():
            path = export / subset / "validation.parquet"
            if path.is_file() and pq.ParquetFile(path).metadata.num_rows > 0:
                val.append(_relabel(str(path), source, work / f"val_{subset}.parquet"))
    for path in train + val:
        check_data_file(path)
    like = pq.read_schema(train[0])
    for spec in cfg.benchmarks:
        table = _benchmark_table(spec, like)
        out = work / f"val_{Path(spec).stem}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out)
        val.append(str(out))
    check_same_schema(train, "train files")
    check_same_schema(val, "validation files")
    return tuple(str(Path(p).resolve()) for p in train), tuple(str(Path(p).resolve()) for p in val)


def _hydra_list(paths: Sequence[str]) -> str:
    return "[" + ",".join(f"'{p}'" for p in paths) + "]"


def _sft_stage(cfg: LaunchConfig, model_path: str) -> tuple[tuple[str, ...], str, SftData]:
    """The SFT command (its data written to WORK/data/sft_train.parquet), the folder of its
    final model (verl's checkpoint layout: WORK/sft/global_step_N/huggingface) and its data."""
    if not cfg.export_dir:
        raise ConfigError(f"export: config {cfg.config} fine-tunes on the build's solutions first; "
                          "give --export OUT/export of a pope-data build")
    data = sft_data(Path(cfg.export_dir), cfg.sft_data)
    if len(data.examples) < cfg.sft_batch_size:
        raise ConfigError(f"sft_batch_size: verl's SFT trainer drops incomplete batches, and the "
                          f"{len(data.examples)} SFT examples ({data.source}) fill no batch of "
                          f"--sft-batch-size {cfg.sft_batch_size}")
    path = write_sft_data(data, Path(cfg.work_dir) / "data" / "sft_train.parquet")
    out = (Path(cfg.work_dir) / "sft").resolve()
    command = (
        cfg.python, "-m", "verl.trainer.sft_trainer_ray",
        "--config-path", str(CONFIG_DIR), "--config-name", SFT_CONFIG,
        f"data.train_files={_hydra_list([str(path.resolve())])}",
        f"model.path={model_path}",
        f"trainer.default_local_dir={out}",
        f"trainer.total_training_steps={cfg.sft_steps}",
        f"data.train_batch_size={cfg.sft_batch_size}",
        f"optim.lr={cfg.sft_learning_rate}",
        f"trainer.nnodes={cfg.nnodes}",
        f"trainer.n_gpus_per_node={cfg.gpus_per_node}",
        *(o[len(SFT_OVERRIDE):] for o in cfg.overrides if o.startswith(SFT_OVERRIDE)),
    )
    return command, str(out / f"global_step_{cfg.sft_steps}" / "huggingface"), data


def plan_launch(cfg: LaunchConfig) -> LaunchPlan:
    """Check verl, data and model, and build the exact commands (nothing is started)."""
    require_verl(cfg.python)
    train, val = prepare_data(cfg)
    from pope_eval.models import resolve_model

    model_path = resolve_model(cfg.model).path
    sft_command, sft_model, sft = (_sft_stage(cfg, model_path) if RECIPES[cfg.config].sft
                                   else (None, None, None))
    command = [
        cfg.python, "-m", "verl.trainer.main_ppo",
        "--config-path", str(CONFIG_DIR), "--config-name", cfg.config,
        f"data.train_files={_hydra_list(train)}",
        f"actor_rollout_ref.model.path={sft_model or model_path}",
        f"trainer.nnodes={cfg.nnodes}",
        f"trainer.n_gpus_per_node={cfg.gpus_per_node}",
    ]
    if val:
        command.append(f"data.val_files={_hydra_list(val)}")
    else:
        command += ["trainer.val_before_train=false", "trainer.test_freq=-1"]
    command += [o for o in cfg.overrides if not o.startswith(SFT_OVERRIDE)]
    # The driver reads it at `import verl`; workers get it from the config's ray runtime_env.
    env = {"VERL_USE_EXTERNAL_MODULES": EXTERNAL_MODULES}
    if cfg.ray_address:
        env["RAY_ADDRESS"] = cfg.ray_address
    return LaunchPlan(config=cfg, train_files=train, val_files=val, model_path=model_path,
                      command=tuple(command), env=env, sft_command=sft_command,
                      sft_model=sft_model, sft_data=sft)


def _environ(plan: LaunchPlan) -> dict[str, str]:
    env = dict(os.environ)
    existing = [m for m in env.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    modules = existing + [m for m in plan.env["VERL_USE_EXTERNAL_MODULES"].split(",")
                          if m not in existing]
    env.update(plan.env)
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join(modules)
    return env


def resolved_config(plan: LaunchPlan) -> str:
    """The configs verl composes for the commands (Hydra's `--cfg job --resolve`), as YAML, one
    document per command."""
    docs = []
    for command in plan.commands():
        name = command[command.index("--config-name") + 1]
        proc = subprocess.run([*command, "--cfg", "job", "--resolve"], capture_output=True,
                              text=True, env=_environ(plan))
        if proc.returncode != 0:
            raise ConfigError(f"verl rejected the config {name}:\n{proc.stderr[-3000:]}")
        docs.append(proc.stdout)
    return "---\n".join(docs)


def run(plan: LaunchPlan) -> int:
    """Run verl's trainers in the foreground, in order; returns the first nonzero exit code
    (or 0). GRPO after SFT starts only once SFT's final model is there."""
    for command in plan.commands():
        log.info("launching: %s", shlex.join(command))
        code = subprocess.call(list(command), env=_environ(plan))
        if code != 0:
            return code
        if command is plan.sft_command and not Path(plan.sft_model, "config.json").is_file():
            raise DataError(f"verl's SFT finished but wrote no model at {plan.sft_model} "
                            "(expected checkpoint.save_contents to include hf_model)")
    return 0
