# The CPU default's tiny model: random-init Qwen2 architecture + a BPE tokenizer trained on the corpus.


rule tiny_model:
    input:
        knowledge=LOCAL_KNOWLEDGE,
        cfg=config_input("tiny_model"),
    output:
        directory(TINY),
    log:
        f"{LOGS}/tiny_model/tiny.log",
    conda:
        "../envs/model.yaml"
    params:
        corpus=corpus_file,
        cfg_hash=config_hash("tiny_model"),
    shell:
        "asearcher --no-progress tiny-model --corpus {params.corpus} --output {output} --config {input.cfg} "
        "> {log} 2>&1"
