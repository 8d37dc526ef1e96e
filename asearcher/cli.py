"""The `asearcher` console script: one subcommand per stage.

Subcommand modules are imported only when invoked, so `asearcher --help` is instant and a stage's heavy
dependencies (Java, torch, Ray) load only for the stage that needs them. Each module listed in COMMANDS
defines `add_arguments(parser)` and `run(args) -> int | None`.

Every subcommand also takes the common options, before or after its name:
  --config FILE        run config YAML (default: the built-in defaults)
  --set KEY=VALUE      config override, repeatable (e.g. --set rl.steps=10 --set eval.k=1)
  --log-level LEVEL    DEBUG | INFO | WARNING | ERROR
  --no-progress        no progress bars (the Snakemake rules pass it, so rule logs hold no bars)
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

from asearcher.errors import UserFacingError
from asearcher.utils.progress import disable_progress
from asearcher.utils.secrets import install_excepthook, install_log_redaction, redact

# name -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("asearcher.config.cli", "validate a config, print it merged, or write its JSON schema"),
    "fetch-data": (
        "asearcher.data.fetch",
        "obtain the upstream releases (hub or local mirror) with a manifest",
    ),
    "index": (
        "asearcher.retrieval.index",
        "build a Pyserini BM25 (or E5+FAISS) index over wiki_corpus.jsonl",
    ),
    "serve-retrieval": (
        "asearcher.retrieval.server",
        "serve /retrieve and /access over HTTP (Search-R1 API)",
    ),
    "with-retrieval": (
        "asearcher.retrieval.service",
        "run a command with a retrieval server started around it",
    ),
    "tiny-model": ("asearcher.llm.tiny", "build a tiny random-init Qwen2 model + corpus-trained tokenizer"),
    "serve-llm": ("asearcher.llm.serve", "OpenAI-compatible server backed by the transformers engine"),
    "eval": ("asearcher.eval.run", "evaluate an agent on benchmarks (Avg@k / Pass@k), resumable"),
    "score": ("asearcher.eval.score", "score a predictions JSONL with the paper's metrics"),
    "ask": ("asearcher.eval.ask", "ask one question: any agent, engine and tools, printing the trajectory"),
    "tool": (
        "asearcher.tools.cli",
        "one tool call (search QUERY | access URL) with the run's tools, JSON out",
    ),
    "synth": ("asearcher.synth.run", "synthesize hard multi-hop QA with the prompt-based agent, resumable"),
    "sft": ("asearcher.rl.warmstart.sft", "warm-start a model on oracle search trajectories (CPU smoke)"),
    "train": ("asearcher.rl.train", "fully asynchronous RL on Ray (staleness-bounded)"),
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def package_version() -> str:
    try:
        return version("asearcher-repro")
    except PackageNotFoundError:  # running from a source tree that was not pip-installed
        return "unknown"


def _add_global_options(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--log-level and --no-progress; the subcommand's copies default to 'not given' so the root's values stand."""
    unset = {} if defaults else {"default": argparse.SUPPRESS}
    p.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, **({"default": "INFO"} if defaults else unset),
        help="logging level (default: INFO)",
    )  # fmt: skip
    p.add_argument(
        "--no-progress", action="store_true", **({"default": False} if defaults else unset),
        help="no progress bars (also in the processes a stage starts)",
    )  # fmt: skip


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options every subcommand shares (see the module docstring)."""
    g = p.add_argument_group("common options")
    g.add_argument("--config", metavar="FILE", help="run config YAML (default: the built-in defaults)")
    g.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="config override, repeatable, e.g. --set rl.steps=10",
    )  # fmt: skip
    _add_global_options(g, defaults=False)  # type: ignore[arg-type]


def _build_root() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asearcher",
        description="ASearcher replication suite. Each subcommand is one stage of the Snakemake DAG; "
        "run `asearcher SUBCOMMAND --help` for its options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="stages:\n" + "\n".join(f"  {n:<16} {h}" for n, (_, h) in COMMANDS.items()),
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    _add_global_options(p, defaults=True)
    p.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="SUBCOMMAND")
    return p


def build_subparser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser of one subcommand (its own options + the common ones) and its module."""
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(
        prog=f"asearcher {name}",
        description=(module.__doc__ or help_text).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(sub)
    add_common_arguments(sub)
    return sub, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root = _build_root()
    # Split global options from the subcommand and its own arguments.
    idx = next((i for i, a in enumerate(argv) if a in COMMANDS), None)
    if idx is None:
        args = root.parse_args(argv)
        root.print_help()
        return 0 if not argv or args.command is None else 2
    glob = root.parse_args(argv[:idx])
    name = argv[idx]
    sub, module = build_subparser(name)
    args = sub.parse_args(argv[idx + 1 :])
    args.log_level = getattr(args, "log_level", glob.log_level)
    args.no_progress = bool(getattr(args, "no_progress", False) or glob.no_progress)
    logging.basicConfig(
        level=getattr(logging, args.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # secrets read from the environment never reach stderr: log records and uncaught tracebacks are redacted
    install_log_redaction()
    install_excepthook()
    if args.no_progress:
        disable_progress()  # through the environment, so Ray workers and servers started from here inherit it
    try:
        rc = module.run(args)  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        return 130
    except UserFacingError as e:
        print(f"asearcher {name}: error: {redact(str(e))}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
