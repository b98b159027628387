"""Tests for pope_data.hub: the dry-run folder loads with `datasets`, and the upload path runs the
real huggingface_hub client against a stand-in for the Hub HTTP API on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from pope_data.card import published_files, repo_path
from pope_data.hub import HubError, publish, resolve_token
from pope_eval.errors import ConfigError
from tests.pope_data.test_card import make_build

TOKEN = "hf_TestTokenDoNotLeak0123456789abcdef"


class FakeHub:
    """Just the Hub routes HfApi uses to create a dataset repo and commit to it."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo id -> {"private", "files": {path: bytes}, "branches"}
        self.requests: list[dict] = []
        self.commits: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_repo(self, repo_id: str, files: dict[str, bytes], private: bool = False) -> None:
        self.repos[repo_id] = {"private": private, "branches": {"main"},
                               "files": {".gitattributes": b"*.parquet filter=lfs\n", **files}}

    def routes(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests]

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def _reply(self, status: int, body: dict, error_code: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization")
                with hub.lock:
                    hub.requests.append({"method": method, "path": url.path,
                                         "query": parse_qs(url.query), "body": raw, "auth": auth})
                    if auth != f"Bearer {TOKEN}":
                        # A real Hub error message may quote what it was sent.
                        return self._reply(401, {"error": f"Invalid credentials: {auth}"})
                    return self._route(method, url.path.split("/"), parse_qs(url.query), raw)

            def _route(self, method, parts, query, raw):
                # parts: ['', 'api', 'datasets', org, name, action, revision]
                if method == "POST" and parts[1:] == ["api", "repos", "create"]:
                    body = json.loads(raw)
                    rid = f"{body['organization']}/{body['name']}"
                    if rid in hub.repos:
                        return self._reply(409, {"error": "You already created this dataset repo"})
                    hub.add_repo(rid, {}, private=body.get("visibility") == "private")
                    return self._reply(200, {"url": f"{hub.url}/datasets/{rid}", "name": rid})
                if method == "POST" and parts[1:] == ["api", "validate-yaml"]:
                    yaml.safe_load(json.loads(raw)["content"].split("---")[1])
                    return self._reply(200, {"errors": [], "warnings": []})
                if len(parts) < 5 or parts[1:3] != ["api", "datasets"]:
                    return self._reply(404, {"error": f"no route {'/'.join(parts)}"})
                rid = f"{parts[3]}/{parts[4]}"
                repo = hub.repos.get(rid)
                if repo is None:
                    return self._reply(404, {"error": "Repository not found"}, "RepoNotFound")
                action = parts[5] if len(parts) > 5 else None
                if method == "GET" and action is None:
                    return self._reply(200, {
                        "id": rid, "private": repo["private"], "sha": "0" * 40,
                        "siblings": [{"rfilename": p} for p in sorted(repo["files"])]})
                if method == "POST" and action == "preupload":
                    files = json.loads(raw)["files"]
                    return self._reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                         "oid": None} for f in files]})
                if method == "POST" and action == "branch":
                    branch = parts[6]
                    if branch in repo["branches"]:
                        return self._reply(409, {"error": "Reference already exists"})
                    repo["branches"].add(branch)
                    return self._reply(200, {})
                if method == "POST" and action == "commit":
                    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
                    revision = parts[6]
                    if revision not in repo["branches"]:
                        return self._reply(404, {"error": "Invalid rev id"}, "RevisionNotFound")
                    commit = {"repo": rid, "revision": revision, "header": lines[0]["value"],
                              "create_pr": query.get("create_pr") == ["1"],
                              "files": {}, "deleted": []}
                    for line in lines[1:]:
                        if line["key"] == "file":
                            data = base64.b64decode(line["value"]["content"])
                            commit["files"][line["value"]["path"]] = data
                        elif line["key"] == "deletedFile":
                            commit["deleted"].append(line["value"]["path"])
                        else:
                            return self._reply(400, {"error": f"unexpected {line['key']}"})
                    hub.commits.append(commit)
                    if revision == "main" and not commit["create_pr"]:
                        repo["files"].update(commit["files"])
                        for path in commit["deleted"]:
                            repo["files"].pop(path, None)
                    n = len(hub.commits)
                    return self._reply(200, {
                        "commitUrl": f"{hub.url}/datasets/{rid}/commit/{n:040d}",
                        "commitOid": f"{n:040d}",
                        "pullRequestUrl": f"{hub.url}/datasets/{rid}/discussions/{n}"})
                return self._reply(404, {"error": f"no route {method} {'/'.join(parts)}"})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        return Handler


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub = FakeHub()
    hub.thread.start()
    yield hub
    hub.server.shutdown()
    hub.server.server_close()
    hub.thread.join(timeout=10)


@pytest.fixture
def build(tmp_path) -> Path:
    # The token also sits in the recorded command line: it must not reach the card.
    return make_build(tmp_path, command=f"HF_TOKEN={TOKEN} pope-data build --source omni-math "
                                        "--path omni.jsonl")


def _rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _assert_no_token(caplog, *texts: str) -> None:
    for record in caplog.records:
        assert TOKEN not in record.getMessage(), f"token in log line from {record.name}"
    for text in texts:
        assert TOKEN not in text


# ---------------------------------------------------------------------------------- dry run


def test_dry_run_folder_loads_with_datasets_offline(tmp_path, build):
    stage_dir = tmp_path / "staged"
    result = publish(build, "org/pope-omni", dry_run_dir=stage_dir, token=TOKEN)
    assert not result.uploaded
    files = sorted(str(p.relative_to(stage_dir)) for p in stage_dir.rglob("*") if p.is_file())
    assert files == list(result.files)
    expected = published_files(build)
    assert set(result.configs) == set(expected) == {"hard", "guided", "mix", "all", "prefixes"}
    for config, splits in expected.items():
        for split, sources in splits.items():
            staged = stage_dir / repo_path(config, split)
            if config == "all":
                assert [s.parent.name for s in sources] == ["mix", "easy"]
                assert _rows(staged) == [r for src in sources for r in _rows(src)]
            else:
                assert staged.read_bytes() == sources[0].read_bytes()
    # `all` is Pipeline-RL's pope_mix layout: one config, rows told apart by `level`.
    levels = {r["level"] for split in expected["all"]
              for r in _rows(stage_dir / repo_path("all", split))}
    assert levels == {"hard-without-guidance", "hard-with-guidance", "easy"}
    assert (stage_dir / "prefix_fraction.png").exists()
    readme = (stage_dir / "README.md").read_text()
    assert "HF_TOKEN=***" in readme
    for path in stage_dir.rglob("*"):
        assert path.is_dir() or TOKEN.encode() not in path.read_bytes(), path

    script = (
        "import json, sys, datasets\n"
        "folder, configs = sys.argv[1], json.loads(sys.argv[2])\n"
        "out = {}\n"
        "for config in configs:\n"
        "    ds = datasets.load_dataset(folder, config)\n"
        "    out[config] = {s: [d.num_rows, sorted(d.column_names)] for s, d in ds.items()}\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf-home"), "HF_DATASETS_CACHE": str(tmp_path / "ds-cache")}
    proc = subprocess.run([sys.executable, "-c", script, str(stage_dir), json.dumps(list(expected))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    import pyarrow.parquet as pq

    for config, splits in expected.items():
        assert set(loaded[config]) == set(splits)
        for split in splits:
            table = pq.read_table(stage_dir / repo_path(config, split))
            assert loaded[config][split] == [table.num_rows, sorted(table.column_names)]
    assert "solution" in loaded["mix"]["train"][1] and "prompt" in loaded["mix"]["train"][1]


def test_dry_run_refuses_a_folder_with_other_files_and_replaces_a_previous_staging(tmp_path,
                                                                                   build):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        publish(build, "org/pope-omni", dry_run_dir=other)
    assert (other / "notes.txt").read_text() == "keep me"

    stage_dir = tmp_path / "staged"
    first = publish(build, "org/pope-omni", dry_run_dir=stage_dir)
    (stage_dir / "data" / "stale").mkdir()
    (stage_dir / "data" / "stale" / "train.parquet").write_bytes(b"old")
    second = publish(build, "org/pope-omni", dry_run_dir=stage_dir)
    assert second.files == first.files
    assert not (stage_dir / "data" / "stale").exists()


@pytest.mark.parametrize("repo_id", ["pope-omni", "org/", "org/name/extra", "org/na me"])
def test_bad_repo_id_is_refused(tmp_path, build, repo_id):
    with pytest.raises(ConfigError, match="repo_id"):
        publish(build, repo_id, dry_run_dir=tmp_path / "staged")


# ---------------------------------------------------------------------------------- upload


def test_upload_creates_the_repo_and_commits_the_staged_files(tmp_path, build, fake_hub,
                                                              caplog):
    caplog.set_level(logging.DEBUG)
    result = publish(build, "org/pope-omni", private=True, token=TOKEN, endpoint=fake_hub.url)

    assert result.uploaded and result.created_repo
    routes = fake_hub.routes()
    assert routes[0] == ("GET", "/api/datasets/org/pope-omni")
    assert ("POST", "/api/repos/create") in routes
    assert ("POST", "/api/datasets/org/pope-omni/preupload/main") in routes
    assert routes[-1] == ("POST", "/api/datasets/org/pope-omni/commit/main")
    create = next(r for r in fake_hub.requests if r["path"] == "/api/repos/create")
    assert json.loads(create["body"]) == {"name": "pope-omni", "organization": "org",
                                          "type": "dataset", "visibility": "private"}
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in fake_hub.requests)

    (commit,) = fake_hub.commits
    assert sorted(commit["files"]) == list(result.files)
    staged = tmp_path / "staged"
    publish(build, "org/pope-omni", dry_run_dir=staged)
    for config, splits in published_files(build).items():
        for split in splits:
            path = repo_path(config, split)
            assert commit["files"][path] == (staged / path).read_bytes()
    assert commit["header"]["summary"].startswith("POPE dataset")
    readme = commit["files"]["README.md"].decode()
    assert "config_name: mix" in readme and "HF_TOKEN=***" in readme
    assert fake_hub.repos["org/pope-omni"]["private"] is True
    assert result.commit_url.startswith(fake_hub.url)
    _assert_no_token(caplog, readme, repr(result))


def test_existing_repo_is_not_replaced_without_overwrite(build, fake_hub, caplog):
    caplog.set_level(logging.DEBUG)
    fake_hub.add_repo("org/pope-omni", {"README.md": b"old", "data/easy/train.parquet": b"x"})
    with pytest.raises(HubError, match="--overwrite") as err:
        publish(build, "org/pope-omni", token=TOKEN, endpoint=fake_hub.url)
    assert fake_hub.commits == []
    assert ("POST", "/api/repos/create") not in fake_hub.routes()
    assert fake_hub.repos["org/pope-omni"]["files"]["README.md"] == b"old"
    _assert_no_token(caplog, str(err.value))


def test_existing_empty_repo_is_written_without_overwrite(build, fake_hub):
    fake_hub.add_repo("org/pope-omni", {})  # only .gitattributes, as the Hub creates it
    result = publish(build, "org/pope-omni", token=TOKEN, endpoint=fake_hub.url)
    assert result.uploaded and not result.created_repo
    assert sorted(fake_hub.commits[0]["files"]) == list(result.files)


def test_overwrite_replaces_files_and_deletes_stale_data_in_one_commit(build, fake_hub):
    fake_hub.add_repo("org/pope-omni", {"README.md": b"old", "data/easy/train.parquet": b"x",
                                        "notes.md": b"kept"})
    result = publish(build, "org/pope-omni", token=TOKEN, endpoint=fake_hub.url, overwrite=True)
    (commit,) = fake_hub.commits
    assert commit["deleted"] == ["data/easy/train.parquet"] == list(result.deleted)
    files = fake_hub.repos["org/pope-omni"]["files"]
    assert "data/easy/train.parquet" not in files and files["notes.md"] == b"kept"
    assert files["README.md"] != b"old"
    assert not result.created_repo


def test_revision_pushes_a_new_branch(build, fake_hub):
    fake_hub.add_repo("org/pope-omni", {"README.md": b"old"})
    result = publish(build, "org/pope-omni", token=TOKEN, endpoint=fake_hub.url,
                     revision="pope-v2")
    assert ("POST", "/api/datasets/org/pope-omni/branch/pope-v2") in fake_hub.routes()
    (commit,) = fake_hub.commits
    assert commit["revision"] == "pope-v2" and commit["deleted"] == []
    assert fake_hub.repos["org/pope-omni"]["files"]["README.md"] == b"old"  # main untouched
    assert result.revision == "pope-v2"


def test_create_pr_opens_a_pull_request(build, fake_hub):
    fake_hub.add_repo("org/pope-omni", {"README.md": b"old"})
    result = publish(build, "org/pope-omni", token=TOKEN, endpoint=fake_hub.url, create_pr=True)
    (commit,) = fake_hub.commits
    assert commit["create_pr"] and commit["revision"] == "main"
    assert result.pr_url and result.pr_url.endswith("/discussions/1")
    assert fake_hub.repos["org/pope-omni"]["files"]["README.md"] == b"old"


def test_hub_error_quoting_the_token_is_scrubbed(build, fake_hub, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    wrong = TOKEN[:-1] + "X"  # the stand-in echoes an unknown token back in its error
    with pytest.raises(HubError) as err:
        publish(build, "org/pope-omni", token=wrong, endpoint=fake_hub.url)
    message = str(err.value)
    assert "publishing to org/pope-omni failed" in message
    assert wrong not in message and "***" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    for record in caplog.records:
        assert wrong not in record.getMessage()


def test_token_comes_from_hf_token_or_the_stored_login(monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert resolve_token(None) == TOKEN
    assert resolve_token("hf_explicit") == "hf_explicit"
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ConfigError, match="HF_TOKEN") as err:
        resolve_token(None)
    assert TOKEN not in str(err.value)


def test_publish_cli_names_the_real_ways_to_give_a_token(build, monkeypatch):
    import huggingface_hub
    from pope_cli.data import app
    from typer.testing import CliRunner

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    res = CliRunner().invoke(app, ["publish", str(build), "--repo", "org/pope-omni"])
    assert res.exit_code == 2
    assert "set HF_TOKEN, run `hf auth login`, or pass --token-file FILE" in res.output
    assert "pass --token," not in res.output


def test_publish_cli_reads_the_token_file_and_never_prints_it(tmp_path, build, fake_hub,
                                                              monkeypatch, caplog):
    import huggingface_hub
    import huggingface_hub.constants
    from pope_cli.data import app
    from typer.testing import CliRunner

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", fake_hub.url)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["publish", str(build), "--repo", "org/pope-omni",
                                   "--token-file", str(token_file)])
    assert res.exit_code == 0, res.output
    assert "pushed to" in res.output
    _assert_no_token(caplog, res.output)
    bad = tmp_path / "two"
    bad.write_text("a b\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["publish", str(build), "--repo", "org/pope-omni",
                                   "--token-file", str(bad)])
    assert res.exit_code == 2 and f"--token-file {bad}: expected one token" in res.output
