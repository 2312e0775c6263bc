# Login-node prefetch: local rules that download what the study names from the hub, at its
# revision, into cache_dir. Compute rules (train, evaluate) run with the hub offline.
#   snakemake prefetch --cores 1        fetch everything, then submit with --profile slurm


rule prefetch_model:
    output:
        f"{RESULTS}/prefetch/models/{{model}}.json",
    wildcard_constraints:
        model=model_names("hub"),
    params:
        model_id=lambda w: STUDY.models[w.model]["id"],
        revision=lambda w: STUDY.models[w.model].get("revision"),
    log:
        f"{LOGS}/prefetch/{{model}}.log",
    benchmark:
        f"{BENCH}/prefetch/{{model}}.tsv"
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/entry/prefetch_model.py"


rule prefetch_benchmark:
    output:
        directory(f"{BENCH_DATA}/{{task}}"),
    wildcard_constraints:
        task="|".join(fetched_benchmarks()) or "(?!)",
    params:
        revision=lambda w: STUDY.tasks[w.task].get("revision"),
    log:
        f"{LOGS}/prefetch/benchmark_{{task}}.log",
    benchmark:
        f"{BENCH}/prefetch/benchmark_{{task}}.tsv"
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow_scripts/entry/prefetch_benchmark.py"


rule prefetch:
    input:
        get_prefetch_targets,
