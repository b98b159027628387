"""Evaluation during TRL training: unguided solvability of the training hard set and held-out pass@k.

`plan_evaluation(cfg, train_files, hard_ids, grpo)` reads and checks the problems before any model
loads; `eval_callback(plan, write)` measures them with the live policy every --eval-every steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pope_eval import passk
from pope_eval.benchmarks import load_benchmark
from pope_eval.engines import GenerationRequest, Sampling
from pope_eval.errors import ConfigError
from pope_eval.grading import bad_golds
from pope_eval.prompts import problem_messages
from pope_eval.scoring import generate_and_grade
from pope_eval.seeds import stable_int
from pope_train.backends.trl.policy import live_engine
from pope_train.data import check_data_file

if TYPE_CHECKING:
    from pope_train.backends.trl.backend import TrlConfig

log = logging.getLogger(__name__)

HELDOUT_SPLIT = ("hard", "validation.parquet")  # the export's held-out hard problems


@dataclass(frozen=True)
class EvalProblem:
    """One problem as the policy sees it unguided: chat messages and the reference answer."""

    id: str
    messages: tuple[dict[str, str], ...]
    answer: str


@dataclass(frozen=True)
class EvalPlan:
    """What every evaluation measures, fixed before training starts."""

    every: int
    samples: int
    sampling: Sampling
    ks: tuple[int, ...]
    hard: tuple[EvalProblem, ...]  # the training hard set, unguided
    heldout: tuple[EvalProblem, ...]
    heldout_source: str | None
    batch_size: int

    def due(self, step: int, max_steps: int) -> bool:
        """Every `every` steps, and at the last step so the curve ends at the trained policy."""
        return step % self.every == 0 or step == max_steps

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (run_config.json, --dry-run)."""
        return {"every": self.every, "samples": self.samples, "sampling": self.sampling.to_dict(),
                "ks": list(self.ks), "hard_problems": len(self.hard),
                "heldout": self.heldout_source, "heldout_problems": len(self.heldout),
                "batch_size": self.batch_size}


def eval_seed(problem_id: str) -> int:
    """Request seed of a problem's samples (the engine adds the run's --seed). The same at every
    evaluation of a run and in every run with that seed (common random numbers): unchanged
    weights give the same numbers at every step, so a curve moves only when the policy does, and
    two arms from one base model are compared on the same draws."""
    return stable_int(f"eval:{problem_id}", 4)


def _verl_problems(path: str, keep: Callable[[str], bool]) -> list[EvalProblem]:
    """The unguided rows of a verl-schema parquet whose problem id passes `keep`, one per id."""
    import pyarrow.parquet as pq

    rows = pq.read_table(path, columns=["prompt", "reward_model", "extra_info"]).to_pylist()
    out: dict[str, EvalProblem] = {}
    for i, row in enumerate(rows):
        info = row["extra_info"] or {}
        pid = info.get("problem_id") or f"row-{i + 1}"
        if info.get("guided") or pid in out or not keep(pid):
            continue
        out[pid] = EvalProblem(pid, tuple(row["prompt"]), str(row["reward_model"]["ground_truth"]))
    return list(out.values())


def _is_verl_file(spec: str) -> bool:
    """A parquet file with verl's reward column (an export split); other files go to
    `load_benchmark`, which names what is wrong with them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(spec)
    if path.suffix != ".parquet" or not path.is_file():
        return False
    try:
        return "reward_model" in pq.read_schema(path).names
    except (OSError, pa.ArrowInvalid):
        return False


def _heldout(cfg: TrlConfig) -> tuple[list[EvalProblem], str | None]:
    """--eval-data (an export split, or anything `pope-eval pass-at-k --data` reads), else the
    export's hard/validation.parquet when it has rows, else nothing."""
    spec = cfg.eval_data
    if spec is None:
        if not cfg.export_dir or not Path(cfg.export_dir, *HELDOUT_SPLIT).is_file():
            return [], None
        import pyarrow.parquet as pq

        spec = str(Path(cfg.export_dir, *HELDOUT_SPLIT))
        if pq.ParquetFile(spec).metadata.num_rows == 0:  # a build with --validation-fraction 0
            return [], None
    if _is_verl_file(spec):
        check_data_file(spec)
        problems = _verl_problems(spec, lambda pid: True)
        if not problems:
            raise ConfigError(f"--eval-data: {spec} has no unguided rows to measure pass@k on")
        return problems, spec
    bench = load_benchmark(spec, option="--eval-data")
    return [EvalProblem(it.id, tuple(problem_messages(it.problem)), it.answer)
            for it in bench.items], bench.source


def _measured(problems: Iterable[EvalProblem], cap: int | None, what: str) -> tuple[EvalProblem, ...]:
    """Problems whose answer math-verify can read, in a fixed order by id (the same subset in
    every run, whatever the seed), at most `cap` of them."""
    problems = sorted(problems, key=lambda p: (stable_int(f"eval:{p.id}"), p.id))
    bad = set(bad_golds([p.answer for p in problems])) if problems else set()
    if bad:
        log.warning("evaluation, %s: %d problem(s) left out, their answer cannot be parsed by "
                    "math-verify", what, len(bad))
    kept = [p for i, p in enumerate(problems) if i not in bad]
    return tuple(kept[:cap] if cap is not None else kept)


def plan_evaluation(cfg: TrlConfig, train_files: Sequence[str], hard_ids: frozenset[str],
                    grpo: Mapping[str, Any]) -> EvalPlan | None:
    """The evaluation of a run (None with --eval-every 0): the unguided rows of the training hard
    problems, the held-out set, and the sampling (default the training rollouts')."""
    if not cfg.eval_every:
        return None
    hard = [p for f in train_files for p in _verl_problems(f, hard_ids.__contains__)]
    heldout, source = _heldout(cfg)
    plan = EvalPlan(
        every=cfg.eval_every, samples=cfg.eval_samples,
        sampling=Sampling(
            max_tokens=cfg.eval_max_tokens or cfg.max_completion_length,
            temperature=cfg.eval_temperature if cfg.eval_temperature is not None
            else grpo["temperature"],
            top_p=grpo["top_p"], seed=cfg.seed),
        ks=tuple(passk.default_ks(cfg.eval_samples)),
        hard=_measured({p.id: p for p in hard}.values(), cfg.eval_problems, "training hard set"),
        heldout=_measured(heldout, cfg.eval_problems, "held-out set"),
        heldout_source=source, batch_size=cfg.eval_batch_size)
    if not plan.hard and not plan.heldout:
        raise ConfigError("--eval-every: nothing to evaluate: the training data has no unguided hard "
                          "row and there is no held-out set; give --eval-data FILE")
    return plan


def aggregate(hard_counts: Sequence[tuple[int, int]], heldout_counts: Sequence[tuple[int, int]],
              ks: Sequence[int]) -> dict[str, Any]:
    """From (samples, correct) per problem: `eval_solvable`, the fraction of training hard problems
    with at least one correct sample, and `eval_pass_at_k` {"k": the unbiased pass@k averaged over
    the held-out problems}; None for an empty set."""
    solvable = sum(c > 0 for _, c in hard_counts) / len(hard_counts) if hard_counts else None
    pass_at_k = ({str(k): sum(passk.pass_at_k(n, c, k) for n, c in heldout_counts)
                  / len(heldout_counts) for k in ks} if heldout_counts else None)
    return {"eval_solvable": solvable, "eval_solvable_problems": len(hard_counts),
            "eval_pass_at_k": pass_at_k, "eval_pass_at_k_problems": len(heldout_counts)}


def evaluate_policy(plan: EvalPlan, model: Any, tokenizer: Any, step: int) -> dict[str, Any]:
    """One metrics.jsonl evaluation record of `model` as it is now, sampled through pope's
    transformers engine (no reload, no gradient) and graded by math-verify. The model is in eval
    mode while it generates and back in its previous mode after."""
    start = time.perf_counter()
    problems = (*plan.hard, *plan.heldout)
    requests = [GenerationRequest(messages=p.messages, n=plan.samples, sampling=plan.sampling,
                                  seed=eval_seed(p.id), tag=p.id) for p in problems]
    engine = live_engine(model, tokenizer, seed=plan.sampling.seed, batch_size=plan.batch_size)
    was_training = model.training
    model.eval()
    try:
        graded = generate_and_grade(engine, requests, [p.answer for p in problems])
    finally:
        model.train(was_training)
    counts = [(len(g.grades), g.correct) for g in graded]
    finishes = [s.finish_reason for g in graded for s in g.result.samples]
    return {"eval_step": step,
            **aggregate(counts[:len(plan.hard)], counts[len(plan.hard):], plan.ks),
            "eval_samples": plan.samples,
            "eval_clipped_ratio": finishes.count("length") / len(finishes),
            "eval_tokens": sum(g.result.generated_tokens for g in graded),
            "eval_time": time.perf_counter() - start}


def eval_callback(plan: EvalPlan, write: Callable[[dict[str, Any]], None]) -> Any:
    """A TrainerCallback that writes `evaluate_policy`'s record before the first update (step 0)
    and after every step `plan.due` names."""
    from transformers import TrainerCallback

    class PolicyEvaluation(TrainerCallback):
        def _evaluate(self, step: int, model: Any, tokenizer: Any) -> None:
            record = evaluate_policy(plan, model, tokenizer, step)
            log.info("evaluation at step %d: solvable %s, pass@k %s (%.1f s)", step,
                     record["eval_solvable"], record["eval_pass_at_k"], record["eval_time"])
            write(record)

        def on_train_begin(self, args, state, control, model=None, processing_class=None,
                           **kwargs):
            if state.global_step == 0:  # a resumed run evaluated its start before
                self._evaluate(state.global_step, model, processing_class)

        def on_step_end(self, args, state, control, model=None, processing_class=None,
                        **kwargs):
            if plan.due(state.global_step, state.max_steps):
                self._evaluate(state.global_step, model, processing_class)

    return PolicyEvaluation()
