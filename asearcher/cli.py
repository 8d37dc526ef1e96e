"""The `asearcher` console script: one subcommand per stage.

Subcommand modules are imported only when invoked, so `asearcher --help` is instant and a stage's heavy
dependencies (Java, torch, Ray) load only for the stage that needs them. Each module listed in COMMANDS
defines `add_arguments(parser)` and `run(args) -> int | None`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from asearcher.errors import UserFacingError

# name -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("asearcher.config.cli", "validate a config, print it merged, or write its JSON schema"),
    "fetch-data": ("asearcher.data.fetch", "obtain the upstream releases (hub or local mirror) with a manifest"),
    "index": ("asearcher.retrieval.index", "build a Pyserini BM25 (or E5+FAISS) index over wiki_corpus.jsonl"),
    "serve-retrieval": ("asearcher.retrieval.server", "serve /retrieve and /access over HTTP (Search-R1 API)"),
    "with-retrieval": ("asearcher.retrieval.service", "run a command with a retrieval server started around it"),
    "tiny-model": ("asearcher.llm.tiny", "build a tiny random-init Qwen2 model + corpus-trained tokenizer"),
    "serve-llm": ("asearcher.llm.serve", "OpenAI-compatible server backed by the transformers engine"),
    "eval": ("asearcher.eval.run", "evaluate an agent on benchmarks (Avg@k / Pass@k), resumable"),
    "score": ("asearcher.eval.score", "score a predictions JSONL with the paper's metrics"),
    "sft": ("asearcher.rl.sft", "warm-start a model on oracle search trajectories (CPU smoke)"),
    "train": ("asearcher.rl.train", "fully asynchronous RL on Ray (staleness-bounded)"),
}


def _build_root() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asearcher",
        description="ASearcher replication suite. Each subcommand is one stage of the Snakemake DAG; "
        "run `asearcher SUBCOMMAND --help` for its options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="stages:\n" + "\n".join(f"  {n:<16} {h}" for n, (_, h) in COMMANDS.items()),
    )
    p.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    p.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="SUBCOMMAND")
    return p


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
    module_name, help_text = COMMANDS[name]
    logging.basicConfig(
        level=getattr(logging, str(glob.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(
        prog=f"asearcher {name}",
        description=(module.__doc__ or help_text).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(sub)
    args = sub.parse_args(argv[idx + 1 :])
    try:
        rc = module.run(args)
    except KeyboardInterrupt:
        return 130
    except UserFacingError as e:
        print(f"asearcher {name}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
