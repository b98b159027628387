"""`pope-eval` on a new user's mistakes: each is one line, fast, before any model is loaded.

Column typos, a run folder in use, a build folder given to compare, a changed config, an
unwritable model cache, and library noise without -v; each through typer's CliRunner.
"""

import json
import logging
import os

import pytest
from pope_cli.data import app as data_app
from pope_cli.eval import app as eval_app
from typer.testing import CliRunner

from pope_eval.engines import Engine, GenerationResult, Sample
from pope_eval.runinfo import lock_run_dir

runner = CliRunner()


def text(res) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def _never(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was reached: the checks should have failed first")
    return fail


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model's tokenizer or building the engine fails the test: the error under
    test must come before either."""
    import pope_eval.engines.factory
    import pope_eval.models

    monkeypatch.setattr(pope_eval.models, "inspect_model", _never("inspect_model"))
    monkeypatch.setattr(pope_eval.engines.factory, "make_engine", _never("make_engine"))


class Boxed(Engine):
    """Answers 4 to everything."""

    def _generate(self, requests, progress):
        return [GenerationResult(r, tuple(Sample("\\boxed{4}", 3, "stop") for _ in range(r.n)))
                for r in requests]


def _data(tmp_path, rows=None):
    f = tmp_path / "problems.jsonl"
    rows = rows or [{"id": "a", "problem": "What is 2 + 2?", "answer": "4", "final": "5"},
                    {"id": "b", "problem": "What is 1 + 3?", "answer": "4", "final": "6"}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


# -- a --columns typo is an error, whatever else the file holds --------------------------------
def test_pass_at_k_column_typo_names_the_column_and_the_columns_found(tmp_path, no_model):
    f, out = _data(tmp_path), tmp_path / "run"
    res = runner.invoke(eval_app, ["pass-at-k", "--data", str(f), "--columns", "answer=fianl",
                                   "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert text(res) == (f"error: {f}: --columns answer=fianl: no such column in any row "
                         "(columns found: answer, final, id, problem)")
    assert not out.exists()


def test_build_column_typo_names_the_column_and_the_columns_found(tmp_path, no_model):
    f, out = _data(tmp_path), tmp_path / "build"
    res = runner.invoke(data_app, ["build", "--source", "generic", "--path", str(f),
                                   "--columns", "answer=fianl,problem=problem", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert (f"{f}: --columns answer=fianl: no such column in any row (columns found: answer, "
            "final, id, problem)") in text(res)
    assert not out.exists()


# -- checks come before the model: missing file, --out a file, changed config, folder in use ---
def test_bad_input_fails_before_the_model_is_loaded(tmp_path, no_model):
    missing = tmp_path / "missing.jsonl"
    res = runner.invoke(eval_app, ["pass-at-k", "--data", str(missing),
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert text(res) == f"error: {missing}: no such file"

    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    res = runner.invoke(eval_app, ["pass-at-k", "--data", str(_data(tmp_path)),
                                   "--out", str(blocker / "run")])
    assert res.exit_code == 2, res.output
    assert text(res) == (f"error: --out {blocker / 'run'}: is under {blocker}, which is a file, "
                         "not a folder")
    assert blocker.read_text() == "not a folder" and not (tmp_path / "run").exists()


def test_a_changed_config_is_refused_before_the_model_is_loaded(tmp_path, monkeypatch):
    import pope_eval.engines.factory
    import pope_eval.models

    f, out = _data(tmp_path), tmp_path / "run"
    args = ["pass-at-k", "--data", str(f), "--engine", "transformers", "--out", str(out),
            "--max-tokens", "8"]
    monkeypatch.setattr(pope_eval.models, "inspect_model", lambda engine: (None, None))
    monkeypatch.setattr(pope_eval.engines.factory, "make_engine", lambda config: Boxed())
    first = runner.invoke(eval_app, [*args, "--n", "2"])
    assert first.exit_code == 0, first.output
    assert json.loads((out / "summary.json").read_text())["pass_at_k"]["1"]["estimate"] == 1.0

    monkeypatch.setattr(pope_eval.models, "inspect_model", _never("inspect_model"))
    monkeypatch.setattr(pope_eval.engines.factory, "make_engine", _never("make_engine"))
    res = runner.invoke(eval_app, [*args, "--n", "3"])
    assert res.exit_code == 2, res.output
    assert f"error: {out} holds a run with another config" in text(res)
    assert text(res).endswith("Changed: n: 2 -> 3")
    assert "resume" not in text(res).lower()


def test_a_second_run_into_a_folder_in_use_fails_at_once_naming_the_holder(tmp_path, no_model):
    out = tmp_path / "run"
    with lock_run_dir(out, "pope-eval pass-at-k"):
        res = runner.invoke(eval_app, ["pass-at-k", "--data", str(_data(tmp_path)),
                                       "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert f"error: {out} is in use by process {os.getpid()} on " in text(res)
    assert "wait for it to end or use another --out folder" in text(res)
    assert not (out / "run_config.json").exists()


def test_the_lock_is_held_for_the_whole_run(tmp_path, monkeypatch):
    import pope_eval.engines.factory
    import pope_eval.models
    from pope_eval.errors import ConfigError

    out = tmp_path / "run"
    seen = []

    class Probing(Boxed):
        def _generate(self, requests, progress):
            # While the run generates, a second run into its folder is refused.
            with pytest.raises(ConfigError, match=f"{out} is in use by process {os.getpid()}"):
                lock_run_dir(out).acquire()
            seen.append(len(requests))
            return super()._generate(requests, progress)

    monkeypatch.setattr(pope_eval.models, "inspect_model", lambda engine: (None, None))
    monkeypatch.setattr(pope_eval.engines.factory, "make_engine", lambda config: Probing())
    res = runner.invoke(eval_app, ["pass-at-k", "--data", str(_data(tmp_path)), "--n", "1",
                                   "--engine", "transformers", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert seen == [2]
    with lock_run_dir(out, "after"):  # released at the end
        pass


# -- compare --------------------------------------------------------------------------------
def test_compare_with_a_build_folder_names_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({
        "model": "m", "pass_at_k": {"1": {"estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6}}}))
    build = tmp_path / "pope-out"
    build.mkdir()
    (build / "summary.json").write_text(json.dumps({"out": str(build), "problems": 16,
                                                    "hard": 16, "guided": 15}))
    res = runner.invoke(eval_app, ["compare", str(run), str(build),
                                   "--plot", str(tmp_path / "c.png")])
    assert res.exit_code == 2, res.output
    assert text(res) == (f"error: {build}: not a finished pope-eval pass-at-k run (its "
                         "summary.json holds no pass@k results)")
    assert "Traceback" not in res.output and not (tmp_path / "c.png").exists()


# -- the model cache -------------------------------------------------------------------------
def test_an_unwritable_model_cache_is_one_line_naming_it(tmp_path, monkeypatch):
    import pope_eval.engines.factory

    monkeypatch.setattr(pope_eval.engines.factory, "make_engine", _never("make_engine"))
    blocker = tmp_path / "cache-file"
    blocker.write_text("a file where the cache should be")
    res = runner.invoke(eval_app, ["pass-at-k", "--data", str(_data(tmp_path)),
                                   "--model", "smollm2-135m", "--engine", "transformers",
                                   "--cache-dir", str(blocker / "pope"),
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert text(res) == (f"error: model cache (--cache-dir / POPE_CACHE_DIR) "
                         f"{blocker / 'pope' / 'models'}: is under {blocker}, which is a file, "
                         "not a folder")
    assert not (tmp_path / "run").exists()


# -- library noise stays behind -v -----------------------------------------------------------
LIBRARY_LOGGERS = ("vllm", "trl", "transformers", "huggingface_hub", "datasets", "torch")
QUIET_ENV = ("VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS",
             "HF_DATASETS_DISABLE_PROGRESS_BARS")


@pytest.fixture
def clean_env(monkeypatch):
    """The quiet variables unset, and unset again after the test."""
    for key in QUIET_ENV:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


@pytest.fixture
def restore_logging():
    """The root logger and the library loggers as they were before the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level
                 for name in (*LIBRARY_LOGGERS, "pope_cli", "pope_data", "pope_eval", "pope_train")}
    yield
    root.handlers[:], root.level = handlers, level
    for name, lib_level in libraries.items():
        logging.getLogger(name).setLevel(lib_level)


def test_without_v_library_logs_are_off_and_the_users_settings_kept(clean_env, restore_logging,
                                                                   monkeypatch):
    from pope_cli.common import setup_logging

    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")  # the user's own choice wins
    setup_logging(False)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    for name in LIBRARY_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.WARNING)
    assert logging.getLogger("pope_eval.evaluate").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("pope_eval.evaluate").isEnabledFor(logging.INFO)

    # -v: pope's and the engines' INFO, the other libraries' warnings, nobody's DEBUG.
    setup_logging(True)
    for name in ("vllm", "trl", "pope_eval.evaluate", "pope_data.build"):
        assert logging.getLogger(name).isEnabledFor(logging.INFO)
    for name in ("transformers", "huggingface_hub", "datasets", "torch", "matplotlib"):
        assert logging.getLogger(name).isEnabledFor(logging.WARNING)
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
    for name in (*LIBRARY_LOGGERS, "pope_eval.evaluate", "matplotlib.font_manager"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG)
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"  # bars stay off with -v too


@pytest.mark.slow
def test_transformers_run_without_v_shows_no_loading_bar(tmp_path, tiny_model_dir, clean_env):
    import transformers

    f = _data(tmp_path, [{"id": "a", "problem": "What is 2 + 3?", "answer": "5"}])
    res = runner.invoke(eval_app, ["pass-at-k", "--data", str(f), "--model", "smollm2-135m",
                                   "--engine", "transformers", "--n", "1", "--max-tokens", "4",
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert "Loading weights" not in res.output and "it/s" not in res.output
    assert "pass@k: 1/1 problems" in res.output  # our own progress line still shows
