# Obtain the upstream releases in their own layouts (hub, or a local mirror via data.mirror / $ASEARCHER_MIRROR),
# each with a manifest of files, sizes and checksums. One rule over the three releases; the manifest is written
# last, so it stands for the whole release folder (the Local-Knowledge corpus and pages included).


localrules:
    fetch_data,


rule fetch_data:
    input:
        cfg=config_input("fetch_data"),
    output:
        manifest=f"{RELEASES}/{{release}}/manifest.json",
    log:
        f"{LOGS}/fetch_data/{{release}}.log",
    wildcard_constraints:
        release="|".join(RELEASE_NAMES),
    conda:
        "../envs/fetch.yaml"
    params:
        release=fetch_release_name,
        outdir=fetch_output_dir,
        cfg_hash=config_hash("fetch_data"),
    shell:
        "asearcher --no-progress fetch-data --release {params.release} --output {params.outdir} "
        "--config {input.cfg} > {log} 2>&1"
