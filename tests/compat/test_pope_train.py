"""pope-train reads the templates guided rows were worded with from their provenance, and warns on a mix.

Two exports of the same problems, one per --guidance template: training on both together is
allowed (same schema) but warned about, naming each template and its files.
"""

from __future__ import annotations

import logging

from pope_train.data import check_same_schema
from tests.compat.conftest import build


def test_train_files_of_two_guidance_templates_are_warned_about(pope_build, tmp_path, caplog):
    other = build(tmp_path, guidance="no-revisit")
    pope_mix, other_mix = (str(b / "export" / "mix" / "train.parquet")
                           for b in (pope_build, other))
    with caplog.at_level(logging.WARNING, logger="pope_train.data"):
        check_same_schema([pope_mix, str(pope_build / "export" / "guided" / "train.parquet")],
                          "train files")
        assert not caplog.records  # one build, one template
        check_same_schema([pope_mix, other_mix], "train files")
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith("train files: guided rows worded by 2 guidance templates")
    assert "pope (sha256 " in message and f"in {pope_mix}" in message
    assert "no-revisit (sha256 " in message and f"in {other_mix}" in message
