"""Grading: real answer formats, extraction rules, adversarial inputs under a hard time limit."""

import json
import threading
import time

import pytest

from pope_eval.benchmarks import bundled_file
from pope_eval.grading import Grader, extract_answer, grade_many


def _answers(name):
    return {r["id"]: r["answer"] for r in map(json.loads, bundled_file(name).read_text().splitlines())}


AIME = _answers("aime2025")
HMMT = _answers("hmmt_feb_2025")

CASES = [
    # (gold, prediction, verdict)
    (AIME["aime2025-I-1"], f"Summing the bases gives \\boxed{{{AIME['aime2025-I-1']}}}.", "correct"),
    (AIME["aime2025-I-1"], "\\boxed{71}", "wrong"),
    (HMMT["hmmt-feb-2025-10"], "\\boxed{\\frac{-1-\\sqrt{17}}{2}, \\frac{-1+\\sqrt{17}}{2}}", "correct"),
    (HMMT["hmmt-feb-2025-1"], f"so \\boxed{{{HMMT['hmmt-feb-2025-1']}}}", "correct"),
    ("\\frac{1}{2}", "The probability is \\boxed{0.5}", "correct"),
    ("\\frac{14}{3}", "\\boxed{\\dfrac{14}{3}}", "correct"),
    ("2\\sqrt{3}", "\\boxed{\\sqrt{12}}", "correct"),
    ("\\sqrt{2}", "\\boxed{\\sqrt{3}}", "wrong"),
    ("(-\\infty, 2]", "\\boxed{(-\\infty,2]}", "correct"),
    ("(-\\infty, 2]", "\\boxed{(-\\infty,2)}", "wrong"),
    ("\\{1, 2, 3\\}", "\\boxed{\\{3,2,1\\}}", "correct"),
    ("10", "\\boxed{10\\text{ cm}}", "correct"),
    ("42", "Answer: 42", "correct"),
    ("42", "so the final answer is $42$.", "correct"),
    ("8666", "So the answer is indeed 8666.", "correct"),
    ("8666", "The answer is actually 8665.", "wrong"),
    ("8666", "The answer is indeed 8666, which is the solution to the original problem.", "correct"),
    ("6", "In this case, the answer is 6, which is the final answer after 5 steps.", "correct"),
    ("42", "The final answer is $42$. I hope it is correct.", "correct"),
    ("42", "I think it is about forty.", "no_answer"),
    ("42", "", "no_answer"),
    ("", "\\boxed{1}", "bad_gold"),
]


@pytest.mark.parametrize("gold,pred,verdict", CASES)
def test_real_answer_formats(gold, pred, verdict):
    assert grade_many([pred], [gold])[0].status == verdict


def test_batch_preserves_order_and_reports_extracted_answers():
    golds = [c[0] for c in CASES]
    preds = [c[1] for c in CASES]
    results = grade_many(preds, golds)
    assert [r.status for r in results] == [c[2] for c in CASES]
    assert results[0].extracted == AIME["aime2025-I-1"]


def test_extraction_rules():
    assert extract_answer("\\boxed{1} then \\boxed{\\frac{2}{3}}") == "\\frac{2}{3}"
    assert extract_answer("\\boxed{ {a}+{b} }") == "{a}+{b}"
    assert extract_answer("**Answer:** 17.") == "17"
    assert extract_answer("The answer is 3, wait, the final answer is 5") == "5"
    assert extract_answer("no answer here") is None
    # The answer ends with its sentence, but not inside math, braces or a decimal.
    assert extract_answer("The answer is 3.5. Next we check it.") == "3.5"
    assert extract_answer("The answer is $\\{1, 2\\}$, which has two elements") == "\\{1, 2\\}"
    assert extract_answer("The answer is 1, 2, 3") == "1, 2, 3"
    assert extract_answer("The answer is $x. y$ then") == "$x. y$ then"
    assert extract_answer("The answer is 19, as we found it, so 19") == "19"
    assert extract_answer("The answer is 7, i.e. seven") == "7"
    assert extract_answer("\\boxed{unclosed") is None


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError):
        grade_many(["a"], ["1", "2"])


ADVERSARIAL = [
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
    "x" * 200_000,
    "\\boxed{" + "1+" * 100_000 + "1}",
]


@pytest.mark.parametrize("pred", ADVERSARIAL, ids=["tower", "braces", "200KB", "long-sum"])
def test_adversarial_inputs_return_within_the_limit_and_the_pool_survives(pred):
    with Grader(workers=1, timeout=2.0) as g:
        g.grade_many(["\\boxed{1}"], ["1"])  # worker started
        t = time.monotonic()
        r = g.grade_many([pred], ["3"])[0]
        assert time.monotonic() - t < 2.0 + 1.0
        assert r.status in ("timeout", "no_answer", "wrong")
        assert g.grade_many(["\\boxed{7}"], ["7"])[0].status == "correct"


def test_power_tower_times_out_and_pool_keeps_grading():
    with Grader(workers=2, timeout=2.0) as g:
        preds = ["\\boxed{9^{9^{9^{9}}}}", "\\boxed{4}", "\\boxed{5}"]
        res = g.grade_many(preds, ["3", "4", "6"])
        assert [r.status for r in res] == ["timeout", "correct", "wrong"]


def test_shared_pool_is_usable_from_threads():
    out = {}

    def work(i):
        out[i] = [r.status for r in grade_many([f"\\boxed{{{i}}}", "\\boxed{0}"], [str(i), "1"])]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {i: ["correct", "wrong"] for i in range(2, 6)}


def test_the_worker_module_does_not_import_the_grader():
    """One direction only: pope_eval.grading starts and reads the worker; the worker process
    needs math-verify and its own module, never the grader's pool."""
    import subprocess
    import sys

    code = ("import sys, pope_eval.grading_worker as w; "
            "print(w.verify_one('4', '4', 5), 'pope_eval.grading' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["correct", "False"]
