"""Score a predictions JSONL with the paper's string metrics and print one JSON object of means.

Each input row: {"id": ..., "prediction": str or null, "answers": [str, ...]} (a single answer string is also
accepted). A null prediction (no answer produced) is scored as upstream scores a missing answer (as "": 0 on
f1, and on em/cem unless a gold normalises to ""); the *_strict metrics and squad_f1 score it 0. Rows may carry a "sample" index (several samples per
id); then Avg@k and Pass@k are added as "<metric>.avg@k" / "<metric>.pass@k", taking each question's k lowest
sample indices.

Metrics: f1 (the paper's set-based F1), em, cem (cover EM) -- all three exactly as upstream's scorers --, and the
project's em_strict, cem_strict (True/False read as yes/no, no credit for empty golds) and squad_f1 (SQuAD
multiset F1).

Example:
  asearcher score results/eval/<model>/<setting>/<benchmark>/samples.jsonl --metrics f1,em,cem --per-sample scores.jsonl
  -> {"n": 500, "f1": 0.41, "em": 0.30, "cem": 0.37}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asearcher.errors import UserFacingError
from asearcher.eval.aggregate import at_k
from asearcher.eval.metrics import parse_metric_list, score_all
from asearcher.utils.jsonl import DataError, iter_jsonl_numbered, write_jsonl

DEFAULT_METRICS = "f1,em,cem"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("predictions", metavar="PRED.jsonl", help="rows {id, prediction, answers[, sample]}")
    p.add_argument(
        "--metrics",
        help="comma list of f1, em, cem, em_strict, cem_strict, squad_f1 "
        f"(default: eval.metrics of --config, else {DEFAULT_METRICS})",
    )
    p.add_argument("--per-sample", metavar="OUT.jsonl", help="also write each row's scores here")
    p.add_argument("--k", type=int, default=None, help="k for Avg@k/Pass@k (default: most samples of any id)")


def _check_row(row: dict, where: str) -> None:
    rid = row["id"]
    if isinstance(rid, bool) or not isinstance(rid, str | int) or str(rid) == "":
        raise DataError(f"{where}: field 'id' must be a non-empty string or integer, got {rid!r}")
    pred = row["prediction"]
    if pred is not None and not isinstance(pred, str):
        raise DataError(f"{where}: field 'prediction' must be a string or null, got {type(pred).__name__}")
    ans = row["answers"]
    items = [ans] if isinstance(ans, str) else ans
    if not isinstance(items, list) or not items or not all(isinstance(a, str) for a in items):
        raise DataError(f"{where}: field 'answers' must be a non-empty list of strings, got {ans!r}")
    if "sample" in row and (isinstance(row["sample"], bool) or not isinstance(row["sample"], int)):
        raise DataError(f"{where}: field 'sample' must be an integer, got {row['sample']!r}")


def _rows_with_lines(path: Path):
    """(line number, row) per non-blank line; a bad line is an error naming it."""
    for lineno, row in iter_jsonl_numbered(path):
        for field in ("id", "prediction", "answers"):
            if field not in row:
                raise DataError(f"{path}:{lineno}: missing field {field!r}")
        yield lineno, row


def score_file(path: str | Path, metrics: list[str], k: int | None = None) -> tuple[dict, list[dict]]:
    """(summary, per-row scores). The summary holds n, the mean of each metric and, with samples, avg/pass@k."""
    path = Path(path)
    if path.is_dir():
        raise UserFacingError(f"predictions file {path} is a directory; pass a .jsonl file")
    if not path.is_file():
        raise UserFacingError(f"predictions file {path} does not exist")
    per_row: list[dict] = []
    seen: dict[tuple[str, int | None], int] = {}
    with_sample = None
    for lineno, row in _rows_with_lines(path):
        where = f"{path}:{lineno}"
        _check_row(row, where)
        has = "sample" in row
        if with_sample is None:
            with_sample = has
        elif has != with_sample:
            raise DataError(f"{where}: field 'sample' must be on every row or on none")
        key = (str(row["id"]), row.get("sample"))
        if key in seen:
            what = f"id {key[0]!r} sample {key[1]}" if has else f"id {key[0]!r}"
            raise DataError(
                f"{where}: duplicate {what} (first at line {seen[key]}); add a 'sample' field for k>1"
            )
        seen[key] = lineno
        out = {"id": row["id"]}
        if has:
            out["sample"] = row["sample"]
        out.update(score_all(row["prediction"], row["answers"], metrics))
        per_row.append(out)
    if not per_row:
        raise DataError(f"{path}: no rows to score")
    summary: dict = {"n": len(per_row)}
    for m in metrics:
        summary[m] = sum(r[m] for r in per_row) / len(per_row)
    if with_sample:
        summary["n_questions"] = len({str(r["id"]) for r in per_row})
        for m in metrics:
            res = at_k(((str(r["id"]), r["sample"], r[m]) for r in per_row), k)
            summary.update(res.as_dict(m))
        summary["k"] = res.k
        summary["n_incomplete"] = res.n_incomplete
    return summary, per_row


def run(args: argparse.Namespace) -> int:
    try:
        if args.metrics is None and (args.config or args.overrides):
            from asearcher.config import load_config

            args.metrics = ",".join(load_config(args.config, args.overrides).eval.metrics)
        metrics = parse_metric_list(args.metrics or DEFAULT_METRICS)
    except ValueError as e:
        raise UserFacingError(f"--metrics: {e}") from None
    if args.k is not None and args.k < 1:
        raise UserFacingError("--k must be >= 1")
    if args.per_sample and Path(args.per_sample).is_dir():  # before scoring: fail fast
        raise UserFacingError(f"--per-sample {args.per_sample}: is a directory; pass a file path")
    summary, per_row = score_file(args.predictions, metrics, args.k)
    if args.per_sample:
        try:  # atomic: the file is complete or not there (ids UTF-8 cannot encode are written as escapes)
            write_jsonl(args.per_sample, per_row)
        except OSError as e:
            raise UserFacingError(
                f"--per-sample {args.per_sample}: cannot write: {e.strerror or e}"
            ) from None
    json.dump(summary, sys.stdout)
    print()
    return 0
