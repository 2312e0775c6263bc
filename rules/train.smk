# One TRL training job per grid cell: SFTTrainer for sft stages, DPOTrainer for dpo stages
# (on top of the parent SFT cell's model).


rule train:
    input:
        unpack(get_stage_data),
        base=get_base_model_input,
        prefetch=get_prefetch_input,
    output:
        model=trained_model_output(f"{RUNS}/{{model}}/{{stage}}/{{cell}}/model"),
        run=f"{RUNS}/{{model}}/{{stage}}/{{cell}}/run.json",
        history=f"{RUNS}/{{model}}/{{stage}}/{{cell}}/log_history.json",
    params:
        spec=lambda w: STUDY.training_spec(get_cell(w)),
        base_model=get_base_model_ref,
    threads: THREADS
    log:
        f"{LOGS}/train/{{model}}/{{stage}}/{{cell}}.log",
    benchmark:
        f"{BENCH}/train/{{model}}/{{stage}}/{{cell}}.tsv"
    resources:
        # per model size from the study config; a job that failed for memory or time is
        # retried with more. On SLURM: sbatch --gpus=[MODEL:]N --cpus-per-gpu --mem -t
        mem_mb=lambda w, attempt: STUDY.resources(w.model, "train")["mem_mb"] * attempt,
        runtime=lambda w, attempt: STUDY.resources(w.model, "train")["runtime"] * attempt,
        gpu=lambda w: STUDY.training_spec(get_cell(w))["gpus"],
        gpu_model=lambda w: STUDY.resources(w.model, "train")["gpu_model"],
        cpus_per_gpu=lambda w: STUDY.resources(w.model, "train")["cpus_per_gpu"],
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/entry/train.py"
