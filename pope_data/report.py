"""The human-readable report of a build or a merge of shard builds: report.md and prefix_fraction.png.

`write_report(out, run, summary, choices)` (run: the folder's run_config.json) ends `run_build` and
`pope-data merge`: what was planned and spent, what was not checked, reproducibility, the commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pope_data.card import guidance_record, reproduce_commands
from pope_data.export import CONFIGS, PrefixChoice, plot_prefix_fractions
from pope_eval.engines.base import describe_sampling


def reproducibility(engine: Mapping[str, Any]) -> str | None:
    """A sentence when the recorded engine (a fingerprint, its name resolved) cannot reproduce
    samples for the same seed, else None."""
    name = engine.get("engine")
    if name == "vllm":
        from pope_eval.engines.vllm_engine import cuda_available

        if not cuda_available():
            return ("not reproducible: vLLM's CPU build takes no per-request seeds, so samples "
                    "depend on batch timing and the same command can give another dataset; use "
                    "--engine transformers for a reproducible build")
    if name == "openai" and not engine.get("send_seed", True):
        return ("not reproducible: per-request seeds were not sent (--no-send-seed), so the "
                "server's samples depend on its scheduling")
    return None


def write_report(out: Path, run: Mapping[str, Any], s: Any, choices: Sequence[PrefixChoice]
                 ) -> None:
    """report.md and prefix_fraction.png for the summary `s` (a BuildSummary)."""
    plot_prefix_fractions(choices, out / "prefix_fraction.png")
    cfg = run["config"]
    found = [c for c in choices if not c.fallback]
    sp, engine, plan = cfg["sampling"], cfg["engine"], s.plan
    if s.decontam_not_checked:
        decontam = "not checked against " + "; ".join(
            f"{name} ({why})" for name, why in s.decontam_not_checked.items())
        if s.decontaminated:
            decontam = f"{s.decontaminated} removed; {decontam}"
    else:
        decontam = f"{s.decontaminated} removed (see decontamination.json)"
    shards = run.get("shards", [])
    lines = [
        "# POPE build report", "",
        f"- source: `{cfg['path'] or cfg['hub_id'] or cfg['source']}` ({cfg['source']}); "
        f"{s.problems} problems, {s.quarantined} rows quarantined (quarantine.jsonl)",
        f"- rows: {plan.rows.describe()}",
        *([f"- merged from {len(shards)} shards: "
           + ", ".join(f"`{sh['folder']}` ({sh['shard']})" for sh in shards)] if shards else []),
        f"- model: `{engine['model']}` via {engine['engine']}; {describe_sampling(sp)}",
        f"- hard set: {s.hard} hard (0 of k = {cfg['k']} correct), {s.easy} easy",
        f"- prefix search: strategy `{cfg['strategy']}`, n = {cfg['n']}, wave "
        f"{cfg['wave_size']}, segments by `{cfg['segmenter']}`, guidance "
        f"`{guidance_record(run)['name']}`"
        + (f", prefixes up to {cfg['max_prefix_fraction']} of the solution"
           if cfg.get("max_prefix_fraction", 1.0) < 1 else ""),
        (f"- guided problems: {s.guided}; minimal prefix found for {len(found)}, fallback "
         f"(random cut < 1/4) for {s.fallback} ({s.fallback / s.guided:.0%} fallback rate)"
         if s.guided else "- guided problems: 0"),
        f"- hard problems without a solution (unguided rows only): {s.no_solution}",
        f"- decontamination: {decontam}",
        "- oracle solutions: " + (f"asked; {s.oracle_unsolved} hard problems left unsolved"
                                  if cfg["solve"] else "not asked"),
        f"- resume: {s.replayed} probes replayed from the journal, not generated again",
        f"- reproducibility: {reproducibility(engine) or 'same command, same dataset (samples are seeded per request and sample)'}",
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
                     f"{sp['max_tokens']} before answering: raise it if few problems are solved.")
    lines += ["", "## Rows per config", "", "| config | train | validation |", "|---|---:|---:|"]
    lines += [f"| {c} | {s.counts[c]['train']} | {s.counts[c]['validation']} |" for c in CONFIGS]
    if found:
        lines += ["", "## i* (segments) of the problems with a minimal prefix", "",
                  "| i* | problems |", "|---:|---:|"]
        hist: dict[int, int] = {}
        for c in found:
            hist[c.i_star] = hist.get(c.i_star, 0) + 1
        lines += [f"| {k} | {v} |" for k, v in sorted(hist.items())]
    lines += ["", "![prefix fractions](prefix_fraction.png)", "",
              "## Reproduce", "", "```bash", *reproduce_commands(run), "```", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
