# lm-eval on every trained cell (all of the study's tasks in one model load).


rule evaluate:
    input:
        model=f"{RUNS}/{{model}}/{{stage}}/{{cell}}/model",
        run=f"{RUNS}/{{model}}/{{stage}}/{{cell}}/run.json",
        tests=lambda w: list(get_test_files().values()),
    output:
        results=f"{RUNS}/{{model}}/{{stage}}/{{cell}}/eval/results.json",
        samples=directory(f"{RUNS}/{{model}}/{{stage}}/{{cell}}/eval/samples"),
    params:
        tasks=STUDY.tasks,
        test_files=get_test_files(),
        evaluation=CFG["evaluation"],
    threads: THREADS
    log:
        f"{LOGS}/evaluate/{{model}}/{{stage}}/{{cell}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{stage}}/{{cell}}.tsv"
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow_scripts/entry/evaluate.py"
