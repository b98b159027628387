"""The engine registry: backend name -> Engine class, and each backend's own options dataclass.

An engine module declares `@register_engine("name", options=NameOptions)` on its class; the
package `__init__` imports the module once, which is the registry line.
"""

from __future__ import annotations

from collections.abc import Callable

from pope_eval.registry import Registry

ENGINES: Registry[type] = Registry("engine", option="--engine")
# Options groups by owner: every backend's, plus wrappers such as Ray that are not a backend.
ENGINE_OPTIONS: Registry[type] = Registry("engine options")


def register_engine(name: str, options: type | None = None) -> Callable[[type], type]:
    """Class decorator: register an Engine subclass (and its options dataclass) under `name`."""
    def deco(cls: type) -> type:
        ENGINES.add(name, cls)
        if options is not None:
            ENGINE_OPTIONS.add(name, options)
        return cls
    return deco


def register_options(owner: str, options: type) -> type:
    """Register an options group that belongs to no backend (e.g. Ray's replicas)."""
    return ENGINE_OPTIONS.add(owner, options)
