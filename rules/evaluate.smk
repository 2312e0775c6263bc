# lm-eval on every trained cell (all of the study's tasks in one model load).


rule evaluate:
    input:
        **prompt_check_input(),
        model=layout.CELL_MODEL,
        run=layout.RUN_JSON,
        # constants, not functions: Snakemake calls a function once per job (1,000-cell dry run)
        tests=list(TEST_FILES.values()),
        benchmarks=EVAL_DATA_INPUTS,
        # built-in tasks only: the check that no prompt would be cut (rules/checks.smk)
    # protected: a rerun refuses to replace raw evaluation outputs (to re-evaluate a cell on
    # purpose, delete its eval/ folder first); every evaluation is also hard-linked into
    # results/archive/<run id>/, which nothing deletes (protected() cannot stop root)
    output:
        results=protected(layout.EVAL_RESULTS),
        samples=protected(directory(layout.EVAL_SAMPLES)),
    log:
        f"{layout.LOGS}/evaluate/{layout.CELL}.log",
    benchmark:
        f"{layout.TIMINGS}/evaluate/{layout.CELL}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: THREADS
    resources:
        **cluster_resources("evaluate", gpu=1),
    params:
        tasks=STUDY.tasks,
        test_files=TEST_FILES,
        benchmark_dirs=EVAL_DATA_DIRS,
        evaluation=CFG["evaluation"],
        archive=layout.EVAL_ARCHIVE,
    script:
        "../workflow_scripts/entry/evaluate.py"
