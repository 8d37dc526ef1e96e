# RL: optional SFT warm start (CPU smoke only), then fully asynchronous RL on Ray. Both run with the retrieval
# server started around them. On a cluster the train rule is one multi-node job (see the slurm/ profile).

BASE_MODEL = CFG.engine.model
RL_INIT = f"{RUN}/sft/model" if CFG.rl.sft.enabled else BASE_MODEL
# CPU smoke: RL on the questions the SFT oracle could answer from the small corpus (see rl.sft.rl_on_answerable).
RL_ON_ANSWERABLE = CFG.rl.sft.enabled and CFG.rl.sft.rl_on_answerable


rule sft:
    input:
        **RETRIEVAL_INPUTS,
        base=local_model(BASE_MODEL),
        train=f"{RELEASES}/ASearcher-train-data/manifest.json",
    output:
        directory(f"{RUN}/sft/model"),
    log:
        f"{RUN}/logs/sft.log",
    conda:
        "../../environment.yml"
    params:
        wrap=lambda w, input: with_retrieval(input),
        model=lambda w, input: input.base[0] if input.base else BASE_MODEL,
        train=lambda w, input: os.path.join(os.path.dirname(input.train), CFG.rl.train_file),
        cfg=MERGED_CONFIG,
        cfg_hash=section_hash("rl", "agent"),
    shell:
        "{params.wrap} asearcher sft --model {params.model} --train {params.train} --output {output} "
        "--config {params.cfg} > {log} 2>&1"


rule train:
    input:
        **RETRIEVAL_INPUTS,
        init=local_model(RL_INIT),
        train=f"{RELEASES}/ASearcher-train-data/manifest.json",
        ray="workflow/scripts/ray_on_slurm.sh",
    output:
        model=directory(f"{RUN}/train/final"),
        metrics=f"{RUN}/train/metrics.jsonl",
        summary=f"{RUN}/train/summary.json",
        curves=f"{RUN}/train/training.png",
    log:
        f"{RUN}/logs/train.log",
    conda:
        "../../environment.yml"
    params:
        wrap=lambda w, input: with_retrieval(input),
        model=lambda w, input: input.init[0] if input.init else RL_INIT,
        train=lambda w, input: (
            os.path.join(input.init[0], "answerable.jsonl")
            if RL_ON_ANSWERABLE
            else os.path.join(os.path.dirname(input.train), CFG.rl.train_file)
        ),
        outdir=lambda w, output: os.path.dirname(output.metrics),
        cfg=MERGED_CONFIG,
        cfg_hash=section_hash("rl", "agent", "engine"),
    resources:
        **TRAIN_RESOURCES,
    shell:
        "bash {input.ray} {params.wrap} asearcher train --config {params.cfg} --model {params.model} --train {params.train} "
        "--output {params.outdir} > {log} 2>&1"
