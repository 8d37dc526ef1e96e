# Build the retrieval index (Pyserini BM25 by default; E5 + FAISS with retrieval.backend: e5) and check that the
# retrieval server starts, answers a query and serves a page, then stops. Both switch on retrieval.enabled.


rule build_index:
    input:
        knowledge=LOCAL_KNOWLEDGE,
        cfg=config_input("build_index"),
    output:
        directory(INDEX),
    log:
        f"{LOGS}/build_index/{CFG.retrieval.backend}.log",
    benchmark:
        f"{BENCHMARKS}/build_index/{CFG.retrieval.backend}.tsv"
    conda:
        "../envs/retrieval.yaml"
    threads: CFG.retrieval.threads
    resources:
        **INDEX_RESOURCES,
    params:
        corpus=corpus_file,
        backend=CFG.retrieval.backend,
        cfg_hash=config_hash("build_index"),
    shell:
        "asearcher --no-progress index --corpus {params.corpus} --output {output} --backend {params.backend} "
        "--threads {threads} --config {input.cfg} > {log} 2>&1"


rule retrieval_check:
    input:
        **RETRIEVAL_INPUTS,
        cfg=config_input("retrieval_check"),
        script="workflow/scripts/retrieval_check.py",
    output:
        f"{RUN}/retrieval_check.json",
    log:
        f"{LOGS}/retrieval_check/{CFG.name}.log",
    conda:
        "../envs/retrieval.yaml"
    params:
        wrap=with_retrieval,
        cfg_hash=config_hash("retrieval_check"),
    shell:
        "{params.wrap} python {input.script} --output {output} > {log} 2>&1"
