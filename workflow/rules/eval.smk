# Evaluation: model x benchmark, each with the retrieval server around it. Outputs per-sample rows and an
# aggregate JSON carrying the protocol card under results/eval/<model>/<setting>/<benchmark>/.


rule eval:
    input:
        **RETRIEVAL_INPUTS,
        model=model_inputs,
        test=f"{RELEASES}/ASearcher-test-data/manifest.json",
    output:
        f"{R}/eval/{{model}}/{SETTING}/{{benchmark}}/aggregate.json",
    log:
        f"{R}/logs/eval/{{model}}/{SETTING}/{{benchmark}}.log",
    conda:
        "../../environment.yml"
    params:
        wrap=lambda w, input: with_retrieval(input),
        outdir=lambda w, output: os.path.dirname(output[0]),
        releases=lambda w, input: os.path.dirname(os.path.dirname(input.test)),
        setting=SETTING,
        cfg=MERGED_CONFIG,
        cfg_hash=section_hash("eval", "agent", "retrieval"),
    resources:
        **EVAL_RESOURCES,
    shell:
        "{params.wrap} asearcher eval --config {params.cfg} --model {wildcards.model} "
        "--benchmark {wildcards.benchmark} --setting {params.setting} --releases {params.releases} "
        "--output {params.outdir} > {log} 2>&1"
