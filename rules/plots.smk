# Tables -> figures (PDF and PNG).


rule plots:
    input:
        scores=TABLES["scores"],
        loss=TABLES["loss"],
        slopes=ANALYSIS["slopes_csv"],
        split=ANALYSIS["split_csv"],
        published=workflow.source_path("../reference/smoltulu_results.csv"),
        reference=TABLES["reference_csv"],
    output:
        **reported(FIGURES, "Figures"),
    params:
        study=CFG["study"],
    log:
        f"{LOGS}/plots.log",
    benchmark:
        f"{BENCH}/plots.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/entry/plots.py"
