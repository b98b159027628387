"""Exception types shared by every layer of pope.

Raise these with a message a user can act on (name the file, row, field, URL or extra).
"""


class PopeError(Exception):
    """Base class: an error whose message is meant for the user as-is."""


class ConfigError(PopeError, ValueError):
    """A configuration value is invalid; the message names the field."""


class MissingExtraError(PopeError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class DataError(PopeError, ValueError):
    """An input file or row cannot be used; the message names the file, row and field."""


class EngineError(PopeError, RuntimeError):
    """Generation failed (dead endpoint, crashed engine); the message names the backend/URL."""


def require(module: str, extra: str):
    """Import `module` or raise MissingExtraError naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"'{module}' is not installed: install the '{extra}' extra "
            f"(pip install 'pope[{extra}]'), see README.md"
        ) from exc


class GradingError(PopeError, RuntimeError):
    """The grading workers cannot run (e.g. cannot start); never a per-sample verdict."""
