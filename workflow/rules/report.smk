# The report (report.enabled): papermill runs the notebooks in notebooks/, which call asearcher.report and write
# tables (CSV, Markdown) and figures (PNG, PDF) under results/report/, the executed notebooks beside them. The
# files each notebook writes are listed once, in asearcher/report/layout.py; `report()` puts the CSV and PNG of each
# into `snakemake --report report.html`, with the captions in workflow/report/. The report rules come last: their
# inputs are the DAG's other targets, and a product whose inputs a disabled stage would make says it is missing.


include: "report_common.smk"


rule report_evaluation:
    input:
        notebook=f"{NOTEBOOK_DIR}/evaluation.ipynb",
        evals=report_evaluation_inputs,
        cfg=config_input("report_evaluation"),
    output:
        **report_outputs("evaluation", REPORT),
        notebook=f"{REPORT}/evaluation.ipynb",
    log:
        f"{LOGS}/report_evaluation/{CFG.name}.log",
    benchmark:
        f"{BENCHMARKS}/report_evaluation/{CFG.name}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        outdir=output_dir,
        cfg_hash=config_hash("report_evaluation"),
    shell:
        "papermill --no-progress-bar -k python3 {input.notebook} {output.notebook} "
        "-p config {input.cfg} -p out_dir {params.outdir} > {log} 2>&1"


rule report_training:
    input:
        notebook=f"{NOTEBOOK_DIR}/training.ipynb",
        runs=report_training_inputs,
        cfg=config_input("report_training"),
    output:
        **report_outputs("training", REPORT),
        notebook=f"{REPORT}/training.ipynb",
    log:
        f"{LOGS}/report_training/{CFG.name}.log",
    benchmark:
        f"{BENCHMARKS}/report_training/{CFG.name}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        outdir=output_dir,
        cfg_hash=config_hash("report_training"),
    shell:
        "papermill --no-progress-bar -k python3 {input.notebook} {output.notebook} "
        "-p config {input.cfg} -p out_dir {params.outdir} > {log} 2>&1"


rule report_sweep:
    input:
        notebook=f"{NOTEBOOK_DIR}/sweep.ipynb",
        runs=f"{R}/sweeps/{{sweep}}/runs.json",
    output:
        **report_outputs("sweep", f"{REPORT}/sweeps/{{sweep}}"),
        notebook=f"{REPORT}/sweeps/{{sweep}}/sweep.ipynb",
    log:
        f"{LOGS}/report_sweep/{{sweep}}.log",
    benchmark:
        f"{BENCHMARKS}/report_sweep/{{sweep}}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        outdir=output_dir,
        label=Run(CFG).label,
    shell:
        "papermill --no-progress-bar -k python3 {input.notebook} {output.notebook} "
        "-p runs_json {input.runs} -p out_dir {params.outdir} -p run_label {params.label:q} > {log} 2>&1"
