"""The report in the DAG: the default dry run ends in results/report/ (one notebook per kind, one per sweep), the
report rules declare the files the notebooks write, `report.enabled: false` leaves them out; and (slow) the rules
really run the notebooks with papermill on a small made-up run and `snakemake --report` collects them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from asearcher.report import layout

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), env.get("PATH", "")]
    )  # papermill, asearcher
    return env


def _snakemake(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def _jobs(out: str) -> dict[str, list[list[str]]]:
    """rule -> the output lists of its jobs, from a dry run's output."""
    jobs: dict[str, list[list[str]]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", out):
        m = re.match(r"(?:local)?rule (\w+):\n", block)
        o = re.search(r"^    output: (.*)$", block, re.M)
        if m:
            jobs.setdefault(m.group(1), []).append(o.group(1).split(", ") if o else [])
    return jobs


def test_default_dag_ends_in_the_report(tmp_path):
    r = _snakemake("-n", "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = _jobs(r.stdout)
    report = tmp_path / "report"
    (evaluation,) = jobs["report_evaluation"]
    (training,) = jobs["report_training"]
    assert sorted(evaluation) == sorted(
        [str(report / f) for f in layout.files("evaluation")] + [f"{report}/evaluation.ipynb"]
    )
    assert sorted(training) == sorted(
        [str(report / f) for f in layout.files("training")] + [f"{report}/training.ipynb"]
    )
    sweeps = yaml.safe_load((REPO / "configs/default.yaml").read_text()).get("sweeps") or []
    assert len(jobs.get("report_sweep", [])) == len(sweeps)
    for outs in jobs.get("report_sweep", []):
        assert outs[-1].startswith(f"{report}/sweeps/") and outs[-1].endswith("/sweep.ipynb")
    all_inputs = re.search(r"rule all:\n    input: (.*)$", r.stdout, re.M).group(1).split(", ")
    assert {f"{report}/evaluation.ipynb", f"{report}/training.ipynb"} <= set(all_inputs)


def test_report_switches_off(tmp_path):
    cfg = yaml.safe_load((REPO / "configs/default.yaml").read_text())
    cfg.update(results_dir=str(tmp_path), report={"enabled": False})
    (tmp_path / "off.yaml").write_text(yaml.safe_dump(cfg))
    r = _snakemake("-n", "--configfile", str(tmp_path / "off.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not {rule for rule in _jobs(r.stdout) if rule.startswith("report_")}


@pytest.mark.slow
def test_rules_run_the_notebooks_and_snakemake_report_collects_them(runs, tmp_path):
    """A workflow copy whose results hold a made-up run; every stage but the report is off, so the DAG is the
    merged config and the two report notebooks (papermill on the python3 kernel), then `snakemake --report`."""
    wf = tmp_path / "wf"
    wf.mkdir()
    shutil.copy2(REPO / "Snakefile", wf / "Snakefile")
    for d in ("workflow", "configs", "notebooks"):
        shutil.copytree(REPO / d, wf / d)
    runs.results = wf / "results"
    runs.make()
    (runs.run_dir / "config.yaml").unlink()  # the merged_config rule writes it
    cfg = yaml.safe_load((REPO / "configs/default.yaml").read_text())
    cfg.update(results_dir=str(runs.results), sweeps=[], tools={"backend": "web"})
    cfg["eval"]["enabled"] = cfg["rl"]["enabled"] = cfg["rl"]["sft"]["enabled"] = cfg["synth"]["enabled"] = (
        False
    )
    (wf / "report-only.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    t0 = time.monotonic()
    r = _snakemake("--cores", "2", "--configfile", "report-only.yaml", cwd=wf, timeout=600)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    report = runs.results / "report"
    for notebook in ("evaluation", "training"):
        executed = (report / f"{notebook}.ipynb").read_text()
        assert (
            '"tags": [\n     "injected-parameters"' in executed and '"output_type": "error"' not in executed
        )
        for name in layout.files(notebook):
            assert (report / name).stat().st_size > 0, name
    assert "tiny-rl" in (report / "table2_local.md").read_text()  # the made-up evaluations were read

    html = wf / "report.html"
    r = _snakemake("--configfile", "report-only.yaml", "--report", str(html), cwd=wf)
    assert r.returncode == 0, r.stdout + r.stderr
    text = html.read_text()
    assert "Main results against the paper (Tables 2, 3 and 4), run" in text and "Before vs after RL" in text
    print(f"DAG with the two report notebooks: {elapsed:.1f} s")


@pytest.mark.slow
def test_sweep_notebook_runs_under_papermill(runs, tmp_path):
    """One notebook, executed by papermill on the python3 kernel with injected parameters, writes its products."""
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "report"
    executed = tmp_path / "sweep.ipynb"
    params = {"runs_json": str(runs.sweep()), "out_dir": str(out), "run_label": "run 'fixture'"}
    papermill.execute_notebook(
        str(REPO / "notebooks/sweep.ipynb"), str(executed), parameters=params, kernel_name="python3",
        progress_bar=False, cwd=str(REPO),
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(layout.files("sweep"))
    assert "run 'fixture'" in (out / "sweep.md").read_text()
    assert '"output_type": "error"' not in executed.read_text()
