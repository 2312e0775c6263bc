# lm-eval: one job per (cell, task), so a task added to a finished study is the only one evaluated.


rule evaluate:
    input:
        **evaluate_inputs(),
        model=layout.CELL_MODEL,
        run=layout.RUN_JSON,
    # not protected(): a rerun (a score setting or the task changed) replaces the files, and
    # an ordinary user is never refused; every evaluation stays in results/archive/<run id>/eval,
    # written in lm-eval's own layout (results_<time>.json, samples_<task>_<time>.jsonl), which
    # nothing deletes
    output:
        results=layout.EVAL_TASK_RESULTS,
        samples=directory(layout.EVAL_TASK_SAMPLES),
    log:
        f"{layout.LOGS}/evaluate/{layout.CELL}/{{task}}.log",
    benchmark:
        f"{layout.TIMINGS}/evaluate/{layout.CELL}/{{task}}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: THREADS
    resources:
        **cluster_resources("evaluate", gpu=1),
    # what decides the scores, and only that: batch size and backend reach the job through
    # the config (workflow_scripts/evaluations.py, SPEED_SETTINGS), so changing them
    # re-evaluates nothing
    params:
        evaluation=get_evaluate_params,
        archive=layout.EVAL_ARCHIVE,
    script:
        "../workflow_scripts/entry/evaluate.py"
