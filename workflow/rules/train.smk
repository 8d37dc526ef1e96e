# RL: the optional SFT warm start (rl.sft.enabled; CPU smoke only), then fully asynchronous RL on Ray
# (rl.enabled). Both run with the retrieval server started around them. On a cluster the train rule is one
# multi-node job (see the slurm/ profile).


rule sft:
    input:
        **RETRIEVAL_INPUTS,
        model=local_model(BASE_MODEL),
        train=TRAIN_DATA,
        cfg=config_input("sft"),
    output:
        directory(f"{RUN}/sft/model"),
    log:
        f"{LOGS}/sft/{CFG.name}.log",
    benchmark:
        f"{BENCHMARKS}/sft/{CFG.name}.tsv"
    # SFT and RL are the DAG's critical path: start them before the jobs that can run beside them
    priority: 50
    conda:
        "../envs/train.yaml"
    # Snakemake sets OMP_NUM_THREADS to a job's threads (1 by default): on 2 cores the SFT runs 1.7x faster with 2,
    # and nothing else is ready to run beside it
    threads: 2
    params:
        wrap=with_retrieval,
        model=sft_base_model,
        train=sft_train_file,
        cfg_hash=config_hash("sft"),
    shell:
        "{params.wrap} asearcher --no-progress sft --model {params.model} --train {params.train} "
        "--output {output} --config {input.cfg} > {log} 2>&1"


rule train:
    input:
        **RETRIEVAL_INPUTS,
        model=local_model(RL_INIT),
        train=TRAIN_DATA,
        synth=synth_train_input,
        cfg=config_input("train"),
        ray="workflow/scripts/ray_on_slurm.sh",
    output:
        model=directory(f"{RUN}/train/final"),
        metrics=f"{RUN}/train/metrics.jsonl",
        summary=f"{RUN}/train/summary.json",
        curves=f"{RUN}/train/training.png",
    log:
        f"{LOGS}/train/{CFG.name}.log",
    benchmark:
        f"{BENCHMARKS}/train/{CFG.name}.tsv"
    priority: 50
    conda:
        "../envs/train.yaml"
    resources:
        **TRAIN_RESOURCES,
    params:
        wrap=with_retrieval,
        model=rl_init_model,
        train=rl_train_file,
        outdir=output_dir,
        cfg_hash=config_hash("train"),
    shell:
        "bash {input.ray} {params.wrap} asearcher --no-progress train --config {input.cfg} "
        "--model {params.model} --train {params.train} --output {params.outdir} > {log} 2>&1"
