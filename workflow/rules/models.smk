# The CPU default's tiny model: random-init Qwen2 architecture + a BPE tokenizer trained on the corpus.


rule tiny_model:
    input:
        corpus=CORPUS,
    output:
        directory(TINY),
    log:
        f"{R}/logs/tiny_model.log",
    conda:
        "../../environment.yml"
    params:
        cfg=MERGED_CONFIG,
        cfg_hash=section_hash("tiny_model"),
    shell:
        "asearcher tiny-model --corpus {input.corpus} --output {output} --config {params.cfg} > {log} 2>&1"
