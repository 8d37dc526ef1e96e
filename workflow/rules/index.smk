# Build the retrieval index (Pyserini BM25 by default; E5 + FAISS with retrieval.backend: e5) and check that the
# retrieval server starts, answers a query and serves a page, then stops.


rule build_index:
    input:
        corpus=CORPUS,
    output:
        directory(INDEX),
    log:
        f"{R}/logs/build_index/{CFG.retrieval.backend}.log",
    conda:
        "../../environment.yml"
    params:
        backend=CFG.retrieval.backend,
        cfg=MERGED_CONFIG,
        cfg_hash=section_hash("retrieval"),
    threads: CFG.retrieval.threads
    resources:
        **INDEX_RESOURCES,
    shell:
        "asearcher index --corpus {input.corpus} --output {output} --backend {params.backend} "
        "--threads {threads} --config {params.cfg} > {log} 2>&1"


rule retrieval_check:
    input:
        **RETRIEVAL_INPUTS,
        script="workflow/scripts/retrieval_check.py",
    output:
        f"{RUN}/retrieval_check.json",
    log:
        f"{RUN}/logs/retrieval_check.log",
    conda:
        "../../environment.yml"
    params:
        wrap=lambda w, input: with_retrieval(input),
    shell:
        "{params.wrap} python {input.script} --output {output} > {log} 2>&1"
