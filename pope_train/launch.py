"""Build, check and run `python -m verl.trainer.main_ppo` with a pope config and its data.

`plan = plan_launch(LaunchConfig(...))` resolves files and the command; `resolved_config(plan)`
asks verl itself for the composed config; `run(plan)` trains. `pope-train run` wraps these.
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
from pope_eval.runinfo import atomic_path

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "config"
EXTERNAL_MODULES = "pope_train.advantages"
SETUP_HINT = (
    "verl is not importable in this Python ({python}): training lives in its own venv "
    "(verl needs transformers < 5.11). Create it with `bash scripts/setup_train_env.sh` and run "
    "`.venv-train/bin/pope-train`, or install the 'train' extra (pip install 'pope[train]')."
)

# Which export subsets (pope-data build OUT/export/<subset>/{train,validation}.parquet) each
# config trains on; the paper's comparisons differ in data as much as in algorithm.
TRAIN_SETS: dict[str, tuple[str, ...]] = {
    "pope": ("mix",),
    "hard_only": ("hard",),
    "entropy_bonus": ("hard",),
    "clip_higher": ("hard",),
    "pass_at_k": ("hard",),
    "easy_hard_mix": ("hard", "easy"),
    "pope_easy_hard": ("mix", "easy"),
}
# Validation from an export: the hard set unguided and guided, each its own data source so verl
# reports pass@k (best@n of `acc`) separately: solvability with and without guidance.
VAL_SETS: dict[str, str] = {"hard": "pope/hard", "guided": "pope/hard_guided"}
DEFAULT_BENCHMARKS: tuple[str, ...] = ("aime2025", "hmmt_feb_2025")

# verl's RLHF row schema (docs/design.md, "Data contracts"): the columns our reward reads.
REQUIRED_COLUMNS: tuple[str, ...] = ("data_source", "prompt", "ability", "reward_model", "extra_info")


def list_configs() -> list[str]:
    """Launchable config names (files starting with '_' are shared fragments)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("_"))


def config_summary(name: str) -> str:
    """The first comment line of a config file: what the config is."""
    path = CONFIG_DIR / f"{name}.yaml"
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").strip()
    return ""


@dataclass(frozen=True)
class LaunchConfig:
    """Everything `pope-train run` needs; exactly one is built per launch."""

    config: str
    model: str
    train_files: tuple[str, ...] = ()
    val_files: tuple[str, ...] = ()
    export_dir: str | None = None
    benchmarks: tuple[str, ...] = ()
    work_dir: str = "pope-train-out"
    nnodes: int = 1
    gpus_per_node: int = 1
    ray_address: str | None = None
    overrides: tuple[str, ...] = ()
    python: str = field(default_factory=lambda: sys.executable)

    def __post_init__(self) -> None:
        if self.config not in list_configs():
            raise ConfigError(
                f"config: unknown config {self.config!r}; choose one of {', '.join(list_configs())}"
            )
        if not self.model or not self.model.strip():
            raise ConfigError("model: give a Hub id, a local model folder or 'smollm2-135m'")
        if not self.train_files and not self.export_dir:
            raise ConfigError("train_files: give --train PATH (repeatable) or --export OUT/export")
        if self.nnodes < 1:
            raise ConfigError(f"nnodes: must be >= 1, got {self.nnodes}")
        if self.gpus_per_node < 1:
            raise ConfigError(f"gpus_per_node: must be >= 1, got {self.gpus_per_node}")
        for item in self.overrides:
            if "=" not in item or item.startswith("-"):
                raise ConfigError(
                    f"overrides: {item!r} is not a verl/Hydra override of the form key=value "
                    "(e.g. trainer.total_epochs=3, +algorithm.extra=1)"
                )


@dataclass(frozen=True)
class LaunchPlan:
    """The checked launch: data files, the exact command and its environment additions."""

    config: LaunchConfig
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    model_path: str
    command: tuple[str, ...]
    env: dict[str, str]

    def shell(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (prefix + " " if prefix else "") + shlex.join(self.command)


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


def check_data_file(path: str | os.PathLike) -> None:
    """A parquet file in verl's row schema, or DataError naming the file and what is wrong."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if p.suffix != ".parquet":
        raise DataError(f"{p}: verl reads .parquet data files here (got {p.suffix or 'no suffix'})")
    try:
        schema = pq.read_schema(p)
        rows = pq.ParquetFile(p).metadata.num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{p}: not a readable parquet file ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise DataError(
            f"{p}: missing verl column(s) {missing} (found {schema.names}); write training data "
            "with `pope-data build` (OUT/export/...) or in verl's schema: data_source, prompt "
            "(list of {role, content}), ability, reward_model {style, ground_truth}, extra_info"
        )
    prompt = schema.field("prompt").type
    if not (pa.types.is_list(prompt) or pa.types.is_large_list(prompt)) or not (
        pa.types.is_struct(prompt.value_type)
        and {"role", "content"} <= {f.name for f in prompt.value_type}
    ):
        raise DataError(f"{p}: column 'prompt' must be a list of {{role, content}}, got {prompt}")
    reward = schema.field("reward_model").type
    if not pa.types.is_struct(reward) or "ground_truth" not in {f.name for f in reward}:
        raise DataError(f"{p}: column 'reward_model' must be a struct with 'ground_truth', got {reward}")
    if rows == 0:
        raise DataError(f"{p}: has no rows")


def check_same_schema(paths: Sequence[str], what: str) -> None:
    """verl concatenates the files of one split: their columns and types must agree."""
    import pyarrow.parquet as pq

    if len(paths) < 2:
        return
    first = pq.read_schema(paths[0])
    for other in paths[1:]:
        schema = pq.read_schema(other)
        if not schema.equals(first):
            raise DataError(
                f"{what}: {other} and {paths[0]} have different columns or types, so verl "
                f"cannot concatenate them:\n  {paths[0]}: {first}\n  {other}: {schema}"
            )


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


def export_train_files(export: Path, config: str) -> list[str]:
    """The train splits a config trains on in OUT/export of pope-data build (TRAIN_SETS), for
    either backend; DataError names a missing folder or file."""
    if not export.is_dir():
        raise DataError(f"export: {export} is not a folder (expected OUT/export of pope-data build)")
    files = []
    for subset in TRAIN_SETS[config]:
        path = export / subset / "train.parquet"
        if not path.is_file():
            raise DataError(f"export: config {config} trains on {path}, which is missing")
        files.append(str(path))
    return files


def prepare_data(cfg: LaunchConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train files, validation files): explicit files first, then the config's export subsets,
    the export's hard/guided validation splits (relabelled) and the benchmarks (converted)."""
    import pyarrow.parquet as pq

    train = list(cfg.train_files)
    val = list(cfg.val_files)
    work = Path(cfg.work_dir) / "data"
    if cfg.export_dir:
        export = Path(cfg.export_dir)
        train += export_train_files(export, cfg.config)
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


def plan_launch(cfg: LaunchConfig) -> LaunchPlan:
    """Check verl, data and model, and build the exact command (nothing is started)."""
    require_verl(cfg.python)
    train, val = prepare_data(cfg)
    from pope_eval.models import resolve_model

    model_path = resolve_model(cfg.model).path
    command = [
        cfg.python, "-m", "verl.trainer.main_ppo",
        "--config-path", str(CONFIG_DIR), "--config-name", cfg.config,
        f"data.train_files={_hydra_list(train)}",
        f"actor_rollout_ref.model.path={model_path}",
        f"trainer.nnodes={cfg.nnodes}",
        f"trainer.n_gpus_per_node={cfg.gpus_per_node}",
    ]
    if val:
        command.append(f"data.val_files={_hydra_list(val)}")
    else:
        command += ["trainer.val_before_train=false", "trainer.test_freq=-1"]
    command += list(cfg.overrides)
    # The driver reads it at `import verl`; workers get it from the config's ray runtime_env.
    env = {"VERL_USE_EXTERNAL_MODULES": EXTERNAL_MODULES}
    if cfg.ray_address:
        env["RAY_ADDRESS"] = cfg.ray_address
    return LaunchPlan(config=cfg, train_files=train, val_files=val, model_path=model_path,
                      command=tuple(command), env=env)


def _environ(plan: LaunchPlan) -> dict[str, str]:
    env = dict(os.environ)
    existing = [m for m in env.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    modules = existing + [m for m in plan.env["VERL_USE_EXTERNAL_MODULES"].split(",")
                          if m not in existing]
    env.update(plan.env)
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join(modules)
    return env


def resolved_config(plan: LaunchPlan) -> str:
    """The config verl composes for this command (Hydra's `--cfg job --resolve`), as YAML."""
    proc = subprocess.run([*plan.command, "--cfg", "job", "--resolve"], capture_output=True,
                          text=True, env=_environ(plan))
    if proc.returncode != 0:
        raise ConfigError(f"verl rejected the config {plan.config.config}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def run(plan: LaunchPlan) -> int:
    """Run verl's trainer in the foreground; returns its exit code."""
    log.info("launching: %s", plan.shell())
    return subprocess.call(list(plan.command), env=_environ(plan))
