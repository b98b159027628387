"""Typer options generated from option dataclasses: each option is declared once, on its config.

`@config_options(config=BuildConfig)` on a command replaces its `config` parameter by one typer
option per field (help, flag and default from the field) and hands the command the built config.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from pope_eval.errors import ConfigError
from pope_eval.options import flag_of, meta
from pope_eval.presets import PRESETS, record

_CTX = "_typer_ctx"


@dataclass
class _Leaf:
    """One command-line option and the config fields (paths) its value goes to."""

    param: str
    flag: str
    annotation: Any
    default: Any
    help: str
    names: list[str] = field(default_factory=list)
    paths: list[tuple[str, ...]] = field(default_factory=list)
    to_value: Callable[[Any], Any] = lambda v: v


@dataclass
class _Group:
    """A nested config value built from its leaves (and, for `inherit`, from a sibling)."""

    path: tuple[str, ...]
    cls: type
    default: Any
    none_unless: str | None = None
    inherit: str | None = None


def _fields(cls: type) -> list[tuple[dataclasses.Field, type]]:
    if hasattr(cls, "cli_fields"):
        return cls.cli_fields()
    return [(f, cls) for f in dataclasses.fields(cls)]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=False)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _dataclass_type(tp: Any) -> type | None:
    inner, _ = _strip_optional(tp)
    return inner if isinstance(inner, type) and dataclasses.is_dataclass(inner) else None


def _help(m: dict[str, Any]) -> str:
    text = m["help"]
    return text() if callable(text) else text


class _Spec:
    """The flattened options of one config parameter."""

    def __init__(self, name: str, cls: type, default: Any) -> None:
        self.name = name
        self.cls = cls
        self.default = default
        self.leaves: dict[str, _Leaf] = {}  # by flag
        self.groups: list[_Group] = []
        self._walk(cls, default, prefix="", path=(), only=None)

    def _walk(self, cls: type, default: Any, *, prefix: str, path: tuple[str, ...],
              only: tuple[str, ...] | None, optional_field: str | None = None) -> None:
        hints_by_cls: dict[type, dict[str, Any]] = {}
        for f, owner in _fields(cls):
            m = meta(f)
            if not m["cli"] or (only is not None and f.name not in only):
                continue
            hints = hints_by_cls.setdefault(owner, _hints(owner))
            tp = hints[f.name]
            sub = _dataclass_type(tp)
            value = getattr(default, f.name) if default is not None else _field_default(f)
            if sub is not None:
                group = _Group(path + (f.name,), sub, value, m["none_unless"], m["inherit"])
                self.groups.append(group)
                self._walk(sub, value, prefix=prefix + (m["prefix"] or ""),
                           path=path + (f.name,), only=m["only"],
                           optional_field=m["none_unless"])
                continue
            if f.name == optional_field:
                value = None
            self._leaf(f, m, tp, value, prefix, path + (f.name,),
                       force_optional=f.name == optional_field)

    def _leaf(self, f: dataclasses.Field, m: dict[str, Any], tp: Any, default: Any, prefix: str,
              path: tuple[str, ...], force_optional: bool) -> None:
        flag = flag_of(f, prefix)
        if flag in self.leaves:
            leaf = self.leaves[flag]
            if leaf.default != default:
                raise ValueError(f"{flag}: declared twice with different defaults "
                                 f"({leaf.default!r} and {default!r})")
            leaf.paths.append(path)
            return
        inner, optional = _strip_optional(tp)
        names = [flag]
        to_value: Callable[[Any], Any] = lambda v: v  # noqa: E731
        cli_default = default
        if m["parse"] is not None:
            # Typed as text on the command line and parsed by the field's own parser.
            annotation = str | None
            cli_default = None
            to_value = lambda v, d=default, p=m["parse"]: d if v is None else p(v)  # noqa: E731
        elif inner is bool and not optional:
            names = [flag if not default else f"{flag}/--no-{flag[2:]}"]
            annotation: Any = bool
        elif typing.get_origin(inner) is tuple:
            # Repeated option: `--endpoint A --endpoint B`; not given = the declared default.
            (item, *_rest) = typing.get_args(inner)
            annotation = list[item] | None
            declared = default
            cli_default = None
            to_value = lambda v, d=declared: d if v is None else tuple(v)  # noqa: E731
        else:
            annotation = inner | None if (optional or force_optional) else inner
            if inner is float:
                # click reads "nan" and "inf" as floats: no float option takes them.
                to_value = functools.partial(_finite, flag)
        if m["short"]:
            names.append(m["short"])
        self.leaves[flag] = _Leaf(param=flag[2:].replace("-", "_"), flag=flag,
                                  annotation=annotation, default=cli_default, help=_help(m),
                                  names=names, paths=[path], to_value=to_value)

    def parameters(self) -> list[inspect.Parameter]:
        params = []
        for leaf in self.leaves.values():
            option = typer.Option(*leaf.names, help=leaf.help or None)
            params.append(inspect.Parameter(leaf.param, inspect.Parameter.KEYWORD_ONLY,
                                            default=leaf.default,
                                            annotation=Annotated[leaf.annotation, option]))
        return params

    def build(self, values: dict[str, Any], preset: dict[str, Any] | None = None) -> Any:
        """The config from parsed option values, with `preset` values (by parameter name, final
        values) where the user gave none; errors are the configs' own ConfigErrors."""
        changes: dict[tuple[str, ...], dict[str, Any]] = {}
        preset = preset or {}
        for leaf in self.leaves.values():
            value = (preset[leaf.param] if leaf.param in preset
                     else leaf.to_value(values[leaf.param]))
            for path in leaf.paths:
                changes.setdefault(path[:-1], {})[path[-1]] = value
        return self._make((), self.cls, self.default, changes)

    def _make(self, path: tuple[str, ...], cls: type, default: Any,
              changes: dict[tuple[str, ...], dict[str, Any]]) -> Any:
        mine = dict(changes.get(path, {}))
        siblings: dict[str, Any] = {}
        for group in [g for g in self.groups if g.path[:-1] == path]:
            # Plain groups first: an inheriting group starts from its built sibling.
            if group.inherit is None:
                siblings[group.path[-1]] = self._make(group.path, group.cls, group.default, changes)
        for group in [g for g in self.groups if g.path[:-1] == path and g.inherit is not None]:
            given = changes.get(group.path, {})
            if group.none_unless and given.get(group.none_unless) is None:
                siblings[group.path[-1]] = None
                continue
            base = siblings.get(group.inherit) or getattr(default, group.inherit)
            siblings[group.path[-1]] = dataclasses.replace(base, **given)
        mine.update(siblings)
        if default is None:
            return cls(**mine)
        return dataclasses.replace(default, **mine)


def _finite(flag: str, value: Any) -> Any:
    """A float option's value; NaN or an infinity is a ConfigError naming the flag."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{flag}: must be a finite number, got {value}")
    return value


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def given_on_command_line(ctx: typer.Context, param: str) -> bool:
    """Whether the user typed this option (or set its environment variable), not its default."""
    source = ctx.get_parameter_source(param)
    return getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT")


def preset_values(ctx: typer.Context, name: str | None, command: str,
                  flags: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Values of preset `name` for the options (flag -> parameter name) the user did not give
    in the command `ctx` runs: ({parameter: value}, the record for run_config.json); ({}, None)
    without a preset."""
    if not name:
        return {}, None
    preset = PRESETS.get(name)
    values, applied, explicit, missing = {}, {}, [], []
    for flag, pv in preset.values_for(command).items():
        param = flags.get(flag)
        if param is None:
            missing.append(flag)
        elif given_on_command_line(ctx, param):
            explicit.append(flag)
        else:
            values[param] = pv.value
            applied[flag] = {"value": pv.value, "source": pv.source}
    return values, record(preset, applied, explicit, missing)


def describe_preset(rec: dict[str, Any]) -> str:
    """One line on what a preset set, what the user's own options replaced, and what it skipped."""
    line = f"preset {rec['name']}: " + (", ".join(
        f"{flag} {v['value']}" for flag, v in rec["set"].items()) or "nothing set")
    if rec["explicit"]:
        line += f"; yours: {', '.join(rec['explicit'])}"
    if rec["not_applied"]:
        line += f"; no such option here: {', '.join(rec['not_applied'])}"
    return line


def _preset_parameter(command: str) -> inspect.Parameter:
    names = ", ".join(n for n, p in PRESETS.items() if p.values_for(command))
    option = typer.Option("--preset", help=f"Published settings to start from: {names} "
                          "(explicit options win; see docs/presets.md).")
    return inspect.Parameter("preset", inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[str | None, option])


def config_options(preset: str | None = None,
                   **configs: type | tuple[type, Any]) -> Callable[[Callable], Callable]:
    """Decorator: `config=BuildConfig` (or `config=(PassAtKConfig, PassAtKConfig(...))` for a
    command's own defaults) turns the `config` parameter into one option per field.

    With `preset="build"` the command also takes `--preset NAME`: the preset's values for that
    command fill the options the user did not give, and a config with a `preset` field records
    what was set. The command is called with the built config; a value the config refuses is one
    red line (exit 2) before the command's body runs.
    """
    def deco(func: Callable) -> Callable:
        specs = []
        for name, spec in configs.items():
            cls, default = spec if isinstance(spec, tuple) else (spec, spec())
            specs.append(_Spec(name, cls, default))
        sig = inspect.signature(func, eval_str=True)
        kept = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                for p in sig.parameters.values() if p.name not in configs]
        generated = [p for s in specs for p in s.parameters()]
        if preset is not None:
            generated.append(_preset_parameter(preset))
        # typer hands the click context to a parameter typed typer.Context: it tells which
        # options were typed, so a preset never overrides them.
        generated.append(inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY,
                                           annotation=typer.Context))
        flags = {leaf.flag: leaf.param for s in specs for leaf in s.leaves.values()}
        names = [p.name for p in kept + generated]
        clash = {n for n in names if names.count(n) > 1}
        if clash:
            raise ValueError(f"{func.__name__}: option(s) declared twice: {', '.join(sorted(clash))}")

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            from pope_cli.common import handle_errors

            built = {}
            with handle_errors():
                chosen, preset_record = preset_values(
                    kwargs.pop(_CTX), kwargs.pop("preset", None), preset or "", flags)
                for s in specs:
                    values = {leaf.param: kwargs.pop(leaf.param) for leaf in s.leaves.values()}
                    config = s.build(values, chosen)
                    if preset_record is not None and "preset" in {
                            f.name for f in dataclasses.fields(config)}:
                        config = dataclasses.replace(config, preset=preset_record)
                    built[s.name] = config
            if preset_record is not None:
                from pope_cli.common import info_line

                info_line(describe_preset(preset_record))
            return func(**kwargs, **built)

        params = generated + kept
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__
        return wrapper
    return deco


def option_flags(cls: type) -> set[str]:
    """Every flag the options of `cls` generate (for refusing options of another backend)."""
    return set(_Spec("x", cls, cls()).leaves)

