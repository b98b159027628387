"""Publishing a build folder to the Hugging Face Hub as a dataset with configs and a card.

`publish(out_dir, "org/name", dry_run_dir=...)` stages the exact upload folder (data/<config>/
<split>.parquet + README.md) and, without `dry_run_dir`, pushes it in one commit via HfApi.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_data.card import IMAGE, published_files, render_card, repo_path
from pope_eval.errors import ConfigError, DataError, PopeError, require

log = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
# What a staging folder may already hold: a previous dry run is replaced, anything else is kept.
_STAGED_NAMES = {"README.md", "data", IMAGE}
REDACTED = "***"


class HubError(PopeError):
    """A Hub call failed or was refused; the message never contains the token."""


@dataclass(frozen=True)
class PublishResult:
    """What was staged and, unless a dry run, pushed."""

    repo_id: str
    files: tuple[str, ...]  # repo paths, sorted
    staged_dir: str | None  # the dry-run folder; None after an upload (staged in a temp folder)
    uploaded: bool
    created_repo: bool = False
    revision: str | None = None
    commit_url: str | None = None
    pr_url: str | None = None
    deleted: tuple[str, ...] = ()
    configs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # config -> splits


def scrub(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` replaced (no-op without a secret)."""
    return text.replace(secret, REDACTED) if secret else text


def stage(out_dir: str | Path, dest: str | Path, *, repo_id: str | None = None,
          license: str | None = None, pretty_name: str | None = None,
          secret: str | None = None) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Write the upload folder into `dest`; returns (repo paths, {config: splits}).

    `dest` must be empty, missing, or a previous staging (its README.md, data/ and image are
    replaced); anything else there is refused rather than mixed into the upload.
    """
    dest = Path(dest)
    out = Path(out_dir)
    files = published_files(out)  # a folder that is not a finished build fails before any write
    if dest.exists():
        if not dest.is_dir():
            raise ConfigError(f"dry-run folder {dest}: exists and is not a folder")
        foreign = sorted(p.name for p in dest.iterdir() if p.name not in _STAGED_NAMES)
        if foreign:
            raise ConfigError(f"dry-run folder {dest}: not empty (holds {', '.join(foreign[:5])}); "
                              "use a new or empty folder")
        shutil.rmtree(dest / "data", ignore_errors=True)
        for name in ("README.md", IMAGE):
            (dest / name).unlink(missing_ok=True)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _stage(out, dest, files, repo_id=repo_id, license=license,
                      pretty_name=pretty_name, secret=secret)
    except BaseException:
        if created:  # a failed staging leaves no folder behind
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _stage(out: Path, dest: Path, files: dict[str, dict[str, tuple[Path, ...]]], *,
           repo_id: str | None, license: str | None, pretty_name: str | None,
           secret: str | None) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    written: list[str] = []
    for config, splits in files.items():
        for split, sources in splits.items():
            target = dest / repo_path(config, split)
            target.parent.mkdir(parents=True, exist_ok=True)
            if len(sources) == 1:
                shutil.copyfile(sources[0], target)
            else:
                _join(sources, target)
            written.append(repo_path(config, split))
    image = None
    if (out / IMAGE).exists():
        shutil.copyfile(out / IMAGE, dest / IMAGE)
        written.append(IMAGE)
        image = IMAGE
    card = render_card(out, repo_id=repo_id, license=license, pretty_name=pretty_name,
                       files=files, image=image)
    (dest / "README.md").write_text(scrub(card, secret), encoding="utf-8")
    written.append("README.md")
    return sorted(written), {c: tuple(s) for c, s in files.items()}


def _join(sources: tuple[Path, ...], target: Path) -> None:
    """One parquet file of the rows of `sources`, in order (a JOINED config's split)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.concat_tables([pq.read_table(src) for src in sources])
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{target.parent.name}: cannot join {', '.join(map(str, sources))}: "
                        f"{exc}") from None
    pq.write_table(table, target)


def resolve_token(token: str | None) -> str:
    """The token from the argument, HF_TOKEN, or the stored login (`hf auth login`)."""
    if token:
        return token
    hub = require("huggingface_hub", "core")
    found = hub.get_token()  # reads HF_TOKEN, then the stored login
    if not found:
        raise ConfigError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass "
                          "--token-file FILE")
    return found


def read_token_file(path: str | Path) -> str:
    """The token in a file (`-`: one line of standard input), never echoed or logged."""
    import sys

    try:
        raw = sys.stdin.readline() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--token-file {path}: cannot read it "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    token = raw.strip()
    if not token or len(token.split()) != 1:
        raise ConfigError(f"--token-file {path}: expected one token on one line")
    return token


def publish(
    out_dir: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
    create_pr: bool = False, overwrite: bool = False, dry_run_dir: str | Path | None = None,
    token: str | None = None, endpoint: str | None = None, license: str | None = None,
    pretty_name: str | None = None,
) -> PublishResult:
    """Stage the build in `out_dir` and push it to the dataset repo `repo_id` in one commit.

    An existing repo with files is only written to with `overwrite` (stale data/ files are then
    deleted in the same commit), a `revision` (branch, created if missing) or `create_pr`.
    With `dry_run_dir` the folder is written there and nothing is uploaded (no token needed).
    """
    if not _REPO_ID.match(repo_id or ""):
        raise ConfigError(f"repo_id: expected ORG/NAME (a Hub dataset id), got {repo_id!r}")
    if create_pr and revision not in (None, "main"):
        raise ConfigError("create_pr: a pull request targets main; leave out --revision")
    if dry_run_dir is not None:
        files, configs = stage(out_dir, dry_run_dir, repo_id=repo_id, license=license,
                               pretty_name=pretty_name,
                               secret=token or os.environ.get("HF_TOKEN"))
        log.info("dry run: staged %d files for %s in %s", len(files), repo_id, dry_run_dir)
        return PublishResult(repo_id=repo_id, files=tuple(files), staged_dir=str(dry_run_dir),
                             uploaded=False, revision=revision, configs=configs)

    secret = resolve_token(token)
    try:
        return _push(out_dir, repo_id, secret=secret, private=private, revision=revision,
                     create_pr=create_pr, overwrite=overwrite, endpoint=endpoint,
                     license=license, pretty_name=pretty_name)
    except PopeError as exc:
        raise type(exc)(scrub(str(exc), secret)) from None
    except Exception as exc:  # HTTP, auth and validation errors of huggingface_hub alike
        message = scrub(f"{type(exc).__name__}: {exc}", secret)
        log.debug("publish to %s failed: %s", repo_id, message)
        # `from None`: the original exception may carry request headers.
        raise HubError(f"publishing to {repo_id} failed: {message}") from None


def _push(out_dir: str | Path, repo_id: str, *, secret: str, private: bool,
          revision: str | None, create_pr: bool, overwrite: bool, endpoint: str | None,
          license: str | None, pretty_name: str | None) -> PublishResult:
    hub = require("huggingface_hub", "core")
    from huggingface_hub.errors import RepositoryNotFoundError

    api = hub.HfApi(endpoint=endpoint, token=secret)
    with tempfile.TemporaryDirectory(prefix="pope-publish-") as tmp:
        files, configs = stage(out_dir, tmp, repo_id=repo_id, license=license,
                               pretty_name=pretty_name, secret=secret)
        created = False
        try:
            info = api.repo_info(repo_id, repo_type="dataset")
        except RepositoryNotFoundError:
            info = None
        if info is None:
            api.create_repo(repo_id, repo_type="dataset", private=private)
            created = True
            existing: list[str] = []
            log.info("created dataset repo %s (private=%s)", repo_id, private)
        else:
            existing = [s.rfilename for s in (info.siblings or [])
                        if s.rfilename != ".gitattributes"]
            if bool(info.private) != private:
                log.warning("%s exists and is %s; its visibility is left unchanged", repo_id,
                            "private" if info.private else "public")
        to_main = revision in (None, "main") and not create_pr
        if existing and to_main and not overwrite:
            raise HubError(
                f"dataset repo {repo_id} already exists with {len(existing)} file(s); nothing "
                "was uploaded. Pass --overwrite to replace them, --revision BRANCH to push a new "
                "branch, or --create-pr to open a pull request")
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        deleted = sorted(p for p in existing if p.startswith("data/") and p not in files
                         ) if overwrite and to_main else []
        operations: list[Any] = [hub.CommitOperationAdd(path_in_repo=p,
                                                        path_or_fileobj=str(Path(tmp) / p))
                                 for p in files]
        operations += [hub.CommitOperationDelete(path_in_repo=p) for p in deleted]
        commit = api.create_commit(
            repo_id, operations, repo_type="dataset", revision=revision, create_pr=create_pr,
            commit_message=f"POPE dataset: configs {', '.join(configs)}",
            commit_description=_describe(configs))
    log.info("pushed %d files to %s (%s)", len(files), repo_id, commit.commit_url)
    return PublishResult(repo_id=repo_id, files=tuple(files), staged_dir=None, uploaded=True,
                         created_repo=created, revision=revision, commit_url=commit.commit_url,
                         pr_url=commit.pr_url, deleted=tuple(deleted), configs=configs)


def _describe(configs: Mapping[str, tuple[str, ...]]) -> str:
    return "\n".join(f"- {c}: {', '.join(splits)}" for c, splits in configs.items())
