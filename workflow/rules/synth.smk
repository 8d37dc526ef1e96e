# synth: the prompt-based QA synthesis agent (synth.enabled). Seeds from random pages of the local Wikipedia and
# their links, and/or seed QA of the train-data release; QA seeds without statements take them from the retrieval
# server, started around the stage for them. RL reads the training file when rl.train_source says so.
# records.jsonl (one line per finished seed) is not a declared output, so a failed or killed job keeps it and a
# rerun resumes where it stopped.


rule synth:
    input:
        **synth_retrieval_inputs(),
        knowledge=LOCAL_KNOWLEDGE,
        train=TRAIN_DATA,
        model=synth_model_input(),
        cfg=config_input("synth"),
    output:
        train=f"{RUN}/synth/train.jsonl",
        stats=f"{RUN}/synth/stats.json",
        plot=f"{RUN}/synth/stats.png",
    log:
        f"{LOGS}/synth/{CFG.name}.log",
    benchmark:
        f"{BENCHMARKS}/synth/{CFG.name}.tsv"
    conda:
        "../envs/synth.yaml"
    resources:
        **SYNTH_RESOURCES,
    params:
        wrap=synth_wrap,
        pages=pages_file,
        release=train_release_dir,
        outdir=output_dir,
        cfg_hash=config_hash("synth"),
    shell:
        "{params.wrap} asearcher --no-progress synth --pages {params.pages} --train-release {params.release} "
        "--output {params.outdir} --config {input.cfg} > {log} 2>&1"
