"""Segments: exact re-joining, no splits inside math on real MATH-500 solutions, fallback < 1/4."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pope_data.segments import fallback_prefix, segment
from pope_eval.datafiles import iter_rows
from pope_eval.errors import ConfigError, DataError


def _math500(data_dir):
    return [r["solution"] for _, r in iter_rows(data_dir / "math500.jsonl")]


@pytest.mark.parametrize("mode", ["steps", "sentences"])
def test_prefixes_rejoin_to_the_original_on_math500(data_dir, mode):
    for sol in _math500(data_dir):
        seg = segment(sol, mode)
        assert "".join(seg.segments()) == sol
        assert seg.prefix(len(seg)) == sol and seg.prefix(0) == ""
        fr = [seg.fraction(i) for i in range(len(seg) + 1)]
        assert fr == sorted(fr) and fr[-1] == 1.0
        for i in range(len(seg) + 1):
            assert sol.startswith(seg.prefix(i))


_MATH = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]|\$(?:\\.|[^$\\])+\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}",
                   re.DOTALL)


def test_sentences_never_cut_inside_math_on_math500(data_dir):
    cuts = 0
    for sol in _math500(data_dir):
        spans = [(m.start(), m.end()) for m in _MATH.finditer(sol)]
        for end in segment(sol, "sentences").ends[:-1]:
            cuts += 1
            assert not any(a < end < b for a, b in spans), (sol, end)
    assert cuts > 300  # the splitter really splits (382 cuts in the 150 solutions)


def test_sentence_rules():
    text = "We use i.e. the rule. Take $x = 1.5$. Then Fig. 2 shows it. Done."
    assert segment(text, "sentences").segments() == [
        "We use i.e. the rule. ", "Take $x = 1.5$. ", "Then Fig. 2 shows it. ", "Done."]


def test_steps_split_lines_or_paragraphs():
    assert segment("a\nb\nc", "steps").segments() == ["a\n", "b\n", "c"]
    assert segment("a\nb\n\nc", "steps").segments() == ["a\nb\n\n", "c"]


def test_token_chunks(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Let $x$ be the number of apples. Then 3x + 2 = 11, so x = 3. " * 3
    seg = segment(text, "tokens", tokenizer=tok, chunk_tokens=8)
    assert len(seg) > 3 and "".join(seg.segments()) == text


def test_bad_input():
    with pytest.raises(DataError, match="empty solution"):
        segment("   ")
    with pytest.raises(ConfigError, match="unknown"):
        segment("x", "words")
    with pytest.raises(ConfigError, match="tokenizer"):
        segment("x", "tokens")
    with pytest.raises(ConfigError):
        segment("a\nb").prefix(3)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=400).filter(lambda s: s.strip()), st.integers(0, 10**6))
def test_fallback_is_always_shorter_than_a_quarter(solution, seed):
    text, frac = fallback_prefix(solution, seed)
    assert solution.startswith(text)
    assert len(text) < len(solution) / 4 and frac == len(text) / len(solution)


def test_fallback_is_seeded_and_nonempty_on_real_solutions(data_dir):
    sols = [s for s in _math500(data_dir) if len(s) > 200][:50]
    for i, s in enumerate(sols):
        a = fallback_prefix(s, f"p{i}")
        assert a == fallback_prefix(s, f"p{i}") and a[0] and a[1] < 0.25
