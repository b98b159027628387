"""A real `pope-data build` export (scripted engine) and its dry-run Hub folder, for the consumer tests.

Each consumer test reads these files the way that trainer's own loader does (its logic restated in
the test); the build takes a few seconds, once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pope_data.build import run_build
from pope_data.hub import publish
from tests.pope_data.test_build import _config, _engine, _problems_file

# Problems 0 (train) and 6 (validation) are solved unguided (easy); the other six are hard and
# each gets a prefix, in both splits.
EASY = (0, 6)


def build(root: Path, **options) -> Path:
    """A finished build folder of 8 synthetic problems with the scripted engine."""
    root.mkdir(parents=True, exist_ok=True)
    problems, path = _problems_file(root)
    run_build(_config(root, path, **options), engine=_engine(problems, easy=EASY))
    return root / "out"


@pytest.fixture(scope="session")
def pope_build(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("compat-build"))


@pytest.fixture(scope="session")
def published(pope_build, tmp_path_factory) -> Path:
    """The folder `pope-data publish --dry-run` stages: data/<config>/<split>.parquet + README.md."""
    staged = tmp_path_factory.mktemp("compat-hub") / "staged"
    publish(pope_build, "org/pope-compat", dry_run_dir=staged)
    return staged
