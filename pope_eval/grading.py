"""Answer grading with math-verify in guarded worker processes: every sample gets a status.

`grade_many(predictions, golds)` -> [GradeResult(status, extracted)], order-preserving and usable
from any thread; a sample whose verification outlives the wall-clock limit is `timeout` and its
worker is killed and replaced.

What counts as the model's answer, in order:
1. the content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced;
2. otherwise the text after the last "final answer is" / "final answer:" / "answer is" /
   "Answer:" (DAPO's format), up to the end of that line, with a trailing period, `$` and
   markdown bold removed.
Nothing else (in particular not "the last number in the text", which would reward unfinished
reasoning). No such answer: `no_answer`. A gold answer math-verify cannot parse: `bad_gold`.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import queue
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)

STATUSES = ("correct", "wrong", "no_answer", "timeout", "bad_gold")
MAX_ANSWER_CHARS = 2000  # longer "answers" are not answers; parsing them only risks hangs
_CHUNK = 8


@dataclass(frozen=True)
class GradeResult:
    """Verdict for one sample: one of STATUSES, and the answer text that was judged."""

    status: str
    extracted: str | None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


# -- extraction (in the caller's process; linear time on any input) ----------------------------
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANCHOR = re.compile(
    r"final\s+answer\s*(?:is|:)|answer\s+is|^[ \t]*\**answer\**[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)


def _last_boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOX.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    content = text[start:i].strip()
                    if content:
                        return content
                    break
            i += 1
    return None


def extract_answer(text: str) -> str | None:
    """The model's final answer as a string (see the module docstring), or None."""
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    last = None
    for m in _ANCHOR.finditer(text):
        last = m
    if last is None:
        return None
    end = text.find("\n", last.end())
    ans = text[last.end() : end if end != -1 else len(text)].strip().lstrip(":").strip()
    ans = re.sub(r"^\*+|\*+$", "", ans).strip()
    ans = ans.rstrip(".").strip()
    if ans.startswith("$") and ans.endswith("$") and len(ans) > 1:
        ans = ans.strip("$").strip()
    return ans or None


def wrap_gold(gold: str) -> str:
    """Gold answers are parsed boxed, so math-verify reads them as one LaTeX answer."""
    g = str(gold).strip()
    if g.startswith("\\boxed") or (g.startswith("$") and g.endswith("$")):
        return g
    return f"\\boxed{{{g}}}"


# -- verification (in worker processes) --------------------------------------------------------
def _verify_one(gold: str, answer: str, limit: int) -> str:
    from math_verify import parse, verify

    stage = "bad_gold"  # the status an unexpected error maps to, by the step that raised it
    try:
        gold_parsed = parse(wrap_gold(gold), parsing_timeout=limit, raise_on_error=True)
        if not gold_parsed:
            return "bad_gold"
        stage = "no_answer"
        pred_parsed = parse(f"\\boxed{{{answer}}}", parsing_timeout=limit, raise_on_error=True)
        if not pred_parsed:
            return "no_answer"
        stage = "wrong"
        ok = verify(gold_parsed, pred_parsed, timeout_seconds=limit, raise_on_error=True)
        return "correct" if ok else "wrong"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # math-verify's TimeoutException derives from BaseException
        if "timeout" in type(exc).__name__.lower():
            return "timeout"
        return stage


def _worker_main(conn, limit: int) -> None:
    import math_verify  # noqa: F401  (import once, before the first task)

    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for gold, answer in chunk:
            conn.send(_verify_one(gold, answer, limit))


class _Worker:
    """One verification process, restarted after it is killed for a timeout."""

    def __init__(self, ctx, limit: float) -> None:
        self.ctx = ctx
        self.limit = limit
        self.proc = None
        self.conn = None

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        # math-verify's own alarms fire slightly before ours; ours catches real hangs.
        self.proc = self.ctx.Process(target=_worker_main, args=(child, max(1, int(self.limit))),
                                     daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(timeout=5)
            self.conn.close()
        self.proc = None
        self.conn = None

    def run(self, items: list[tuple[str, str]]) -> list[str]:
        """Statuses for items, each under its own wall-clock deadline."""
        out: list[str] = []
        while len(out) < len(items):
            if self.proc is None or not self.proc.is_alive():
                self.kill()
                self._start()
                # The first reply also waits for the worker's imports.
                first_deadline = self.limit + 30.0
            else:
                first_deadline = self.limit
            rest = items[len(out):]
            try:
                self.conn.send(rest)
            except (BrokenPipeError, OSError):
                self.kill()
                continue
            for j in range(len(rest)):
                wait = first_deadline if j == 0 else self.limit
                if self.conn.poll(wait):
                    try:
                        out.append(self.conn.recv())
                        continue
                    except (EOFError, OSError):
                        pass  # the worker died on this item: count it as a timeout
                log.warning("grading: sample exceeded %.1fs; worker replaced", self.limit)
                out.append("timeout")
                self.kill()
                break
        return out


class Grader:
    """A pool of verification workers with a per-sample wall-clock limit (context manager)."""

    def __init__(self, workers: int | None = None, timeout: float = 5.0) -> None:
        import os

        self.workers = workers or min(4, os.cpu_count() or 1)
        self.timeout = timeout
        self._ctx = mp.get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(self.workers):
            self._idle.put(_Worker(self._ctx, timeout))
        self._closed = False

    def _run_chunk(self, items: list[tuple[str, str]]) -> list[str]:
        w = self._idle.get()
        try:
            return w.run(items)
        finally:
            self._idle.put(w)

    def grade_many(self, predictions: Sequence[str], golds: Sequence[str]) -> list[GradeResult]:
        if len(predictions) != len(golds):
            raise ValueError(f"grade_many: {len(predictions)} predictions but {len(golds)} golds")
        if self._closed:
            raise RuntimeError("grade_many: grader is shut down")
        results: list[GradeResult | None] = [None] * len(predictions)
        todo: list[tuple[int, str, str]] = []
        for i, (pred, gold) in enumerate(zip(predictions, golds)):
            if gold is None or not str(gold).strip():
                results[i] = GradeResult("bad_gold", None)
                continue
            ans = extract_answer(pred if isinstance(pred, str) else "")
            if ans is None:
                results[i] = GradeResult("no_answer", None)
            elif len(ans) > MAX_ANSWER_CHARS:
                results[i] = GradeResult("no_answer", ans[:200])
            else:
                todo.append((i, str(gold), ans))
        chunks = [todo[s : s + _CHUNK] for s in range(0, len(todo), _CHUNK)]
        if chunks:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(chunks))) as ex:
                outs = list(ex.map(lambda c: self._run_chunk([(g, a) for _, g, a in c]), chunks))
            for chunk, statuses in zip(chunks, outs):
                for (i, _, ans), status in zip(chunk, statuses):
                    results[i] = GradeResult(status, ans)
        return results  # type: ignore[return-value]

    def shutdown(self) -> None:
        self._closed = True
        while True:
            try:
                w = self._idle.get_nowait()
            except queue.Empty:
                break
            if w.conn is not None:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            w.kill()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


_shared: dict[tuple[int | None, float], Grader] = {}
_shared_lock = threading.Lock()


def _shared_grader(workers: int | None, timeout: float) -> Grader:
    with _shared_lock:
        g = _shared.get((workers, timeout))
        if g is None:
            g = _shared[(workers, timeout)] = Grader(workers=workers, timeout=timeout)
        return g


def grade_many(
    predictions: Sequence[str], golds: Sequence[str], *, timeout: float = 5.0,
    workers: int | None = None,
) -> list[GradeResult]:
    """Grade predictions against golds with a shared, lazily started worker pool."""
    return _shared_grader(workers, timeout).grade_many(predictions, golds)


def grade(prediction: str, gold: str, *, timeout: float = 5.0) -> GradeResult:
    return grade_many([prediction], [gold], timeout=timeout)[0]


@atexit.register
def shutdown() -> None:
    """Stop the shared pools (also run at interpreter exit)."""
    with _shared_lock:
        for g in _shared.values():
            g.shutdown()
        _shared.clear()
