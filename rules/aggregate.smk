# All cells' run records and lm-eval results -> tidy and pivot tables.


rule aggregate:
    input:
        get_aggregate_inputs,
    output:
        **reported(TABLES, "Tables", caption="../report/tables.rst"),
    params:
        config=CFG,
        cells=get_aggregate_cells(),
        tasks=STUDY.tasks,
        study=CFG["study"],
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCH}/aggregate.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/entry/aggregate.py"
