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


def test_a_cache_under_a_file_or_on_a_full_disk_is_one_error_naming_it(tmp_path, monkeypatch):
    from pathlib import Path

    from pope_eval.models import convert_bundled

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as err:
        convert_bundled("smollm2-135m", blocker / "cache")
    assert str(err.value) == (f"model cache (--cache-dir / POPE_CACHE_DIR) {blocker}/cache/models: "
                              f"is under {blocker}, which is a file, not a folder")

    real_write = Path.write_bytes

    def full(self, data):
        if tmp_path / "full" in self.parents:
            raise OSError(28, "No space left on device", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(ConfigError) as err:
        convert_bundled("smollm2-135m", tmp_path / "full")
    assert str(err.value) == (f"model cache (--cache-dir / POPE_CACHE_DIR) {tmp_path}/full/models: "
                              "cannot write there (No space left on device)")


def test_a_disk_that_fills_mid_conversion_leaves_no_half_folder(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import pope_eval.models as models

    class Model:
        """Stands in for the GGUF model: the plain copy's save runs out of space."""

        def __init__(self, config=None) -> None:
            self.config = SimpleNamespace(to_dict=dict)

        def state_dict(self) -> dict:
            return {}

        def load_state_dict(self, state) -> None:
            pass

        def to(self, dtype) -> "Model":
            return self

        def save_pretrained(self, path, **kwargs) -> None:
            path.mkdir(parents=True)
            (path / "model.safetensors").write_text("half")
            raise OSError(28, "No space left on device")

    fake = {"torch": SimpleNamespace(float32="float32"), "transformers": SimpleNamespace(
        AutoTokenizer=SimpleNamespace(from_pretrained=lambda *a, **kw: None),
        AutoModelForCausalLM=SimpleNamespace(from_pretrained=lambda *a, **kw: Model()),
        AutoConfig=SimpleNamespace(for_model=lambda **cfg: cfg))}
    monkeypatch.setattr(models, "require", lambda name, extra: fake[name])
    with pytest.raises(ConfigError) as err:
        models.convert_bundled("smollm2-135m", tmp_path)
    assert str(err.value) == (f"model cache (--cache-dir / POPE_CACHE_DIR) {tmp_path}/models: "
                              "cannot write the converted smollm2-135m there (No space left on "
                              "device)")
    left = {p.name for p in (tmp_path / "models").iterdir()}
    assert "smollm2-135m" not in left and ".smollm2-135m.partial" not in left
