# ASearcher replication suite: one DAG from the upstream releases to evaluated, RL-trained search agents.
#
#   snakemake --cores all                                   # CPU default (configs/default.yaml), small real data
#   snakemake --cores all --profile slurm --configfile configs/paper/asearcher-local-7b.yaml   # paper scale
#   snakemake -n                                            # show every stage
#
# Rules call the `asearcher` CLI; the CLI calls the library; nothing in asearcher/ imports Snakemake.
# Conventions (docs/architecture.md): logs in logs/<rule>/, benchmark records of the heavy rules in
# logs/benchmarks/<rule>/, a conda env per rule in workflow/envs/ (`--use-conda`), optional stages switched by the
# `enabled` flag of their config section (enabled() in common.smk), the merged config written by a rule.

from snakemake.utils import min_version

min_version("9.19")


# The CPU default, unless a recipe is given with --configfile: recipes are complete on their own, never merged
# over the default (`--config key=value` overrides apply on top of either).
if not workflow.overwrite_configfiles:

    configfile: "configs/default.yaml"


include: "workflow/rules/common.smk"


# `snakemake --report report.html`: this description, then every figure and table of rules/report.smk.
report: "workflow/report/workflow.rst"


wildcard_constraints:
    model=r"[A-Za-z0-9_.\-]+",
    benchmark=r"[A-Za-z0-9_.\-]+",


include: "workflow/rules/config.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
