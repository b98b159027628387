"""--vllm-compile: vLLM compiles the model on GPUs only by default; a bad choice is one line.

The real engines of the session (conftest's `vllm_engine`, `vllm_server`) start with the default,
so on this CPU machine they are eager: test_engines.py checks the engine's own config.
"""

from __future__ import annotations

import pytest
from pope_cli.data import app as data_app
from pope_cli.eval import app as eval_app
from typer.testing import CliRunner

from pope_eval.engines import EngineConfig
from pope_eval.engines.vllm_engine import compiles, server_command
from pope_eval.errors import ConfigError

runner = CliRunner()


@pytest.mark.parametrize("choice,on_cpu,expected", [
    ("auto", True, False), ("auto", False, True), ("on", True, True), ("on", False, True),
    ("off", True, False), ("off", False, False)])
def test_auto_compiles_on_gpus_only_and_on_or_off_is_the_users_choice(choice, on_cpu, expected):
    assert compiles(choice, on_cpu) is expected


@pytest.mark.parametrize("app,args", [
    (data_app, ["build", "--engine", "vllm"]),
    (eval_app, ["pass-at-k", "--engine", "vllm"]),
])
def test_an_unknown_choice_is_one_line_before_anything_is_written(tmp_path, app, args):
    out = tmp_path / "o"
    res = runner.invoke(app, [*args, "--vllm-compile", "fast", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert [x for x in res.output.splitlines() if x.strip()] == [
        "error: --vllm-compile: unknown 'fast'; choose one of auto, on, off"]
    assert not out.exists()


def test_the_choice_is_recorded_but_a_resumed_run_may_change_it():
    a = EngineConfig(engine="vllm", vllm_compile="on")
    b = EngineConfig(engine="vllm")
    assert a.to_dict()["vllm_compile"] == "on" and b.to_dict()["vllm_compile"] == "auto"
    assert a.fingerprint() == b.fingerprint()
    with pytest.raises(ConfigError, match="--vllm-compile"):
        EngineConfig(engine="vllm", vllm_compile="yes")


def test_the_server_command_is_eager_unless_compiling_is_chosen(tiny_model_dir):
    from pope_eval.engines.vllm_engine import cuda_available

    default = server_command("smollm2-135m", port=1)
    assert ("--enforce-eager" in default) is (not cuda_available())
    assert "--enforce-eager" not in server_command("smollm2-135m", port=1, vllm_compile="on")
    assert "--enforce-eager" in server_command("smollm2-135m", port=1, vllm_compile="off")
