"""Option declarations: a dataclass field with its help text and command-line flag, declared once.

`max_tokens: int = option(256, "Max generated tokens per sample.")`; `pope_cli.options` turns the
fields of such dataclasses into typer options and the parsed values back into the dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

MISSING = dataclasses.MISSING


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None,
           default_factory: Callable[[], Any] | Any = MISSING, cli: bool = True,
           operational: bool = False, short: str | None = None,
           prefix: str | None = None, only: tuple[str, ...] | None = None,
           none_unless: str | None = None, inherit: str | None = None,
           parse: Callable[[str], Any] | None = None, repr: bool = True) -> Any:
    """A dataclass field carrying its command-line declaration in `metadata`.

    - `help`: the --help text; `flag`: the option name (default `--field-name`); `short`: e.g. "-v".
    - `cli=False`: not offered on the command line (set by code, or derived).
    - `operational=True`: how work is carried out, never what is sampled (left out of
      fingerprints by the configs that honour it).
    - `parse`: the option is text on the command line, turned into the value by this function
      (which raises ConfigError naming the flag), e.g. "1,2,4" -> (1, 2, 4).
    - For a nested dataclass field: `prefix` for its flags ("oracle-"), `only` the sub-fields
      offered, `none_unless` a sub-field that must be given for the value to exist (else None),
      `inherit` a sibling field whose value fills the sub-fields not offered.
    """
    metadata = {"help": help, "flag": flag, "cli": cli, "operational": operational,
                "short": short, "prefix": prefix, "only": only, "none_unless": none_unless,
                "inherit": inherit, "parse": parse}
    kwargs: dict[str, Any] = {"metadata": metadata, "repr": repr}
    if default_factory is not MISSING:
        kwargs["default_factory"] = default_factory
    elif default is not MISSING:
        kwargs["default"] = default
    return dataclasses.field(**kwargs)


def meta(f: dataclasses.Field) -> dict[str, Any]:
    """A field's option metadata (defaults for fields declared without `option`)."""
    base = {"help": "", "flag": None, "cli": True, "operational": False, "short": None,
            "prefix": None, "only": None, "none_unless": None, "inherit": None, "parse": None}
    base.update({k: v for k, v in f.metadata.items() if k in base})
    return base


def flag_of(f: dataclasses.Field, prefix: str = "") -> str:
    """The command-line flag of a field: its declared flag, else --prefix-field-name."""
    m = meta(f)
    if m["flag"]:
        name = m["flag"].lstrip("-")
        return "--" + prefix + name
    return "--" + prefix + f.name.replace("_", "-")


def operational_fields(cls: type) -> tuple[str, ...]:
    """Names of the fields a config declares operational (left out of its fingerprint)."""
    return tuple(f.name for f in dataclasses.fields(cls) if meta(f)["operational"])
