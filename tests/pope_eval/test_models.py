"""Model arguments: bundled names, local folders, Hub ids, and clear errors for the rest."""

import pytest

from pope_eval.errors import ConfigError
from pope_eval.models import BUNDLED, resolve_model


def test_hub_ids_pass_through_and_folders_need_a_config(tmp_path):
    assert resolve_model("Qwen/Qwen3-4B-Instruct-2507").is_local is False
    with pytest.raises(ConfigError, match="without config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    r = resolve_model(str(tmp_path))
    assert r.is_local and r.path == str(tmp_path.resolve())


@pytest.mark.parametrize("bad", ["smollm2", "no such model", "", "./missing/dir/x"])
def test_unknown_model_names_are_refused_with_the_bundled_list(bad):
    with pytest.raises(ConfigError) as err:
        resolve_model(bad)
    if bad:
        assert "smollm2-135m" in str(err.value)


def test_bundled_model_converts_once_to_safetensors(tiny_model_dir):
    assert set(BUNDLED) == {"smollm2-135m"}
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", ".pope-converted"} <= names
    stamp = (tiny_model_dir / "model.safetensors").stat().st_mtime
    assert resolve_model("smollm2-135m").path == str(tiny_model_dir)
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime == stamp
