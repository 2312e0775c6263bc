# Tables -> figures (PDF and PNG).


rule plots:
    input:
        scores=layout.TABLES["scores"],
        loss=layout.TABLES["loss"],
        slopes=layout.ANALYSIS["slopes_csv"],
        split=layout.ANALYSIS["split_csv"],
        optima=layout.ANALYSIS["optima_csv"],
        comparison=layout.ANALYSIS["comparison_csv"],
        sizes=layout.ANALYSIS["sizes_csv"],
        stability=layout.ANALYSIS["stability_csv"],
        published=workflow.source_path("../reference/smoltulu_results.csv"),
        reference=layout.TABLES["reference_csv"],
    output:
        **reported(layout.FIGURES, "Figures"),
    log:
        f"{layout.LOGS}/plots.log",
    benchmark:
        f"{layout.TIMINGS}/plots.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        study=CFG["study"],
    script:
        "../workflow_scripts/entry/plots.py"
