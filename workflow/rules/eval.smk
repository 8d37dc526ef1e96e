# Evaluation (eval.enabled): model x benchmark, each with the retrieval server around it. Outputs per-sample rows
# and an aggregate JSON carrying the protocol card under results/eval/<model>/<setting>/<benchmark>/.
#
# With eval.in_distribution, every model is also evaluated on the questions RL trained on: the benchmark
# train-questions (asearcher/eval/benchmarks/train-questions.yaml, flagged in-distribution in its protocol card), read
# from the file RL trains on, the first eval.in_distribution_questions of it, with the agent as it was trained
# (eval.agent.defaults: agent, e.g. the training prompt's validity note instead of the eval prompt's; keys set in
# eval.agent still win). The CPU default's tiny model scores zero on the test questions; on these the difference RL
# made shows. Its helpers (eval_questions_input, eval_questions_args) are in common.smk.


rule eval:
    input:
        **RETRIEVAL_INPUTS,
        model=eval_model_input,
        test=TEST_DATA,
        questions=eval_questions_input,
        cfg=config_input("eval"),
    output:
        f"{R}/eval/{{model}}/{SETTING}/{{benchmark}}/aggregate.json",
    log:
        f"{LOGS}/eval/{{model}}/{SETTING}/{{benchmark}}.log",
    benchmark:
        f"{BENCHMARKS}/eval/{{model}}/{SETTING}/{{benchmark}}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        **EVAL_RESOURCES,
    params:
        wrap=with_retrieval,
        outdir=output_dir,
        releases=releases_dir,
        setting=SETTING,
        questions=eval_questions_args,
        cfg_hash=config_hash("eval"),
    shell:
        "{params.wrap} asearcher --no-progress eval --config {input.cfg} --model {wildcards.model} "
        "--benchmark {wildcards.benchmark} {params.questions} --setting {params.setting} "
        "--releases {params.releases} --output {params.outdir} > {log} 2>&1"


# The web setting on the local web (common.smk: LOCAL_WEB_EVAL): the same evaluation with the web tools pointed at
# the retrieval server's Serper-format /search and its /wiki/ pages, a few questions, recording the tool responses
# into <output>/tool-recordings/.
rule eval_web:
    input:
        **RETRIEVAL_INPUTS,
        model=eval_model_input,
        test=TEST_DATA,
        cfg=config_input("eval_web"),
    output:
        f"{R}/eval/{{model}}/{LOCAL_WEB_SETTING}/{{benchmark}}/aggregate.json",
    log:
        f"{LOGS}/eval_web/{{model}}/{LOCAL_WEB_SETTING}/{{benchmark}}.log",
    benchmark:
        f"{BENCHMARKS}/eval_web/{{model}}/{LOCAL_WEB_SETTING}/{{benchmark}}.tsv"
    conda:
        "../envs/eval.yaml"
    resources:
        **EVAL_RESOURCES,
    params:
        wrap=with_retrieval,
        outdir=output_dir,
        releases=releases_dir,
        setting=LOCAL_WEB_SETTING,
        overrides=LOCAL_WEB_OVERRIDES,
        questions=LOCAL_WEB_QUESTIONS,
        cfg_hash=config_hash("eval_web"),
    shell:
        "{params.wrap} asearcher --no-progress eval --config {input.cfg} {params.overrides} "
        "--model {wildcards.model} --benchmark {wildcards.benchmark} --setting {params.setting} "
        "--max-samples {params.questions} --releases {params.releases} --output {params.outdir} > {log} 2>&1"
