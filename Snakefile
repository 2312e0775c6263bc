# LR/BS ratio study: config -> data -> TRL training grid -> lm-eval -> tables -> figures.
# Start at docs/architecture.md. A study is one config file: config.yaml (the real study)
# unless another is given with --configfile (e.g. studies/demo.yaml); the two are never merged.
# --config KEY=VALUE overrides apply to whichever file is used.

if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/prefetch.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/checks.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/plots.smk"
include: "rules/plan.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
