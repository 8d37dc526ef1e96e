# Ablation sweeps (docs/sweeps.md): configs/sweeps/<name>.yaml, validated by asearcher.config.sweep, each a list of
# values of one config key over a base recipe. A sweep's runs share everything upstream of RL with this run (the
# index, the base model, the SFT warm start, the training questions): each run is the train rule's command with
# `--set key=value` (and the sweep's fixed overrides) into results/sweeps/<sweep>/<value>/train/, then, when the sweep
# lists benchmarks, the eval rule's command on its trained model into .../eval/<benchmark>/. runs.json lists the
# runs' folders for the report. One target per sweep: `snakemake --cores all sweep_<name>` (a sweep over a recipe
# runs with that recipe: `--configfile <base>`). Sweeps listed in the config's `sweeps:` are targets of `all`.


include: "sweep_common.smk"


wildcard_constraints:
    sweep="|".join(map(re.escape, SWEEPS)) or "(?!)",


localrules:
    sweep_runs,


# One RL run of a sweep: the train rule's command (train.smk) with the run's --set options.
rule sweep_train:
    input:
        **RETRIEVAL_INPUTS,
        model=local_model(RL_INIT),
        train=TRAIN_DATA,
        synth=synth_train_input,
        cfg=config_input("train"),
        ray="workflow/scripts/ray_on_slurm.sh",
    output:
        model=directory(f"{SWEEP_RUN}/train/final"),
        metrics=f"{SWEEP_RUN}/train/metrics.jsonl",
        summary=f"{SWEEP_RUN}/train/summary.json",
        curves=f"{SWEEP_RUN}/train/training.png",
    log:
        f"{LOGS}/sweep_train/{{sweep}}/{{value}}.log",
    benchmark:
        f"{BENCHMARKS}/sweep_train/{{sweep}}/{{value}}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        **{k: _sweep_run_resource(train_resources, k) for k in TRAIN_RESOURCES},
    params:
        wrap=sweep_wrap,
        model=rl_init_model,
        train=rl_train_file,
        outdir=output_dir,
        overrides=sweep_set_options,
        cfg_hash=config_hash("train"),
    shell:
        "bash {input.ray} {params.wrap} asearcher --no-progress train --config {input.cfg} {params.overrides} "
        "--model {params.model} --train {params.train} --output {params.outdir} > {log} 2>&1"


# A run's trained model on one benchmark: the eval rule's command (eval.smk) with the run's --set options and a
# `models` entry for the model.
rule sweep_eval:
    input:
        **RETRIEVAL_INPUTS,
        model=f"{SWEEP_RUN}/train/final",
        test=TEST_DATA,
        cfg=config_input("eval"),
    output:
        f"{SWEEP_RUN}/eval/{{benchmark}}/aggregate.json",
    log:
        f"{LOGS}/sweep_eval/{{sweep}}/{{value}}/{{benchmark}}.log",
    benchmark:
        f"{BENCHMARKS}/sweep_eval/{{sweep}}/{{value}}/{{benchmark}}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        **{k: _sweep_run_resource(trained_eval_resources, k) for k in EVAL_RESOURCE_KEYS},
    params:
        wrap=sweep_wrap,
        outdir=output_dir,
        releases=releases_dir,
        setting=SETTING,
        model=SWEEP_MODEL,
        overrides=sweep_eval_set_options,
        cfg_hash=config_hash("eval"),
    shell:
        "{params.wrap} asearcher --no-progress eval --config {input.cfg} {params.overrides} "
        "--model {params.model} --benchmark {wildcards.benchmark} --setting {params.setting} "
        "--releases {params.releases} --output {params.outdir} > {log} 2>&1"


rule sweep_runs:
    input:
        sweep_runs_inputs,
    output:
        f"{R}/sweeps/{{sweep}}/runs.json",
    log:
        f"{LOGS}/sweep_runs/{{sweep}}.log",
    run:
        write_sweep_runs(wildcards.sweep, output[0], log[0])


for _name in SWEEPS:

    rule:
        name:
            f"sweep_{_name}"
        input:
            functools.partial(sweep_target_inputs, _name),
        localrule: True
