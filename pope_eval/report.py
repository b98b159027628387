"""Human-readable outputs of pass@k runs: report.md tables and pass@k-vs-k plots (PNG).

`write_report(out, summary, per_problem)` is called by `evaluate.finalize`; `compare_runs` backs
`pope-eval compare`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pope_eval.engines.base import describe_sampling
from pope_eval.errors import ConfigError, DataError


def curve(summary: dict[str, Any]) -> list[tuple[int, float, float, float]]:
    """(k, estimate, ci_low, ci_high) rows from a summary's pass_at_k block, sorted by k."""
    rows = []
    for k, v in summary["pass_at_k"].items():
        rows.append((int(k), float(v["estimate"]), float(v["ci_low"]), float(v["ci_high"])))
    return sorted(rows)


def write_report(out: Path, summary: dict[str, Any], per_problem: pl.DataFrame) -> None:
    """Write report.md and pass_at_k.png into the run folder."""
    lines = [
        f"# pass@k: {summary['data']}",
        "",
        f"- model: `{summary['model']}` ({summary['engine'].get('engine', '?')})",
        f"- problems: {summary['problems']} of {summary['problems_expected']}"
        + (f" ({summary['quarantined_rows']} rows quarantined)" if summary["quarantined_rows"] else ""),
        f"- samples per problem: n = {summary['n']}; {describe_sampling(summary['sampling'])}",
        f"- generated tokens: {summary['generated_tokens']:,}",
        f"- data sha256: `{summary['data_sha256']}`",
        "",
        "| k | pass@k | 95% CI | maj@k |",
        "|---:|---:|---|---:|",
    ]
    for k, est, lo, hi in curve(summary):
        maj = summary["maj_at_k"].get(str(k))
        maj_s = f"{maj:.3f}" if maj is not None else "n/a"
        lines.append(f"| {k} | {est:.3f} | [{lo:.3f}, {hi:.3f}] | {maj_s} |")
    lines += ["", "## Sample statuses", "", "| status | samples |", "|---|---:|"]
    lines += [f"| {s} | {c} |" for s, c in summary["status_counts"].items()]
    reasons = summary.get("finish_reasons", {})
    lines += ["", "## Finish reasons", "", "| reason | samples |", "|---|---:|"]
    lines += [f"| {r} | {c} |" for r, c in sorted(reasons.items())]
    total = sum(reasons.values())
    if total and reasons.get("length", 0) / total > 0.5:
        lines += ["", f"Most samples ({reasons['length']} of {total}) stopped at max_tokens = "
                  f"{summary['sampling']['max_tokens']} before giving an answer, which alone can "
                  "explain a low pass@k: raise --max-tokens."]
    lines += ["", "## Per problem", "", "| id | answer | correct / n |", "|---|---|---:|"]
    for row in per_problem.iter_rows(named=True):
        lines.append(f"| {row['id']} | {_cell(row['answer'])} | {row['correct']} / {row['n']} |")
    lines += ["", "![pass@k](pass_at_k.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    plot_curves([(summary.get("model") or "run", summary)], out / "pass_at_k.png",
                title=f"pass@k on {Path(str(summary['data'])).name}")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def plot_curves(runs: Sequence[tuple[str, dict[str, Any]]], path: Path, *, title: str) -> Path:
    """pass@k vs k (log2 x axis) with CI bands, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, summary in runs:
        rows = curve(summary)
        ks = [r[0] for r in rows]
        ax.plot(ks, [r[1] for r in rows], marker="o", label=label)
        ax.fill_between(ks, [r[2] for r in rows], [r[3] for r in rows], alpha=0.2)
    ax.set_xscale("log", base=2)
    # Plain k values as ticks (1, 2, 4, ...), not 2^0, 2^1.
    all_ks = sorted({k for _, summary in runs for k, *_ in curve(summary)})
    ax.set_xticks(all_ks)
    ax.set_xticklabels([str(k) for k in all_ks])
    ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """Read a run folder's summary.json, with a clear error when it is not a finished run."""
    p = Path(run_dir) / "summary.json"
    if not p.exists():
        raise DataError(f"{run_dir}: no summary.json (not a finished pope-eval pass-at-k run)")
    try:
        summary = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: invalid JSON: {exc}") from exc
    if not isinstance(summary, dict) or not isinstance(summary.get("pass_at_k"), dict):
        # e.g. a pope-data build folder, whose summary.json counts problems, not pass@k
        raise DataError(f"{run_dir}: not a finished pope-eval pass-at-k run (its summary.json "
                        "holds no pass@k results)")
    return summary


PLOT_NAME = "compare.png"


def check_plot_path(path: str | Path, option: str = "--plot") -> Path:
    """The PNG file a comparison plot goes to, checked before anything is compared: a folder
    (existing, or written with a trailing slash) gets `compare.png` in it, a name without a
    suffix gets `.png`, another suffix is a ConfigError; so is a place that cannot hold the file
    (a file in the way of its folder, a read-only folder)."""
    text = str(path)
    p = Path(path).expanduser()
    if p.is_dir() or text.endswith(("/", os.sep)):
        p = p / PLOT_NAME
    elif not p.suffix:
        p = p.with_name(p.name + ".png")
    elif p.suffix.lower() != ".png":
        raise ConfigError(f"{option} {text}: the plot is written as PNG; give a file name ending "
                          f"in .png (or a folder, which gets {PLOT_NAME})")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {text}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{option} {text}: cannot write in {parent}")
            break
    if p.is_dir():
        raise ConfigError(f"{option} {text}: {p} is a folder")
    return p


def compare_runs(
    dirs: Sequence[str | Path], plot_path: str | Path | None = None
) -> tuple[list[str], list[list[str]]]:
    """Side-by-side pass@k table (header, rows) of several runs; also plots them when asked
    (`plot_path` as `check_plot_path` returns it: its folder is made if missing)."""
    summaries = [(str(d), load_summary(d)) for d in dirs]
    labels = [f"{Path(d).name} ({s.get('model', '?')})" for d, s in summaries]
    all_ks = sorted({k for _, s in summaries for k, *_ in curve(s)})
    header = ["k", *labels]
    if len(summaries) == 2:
        header.append("delta")
    rows = []
    for k in all_ks:
        vals = []
        for _, s in summaries:
            v = s["pass_at_k"].get(str(k))
            vals.append(None if v is None else float(v["estimate"]))
        row = [str(k)] + [f"{v:.3f}" if v is not None else "-" for v in vals]
        if len(summaries) == 2:
            row.append(f"{vals[1] - vals[0]:+.3f}" if None not in vals else "-")
        rows.append(row)
    if plot_path is not None:
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        plot_curves(list(zip(labels, [s for _, s in summaries])), Path(plot_path),
                    title="pass@k comparison")
    return header, rows
