# Login-node prefetch: local rules that download what the study names from the hub, at its
# revision, into cache_dir. Compute rules (train, evaluate) run with the hub offline.
#   snakemake prefetch --cores 1        fetch everything, then submit with --profile slurm


rule prefetch_model:
    output:
        layout.PREFETCH_RECORD,
    log:
        f"{layout.LOGS}/prefetch/{{model}}.log",
    benchmark:
        f"{layout.TIMINGS}/prefetch/{{model}}.tsv"
    wildcard_constraints:
        model=inputs.one_of(STUDY.locally_made("hub")),
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        model_id=lambda w: STUDY.models[w.model]["id"],
        revision=lambda w: STUDY.models[w.model].get("revision"),
    script:
        "../workflow_scripts/entry/prefetch_model.py"


rule prefetch_benchmark:
    output:
        directory(layout.TASK_EVAL_DATA),
    log:
        f"{layout.LOGS}/prefetch/benchmark_{{task}}.log",
    benchmark:
        f"{layout.TIMINGS}/prefetch/benchmark_{{task}}.tsv"
    wildcard_constraints:
        task=inputs.one_of(inputs.fetched_eval_data(STUDY)),
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        revision=lambda w: STUDY.tasks[w.task].get("revision"),
    script:
        "../workflow_scripts/entry/prefetch_benchmark.py"


rule prefetch:
    input:
        get_prefetch_targets,
