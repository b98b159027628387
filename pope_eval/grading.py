"""Answer grading with math-verify in guarded worker processes: every sample gets a status.

`grade_many(predictions, golds)` -> [GradeResult(status, extracted)], order-preserving and usable
from any thread; a sample whose verification outlives the wall-clock limit is `timeout` and its
worker is killed and replaced.

What counts as the model's answer, in order:
1. the content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced;
2. otherwise the text after the last "final answer is" / "final answer:" / "answer is" /
   "Answer:" (DAPO's format), up to the end of that line and of that sentence (a period followed
   by a space, or a comma opening a clause: "42, which is ..."; neither counts inside `$...$` or
   braces), with a trailing period, `$`, markdown bold and a leading filler word ("indeed",
   "actually", ...) removed.
Nothing else (in particular not "the last number in the text", which would reward unfinished
reasoning). No such answer: `no_answer`. A gold answer math-verify cannot parse: `bad_gold`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pope_eval.errors import GradingError
from pope_eval.grading_worker import READY

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


def _unescaped(text: str, start: int = 0):
    """(index, character) of `text` from `start`, skipping every backslash and the character it
    escapes (`\\{`, `\\}`, `\\$` are literal): the one scanner behind the brace and sentence rules."""
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        yield i, text[i]
        i += 1


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the `}` closing an already opened `{` (scanning from `start`; `\\{`, `\\}`
    are literal), or None when the text ends first."""
    depth = 1
    for i, ch in _unescaped(text, start):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


# A clause after the answer: "the answer is 6, which is the final answer after 5 steps".
_CLAUSE = re.compile(r",\s+(?:(?:which|since|because|as|but|so|where|while|that is)\b|i\.e\.)",
                     re.IGNORECASE)


def _end_of_sentence(ans: str) -> str:
    """`ans` up to its first sentence end outside math and braces: ". " (so "3.5" and "$1. 5$"
    stay whole) or a comma that opens a clause ("8666, which is ..."; "1, 2, 3" stays whole)."""
    math, depth = False, 0
    for i, ch in _unescaped(ans):
        if ch == "$":
            math = not math
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        elif not math and depth == 0 and (
                (ch == "." and ans[i + 1:i + 2].isspace())
                or (ch == "," and _CLAUSE.match(ans, i))):
            return ans[:i]
    return ans


_FILLER = re.compile(r"^(?:indeed|actually|simply|just|clearly|therefore|thus)\s+", re.IGNORECASE)


def _last_boxed(text: str) -> str | None:
    for start in reversed([m.end() for m in _BOX.finditer(text)]):
        end = _closing_brace(text, start)
        if end is not None and text[start:end].strip():
            return text[start:end].strip()
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
    # "the answer is indeed 12": the filler word is not part of the answer.
    ans = _FILLER.sub("", ans)
    ans = _end_of_sentence(ans).strip()
    ans = ans.rstrip(".").strip()
    if ans.startswith("$") and ans.endswith("$") and len(ans) > 1:
        ans = ans.strip("$").strip()
    return ans or None


def braces_balanced(text: str) -> bool:
    """Unescaped `{` and `}` pair up (`\\{` and `\\}` are literal braces): with one more `}`
    at the end, that one closes the whole text."""
    return _closing_brace(text + "}", 0) == len(text)


# -- verification (in worker processes, pope_eval.grading_worker) -----------------------------
class _Worker:
    """One verification process (`python -m pope_eval.grading_worker`), restarted after it is
    killed for a timeout. A worker that cannot start is a GradingError, never a `timeout`."""

    START_TIMEOUT_S = 120.0  # imports of a fresh worker on a busy 2-core machine
    EXIT_WAIT_S = 5.0  # for the exit code of a worker that did not start

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.proc: subprocess.Popen | None = None
        self._buf = b""
        self._stderr = None

    def _start(self) -> None:
        import pope_eval

        env = dict(os.environ)
        # The worker imports pope_eval from where this process found it, installed or not.
        root = str(Path(pope_eval.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self._stderr = tempfile.TemporaryFile()
        # math-verify's own alarms fire slightly before ours; ours catches real hangs.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pope_eval.grading_worker", str(max(1, int(self.limit)))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            bufsize=0)
        self._buf = b""
        line = self._readline(self.START_TIMEOUT_S)
        if line != READY:
            try:  # a worker that closed its output exits a moment later; a silent one is alive
                code = self.proc.wait(timeout=self.EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                code = None
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace")[-2000:]
            self.kill()
            raise GradingError(
                f"grading worker could not start ({sys.executable} -m pope_eval.grading_worker"
                f"{'' if code is None else f', exit code {code}'}): "
                f"{tail.strip() or 'no output'}")

    def _readline(self, timeout: float) -> str | None:
        """One line from the worker within `timeout` seconds; None on timeout or exit."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            data = os.read(fd, 65536)
            if not data:
                return None  # the worker exited
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=5)
            for stream in (self.proc.stdin, self.proc.stdout):
                stream.close()
        if self._stderr is not None:
            self._stderr.close()
        self.proc = None
        self._stderr = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"null\n")
                self.proc.stdin.flush()
            except OSError:
                pass
        self.kill()

    def run(self, items: list[tuple[str, str]]) -> list[str]:
        """Statuses for items, each under its own wall-clock deadline."""
        out: list[str] = []
        while len(out) < len(items):
            if self.proc is None or self.proc.poll() is not None:
                self.kill()
                self._start()
            rest = items[len(out):]
            try:
                self.proc.stdin.write((json.dumps(rest) + "\n").encode())
                self.proc.stdin.flush()
            except OSError:
                self.kill()
                continue
            for _ in rest:
                line = self._readline(self.limit)
                if line is not None:
                    out.append(json.loads(line))
                    continue
                log.warning("grading: sample exceeded %.1fs; worker replaced", self.limit)
                out.append("timeout")  # the worker hung or died on this item
                self.kill()
                break
        return out


class Grader:
    """A pool of verification workers with a per-sample wall-clock limit (context manager)."""

    def __init__(self, workers: int | None = None, timeout: float = 5.0) -> None:
        import os

        self.workers = workers or min(4, os.cpu_count() or 1)
        self.timeout = timeout
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(self.workers):
            self._idle.put(_Worker(timeout))
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
            if gold is None or not str(gold).strip() or not braces_balanced(str(gold)):
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
            w.stop()

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


def bad_golds(golds: Sequence[str], *, timeout: float = 5.0) -> list[int]:
    """Indices of gold answers math-verify cannot read (empty, unbalanced braces, unparseable).

    A problem with such an answer could never be graded correct and would pass for hard, so
    loaders quarantine it before any generation.
    """
    # Any parseable prediction will do: the gold is parsed (and judged) first.
    grades = grade_many(["\\boxed{0}"] * len(golds), [str(g) for g in golds], timeout=timeout)
    return [i for i, g in enumerate(grades) if g.status == "bad_gold"]
