"""The model-organism study in one command: build -> TRL GRPO per arm and seed -> pope-eval -> figures.

    python bench/organism.py --out DIR [--source organism|opchain] [--arms pope,hard_only,...]
                             [--task-seeds 0,1] [--seeds 0,1,2] [--steps 40] [--quick] [--jobs 2]

Every stage runs through pope's own command line, as a user would type it:
1. `pope-data build --source organism` curates the hard set (0 of `--k` unguided samples) and the
   easy set (solved at least once) from the organism's task family and finds i* per hard problem;
   with an ablation arm (`pope_no_revisit`) a second build words the guidance `--guidance
   no-revisit`; with `--ablation-model`, `pope_no_restate` trains that organism (pretrained with
   `scripts/make_organism.py --no-restate`) on a build of its own.
2. `pope-train run ARM --backend trl` for every arm and seed, with equal budgets (steps, prompts
   per step, rollouts, learning rate, max tokens, temperature) and `--eval-every`, which measures
   the fraction of the training hard problems solvable unguided (>= 1 of `--eval-samples`) and
   held-out pass@k on the live policy into metrics.jsonl.
   The guidance arms (`pope_online`, `ghpo`, `fixed_ratio`) are configs too; `--refresh-every`
   and `--refresh-n` go to `pope_online`.
3. `pope-eval pass-at-k` of the base organism and of every final policy (as soon as it is
   trained) on the held-out hard split.
4. DIR/results.json, DIR/results.md (tables, the pre-registered decision rule applied) and the
   figures DIR/solvable.png (solvable fraction against steps, mean and min-max band over seeds),
   DIR/solvable_tokens.png (against tokens generated: rollouts, regenerations and re-search) and
   DIR/pass_at_k.png (held-out pass@k against k). A run's guidance tokens come from its
   guidance_recount.json where bench/recount_guidance.py wrote one, and the tables say which.

Runs go `--jobs` at a time, each on one thread (two torch processes of two threads each on a
2-core machine spin-wait). A finished stage is skipped when the script is run again with the same
DIR, and a training run cut short resumes from its last checkpoint (`--save-every`), so a crash
loses at most that many steps of each run in flight. `--model` takes any model pope loads (a Hub id on a
GPU machine) with the task options unchanged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    add_common_arguments,
    cli,
    float_in,
    fmt_spread,
    int_at_least,
    int_list,
    judge,
    load_hypotheses,
    markdown_table,
    name_list,
    run_logged,
    spread,
)
from bench.pope_vs_hard_only import held_out_hard  # noqa: E402

CORE_ARMS = ("hard_only", "pope", "easy_hard_mix", "pope_easy_hard")
ABLATIONS = {"pope_no_revisit": ("pope", "no-revisit"), "pope_no_restate": ("pope", "restate")}
ORGANISM = ROOT / "tests" / "data" / "organism"
# The two task families and their organisms: source -> (default model, hard difficulty, easy
# difficulty, the generation limit for a difficulty).
FAMILIES = {
    "organism": (ORGANISM, 10, 3, lambda d: 20 * (d + 2) + 16),  # lines of 20 tokens
    "opchain": (ROOT / "tests" / "data" / "organism_opchain", 6, 1, lambda d: 16 * 16 + 32),  # 12 lines of 16 tokens, two revisited, the answer
}
HYPOTHESES = ROOT / "bench" / "hypotheses.json"


# --quick: the pipeline at CI size (every stage, every arm), not a study; its values override
# the options of the same name.
QUICK = {"problems": 24, "steps": 10, "eval_every": 5, "refresh_every": 5, "eval_samples": 8,
         "passk_samples": 8, "min_held_out": 1}


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The study's options, every one checked here, before anything is built: argparse refuses a
    bad value naming the option and what it takes (exit 2)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(ap)
    ap.add_argument("--source", choices=tuple(FAMILIES), default="organism",
                    help="the task family: organism (running sums) or opchain (rare operations "
                         "at random positions; docs/organism.md)")
    ap.add_argument("--model", default=None,
                    help="base model (default: the family's organism under tests/data)")
    ap.add_argument("--ablation-model", default=None,
                    help="the organism pretrained without restating (arm pope_no_restate)")
    ap.add_argument("--arms", type=name_list("--arms"), default=list(CORE_ARMS),
                    help="comma-separated recipes runnable on TRL (pope-train configs) and "
                         f"ablations ({', '.join(ABLATIONS)})")
    ap.add_argument("--seeds", type=int_list("--seeds"), default=[0, 1, 2],
                    help="training seeds, comma-separated integers >= 0")
    ap.add_argument("--task-seeds", "--task-seed", dest="task_seeds", type=int_list("--task-seeds"),
                    default=[0], help="build seeds (the task draw: problems, the split, the "
                                      "search), comma-separated integers >= 0; every arm runs "
                                      "every training seed on every task draw")
    ap.add_argument("--eval-seed", type=int_at_least("--eval-seed", 0), default=0,
                    help="pope-eval's sampling seed on the held-out hard split")
    ap.add_argument("--quick", action="store_true",
                    help="CI size: 24 problems, 10 steps, evaluation and online POPE's refresh "
                         "every 5, evaluation with 8 samples")
    ap.add_argument("--difficulty", type=int_at_least("--difficulty", 0), default=None,
                    help="hard problems' difficulty (organism: operations, default 10; opchain: "
                         "rare operations, default 6)")
    ap.add_argument("--easy-difficulty", type=int_at_least("--easy-difficulty", 0), default=None,
                    help="easy problems' difficulty (default organism 3, opchain 1)")
    ap.add_argument("--problems", type=int_at_least("--problems", 2), default=96,
                    help="problems generated (half easy)")
    ap.add_argument("--validation-fraction",
                    type=float_in("--validation-fraction", 0.0, 0.9, open_low=True), default=0.4,
                    help="share of the problems held out (the held-out hard split)")
    ap.add_argument("--min-held-out", type=int_at_least("--min-held-out", 1), default=8,
                    help="a task draw with fewer held-out hard problems stops the study")
    ap.add_argument("--k", type=int_at_least("--k", 1), default=64,
                    help="unguided samples that define 'hard'")
    ap.add_argument("--n", type=int_at_least("--n", 1), default=8,
                    help="samples per probed prefix")
    ap.add_argument("--max-tokens", type=int_at_least("--max-tokens", 1), default=None,
                    help="build, rollout and evaluation token limit (default: the hard solution's "
                         "length and a margin)")
    ap.add_argument("--temperature", type=float_in("--temperature", 0.0, open_low=True),
                    default=1.0)
    ap.add_argument("--max-prefix-fraction", type=float_in("--max-prefix-fraction", 0.0, 1.0,
                                                           open_low=True), default=0.8,
                    help="longest prefix probed, as a share of the solution (the full chain of "
                         "values less the answer line is the answer, not guidance)")
    ap.add_argument("--steps", type=int_at_least("--steps", 1), default=100)
    ap.add_argument("--prompts-per-step", type=int_at_least("--prompts-per-step", 1), default=4)
    ap.add_argument("--num-generations", type=int_at_least("--num-generations", 2), default=8)
    ap.add_argument("--learning-rate", type=float_in("--learning-rate", 0.0, open_low=True),
                    default=1e-4)
    ap.add_argument("--eval-every", type=int_at_least("--eval-every", 1), default=10)
    ap.add_argument("--save-every", type=int_at_least("--save-every", 1), default=25,
                    help="checkpoint every N steps: an interrupted run resumes from its last "
                         "(pope-train's own resume; results equal an uninterrupted run's)")
    ap.add_argument("--eval-samples", type=int_at_least("--eval-samples", 1), default=32)
    ap.add_argument("--passk-samples", type=int_at_least("--passk-samples", 1), default=32,
                    help="pope-eval samples per problem")
    ap.add_argument("--refresh-every", type=int_at_least("--refresh-every", 1), default=10,
                    help="pope_online: re-search the prefixes every N steps")
    ap.add_argument("--refresh-n", type=int_at_least("--refresh-n", 1), default=None,
                    help="pope_online: samples per probed prefix (default --n, the build's)")
    ap.add_argument("--summary-only", action="store_true",
                    help="build and train nothing: summarise the finished runs of these arms and "
                         "task draws (a study in progress or cut short); a trained run not yet "
                         "scored is scored first")
    ap.add_argument("--hypotheses", type=Path, default=HYPOTHESES,
                    help="the hypotheses judged (a JSON list of name, better, worse, metric, "
                         "direction), default bench/hypotheses.json")
    args = ap.parse_args(argv)
    try:
        args.hypotheses_list = load_hypotheses(args.hypotheses)
    except (OSError, ValueError, TypeError) as e:
        ap.error(f"--hypotheses {args.hypotheses}: {e}")
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.refresh_n is None:
        args.refresh_n = args.n
    model, difficulty, easy, tokens = FAMILIES[args.source]
    args.model = args.model or str(model)
    args.difficulty = difficulty if args.difficulty is None else args.difficulty
    args.easy_difficulty = easy if args.easy_difficulty is None else args.easy_difficulty
    if args.max_tokens is None:
        args.max_tokens = tokens(args.difficulty)
    for arm in args.arms:
        if arm in ABLATIONS:
            continue
        problem = _not_runnable(arm)
        if problem:
            ap.error(f"--arms {arm}: {problem}")
    if "pope_no_restate" in args.arms and not args.ablation_model:
        ap.error("--arms pope_no_restate needs --ablation-model")
    from pope_data.sources import SOURCES
    from pope_eval.errors import ConfigError

    try:
        SOURCES[args.source].option_class(difficulty=args.difficulty,
                                          easy_difficulty=args.easy_difficulty)
    except ConfigError as e:
        ap.error(f"--difficulty / --easy-difficulty: {e}")
    return args


def _not_runnable(name: str) -> str | None:
    """None when `name` is a recipe TRL runs, else why not."""
    from pope_train.recipes import RECIPES

    if name not in RECIPES:
        return (f"unknown arm; choose recipes ({', '.join(RECIPES)}) or ablations "
                f"({', '.join(ABLATIONS)})")
    return RECIPES[name].why_not("trl")


def build_command(args: argparse.Namespace, model: str, guidance: str, dest: Path,
                  task_seed: int) -> list[str]:
    return [cli("pope-data"), "build", "--out", str(dest), "--source", args.source,
         "--source-option", f"difficulty={args.difficulty}",
         "--source-option", f"easy_difficulty={args.easy_difficulty}",
         "--limit", str(args.problems), "--model", model, "--engine", "transformers",
         "--k", str(args.k), "--n", str(args.n), "--max-tokens", str(args.max_tokens),
         "--temperature", str(args.temperature), "--top-p", "1.0", "--guidance", guidance,
         "--max-prefix-fraction", str(args.max_prefix_fraction),
         "--validation-fraction", str(args.validation_fraction), "--seed", str(task_seed)]


def build(args: argparse.Namespace, model: str, guidance: str, dest: Path,
          task_seed: int) -> Path:
    """`pope-data build` of one task draw (skipped when finished), and its held-out hard split
    (dest/held_out_hard.jsonl), at least --min-held-out problems."""
    if not ((dest / "export" / "README.md").exists() or (dest / "summary.json").exists()):
        if args.summary_only:
            raise SystemExit(f"--summary-only: {dest} holds no finished build of task seed "
                             f"{task_seed}; drop the task seed or run the study without it")
        run_logged(build_command(args, model, guidance, dest, task_seed),
                   dest.parent / f"{dest.name}.log", threads=2)
    data = held_out_hard(dest, dest / "held_out_hard.jsonl")
    held_out = len(data.read_text().splitlines())
    if held_out < args.min_held_out:
        raise SystemExit(f"{dest}: task seed {task_seed} holds {held_out} held-out hard problems, "
                         f"fewer than --min-held-out {args.min_held_out}; raise --problems or "
                         "--validation-fraction")
    return dest


def _run_dir(out: Path, item: tuple) -> Path:
    """One run's folder: DIR/t<task seed>/runs/<arm>-s<training seed>."""
    arm, *_, t, seed = item
    return out / f"t{t}" / "runs" / f"{arm}-s{seed}"


def _finished_seeds(out: Path, arm: str, t: int) -> set[int]:
    """The training seeds of `arm`'s finished runs on task seed `t` (the folders _run_dir names);
    another arm whose name starts with `arm` (pope_online for pope) is not counted."""
    seeds = set()
    for d in (out / f"t{t}" / "runs").glob(f"{arm}-s*"):
        name, _, seed = d.name.rpartition("-s")
        if name == arm and seed.isdigit() and _trained(d):
            seeds.add(int(seed))
    return seeds


def _trained(dest: Path) -> bool:
    return (dest / "final" / "config.json").exists()


def train(args: argparse.Namespace, recipe: str, model: str, build_dir: Path, dest: Path,
          seed: int) -> Path:
    if _trained(dest):
        return dest
    # A run that died is run again with the same command: pope-train resumes it from its last
    # complete checkpoint (or from step 0 if it saved none), cutting the records past it.
    run_logged([cli("pope-train"), "run", recipe, "--backend", "trl", "--model", model,
         "--export", str(build_dir / "export"), "--out", str(dest),
         "--max-steps", str(args.steps), "--seed", str(seed),
         "--prompts-per-step", str(args.prompts_per_step),
         "--num-generations", str(args.num_generations),
         "--max-completion-length", str(args.max_tokens),
         "--learning-rate", str(args.learning_rate), "--temperature", str(args.temperature),
         "--save-steps", str(min(args.save_every, args.steps)), "--eval-every", str(args.eval_every),
         "--eval-samples", str(args.eval_samples),
         *(["--refresh-every", str(args.refresh_every), "--refresh-n", str(args.refresh_n)]
           if recipe == "pope_online" else [])], dest.parent / f"{dest.name}.log", threads=1)
    return dest


def evaluate(args: argparse.Namespace, model: str, data: Path, dest: Path) -> dict:
    if not (dest / "summary.json").exists():
        run_logged([cli("pope-eval"), "pass-at-k", "--data", str(data), "--model", model,
             "--engine", "transformers", "--n", str(args.passk_samples),
             "--max-tokens", str(args.max_tokens), "--temperature", str(args.temperature),
             "--top-p", "1.0", "--seed", str(args.eval_seed), "--out", str(dest)],
            dest.parent / f"{dest.name}.log", threads=1)
    return json.loads((dest / "summary.json").read_text())


def run_tokens(rows: list[dict], rollouts: int) -> dict:
    """What one run generated: rollout tokens (the step's own count, hinted regenerations
    included; runs that predate it: mean length x rollouts), refresh tokens (re-search with the
    policy), the solution tokens shown in prompts, and cumulative totals at each evaluation step
    (the tokens spent to reach it: rollouts of steps <= s, refreshes made before step s)."""
    steps = [x for x in rows if "step" in x]
    refreshes = [x for x in rows if "refresh_step" in x]

    def rollout(x: dict) -> float:
        if x.get("rollout_tokens") is not None:
            return x["rollout_tokens"]
        return (x.get("response_length") or 0) * rollouts

    at = {}
    for e in (x for x in rows if "eval_step" in x):
        s = e["eval_step"]
        at[s] = (sum(rollout(x) for x in steps if x["step"] <= s)
                 + sum(r["refresh_tokens"] for r in refreshes if r["refresh_step"] < s))
    rollout_total = sum(rollout(x) for x in steps)
    refresh_total = sum(r["refresh_tokens"] for r in refreshes)
    return {"rollout": round(rollout_total), "refresh": round(refresh_total),
            "total": round(rollout_total + refresh_total),
            "guidance": round(sum(x.get("guidance_tokens") or 0 for x in steps)),
            "at_eval": at}


# The zero-advantage accounting every run logs (pope_train.backends.trl.metrics): field, column.
ZERO_ADVANTAGE = (("zero_spread_guided", "guided groups"), ("zero_spread_unguided",
                  "unguided groups"), ("zero_spread_all_correct", "all correct"),
                  ("zero_spread_all_wrong", "all wrong"),
                  ("zero_gradient_tokens", "rollout tokens with no gradient"))


def recounted(run: Path, rows: list[dict]) -> list[dict]:
    """A run's metrics with its guidance tokens per step from RUN/guidance_recount.json where
    bench/recount_guidance.py wrote one (runs logged before fallback prefixes were counted)."""
    path = run / "guidance_recount.json"
    if not path.is_file():
        return rows
    per_step = json.loads(path.read_text())["per_step"]
    return [{**x, "guidance_tokens": per_step[str(x["step"])]} if "step" in x else x
            for x in rows]


def run_mean(rows: list[dict], key: str) -> float | None:
    """The mean of a step metric over one run's step records, None where it is not logged."""
    vals = [x[key] for x in rows if "step" in x and x.get(key) is not None]
    return statistics.fmean(vals) if vals else None


def summarise(arm: str, runs: dict[str, Path], rollouts: int) -> dict:
    """One arm over its runs (keyed "t<task seed>-s<training seed>"): S curves, rewards, tokens,
    refreshes with their spread, and `per_run`, each run's values of the hypotheses' metrics."""
    from pope_train.backends.trl.metrics import read_metrics

    keys = list(runs)
    per_seed = [recounted(runs[k], read_metrics(runs[k] / "metrics.jsonl")) for k in keys]
    evals = [[x for x in rows if "eval_step" in x] for rows in per_seed]
    tokens = [run_tokens(rows, rollouts) for rows in per_seed]
    by_step = [{x["eval_step"]: x for x in e} for e in evals]  # each run's evaluation per step
    steps = sorted(set.intersection(*[set(b) for b in by_step]))
    curve = []
    for s in steps:
        vals = [b[s] for b in by_step]
        curve.append({"step": s, "solvable": spread([v["eval_solvable"] for v in vals]),
                      "total_tokens": spread([t["at_eval"][s] for t in tokens]),
                      "pass_at_k": {k: spread([v["eval_pass_at_k"][k] for v in vals])
                                    for k in vals[0]["eval_pass_at_k"]}})

    def mean_of(key: str) -> dict | None:
        means = [m for rows in per_seed if (m := run_mean(rows, key)) is not None]
        return spread(means) if means else None

    steps_with_guided_reward = [sum(1 for x in rows if (x.get("reward_guided") or 0) > 0)
                                for rows in per_seed]
    refreshes = [[x for x in rows if "refresh_step" in x] for rows in per_seed]
    final_s = [e[-1]["eval_solvable"] for e in evals]
    per_run = {k: {"final_S": s, "guidance_tokens": float(t["guidance"]),
                   "total_tokens": float(t["total"]), "S_per_mtok": s / t["total"] * 1e6,
                   # the run's own S curve (evaluation steps as in `curve`) for the per-run table
                   "S_curve": [b[st]["eval_solvable"] for st in steps],
                   # each zero-advantage share, the mean over the run's steps (where logged)
                   **{key: v for key in ("reward_guided", "reward_unguided",
                                         "zero_spread_groups", *(f for f, _ in ZERO_ADVANTAGE))
                      if (v := run_mean(rows, key)) is not None}}
               for k, s, t, b, rows in zip(keys, final_s, tokens, by_step, per_seed)}
    return {"arm": arm, "curve": curve, "per_run": per_run,
            "reward_guided": mean_of("reward_guided"),
            "reward_unguided": mean_of("reward_unguided"),
            "entropy": mean_of("entropy"), "step_time": mean_of("step_time"),
            "hinted_groups": mean_of("hinted_groups"),
            # share of a step's groups whose rewards are all equal (zero advantage), where logged
            "zero_spread_groups": mean_of("zero_spread_groups"),
            **{key: mean_of(key) for key, _ in ZERO_ADVANTAGE},
            "steps_with_guided_reward": steps_with_guided_reward,
            # runs whose guidance tokens come from bench/recount_guidance.py, not their log
            "guidance_recounted": [k for k in keys
                                   if (runs[k] / "guidance_recount.json").is_file()],
            "rollout_tokens": [t["rollout"] for t in tokens],
            "refresh_tokens": [t["refresh"] for t in tokens],
            "total_tokens": spread([float(t["total"]) for t in tokens]),
            "guidance_tokens": spread([float(t["guidance"]) for t in tokens]),
            # final solvable fraction per million generated tokens (rollouts + refreshes)
            "solvable_per_mtok": spread([s / t["total"] * 1e6 for s, t in zip(final_s, tokens)]),
            "refreshes": [[{k: r[k] for k in ("refresh_step", "refresh_istar_hist",
                                              "refresh_graduated", "refresh_tokens")}
                           for r in rs] for rs in refreshes]}


def _band_plot(series: dict[str, list[tuple[float, dict]]], path: Path, *, xlabel: str,
               ylabel: str, title: str, log2_x: bool = False) -> None:
    """One line per arm (the mean over seeds) with its min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for arm, points in series.items():
        xs = [x for x, _ in points]
        ax.plot(xs, [v["mean"] for _, v in points], marker="o", label=arm)
        ax.fill_between(xs, [v["min"] for _, v in points], [v["max"] for _, v in points],
                        alpha=0.2)
    if log2_x:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot(summaries: dict, passk: dict, out: Path) -> None:
    _band_plot({arm: [(p["step"], p["solvable"]) for p in s["curve"]]
                for arm, s in summaries.items()}, out / "solvable.png", xlabel="GRPO step",
               ylabel="training hard problems solvable unguided",
               title="solvable fraction (mean, min-max over seeds)")
    _band_plot({arm: [(p["total_tokens"]["mean"], p["solvable"]) for p in s["curve"]]
                for arm, s in summaries.items()}, out / "solvable_tokens.png",
               xlabel="tokens generated (rollouts + re-search; mean over seeds)",
               ylabel="training hard problems solvable unguided",
               title="solvable fraction at its full price")
    _band_plot({arm: [(int(k), by_k[k]) for k in sorted(by_k, key=int)]
                for arm, by_k in passk.items()}, out / "pass_at_k.png", xlabel="k",
               ylabel="held-out unguided pass@k", title="pope-eval on the held-out hard split",
               log2_x=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {text}", flush=True)

    plan = []  # (arm, recipe, model, build, task seed, seed): one run folder each
    base_builds: dict[int, Path] = {}
    for t in args.task_seeds:
        say(f"build, task seed {t}")
        task = out / f"t{t}"
        base_builds[t] = build(args, args.model, "pope", task / "build", t)
        for arm in args.arms:
            recipe, model, b = arm, args.model, base_builds[t]
            if arm == "pope_no_revisit":
                recipe, b = "pope", build(args, args.model, "no-revisit",
                                          task / "build-no-revisit", t)
            elif arm == "pope_no_restate":
                recipe, model = "pope", args.ablation_model
                b = build(args, model, "pope", task / "build-no-restate", t)
            plan += [(arm, recipe, model, b, t, seed) for seed in args.seeds]
    todo = [p for p in plan if not _trained(_run_dir(out, p))]
    say(f"{len(plan)} training runs ({len(plan) - len(todo)} finished before), {args.jobs} at "
        "a time")
    unfinished = [f"{arm} t{t}-s{seed}" for arm, *_, t, seed in todo]
    if args.summary_only:
        say(f"summary only: {len(unfinished)} unfinished runs left out"
            + (f" ({', '.join(unfinished)})" if unfinished else ""))
        plan, todo = [p for p in plan if p not in todo], []

    def score(item):
        """pope-eval of one trained run (arm, task seed, seed) on its draw's held-out hard split;
        skipped when its summary is there."""
        arm, t, seed = item
        return item, evaluate(args, str(_run_dir(out, item) / "final"),
                              base_builds[t] / "held_out_hard.jsonl",
                              out / f"t{t}" / "eval" / f"{arm}-s{seed}")

    def one(item):
        arm, recipe, model, b, t, seed = item
        dest = train(args, recipe, model, b, _run_dir(out, item), seed)
        say(f"trained {arm}, task seed {t}, seed {seed}")
        # Scored as soon as it is trained, so a study cut short holds every finished run whole
        # (bench/study_records.py keeps only scored runs).
        score((arm, t, seed))
        return dest

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, todo))
    say("pope-eval")
    # Every finished run of the arms on these task draws is summarised, those of earlier parts
    # with other --seeds included: a study runs in parts into one folder.
    found = sorted({(arm, t, seed) for arm, *_, t, seed in plan}
                   | {(arm, t, seed) for arm in args.arms for t in args.task_seeds
                      for seed in _finished_seeds(out, arm, t)})
    if not found:
        raise SystemExit("no finished run of these arms and task seeds to summarise")

    base_evals = {t: evaluate(args, args.model, base_builds[t] / "held_out_hard.jsonl",
                              out / f"t{t}" / "eval" / "base")
                  for t in sorted({t for _, t, _ in found})}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        scored = list(pool.map(score, found))
    runs_by_arm: dict[str, dict[str, Path]] = {}
    for arm, t, seed in found:
        runs_by_arm.setdefault(arm, {})[f"t{t}-s{seed}"] = _run_dir(out, (arm, t, seed))
    rollouts = args.prompts_per_step * args.num_generations
    summaries = {arm: summarise(arm, runs, rollouts) for arm, runs in runs_by_arm.items()}
    passk: dict[str, dict] = {"base": {
        k: spread([e["pass_at_k"][k]["estimate"] for e in base_evals.values()])
        for k in next(iter(base_evals.values()))["pass_at_k"]}}
    kmax = str(max(int(k) for k in passk["base"]))
    for arm in runs_by_arm:
        evals = [e for (a, *_), e in scored if a == arm]
        passk[arm] = {k: spread([e["pass_at_k"][k]["estimate"] for e in evals])
                      for k in evals[0]["pass_at_k"]}
        # held-out S: pass@n with n samples = the share of held-out problems solved at least once
        for (a, t, seed), e in scored:
            if a == arm:
                summaries[arm]["per_run"][f"t{t}-s{seed}"]["heldout_S"] = \
                    e["pass_at_k"][kmax]["estimate"]
    final_s = {arm: s["curve"][-1]["solvable"] for arm, s in summaries.items()}
    heldout_s = {arm: spread([v["heldout_S"] for v in s["per_run"].values()])
                 for arm, s in summaries.items()}

    def values(arm: str, metric: str) -> dict[str, float] | None:
        if arm not in summaries:
            return None
        return {k: v[metric] for k, v in summaries[arm]["per_run"].items() if metric in v}

    decisions = judge(args.hypotheses_list, values)
    builds = {t: json.loads((b / "summary.json").read_text()) for t, b in base_builds.items()}
    wall = time.monotonic() - started
    plot(summaries, passk, out)
    (out / "results.json").write_text(json.dumps({
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k != "hypotheses_list"},
        "builds": {str(t): b for t, b in builds.items()}, "summaries": summaries,
        "final_solvable": final_s, "heldout_solvable": heldout_s, "pass_at_k": passk,
        "decisions": decisions, "wall_s": round(wall)}, indent=2) + "\n")
    lines = [f"Study: `{' '.join(['python', 'bench/organism.py', *(argv or sys.argv[1:])])}`, "
             f"{round(wall)} s.", "",
             *[f"Build, task seed {t}: {_counts(b)}" for t, b in builds.items()], "",
             "| arm | runs | S(0) | final S | held-out S | pass@1 | pass@" + kmax + " | guided "
             "reward | unguided reward | zero-advantage groups | entropy | steps with guided "
             "reward > 0 | tokens generated | guidance tokens shown | final S per M tokens |",
             "|---|" + "---:|" * 14]
    for arm, s in summaries.items():
        lines.append(f"| {arm} | {len(s['per_run'])} | {fmt_spread(s['curve'][0]['solvable'], 2)} "
                     f"| {fmt_spread(final_s[arm], 2)} | {fmt_spread(heldout_s[arm], 2)} "
                     f"| {fmt_spread(passk[arm]['1'])} | {fmt_spread(passk[arm][kmax])} "
                     f"| {fmt_spread(s['reward_guided'])} | {fmt_spread(s['reward_unguided'])} "
                     f"| {fmt_spread(s['zero_spread_groups'], 2)} "
                     f"| {fmt_spread(s['entropy'], 2)} | {s['steps_with_guided_reward']} "
                     f"| {fmt_spread(s['total_tokens'], 0)} | {fmt_spread(s['guidance_tokens'], 0)} "
                     f"| {fmt_spread(s['solvable_per_mtok'], 2)} |")
    lines.append(f"| base | | | | {fmt_spread(passk['base'][kmax], 2)} "
                 f"| {fmt_spread(passk['base']['1'])} | {fmt_spread(passk['base'][kmax])} "
                 "| | | | | | | | |")
    lines += ["", "Zero advantage, mean per step: the share of groups whose rewards are all equal "
              "(no gradient), among all, guided and unguided groups, split all correct / all "
              "wrong (shares of all groups), and the share of rollout tokens with advantage 0.",
              "", "| arm | all groups | " + " | ".join(c for _, c in ZERO_ADVANTAGE) + " |",
              "|---|" + "---:|" * (1 + len(ZERO_ADVANTAGE))]
    for arm, s in summaries.items():
        lines.append(f"| {arm} | {fmt_spread(s['zero_spread_groups'], 2)} | " + " | ".join(
            fmt_spread(s[key], 2) for key, _ in ZERO_ADVANTAGE) + " |")
    online = [(arm, s["refreshes"]) for arm, s in summaries.items() if any(s["refreshes"])]
    for arm, per_seed in online:
        lines += ["", f"{arm} refreshes (step: prefix histogram, graduated, tokens), per run:"]
        lines += [f"- {key}: " + "; ".join(
            f"{r['refresh_step']}: {r['refresh_istar_hist']}, {r['refresh_graduated']}, "
            f"{r['refresh_tokens']}" for r in rs)
            for key, rs in zip(summaries[arm]["per_run"], per_seed)]
    lines += ["", "Mean [min, max] over runs (task seed x training seed); held-out S = pope-eval "
              f"pass@{kmax} with {kmax} samples on the held-out hard split.", ""]
    lines += per_run_table(summaries, kmax) + [""]
    lines += ["Decisions (bench/RESULTS.md has both rules' pre-registration): the range rule (the "
              "difference of means exceeds the larger seed range) and a paired bootstrap 95% CI "
              "of the mean difference over runs.", ""]
    recounts = [f"{arm} {k}" for arm, sm in summaries.items()
                for k in sm.get("guidance_recounted", [])]
    if recounts:
        lines += [f"Guidance tokens of {len(recounts)} runs are recounted from their traces and "
                  f"builds by bench/recount_guidance.py ({', '.join(recounts)}): they were logged "
                  "before fallback prefixes were counted.", ""]
    if args.summary_only and unfinished:
        lines += [f"A partial summary: {len(unfinished)} planned runs were not finished and are "
                  "left out, so these decisions are not the study's verdicts.", ""]
    lines += markdown_table(
        ["hypothesis", "comparison", "metric", "range rule", "difference [95% CI]", "bootstrap"],
        [[name, f"{d['better']} {'>' if d['direction'] == 'higher' else 'fewer than'} "
                f"{d['worse']}", d["metric"], d["range_rule"],
          "{:.3g} [{:.3g}, {:.3g}]".format(d["bootstrap"]["difference"], *d["bootstrap"]["ci"]),
          d["bootstrap"]["verdict"]] for name, d in decisions.items()])
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def per_run_table(summaries: dict, kmax: str) -> list[str]:
    """Every run on its own row: S on the training hard problems at each evaluation step, the
    run's mean guided and unguided group reward, its held-out S."""
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def short(v: float) -> str:
        return "0" if v == 0 else f"{v:.2f}".removeprefix("0")

    steps = ", ".join(str(c["step"]) for c in next(iter(summaries.values()))["curve"])
    rows = [[f"{arm}, {key}", ", ".join(short(v) for v in run["S_curve"]),
             num(run.get("reward_guided")), num(run.get("reward_unguided")),
             num(run.get("heldout_S"))]
            for arm, s in summaries.items() for key, run in sorted(s["per_run"].items())]
    return [f"Per run (t = task seed, s = training seed): S on the training hard problems at steps "
            f"{steps}; the run's mean over steps of the guided and unguided groups' mean reward; "
            f"held-out S (pass@{kmax}).", "",
            *markdown_table(["run", "S at each evaluation", "guided reward", "unguided reward",
                             "held-out S"], rows, numeric=[False, False, True, True, True])]


def _counts(summary: dict) -> str:
    keys = ("problems", "hard", "easy", "guided", "fallback")
    return ", ".join(f"{k} {summary[k]}" for k in keys if k in summary) or json.dumps(summary)[:300]


if __name__ == "__main__":
    raise SystemExit(main())
