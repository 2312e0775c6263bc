# All cells' run records and lm-eval results -> tidy and pivot tables.


rule aggregate:
    input:
        cells=get_aggregate_inputs,
        published=workflow.source_path("../reference/smoltulu_results.csv"),
    output:
        **reported(layout.TABLES, "Tables", caption="../report/tables.rst"),
    log:
        f"{layout.LOGS}/aggregate.log",
    benchmark:
        f"{layout.TIMINGS}/aggregate.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=CFG,
        cells=AGGREGATE_CELLS,
        tasks=STUDY.tasks,
        study=CFG["study"],
        reference=CFG.get("reference", {}),
    script:
        "../workflow_scripts/entry/aggregate.py"


# Tidy scores + per-item outputs -> optima, the primary comparison, sizes, slopes, split, invariance,
# stability across seeds (runs.csv's final losses), items that flip between low and high ratios.
rule statistics:
    input:
        scores=layout.TABLES["scores"],
        models=layout.TABLES["models"],
        runs=layout.TABLES["runs"],
        samples=get_sample_dirs,
    output:
        **reported(layout.ANALYSIS, "Statistics", caption="../report/statistics.rst"),
    log:
        f"{layout.LOGS}/statistics.log",
    benchmark:
        f"{layout.TIMINGS}/statistics.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cells=AGGREGATE_CELLS,
        tasks=STUDY.tasks,
        study=CFG["study"],
        analysis=STUDY.config.get("analysis", {}),
    script:
        "../workflow_scripts/entry/analyze.py"
