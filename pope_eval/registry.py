"""Name -> object registries for pluggable parts (engines, strategies, sources, benchmarks, ...).

`ENGINES = Registry("engine", option="--engine")`; `@ENGINES.register("vllm")` or
`ENGINES.add("vllm", obj)`; `ENGINES["vllm"]` fails with the choices named. A name is taken once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from pope_eval.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered name -> object table that refuses a name twice and names the choices on a miss.

    `kind` ("engine") and `option` ("--engine") go into the error messages.
    """

    def __init__(self, kind: str, option: str | None = None) -> None:
        self.kind = kind
        self.option = option or f"--{kind}"
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{self.kind} registry: a name must be non-empty text, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered "
                             f"(by {self._describe(self._items[name])})")
        self._items[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        def deco(obj: T) -> T:
            return self.add(name, obj)
        return deco

    def get(self, name: str) -> T:
        """The object registered as `name`, or a ConfigError naming the option and the choices."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ConfigError(f"{self.option}: unknown {self.kind} {name!r}; choose one of "
                              f"{', '.join(self._items)}") from None

    __getitem__ = get

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"

    @staticmethod
    def _describe(obj: object) -> str:
        module = getattr(obj, "__module__", None)
        name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
        return f"{module}.{name}" if module else name
