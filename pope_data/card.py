"""Dataset card (README.md with YAML front matter) for a `pope-data build` folder.

`render_card(out_dir, repo_id=...)` fills `templates/dataset_card.md`; `pope_data.hub.publish`
stages it beside the parquet files it describes (`published_files` gives that layout).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pope_eval.engines.base import describe_sampling
from pope_eval.errors import DataError, require

log = logging.getLogger(__name__)

PUBLISHED_CONFIGS = ("hard", "guided", "mix", "all", "prefixes")
# Published configs that join export configs, in this order: `all` is the layout of Pipeline-RL's
# `pope_mix` (one config, rows told apart by `level`).
JOINED = {"all": ("mix", "easy")}
DEFAULT_CONFIG = "mix"
SPLITS = ("train", "validation")
IMAGE = "prefix_fraction.png"
NA = "n/a"

LICENSE_NAMES = {"apache-2.0": "Apache-2.0", "other": "other (see the source dataset)"}

CONFIG_DESCRIPTIONS = {
    "hard": "unguided prompts of the hard problems (0 of k samples correct)",
    "guided": "the same problems with the minimal oracle prefix i* and the guidance instruction",
    "mix": "the 1:1 training mix: each hard problem once unguided and once guided, shuffled",
    "all": "every row of `mix` and then of the easy problems (not hard), told apart by `level`",
    "prefixes": "per-problem search result: i*, prefix fraction, fallback, probes, samples, tokens",
}

_SECRET_FLAGS = re.compile(r"(--(?:api[-_]key|token|hf[-_]token)(?:=|\s+))(\S+)")


def repo_path(config: str, split: str) -> str:
    """Where a config's split lives in the published repo."""
    return f"data/{config}/{split}.parquet"


def published_files(out_dir: str | Path, configs: tuple[str, ...] = PUBLISHED_CONFIGS
                    ) -> dict[str, dict[str, tuple[Path, ...]]]:
    """{config: {split: build files}} for the non-empty splits of the build's export folder: one
    file per split, or for a JOINED config the non-empty files of its parts, in order.

    Empty splits are left out: `datasets` cannot read a parquet file without rows. A config with
    no rows at all is left out with a warning; no rows anywhere is an error.
    """
    import pyarrow.parquet as pq

    export = Path(out_dir) / "export"
    if not export.is_dir():
        raise DataError(f"{out_dir}: no export/ folder; is this a finished `pope-data build` "
                        "output folder?")
    out: dict[str, dict[str, tuple[Path, ...]]] = {}
    for config in configs:
        splits: dict[str, tuple[Path, ...]] = {}
        for split in SPLITS:
            paths = []
            for part in JOINED.get(config, (config,)):
                path = export / part / f"{split}.parquet"
                if not path.exists():
                    continue
                try:
                    rows = pq.read_metadata(path).num_rows
                except Exception as exc:  # pyarrow raises several types for corrupt files
                    raise DataError(f"{path}: cannot read parquet: {exc}") from exc
                if rows:
                    paths.append(path)
            if paths:
                splits[split] = tuple(paths)
        if splits:
            out[config] = splits
        else:
            log.warning("config %s has no rows in %s; it is not published", config, export)
    if not out:
        raise DataError(f"{export}: no rows in any of {', '.join(configs)}; nothing to publish")
    return out


def guidance_record(run: Mapping[str, Any]) -> dict[str, str]:
    """The guidance template a build's guided rows are worded with (`Guidance.record()`), from
    its run_config.json; POPE's for folders built before builds recorded it (they all used it)."""
    from pope_eval.prompts import DEFAULT_GUIDANCE, load_guidance

    rec = run.get("guidance")
    if isinstance(rec, Mapping) and isinstance(rec.get("template"), str):
        return {key: str(rec.get(key) or "") for key in ("name", "sha256", "template",
                                                         "instruction")}
    return load_guidance(DEFAULT_GUIDANCE).record()


def redact_command(command: str) -> str:
    """The command line as a user types it (`pope-data ...`, not the script's full path), with
    the values of --api-key / --token / --hf-token replaced."""
    head, sep, rest = command.strip().partition(" ")
    if Path(head).name == "pope-data":
        head = "pope-data"
    return _SECRET_FLAGS.sub(r"\1***", head + sep + rest)


def reproduce_commands(run: Mapping[str, Any]) -> list[str]:
    """The commands that reproduce a folder from its run_config.json, as a user types them and
    with secrets redacted: a build's command, or each shard's build and then the merge."""
    commands = [sh.get("command") for sh in run.get("shards", [])] + [run.get("command")]
    return [redact_command(str(c)) for c in commands if c]


def size_category(rows: int) -> str:
    """The Hub's size_categories bucket for a number of rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
              (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
    for bound, name in bounds:
        if rows < bound:
            return name
    return "10M<n<100M"


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("cannot read %s (%s); the card shows n/a for its fields", path, exc)
        return None


def _get(data: Any, dotted: str, default: Any = NA) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, Mapping) or data.get(key) is None:
            return default
        data = data[key]
    return data


def _read_rows(path: Path) -> list[dict[str, Any]] | None:
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        log.warning("cannot read %s (%s); the card leaves its figures out", path, exc)
        return None


def _prefix_rows(out: Path) -> list[dict[str, Any]] | None:
    rows = _read_rows(out / "prefixes.parquet")
    if rows is None:  # a merged or trimmed folder: the exported prefixes config holds the same
        parts = [_read_rows(out / "export" / "prefixes" / f"{s}.parquet") for s in SPLITS]
        if any(p is not None for p in parts):
            rows = [r for p in parts if p for r in p]
    return rows


def source_info(config: Mapping[str, Any]) -> tuple[str, str]:
    """(human-readable source, license id) from a run config; the licence is the source's
    (`pope_data.sources.SourceSpec.license`), "other" for unknown sources."""
    from pope_data.sources import SOURCES

    source = config.get("source") or NA
    path, hub_id = config.get("path"), config.get("hub_id")
    spec = SOURCES[str(source)] if str(source) in SOURCES else None
    if spec is not None and spec.description:
        where = spec.description
    elif path:
        where = f"`{source}` read from the local file `{Path(str(path)).name}`"
    else:
        hub_id = hub_id or (spec.hub_id if spec is not None else None)
        where = (f"[{hub_id}](https://huggingface.co/datasets/{hub_id}) (`{source}`)"
                 if hub_id else f"`{source}`")
    return where, spec.license if spec is not None else "other"


def _fraction_table(prefixes: list[dict[str, Any]]) -> list[str]:
    bins = [[0, 0] for _ in range(10)]
    for r in prefixes:
        frac = r.get("prefix_fraction")
        if frac is None:
            continue
        b = min(int(float(frac) * 10), 9)
        bins[b][1 if r.get("fallback") else 0] += 1
    lines = ["| prefix fraction | minimal prefix i* | fallback |", "|---|---:|---:|"]
    for i, (found, fallback) in enumerate(bins):
        hi = "]" if i == 9 else ")"
        lines.append(f"| [{i / 10:.1f}, {(i + 1) / 10:.1f}{hi} | {found} | {fallback} |")
    return lines


def _istar_table(prefixes: list[dict[str, Any]]) -> list[str]:
    hist: dict[int, int] = {}
    for r in prefixes:
        if not r.get("fallback") and r.get("i_star") is not None:
            hist[int(r["i_star"])] = hist.get(int(r["i_star"]), 0) + 1
    if not hist:
        return ["No problem got a minimal prefix (all guidance is the fallback cut)."]
    return ["| i* (segments) | problems |", "|---:|---:|",
            *[f"| {k} | {v} |" for k, v in sorted(hist.items())]]


def _decontam_lines(data: Any) -> list[str]:
    if data is None:
        return ["No decontamination record (`decontamination.json`) in the build folder: this "
                "dataset was not checked against evaluation sets."]
    removed = data if isinstance(data, list) else _get(data, "removed", [])
    checked = _get(data, "checked", {}) if isinstance(data, Mapping) else {}
    not_checked = _get(data, "not_checked", {}) if isinstance(data, Mapping) else {}
    lines = []
    if checked:
        sets = ", ".join(f"{name} ({n} items)" for name, n in checked.items())
        lines.append(f"Training problems were compared with {sets} by normalised exact match "
                     f"(case, whitespace, LaTeX spacing, `$`, `\\left`/`\\right` and braces "
                     f"ignored) and by word {_get(data, 'ngram')}-gram overlap (removed at >= "
                     f"{_get(data, 'threshold')} of the problem's n-grams found in one eval item).")
    if not_checked:
        lines.append("")
    for name, reason in (not_checked or {}).items():
        lines.append(f"- **not checked: {name}** ({reason})")
    if not removed:
        lines += ["", "No training problem matched an evaluation item."]
        return lines
    lines += ["", f"{len(removed)} problem(s) removed:", "",
              "| problem | eval set | eval item | method | score |", "|---|---|---|---|---:|"]
    for r in removed:
        lines.append(f"| {_get(r, 'problem_id')} | {_get(r, 'eval_set')} | {_get(r, 'eval_id')} "
                     f"| {_get(r, 'method')} | {_get(r, 'score')} |")
    return lines


TEMPLATE = Path(__file__).resolve().parent / "templates" / "dataset_card.md"


def _provenance(files: Mapping[str, Mapping[str, tuple[Path, ...]]]) -> str:
    """Markdown table of the rows' provenance: each field's values with their row counts."""
    import pyarrow.parquet as pq

    counts: dict[str, dict[str, int]] = {}
    # A build file that several configs publish (mix in `all`) is counted once.
    for path in dict.fromkeys(p for splits in files.values() for paths in splits.values()
                              for p in paths):
        table = pq.read_table(path)
        if "provenance" not in table.column_names:
            continue
        for prov in table.column("provenance").to_pylist():
            for key, value in (prov or {}).items():
                counts.setdefault(key, {})
                counts[key][str(value)] = counts[key].get(str(value), 0) + 1
    if not counts:
        return "No provenance columns in these files (built before pope recorded them)."
    lines = ["| field | value (rows) |", "|---|---|"]
    for key, values in counts.items():
        shown = "; ".join(f"`{v}` ({n})" if len(values) > 1 else f"`{v}`"
                          for v, n in sorted(values.items()))
        lines.append(f"| {key.replace('_', ' ')} | {shown} |")
    return "\n".join(lines)


def render_card(
    out_dir: str | Path, *, repo_id: str | None = None, license: str | None = None,
    pretty_name: str | None = None,
    files: Mapping[str, Mapping[str, tuple[Path, ...]]] | None = None, image: str | None = None,
) -> str:
    """The README.md for a build folder: huggingface_hub's DatasetCard from the Jinja template
    `templates/dataset_card.md`. `files` is `published_files(out_dir)` unless given; `image` is
    the repo path of the i* histogram PNG (default: prefix_fraction.png when the build has one).
    Missing run_config.json keys show as n/a."""
    import pyarrow.parquet as pq

    hub = require("huggingface_hub", "core")

    out = Path(out_dir)
    files = files if files is not None else published_files(out)
    run = _read_json(out / "run_config.json") or {}
    cfg = _get(run, "config", {})
    summary = _read_json(out / "summary.json") or {}
    prefixes = _prefix_rows(out) or []
    if image is None and (out / IMAGE).exists():
        image = IMAGE

    where, inherited = source_info(cfg)
    license_id = license or inherited
    model = _get(cfg, "engine.model")
    name = pretty_name or f"POPE guided problems ({_get(cfg, 'source')}, hard for {model})"
    counts = {c: {s: sum(pq.read_metadata(p).num_rows for p in paths)
                  for s, paths in splits.items()} for c, splits in files.items()}
    guided = len(prefixes) if prefixes else _get(summary, "guided")
    fallback = (sum(bool(r.get("fallback")) for r in prefixes) if prefixes
                else _get(summary, "fallback"))
    train_config = DEFAULT_CONFIG if DEFAULT_CONFIG in files else next(iter(files))
    card_data = hub.DatasetCardData(
        pretty_name=name, license=license_id, language=["en"],
        task_categories=["text-generation"],
        tags=["math", "reasoning", "reinforcement-learning", "grpo", "pope", "verl"],
        size_categories=[size_category(max(sum(s.values()) for s in counts.values()))],
        configs=[{"config_name": c, "data_files": [{"split": s, "path": repo_path(c, s)}
                                                    for s in splits],
                  **({"default": True} if c == DEFAULT_CONFIG else {})}
                 for c, splits in files.items()])
    provenance = _provenance(files)
    card = hub.DatasetCard.from_template(
        card_data, template_path=str(TEMPLATE), name=name,
        configs=[{"name": c, "train": n.get("train", 0), "validation": n.get("validation", 0),
                  "description": CONFIG_DESCRIPTIONS.get(c, "")} for c, n in counts.items()],
        where=where, licence_name=LICENSE_NAMES.get(license_id, license_id), model=model,
        engine=_get(cfg, "engine.engine"), dtype=_get(cfg, "engine.dtype"),
        sampling=describe_sampling(_get(cfg, "sampling", {}) or {}),
        k=_get(cfg, "k"), n=_get(cfg, "n"), strategy=_get(cfg, "strategy"),
        wave_size=_get(cfg, "wave_size"), segmenter=_get(cfg, "segmenter"),
        max_prefix_fraction=_get(cfg, "max_prefix_fraction", 1.0),
        problems=_get(summary, "problems"), quarantined=_get(summary, "quarantined"),
        hard=_get(summary, "hard"), easy=_get(summary, "easy"), guided=guided,
        fallback=fallback,
        rate=f"{fallback / guided:.1%}" if isinstance(guided, int) and guided else NA,
        no_solution=_get(summary, "no_solution"), curate_tokens=_get(summary, "tokens.curate"),
        prefix_tokens=(sum(int(r.get("tokens") or 0) for r in prefixes) if prefixes
                       else _get(summary, "tokens.prefix")),
        image=image,
        fraction_table="\n".join(_fraction_table(prefixes)) if prefixes else "",
        istar_table="\n".join(_istar_table(prefixes)) if prefixes else "",
        guidance=guidance_record(run),
        repo=repo_id or "ORG/NAME", train_config=train_config,
        all_config="all" if "all" in files else None,
        train_file=repo_path(train_config, "train"),
        val_file=(repo_path(train_config, "validation")
                  if "validation" in files[train_config] else None),
        command="\n".join(reproduce_commands(run)) or NA,
        versions=json.dumps(_get(run, "versions", {}), sort_keys=True),
        decontamination="\n".join(_decontam_lines(_read_json(out / "decontamination.json"))),
        provenance=provenance,
    )
    return str(card)
