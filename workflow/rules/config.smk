# The run's merged, fully-defaulted config, results/<run>/config.yaml: the one file every stage reads, written by
# this rule and never while the workflow is parsed. Its params carry the hash of the merged text, so Snakemake
# rewrites it exactly when the config changes; which stages rerun then is decided by their own `cfg_hash` params
# and config_input() (common.smk).


localrules:
    merged_config,


rule merged_config:
    output:
        MERGED_CONFIG,
    log:
        f"{LOGS}/merged_config/{CFG.name}.log",
    params:
        sha256=MERGED_CONFIG_SHA256,
    run:
        write_merged_config(output[0], log[0])
