"""top_k and min_p: validated once, recorded only when set, and honoured by the engines
(the OpenAI-compatible client's request body: tests/pope_eval/test_openai_engine.py)."""

import pytest

from pope_eval.engines import GenerationRequest, Sampling
from pope_eval.errors import ConfigError
from pope_eval.prompts import problem_messages

PROBLEMS = ["What is 12 + 30?", "Compute 7 * 8.", "Name a prime number above 10."]


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_k=0), "--top-k: must be an integer >= 1"),
    (dict(top_k=2.5), "--top-k"),
    (dict(min_p=1.0), r"--min-p: must be in \[0, 1\)"),
    (dict(min_p=-0.1), "--min-p"),
])
def test_bad_filters_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Sampling(**kwargs)


def test_filters_enter_the_record_only_when_set():
    # A run folder recorded before top_k/min_p existed has no such keys: unset, they stay absent.
    assert "top_k" not in Sampling().to_dict() and "min_p" not in Sampling().to_dict()
    assert Sampling(top_k=20, min_p=0.05).to_dict()["top_k"] == 20
    assert Sampling(top_k=20, min_p=0.05).to_dict()["min_p"] == 0.05


def _requests(sampling: Sampling, n: int = 3) -> list[GenerationRequest]:
    return [GenerationRequest(messages=tuple(problem_messages(p)), n=n, sampling=sampling,
                              seed=7 + i) for i, p in enumerate(PROBLEMS)]


def _texts(results) -> list[list[str]]:
    return [[s.text for s in r.samples] for r in results]


@pytest.mark.slow
@pytest.mark.parametrize("engine_fixture", ["hf_engine",
                                            pytest.param("vllm_engine", marks=pytest.mark.vllm)])
def test_top_k_1_and_high_min_p_are_greedy(request, engine_fixture):
    engine = request.getfixturevalue(engine_fixture)

    def texts(**filters) -> list[list[str]]:
        temperature = 1.5 if filters else 0
        return _texts(engine.generate(_requests(
            Sampling(max_tokens=16, temperature=temperature, **filters), n=1)))

    greedy = texts()
    assert texts(top_k=1) == greedy
    # min_p 0.99: only tokens nearly as likely as the best survive, i.e. the best one here.
    assert texts(min_p=0.99) == greedy


@pytest.mark.slow
def test_transformers_top_k_changes_samples_and_is_seeded(hf_engine):
    wide = Sampling(max_tokens=24, temperature=1.5, seed=3)
    narrow = Sampling(max_tokens=24, temperature=1.5, seed=3, top_k=3)
    a = _texts(hf_engine.generate(_requests(narrow)))
    b = _texts(hf_engine.generate(_requests(narrow)))
    assert a == b  # same seeds, same samples
    assert a != _texts(hf_engine.generate(_requests(wide)))


def test_the_sampling_line_names_the_filters_only_when_set():
    from pope_eval.engines.base import describe_sampling

    assert describe_sampling(Sampling(temperature=0.7, top_p=0.8).to_dict()) == (
        "temperature 0.7, top_p 0.8, max_tokens 256, seed 0")
    assert describe_sampling(Sampling(top_k=20, min_p=0.05).to_dict()) == (
        "temperature 1.0, top_p 1.0, top_k 20, min_p 0.05, max_tokens 256, seed 0")
