# All cells' run records and lm-eval results -> tidy and pivot tables.


rule aggregate:
    input:
        cells=get_aggregate_inputs,
        published=workflow.source_path("../reference/smoltulu_results.csv"),
    output:
        **reported(TABLES, "Tables", caption="../report/tables.rst"),
    params:
        config=CFG,
        cells=get_aggregate_cells(),
        tasks=STUDY.tasks,
        study=CFG["study"],
        reference=CFG.get("reference", {}),
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


# Tidy scores + per-item outputs -> slopes, split and ratio-invariance statistics.
rule statistics:
    input:
        scores=TABLES["scores"],
        samples=get_sample_dirs,
    output:
        **reported(ANALYSIS, "Statistics", caption="../report/statistics.rst"),
    params:
        cells=get_aggregate_cells(),
        tasks=STUDY.tasks,
        study=CFG["study"],
    log:
        f"{LOGS}/statistics.log",
    benchmark:
        f"{BENCH}/statistics.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/entry/analyze.py"
