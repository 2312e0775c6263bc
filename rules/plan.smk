# The study's budget before anything runs (workflow_scripts/budget.py): cells, training tokens,
# GPU-hours and disk, printed and written to results/plan.txt by `snakemake plan`. A local rule
# without declared outputs: Snakemake runs it each time it is asked for, rule all never asks,
# so a finished study gains no job (and a dry run lists none).


rule plan:
    log:
        f"{layout.LOGS}/plan.log",
    localrule: True
    run:
        from workflow_scripts.budget import write_plan

        write_plan(STUDY, layout.PLAN, log[0])
