"""`asearcher fetch-data`: mirror end to end, hub path against monkeypatched huggingface_hub (no network),
validation errors, limits, manifests, idempotence and resume."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest

from asearcher.cli import main
from asearcher.config import DataConfig
from asearcher.data.fetch import fetch_release
from asearcher.errors import UserFacingError
from asearcher.utils.jsonl import DataError


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def check_manifest(release_dir: Path) -> dict:
    """Every listed file exists with the recorded size and checksum."""
    m = manifest(release_dir)
    assert m["complete"] is True
    for e in m["files"]:
        p = release_dir / e["path"]
        assert p.stat().st_size == e["bytes"] and sha(p) == e["sha256"], e["path"]
    assert not list(release_dir.rglob("*.tmp"))
    return m


@pytest.fixture
def small_mirror(tmp_path: Path) -> Path:
    """A writable mirror of made-up rows (tests corrupt it; the shared mirror is never touched)."""
    m = tmp_path / "mirror"
    lk = m / "ASearcher-Local-Knowledge"
    lk.mkdir(parents=True)
    (lk / "wiki_corpus.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "contents": f'"T{i}"\npassage {i}'}) + "\n" for i in range(10))
    )
    (lk / "wiki_webpages.jsonl").write_text(
        "".join(json.dumps({"url": f"u{i}", "contents": f"page {i}"}) + "\n" for i in range(6))
    )
    return m


# ---- mirror ----------------------------------------------------------------------------------------------
def test_mirror_test_and_train_data_end_to_end(mirror_dir, tmp_path, capsys):
    out = tmp_path / "releases"
    for release in ("test-data", "train-data"):
        assert (
            main(["fetch-data", "--release", release, "--output", str(out), "--mirror", str(mirror_dir)]) == 0
        )
    td = check_manifest(out / "ASearcher-test-data")
    recs = {e["path"]: e["records"] for e in td["files"]}
    assert recs["Bamboogle/test.jsonl"] == 125 and recs["frames/frames_test_set.csv"] == 824
    assert recs["xbench-deepsearch/DeepSearch-2505.csv"] == 100 and len(recs) == 9
    for e in td["files"]:  # identical bytes to the mirror
        assert e["sha256"] == sha(mirror_dir / "ASearcher-test-data" / e["path"])
        assert e["source_bytes"] == e["bytes"] and e["origin"].startswith("mirror:")
    tr = check_manifest(out / "ASearcher-train-data")
    assert {e["path"]: e["records"] for e in tr["files"]} == {
        "ASearcher-Base-35k.jsonl": 200,
        "ASearcher-LRM-35k.jsonl": 21,
    }
    assert tr["source"] == "mirror" and tr["mirror"] == str(mirror_dir.resolve())
    # the shared mirror keeps its own bytes (files are copied or replaced, never written through)
    assert "fetched" in capsys.readouterr().out


def test_mirror_limits_from_config_and_cli(mirror_dir, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"data:\n  source: mirror\n  mirror: {mirror_dir}\n  corpus_limit: 50\n  pages_limit: 20\n"
    )
    out = tmp_path / "r"
    assert (
        main(["fetch-data", "--release", "local-knowledge", "--output", str(out), "--config", str(cfg)]) == 0
    )
    lk = out / "ASearcher-Local-Knowledge"
    m = check_manifest(lk)
    files = {e["path"]: e for e in m["files"]}
    assert files["wiki_corpus.jsonl"]["records"] == 50 and files["wiki_corpus.jsonl"]["limit"] == 50
    assert files["wiki_webpages.jsonl"]["records"] == 20 and files["wiki_corpus.jsonl"]["limit_reached"]
    src = (mirror_dir / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl").open("rb")
    assert (lk / "wiki_corpus.jsonl").read_bytes() == b"".join(src.readline() for _ in range(50))
    src.close()
    # the CLI flag overrides the config; a new limit makes the old manifest stale
    assert (
        main(
            [
                "fetch-data",
                "--release",
                "local-knowledge",
                "--output",
                str(out),
                "--config",
                str(cfg),
                "--corpus-limit",
                "7",
            ]
        )
        == 0
    )
    assert {e["path"]: e["records"] for e in check_manifest(lk)["files"]} == {
        "wiki_corpus.jsonl": 7,
        "wiki_webpages.jsonl": 20,
    }


def test_rerun_is_a_noop_and_verify_detects_changes(small_mirror, tmp_path):
    cfg = DataConfig(source="mirror")
    out = tmp_path / "r"
    m1, changed = fetch_release("local-knowledge", out, cfg, mirror=small_mirror)
    assert changed and [e["records"] for e in m1["files"]] == [10, 6]
    mpath = out / "ASearcher-Local-Knowledge" / "manifest.json"
    before = mpath.stat().st_mtime_ns
    m2, changed = fetch_release("local-knowledge", out, cfg, mirror=small_mirror, verify=True)
    assert not changed and m2 == m1 and mpath.stat().st_mtime_ns == before
    # same size, different bytes: only --verify notices
    corpus = out / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl"
    data = corpus.read_bytes()
    corpus.write_bytes(data.replace(b"passage 3", b"passage X"))
    assert fetch_release("local-knowledge", out, cfg, mirror=small_mirror)[1] is False
    with pytest.raises(UserFacingError, match=r"wiki_corpus.jsonl: sha256 .* differs from the manifest"):
        fetch_release("local-knowledge", out, cfg, mirror=small_mirror, verify=True)
    # a changed mirror file (size differs) triggers a fresh copy
    with open(small_mirror / "ASearcher-Local-Knowledge" / "wiki_webpages.jsonl", "a") as f:
        f.write(json.dumps({"url": "u6", "contents": "page 6"}) + "\n")
    m3, changed = fetch_release("local-knowledge", out, cfg, mirror=small_mirror)
    assert changed and [e["records"] for e in m3["files"]] == [10, 7]
    # an intact-looking file (same size) is reused on resume; --force fetches everything again
    m4, changed = fetch_release("local-knowledge", out, cfg, mirror=small_mirror, force=True)
    assert changed and corpus.read_bytes() == data
    check_manifest(out / "ASearcher-Local-Knowledge")


@pytest.mark.parametrize(
    "content,pattern",
    [
        (
            b'{"id": "0", "contents": "a"}\n{"id": "1", "contents": "b"}\n{"id": 2, "contents": \n',
            r"wiki_corpus.jsonl:3: malformed JSON",
        ),
        (
            b'{"id": "0", "contents": "a"}\n["not", "an object"]\n',
            r"wiki_corpus.jsonl:2: expected a JSON object",
        ),
        (b'{"id": "0", "contents": "a"}\n{"id": "1", "conte', r"wiki_corpus.jsonl:2: truncated line"),
    ],
)
@pytest.mark.parametrize("limit", [None, 100])
def test_corrupt_line_is_an_error_naming_file_and_line(small_mirror, tmp_path, content, pattern, limit):
    (small_mirror / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl").write_bytes(content)
    out = tmp_path / "r"
    with pytest.raises(DataError, match=pattern) as e:
        fetch_release("local-knowledge", out, DataConfig(corpus_limit=limit), mirror=small_mirror)
    assert str(small_mirror) in str(e.value)  # names the source file
    lk = out / "ASearcher-Local-Knowledge"
    assert not (lk / "wiki_corpus.jsonl").exists() and not list(lk.glob("*.tmp"))


def test_cli_error_exit_code(small_mirror, tmp_path, capsys):
    (small_mirror / "ASearcher-Local-Knowledge" / "wiki_webpages.jsonl").write_text('{"url": "u0"}\n{bad}\n')
    rc = main(
        [
            "fetch-data",
            "--release",
            "local-knowledge",
            "--output",
            str(tmp_path / "r"),
            "--mirror",
            str(small_mirror),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "wiki_webpages.jsonl:2: malformed JSON" in err


def test_resume_after_a_failed_file(small_mirror, tmp_path):
    pages = small_mirror / "ASearcher-Local-Knowledge" / "wiki_webpages.jsonl"
    good = pages.read_bytes()
    pages.write_bytes(good + b"{broken\n")
    out = tmp_path / "r"
    with pytest.raises(DataError):
        fetch_release("local-knowledge", out, DataConfig(), mirror=small_mirror)
    lk = out / "ASearcher-Local-Knowledge"
    partial = manifest(lk)
    assert partial["complete"] is False and [e["path"] for e in partial["files"]] == ["wiki_corpus.jsonl"]
    corpus_mtime = (lk / "wiki_corpus.jsonl").stat().st_mtime_ns
    pages.write_bytes(good)
    m, changed = fetch_release("local-knowledge", out, DataConfig(), mirror=small_mirror)
    assert changed and m["complete"] and (lk / "wiki_corpus.jsonl").stat().st_mtime_ns == corpus_mtime
    check_manifest(lk)


def test_mirror_errors(tmp_path, small_mirror):
    with pytest.raises(UserFacingError, match="no mirror is set"):
        fetch_release("train-data", tmp_path, DataConfig(source="mirror"), mirror=None)
    with pytest.raises(UserFacingError, match=r"ASearcher-train-data does not exist"):
        fetch_release("train-data", tmp_path, DataConfig(), mirror=small_mirror)
    with pytest.raises(UserFacingError, match=r"mirror is missing .*wikilinks.jsonl"):
        fetch_release("local-knowledge", tmp_path, DataConfig(include_wikilinks=True), mirror=small_mirror)


# ---- hub (huggingface_hub monkeypatched to serve local files) --------------------------------------------
class FakeHub:
    """Serves <root>/<dataset name>/... as the hub datasets inclusionAI/<dataset name>."""

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[tuple] = []
        self.bytes_read: dict[str, int] = {}

    def _dir(self, repo_id: str) -> Path:
        owner, name = repo_id.split("/")
        assert owner == "inclusionAI"
        return self.root / name

    def hf_hub_download(self, repo_id, filename, *, repo_type=None, revision=None, local_dir=None, **kw):
        self.calls.append(("hf_hub_download", repo_id, filename, repo_type, revision))
        assert repo_type == "dataset" and local_dir is not None
        dst = Path(local_dir) / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._dir(repo_id) / filename, dst)
        return str(dst)

    def snapshot_download(
        self, repo_id, *, repo_type=None, revision=None, local_dir=None, allow_patterns=None, **kw
    ):
        self.calls.append(("snapshot_download", repo_id, tuple(allow_patterns or ()), repo_type, revision))
        assert repo_type == "dataset"
        src = self._dir(repo_id)
        for p in src.rglob("*"):
            rel = p.relative_to(src).as_posix()
            if p.is_file() and any(fnmatch.fnmatch(rel, pat) for pat in allow_patterns):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, Path(local_dir) / rel)
        meta = Path(local_dir) / ".cache" / "huggingface" / "x.metadata"  # like the real local_dir metadata
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text("meta")
        return str(local_dir)

    def file_system(self):
        hub = self

        class _Counting:
            def __init__(self, path: str, f):
                self.path, self.f = path, f
                hub.bytes_read[path] = 0

            def readline(self):
                line = self.f.readline()
                hub.bytes_read[self.path] += len(line)
                return line

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

        class FakeFS:
            def open(self, path, mode="rb", **kw):
                hub.calls.append(("open", path, mode))
                assert mode == "rb" and path.startswith("datasets/")
                repo_rev, filename = path[len("datasets/") :].rsplit("/", 1)
                repo, _rev = repo_rev.split("@")
                return _Counting(path, open(hub._dir(repo) / filename, "rb"))

        return FakeFS


@pytest.fixture
def fake_hub(mirror_dir, monkeypatch) -> FakeHub:
    hub = FakeHub(mirror_dir)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setattr(huggingface_hub, "HfFileSystem", hub.file_system())
    return hub


def test_hub_streams_only_the_first_lines(fake_hub, mirror_dir, tmp_path):
    cfg = DataConfig(source="hub", corpus_limit=100, pages_limit=None, revision="v1.0")
    m, _ = fetch_release("local-knowledge", tmp_path, cfg)
    lk = tmp_path / "ASearcher-Local-Knowledge"
    check_manifest(lk)
    files = {e["path"]: e for e in m["files"]}
    assert files["wiki_corpus.jsonl"]["records"] == 100
    assert files["wiki_corpus.jsonl"]["origin"] == (
        "hf://datasets/inclusionAI/ASearcher-Local-Knowledge@v1.0/wiki_corpus.jsonl"
    )
    assert m["repo"] == "inclusionAI/ASearcher-Local-Knowledge" and m["revision"] == "v1.0"
    opened = "datasets/inclusionAI/ASearcher-Local-Knowledge@v1.0/wiki_corpus.jsonl"
    corpus = mirror_dir / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl"
    # streaming: only the bytes of the first 100 lines were read, not the 17 MB file
    assert fake_hub.bytes_read[opened] == files["wiki_corpus.jsonl"]["bytes"] < corpus.stat().st_size / 50
    # no limit: a whole-file download, pinned to the revision
    assert (
        "hf_hub_download",
        "inclusionAI/ASearcher-Local-Knowledge",
        "wiki_webpages.jsonl",
        "dataset",
        "v1.0",
    ) in fake_hub.calls
    assert files["wiki_webpages.jsonl"]["sha256"] == sha(
        mirror_dir / "ASearcher-Local-Knowledge" / "wiki_webpages.jsonl"
    )
    assert not (tmp_path / ".ASearcher-Local-Knowledge.partial").exists()  # staging cleaned up
    n = len(fake_hub.calls)
    assert fetch_release("local-knowledge", tmp_path, cfg)[1] is False and len(fake_hub.calls) == n  # no-op


def test_hub_snapshot_of_test_data(fake_hub, mirror_dir, tmp_path):
    m, _ = fetch_release("test-data", tmp_path, DataConfig(source="auto"), mirror=None)  # auto -> hub
    assert m["source"] == "hub" and m["revision"] == "main"
    call = [c for c in fake_hub.calls if c[0] == "snapshot_download"][0]
    assert call[1] == "inclusionAI/ASearcher-test-data" and call[3] == "dataset" and "*/*.jsonl" in call[2]
    td = check_manifest(tmp_path / "ASearcher-test-data")
    assert len(td["files"]) == 9 and not any(".cache" in e["path"] for e in td["files"])
    # the release is usable by the loaders as fetched
    from asearcher.eval.loaders import load_benchmark

    assert len(load_benchmark("Bamboogle", tmp_path / "ASearcher-test-data")) == 125


def test_hub_train_data_with_repo_override(fake_hub, tmp_path, monkeypatch):
    cfg = DataConfig(source="hub", train_repo="inclusionAI/ASearcher-train-data")
    m, _ = fetch_release("train-data", tmp_path, cfg)
    assert [e["records"] for e in m["files"]] == [200, 21]
    assert {c[2] for c in fake_hub.calls if c[0] == "hf_hub_download"} == {
        "ASearcher-Base-35k.jsonl",
        "ASearcher-LRM-35k.jsonl",
    }


def test_test_data_json_list_or_jsonl_whatever_the_suffix(tmp_path):
    td = tmp_path / "mirror" / "ASearcher-test-data"
    rows = [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(3)]
    for folder, name, text in [
        ("GAIA", "test.json", json.dumps(rows, indent=1)),  # JSON list
        ("NQ_rand1000", "test.json", "".join(json.dumps(r) + "\n" for r in rows[:2])),  # JSONL named .json
        ("Bamboogle", "test.jsonl", json.dumps(rows)),  # JSON list named .jsonl
    ]:
        (td / folder).mkdir(parents=True)
        (td / folder / name).write_text(text)
    m, _ = fetch_release("test-data", tmp_path / "r", DataConfig(), mirror=tmp_path / "mirror")
    assert {e["path"]: e["records"] for e in m["files"]} == {
        "Bamboogle/test.jsonl": 3,
        "GAIA/test.json": 3,
        "NQ_rand1000/test.json": 2,
    }
    (td / "GAIA" / "test.json").write_text('[\n {"question": "q"},\n {"question": \n]')
    with pytest.raises(DataError, match=r"GAIA/test.json:4: malformed JSON"):
        fetch_release("test-data", tmp_path / "r2", DataConfig(), mirror=tmp_path / "mirror")


# ---- the hub cannot be reached (issue 10): a clear error naming the release and the mirror option -------------
def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


# train-data goes through hf_hub_download, whose HEAD request huggingface_hub retries with 1+2+4+8+8 s of
# backoff: the child skips those waits (the rest is the real CLI)
_NO_BACKOFF = (
    "import sys, huggingface_hub.utils._http as h; h.time.sleep = lambda s: None; "
    "from asearcher.cli import main; sys.exit(main())"
)


@pytest.mark.parametrize(
    "release,extra,offline",
    [
        ("test-data", [], False),  # snapshot_download
        ("local-knowledge", ["--corpus-limit", "10"], False),  # streamed through HfFileSystem
        ("train-data", [], False),  # hf_hub_download
        ("test-data", [], True),
        ("local-knowledge", ["--corpus-limit", "10"], True),
    ],
    ids=["snapshot", "stream", "download", "offline-snapshot", "offline-stream"],
)
def test_hub_unreachable_is_a_clear_error(tmp_path, release, extra, offline):
    import os
    import subprocess
    import sys

    from asearcher.data.releases import RELEASES

    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.pop("ASEARCHER_MIRROR", None)
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
        HF_HUB_ETAG_TIMEOUT="1",
        HF_HUB_DOWNLOAD_TIMEOUT="1",
        HF_HOME=str(tmp_path / "hf-home"),
    )
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    out = tmp_path / "releases"
    cli = ["-c", _NO_BACKOFF] if release == "train-data" else ["-m", "asearcher.cli"]
    args = ["fetch-data", "--release", release, "--output", str(out), "--source", "hub", *extra]
    r = subprocess.run([sys.executable, *cli, *args], env=env, capture_output=True, text=True, timeout=120)
    folder = RELEASES[release].folder
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert f"error: release {release} ({folder}): " in r.stderr, r.stderr
    if offline:
        assert "HF_HUB_OFFLINE is set" in r.stderr, r.stderr
    else:
        assert f"could not reach the Hugging Face hub for dataset inclusionAI/{folder}" in r.stderr, r.stderr
        assert f"127.0.0.1:{port}" in r.stderr and "Connect" in r.stderr, r.stderr
    assert "--source mirror --mirror DIR" in r.stderr and "$ASEARCHER_MIRROR" in r.stderr, r.stderr
    assert not out.exists() or list(out.iterdir()) == []  # no empty release folder, no staging left behind


def test_hub_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    """A file the hub does not have (wrong repo, revision or name): said so, with the settings to check."""
    from huggingface_hub import errors as hf

    def missing(*a, **k):
        raise hf.EntryNotFoundError("404: ASearcher-Base-35k.jsonl not found")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(UserFacingError) as e:
        fetch_release("train-data", tmp_path, DataConfig(source="hub", revision="v9"))
    msg = str(e.value)
    assert (
        msg.startswith("release train-data (ASearcher-train-data): the hub has no dataset ") and "v9" in msg
    )
    assert "check data.train_repo and data.revision" in msg and "--source mirror" in msg, msg
    assert list(tmp_path.iterdir()) == []
