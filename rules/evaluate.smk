# lm-eval on every trained cell (all of the study's tasks in one model load).


rule evaluate:
    input:
        model=f"{RUNS}/{{model}}/{{stage}}/{{cell}}/model",
        run=f"{RUNS}/{{model}}/{{stage}}/{{cell}}/run.json",
        # constants, not functions: Snakemake calls a function once per job (1,000-cell dry run)
        tests=list(get_test_files().values()),
        benchmarks=get_benchmark_inputs(None),
        # built-in tasks only: the check that no prompt would be cut (rules/checks.smk)
        **prompt_check_input(),
    # protected: a rerun refuses to replace raw evaluation outputs (to re-evaluate a cell on
    # purpose, delete its eval/ folder first); every evaluation is also hard-linked into
    # results/archive/<run id>/, which nothing deletes (protected() cannot stop root)
    output:
        results=protected(f"{RUNS}/{{model}}/{{stage}}/{{cell}}/eval/results.json"),
        samples=protected(directory(f"{RUNS}/{{model}}/{{stage}}/{{cell}}/eval/samples")),
    params:
        tasks=STUDY.tasks,
        test_files=get_test_files(),
        benchmark_dirs=get_benchmark_dirs(),
        evaluation=CFG["evaluation"],
        archive=f"{RESULTS}/archive/{{model}}/{{stage}}/{{cell}}/eval",
    threads: THREADS
    log:
        f"{LOGS}/evaluate/{{model}}/{{stage}}/{{cell}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{stage}}/{{cell}}.tsv"
    resources:
        mem_mb=model_resource_x_attempt("evaluate", "mem_mb"),
        runtime=model_resource_x_attempt("evaluate", "runtime"),
        gpu=1,
        cpus_per_gpu=model_resource("evaluate", "cpus_per_gpu"),
        **gpu_model_resource("evaluate"),
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow_scripts/entry/evaluate.py"
