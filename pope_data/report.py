"""The build's human-readable report: report.md and prefix_fraction.png in the output folder.

`write_report(out, config, summary, choices, plan)` is the last stage of `run_build`; it says what
was planned, what each stage spent, what was not checked, and how reproducible the run is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pope_data.config import BuildConfig
from pope_data.cost import CostPlan
from pope_data.export import CONFIGS, PrefixChoice, plot_prefix_fractions
from pope_eval.engines import resolve_engine_name


def reproducibility(config: BuildConfig) -> str | None:
    """A sentence when the engine cannot reproduce samples for the same seed, else None."""
    engine = resolve_engine_name(config.engine)
    if engine == "vllm":
        from pope_eval.engines.vllm_engine import cuda_available

        if not cuda_available():
            return ("not reproducible: vLLM's CPU build takes no per-request seeds, so samples "
                    "depend on batch timing and the same command can give another dataset; use "
                    "--engine transformers for a reproducible build")
    if engine == "openai" and not config.engine.send_seed:
        return ("not reproducible: per-request seeds were not sent (--no-send-seed), so the "
                "server's samples depend on its scheduling")
    return None


def write_report(out: Path, config: BuildConfig, s: Any, choices: Sequence[PrefixChoice],
                 plan: CostPlan) -> None:
    plot_prefix_fractions(choices, out / "prefix_fraction.png")
    found = [c for c in choices if not c.fallback]
    sp = config.sampling
    if s.decontam_not_checked:
        decontam = "not checked against " + "; ".join(
            f"{name} ({why})" for name, why in s.decontam_not_checked.items())
        if s.decontaminated:
            decontam = f"{s.decontaminated} removed; {decontam}"
    else:
        decontam = f"{s.decontaminated} removed (see decontamination.json)"
    lines = [
        "# POPE build report", "",
        f"- source: `{config.path or config.hub_id or config.source}` ({config.source}); "
        f"{s.problems} problems, {s.quarantined} rows quarantined (quarantine.jsonl)",
        f"- model: `{config.engine.model}` via {resolve_engine_name(config.engine)}; "
        f"temperature {sp.temperature}, top_p {sp.top_p}, max_tokens {sp.max_tokens}, "
        f"seed {sp.seed}",
        f"- hard set: {s.hard} hard (0 of k = {config.k} correct), {s.easy} easy",
        f"- prefix search: strategy `{config.strategy}`, n = {config.n}, wave {config.wave_size}, "
        f"segments by `{config.segmenter}`",
        (f"- guided problems: {s.guided}; minimal prefix found for {len(found)}, fallback "
         f"(random cut < 1/4) for {s.fallback} ({s.fallback / s.guided:.0%} fallback rate)"
         if s.guided else "- guided problems: 0"),
        f"- hard problems without a solution (unguided rows only): {s.no_solution}",
        f"- decontamination: {decontam}",
        "- oracle solutions: " + (f"asked; {s.oracle_unsolved} hard problems left unsolved"
                                  if config.solve else "not asked"),
        f"- reproducibility: {reproducibility(config) or 'same command, same dataset (samples are seeded per request and sample)'}",
        "", "## Generated tokens", "",
        "| stage | planned upper bound | spent |", "|---|---:|---:|",
        *[f"| {name} | {plan.upper_tokens[stage]:,} | {s.tokens[stage]:,} |"
          for name, stage in (("curate", "curate"), ("oracle", "solve"),
                              ("prefix search", "prefix"))],
        "", "Finish reasons of all samples: " + (", ".join(
            f"{r} {c}" for r, c in sorted(s.finish_reasons.items())) or "none"),
    ]
    total = sum(s.finish_reasons.values())
    if total and s.finish_reasons.get("length", 0) / total > 0.5:
        lines.append(f"Most samples ({s.finish_reasons['length']} of {total}) hit --max-tokens "
                     f"{sp.max_tokens} before answering: raise it if few problems are solved.")
    lines += ["", "## Rows per config", "", "| config | train | validation |", "|---|---:|---:|"]
    lines += [f"| {c} | {s.counts[c]['train']} | {s.counts[c]['validation']} |" for c in CONFIGS]
    if found:
        lines += ["", "## i* (segments) of the problems with a minimal prefix", "",
                  "| i* | problems |", "|---:|---:|"]
        hist: dict[int, int] = {}
        for c in found:
            hist[c.i_star] = hist.get(c.i_star, 0) + 1
        lines += [f"| {k} | {v} |" for k, v in sorted(hist.items())]
    lines += ["", "![prefix fractions](prefix_fraction.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
