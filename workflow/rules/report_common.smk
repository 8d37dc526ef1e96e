# Helpers of the report rules (rules/report.smk, which includes this file): the files each notebook writes, with
# report() on the ones `snakemake --report` shows, and the inputs and targets of the report rules.

import re
from pathlib import Path

from asearcher.report.layout import NOTEBOOKS
from asearcher.report.runs import Run

REPORT = f"{R}/report"
NOTEBOOK_DIR = "notebooks"


def report_outputs(notebook, folder):
    """The files `notebook` writes in `folder`, by name (`<stem>_<ext>`); report() on the shown ones."""
    outs = {}
    for p in NOTEBOOKS[notebook]:
        for ext in p.extensions:
            path = f"{folder}/{p.stem}{ext}"
            if ext == p.shown:
                path = report(
                    path,
                    caption=f"../report/{p.caption}.rst",
                    category=p.category,
                    subcategory="{sweep}" if notebook == "sweep" else None,
                )
            outs[f"{p.stem}_{ext[1:]}"] = path
    return outs


def _sweep_names(outs):
    pattern = re.compile(rf"^{re.escape(R)}/sweeps/([^/]+)/runs\.json$")
    return [m.group(1) for m in map(pattern.match, outs) if m]


def report_targets(outs):
    """get_final_outputs()' report part: the executed notebooks (each rule's last output), one per sweep in
    `outs` (the targets of every other stage)."""
    targets = [f"{REPORT}/evaluation.ipynb", f"{REPORT}/training.ipynb"]
    targets += [f"{REPORT}/sweeps/{name}/sweep.ipynb" for name in _sweep_names(outs)]
    return targets


def _upstream_targets():
    return [p for p in get_final_outputs() if not p.startswith(f"{REPORT}/")]


def report_evaluation_inputs(wildcards):
    """Every evaluation the DAG makes (test benchmarks, the local web, in-distribution, sweep runs)."""
    return [p for p in _upstream_targets() if os.path.basename(p) == "aggregate.json"]


def report_training_inputs(wildcards):
    """The training metrics and the synthesis statistics, when their stages are on."""
    wanted = {("train", "metrics.jsonl"), ("synth", "stats.json")}
    return [p for p in _upstream_targets() if Path(p).parts[-2:] in wanted]
