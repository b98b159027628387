"""`pope-train run` built from the backend registry and the recipe table: help, refusals, a new backend.

No model is loaded: every run here is refused, a dry run, or a fake backend's.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

import pope_train.backends
from pope_eval.options import flag_of, meta, option
from pope_eval.registry import Registry
from pope_train.backends import BACKENDS, Outcome, Plan, Progress
from pope_train.recipes import RECIPES, Recipe

runner = CliRunner()


def flat(text: str) -> str:
    """The text with rich's panel borders and line wraps taken out."""
    return " ".join(text.replace("│", " ").split())


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of an options dataclass that are command-line options."""
    return [f for f in dataclasses.fields(cls) if meta(f)["cli"]]


@pytest.fixture
def train_app() -> typer.Typer:
    from pope_cli.train import app

    return app


def test_run_help_names_config_and_overrides_plainly_and_lists_the_configs(train_app):
    res = runner.invoke(train_app, ["run", "--help"], prog_name="pope-train",
                        env={"COLUMNS": "160"})
    assert res.exit_code == 0
    assert "Usage: pope-train run [OPTIONS] CONFIG [KEY=VALUE]..." in res.output
    assert f"Training config: {', '.join(RECIPES)}" in flat(res.output)
    for line in res.output.splitlines():
        assert not line.rstrip(" │").endswith(" ."), line
    for backend in BACKENDS.values():
        assert f"Options of --backend {backend.name}" in res.output
        for f in cli_fields(backend.options):
            assert flag_of(f) in res.output
    assert "[default: 20]" in flat(res.output)  # --max-steps, from TrlOptions
    # Options every backend takes from one declaration have a panel of their own.
    assert "Options of configs with an SFT stage: sft_then_rl" in res.output


def _a_value(f: dataclasses.Field) -> str:
    """A value the option parses (its default where it has one)."""
    if f.default not in (None, ()):
        return str(f.default)
    hint = str(f.type)
    return "3" if "int" in hint else "0.5" if "float" in hint else "x"


def _refusal_cases() -> list[tuple[str, str, str, str]]:
    """(chosen backend, flag, value, backend owning the flag) for every option of every backend."""
    cases = []
    for owner in BACKENDS.values():
        for f in cli_fields(owner.options):
            value = _a_value(f)
            for chosen in BACKENDS.values():
                mine = {flag_of(g) for g in cli_fields(chosen.options)}
                if chosen is not owner and flag_of(f) not in mine:
                    cases.append((chosen.name, flag_of(f), value, owner.name))
    return cases


@pytest.mark.parametrize("chosen, flag, value, owner", _refusal_cases())
def test_an_option_of_another_backend_is_refused_naming_its_backend(train_app, tmp_path, chosen,
                                                                    flag, value, owner):
    res = runner.invoke(train_app, ["run", "pope", "--model", "smollm2-135m", "--backend", chosen,
                                    "--export", str(tmp_path), flag, value])
    assert res.exit_code == 2
    assert (f"error: {flag}: only for --backend {owner} (this run uses --backend {chosen})"
            in flat(res.output))


def test_overrides_are_refused_by_a_backend_that_takes_none(train_app, tmp_path):
    res = runner.invoke(train_app, ["run", "hard_only", "--model", "m", "--backend", "trl",
                                    "--export", str(tmp_path), "trainer.total_epochs=3",
                                    "--max-steps", "2"])
    assert res.exit_code == 2
    assert ("verl overrides (key=value): only for --backend verl (this run uses --backend trl)"
            in flat(res.output))


def test_configs_table_comes_from_the_recipes(train_app):
    res = runner.invoke(train_app, ["configs"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    for recipe in RECIPES.values():
        row = next(ln for ln in lines if ln.startswith(f"│ {recipe.name} "))
        assert ", ".join(recipe.subsets) in row
    clip = next(ln for ln in lines if ln.startswith("│ clip_higher "))
    assert "yes (epsilon=0.2, epsilon_high=0.28)" in clip
    assert ("pass_at_k on trl: TRL has no pass@k advantage estimator (pope_train.advantages is a "
            "verl plug-in); run it with --backend verl") in flat(res.stdout)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FakeOptions:
    knob: int = option(3, "A fake backend's own option.")
    seed: int = option(0, "Shared with --backend trl (the same flag and default).")


class FakeBackend:
    """A backend written as one class: what `pope-train run --backend fake` needs of it."""

    name = "fake"
    summary = "for the tests"
    options = FakeOptions
    overrides = None

    def plan(self, recipe: Recipe, *, model: str, export: str | None,
             train_files: tuple[str, ...], options: FakeOptions,
             overrides: tuple[str, ...]) -> Plan:
        return Plan(backend=self.name, recipe=recipe.name, lines=(("knob", str(options.knob)),),
                    steps=2, detail={"recipe": recipe.name, "model": model, "knob": options.knob,
                            "seed": options.seed})

    def dry_run(self, plan: Plan) -> str:
        return json.dumps(plan.detail)

    def train(self, plan: Plan, progress: Progress | None = None) -> Outcome:
        for step in (1, 2):
            progress(step, 2, f"fake step {step}")
        return Outcome(exit_code=0, lines=(f"fake trained {plan.recipe}", "second line"))


@pytest.fixture
def app_with_fake_backend(monkeypatch) -> Iterator[typer.Typer]:
    """pope-train built with one more registered backend, as a new backend file would add it."""
    import pope_cli.train

    registry: Registry = Registry("backend", option="--backend")
    for name, backend in BACKENDS.items():
        registry.add(name, backend)
    registry.add(FakeBackend.name, FakeBackend())
    monkeypatch.setattr(pope_train.backends, "BACKENDS", registry)
    yield importlib.reload(pope_cli.train).app
    monkeypatch.undo()
    importlib.reload(pope_cli.train)


def test_a_registered_backend_gets_its_options_dry_run_and_progress(app_with_fake_backend):
    app = app_with_fake_backend
    res = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "160"})
    assert "Options of --backend fake" in res.output and "--knob" in res.output
    assert "fake: for the tests" in flat(res.output)
    res = runner.invoke(app, ["run", "pope", "--model", "m", "--backend", "fake", "--knob", "7",
                              "--seed", "5", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"recipe": "pope", "model": "m", "knob": 7, "seed": 5}
    assert "knob: 7" in res.output
    res = runner.invoke(app, ["run", "pope", "--model", "m", "--backend", "fake"])
    assert res.exit_code == 0, res.output
    assert "done: fake trained pope" in res.output and "second line" in res.output
    res = runner.invoke(app, ["run", "pope", "--model", "m", "--backend", "trl", "--knob", "7"])
    assert res.exit_code == 2
    assert "--knob: only for --backend fake (this run uses --backend trl)" in flat(res.output)
    res = runner.invoke(app, ["run", "pope", "--model", "m", "--backend", "fake", "--nnodes", "2",
                              "x=1"])
    assert res.exit_code == 2
    assert ("--nnodes, verl overrides (key=value): only for --backend verl (this run uses "
            "--backend fake)") in flat(res.output)
    res = runner.invoke(app, ["run", "pope", "--model", "m", "--seed", "5"])
    assert res.exit_code == 2
    assert ("--seed: only for --backend trl or --backend fake (this run uses --backend verl)"
            in flat(res.output))
