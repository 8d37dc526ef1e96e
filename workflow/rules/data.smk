# Obtain the upstream releases in their own layouts (hub, or a local mirror via data.mirror / $ASEARCHER_MIRROR),
# each with a manifest of files, sizes and checksums.


localrules:
    fetch_local_knowledge,
    fetch_test_data,
    fetch_train_data,


rule fetch_local_knowledge:
    output:
        corpus=CORPUS,
        pages=PAGES,
        manifest=f"{RELEASES}/ASearcher-Local-Knowledge/manifest.json",
    log:
        f"{R}/logs/fetch/local-knowledge.log",
    conda:
        "../../environment.yml"
    params:
        outdir=lambda w, output: os.path.dirname(os.path.dirname(output.manifest)),
        cfg=MERGED_CONFIG,
        cfg_hash=section_hash("data"),
    shell:
        "asearcher fetch-data --release local-knowledge --output {params.outdir} --config {params.cfg} > {log} 2>&1"


rule fetch_test_data:
    output:
        manifest=f"{RELEASES}/ASearcher-test-data/manifest.json",
    log:
        f"{R}/logs/fetch/test-data.log",
    conda:
        "../../environment.yml"
    params:
        outdir=lambda w, output: os.path.dirname(os.path.dirname(output.manifest)),
        cfg=MERGED_CONFIG,
        cfg_hash=section_hash("data"),
    shell:
        "asearcher fetch-data --release test-data --output {params.outdir} --config {params.cfg} > {log} 2>&1"


rule fetch_train_data:
    output:
        manifest=f"{RELEASES}/ASearcher-train-data/manifest.json",
    log:
        f"{R}/logs/fetch/train-data.log",
    conda:
        "../../environment.yml"
    params:
        outdir=lambda w, output: os.path.dirname(os.path.dirname(output.manifest)),
        cfg=MERGED_CONFIG,
        cfg_hash=section_hash("data"),
    shell:
        "asearcher fetch-data --release train-data --output {params.outdir} --config {params.cfg} > {log} 2>&1"
