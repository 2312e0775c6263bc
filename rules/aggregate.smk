# All cells' run records and lm-eval results -> tidy and pivot tables.


rule aggregate:
    input:
        cells=get_aggregate_inputs,
        published=workflow.source_path("../reference/smoltulu_results.csv"),
    output:
        **reported(layout.TABLES, "Tables", caption="../report/tables.rst"),
    params:
        config=CFG,
        cells=AGGREGATE_CELLS,
        tasks=STUDY.tasks,
        study=CFG["study"],
        reference=CFG.get("reference", {}),
    log:
        f"{layout.LOGS}/aggregate.log",
    benchmark:
        f"{layout.TIMINGS}/aggregate.tsv"
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
        scores=layout.TABLES["scores"],
        samples=get_sample_dirs,
    output:
        **reported(layout.ANALYSIS, "Statistics", caption="../report/statistics.rst"),
    params:
        cells=AGGREGATE_CELLS,
        tasks=STUDY.tasks,
        study=CFG["study"],
    log:
        f"{layout.LOGS}/statistics.log",
    benchmark:
        f"{layout.TIMINGS}/statistics.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/entry/analyze.py"
