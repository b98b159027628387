"""Training inputs both backends check: the recipe, the export subsets it trains on, verl's row schema.

`export_train_files(Path("OUT/export"), RECIPES["pope"])` -> train files; `check_data_file(path)`
raises DataError naming the file and what is wrong (docs/design.md, "Data contracts").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pope_eval.errors import ConfigError, DataError
from pope_train.recipes import RECIPES, Recipe

log = logging.getLogger(__name__)

# verl's RLHF row schema (docs/design.md, "Data contracts"): the columns our reward reads.
REQUIRED_COLUMNS: tuple[str, ...] = ("data_source", "prompt", "ability", "reward_model", "extra_info")


def check_inputs(config: str, backend: str, model: str, train_files: Sequence[str],
                 export_dir: str | None) -> Recipe:
    """The recipe `config` if `backend` runs it, a model is named and some training data is given;
    else a ConfigError naming the field. Reads no file."""
    recipe = RECIPES[config]
    recipe.settings(backend)
    if not model or not model.strip():
        raise ConfigError("model: give a Hub id, a local model folder or 'smollm2-135m'")
    if not train_files and not export_dir:
        raise ConfigError("train_files: give --train PATH (repeatable) or --export OUT/export")
    return recipe


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
    warn_mixed_guidance(paths, what)


def warn_mixed_guidance(paths: Sequence[str], what: str) -> None:
    """Log a warning when the guided rows of `paths` were worded by more than one guidance
    template (their provenance's guidance and guidance_sha256, written by pope-data build)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        schema = pq.read_schema(path)
        provenance = schema.field("provenance").type if "provenance" in schema.names else None
        if not (provenance is not None and pa.types.is_struct(provenance)
                and provenance.get_field_index("guidance_sha256") >= 0):
            continue  # not written by pope-data build, or before it recorded the template
        for row in pq.read_table(path, columns=["extra_info", "provenance"]).to_pylist():
            prov = row["provenance"]
            if prov and (row["extra_info"] or {}).get("guided"):
                key = (prov["guidance"], prov["guidance_sha256"])
                if path not in files.setdefault(key, []):
                    files[key].append(path)
    if len(files) > 1:
        log.warning("%s: guided rows worded by %d guidance templates are trained on together: %s",
                    what, len(files), "; ".join(
                        f"{name} (sha256 {sha[:12]}) in {', '.join(found)}"
                        for (name, sha), found in files.items()))


def export_train_files(export: Path, recipe: Recipe) -> list[str]:
    """The train splits of the recipe's export subsets in OUT/export of pope-data build;
    DataError names a missing folder or file."""
    if not export.is_dir():
        raise DataError(f"export: {export} is not a folder (expected OUT/export of pope-data build)")
    files = []
    for subset in recipe.subsets:
        path = export / subset / "train.parquet"
        if not path.is_file():
            raise DataError(f"export: config {recipe.name} trains on {path}, which is missing")
        files.append(str(path))
    return files
