"""Validate a config, check it for inconsistent settings, print it merged with defaults, or write the JSON schema the
Snakefile validates against.

  validate  types and keys (what the schema can see)
  check     validate, then the cross-section consistency checks (caps against contexts, GPU counts against the
            allocation, backends against installed extras), each problem named by key; exit 2 on an error

Examples:
  asearcher config validate --config configs/default.yaml
  asearcher config check --config configs/paper/asearcher-web-qwq-stage1.yaml
  asearcher config show --config configs/paper/asearcher-local-7b.yaml --set rl.steps=10
  asearcher config schema --output workflow/schemas/config.schema.json
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from . import load_config, write_schema, json_schema


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["validate", "check", "show", "schema"])
    p.add_argument("--output", help="schema: write here instead of stdout")


def run(args: argparse.Namespace) -> int:
    if args.action == "schema":
        if args.output:
            write_schema(args.output)
        else:
            json.dump(json_schema(), sys.stdout, indent=2, sort_keys=True)
            print()
        return 0
    cfg = load_config(args.config, args.overrides)
    if args.action == "check":
        from .checks import require_consistent

        for warning in require_consistent(cfg, source=args.config or "<defaults>"):
            print(warning, file=sys.stderr)
        print(f"{args.config or '<defaults>'}: consistent")
        return 0
    if args.action == "show":
        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    else:
        print(f"{args.config or '<defaults>'}: ok")
    return 0
