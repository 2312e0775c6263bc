# One TRL training job per grid cell: SFTTrainer for sft stages, DPOTrainer for dpo stages
# (on top of the parent SFT cell's model).


rule train:
    input:
        unpack(get_train_base_inputs),
        data=f"{RESULTS}/data/{{stage}}_train.jsonl",
        source=f"{RESULTS}/data/{{stage}}_train.source.json",
    output:
        model=trained_model_output(f"{RUNS}/{{model}}/{{stage}}/{{cell}}/model"),
        run=f"{RUNS}/{{model}}/{{stage}}/{{cell}}/run.json",
        history=f"{RUNS}/{{model}}/{{stage}}/{{cell}}/log_history.json",
    wildcard_constraints:
        stage=unpacked_stages(),
    # two params, as before: Snakemake reruns a job whose recorded params differ, so their
    # shape stays what already-trained cells recorded
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
        mem_mb=model_resource_x_attempt("train", "mem_mb"),
        runtime=model_resource_x_attempt("train", "runtime"),
        gpu=train_gpus(),
        cpus_per_gpu=model_resource("train", "cpus_per_gpu"),
        **gpu_model_resource("train"),
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/entry/train.py"


# Packs: with stages.<stage>.cells_per_gpu = K, K cells of one ratio (its batch sizes x seeds,
# in order) train at the same time on one GPU in one job; each keeps its own outputs. One
# rule per slot pattern of a packed stage (the head wildcard is the ratio: r1e-04).
for _stage in STUDY.packed_stages():
    for _i, _slots in enumerate(STUDY.pack_slots(_stage)):
        _names = [f"{{head}}_bs{bs}_s{seed}" for bs, seed in _slots]

        rule:
            name:
                f"train_pack_{_stage}_{_i}"
            input:
                unpack(get_stage_data),
                base=lambda w, s=_slots: get_pack_base_input(w, s),
                prefetch=lambda w, s=_slots: get_pack_prefetch_input(w, s),
            output:
                models=[trained_model_output(f"{RUNS}/{{model}}/{{stage}}/{n}/model") for n in _names],
                runs=[f"{RUNS}/{{model}}/{{stage}}/{n}/run.json" for n in _names],
                histories=[f"{RUNS}/{{model}}/{{stage}}/{n}/log_history.json" for n in _names],
            wildcard_constraints:
                stage=re.escape(_stage),
                head=r"(r|lr)[0-9.]+e[+-]\d+",
            params:
                jobs=lambda w, s=_slots: get_pack_jobs(w, s),
            threads: THREADS * len(_slots)
            log:
                pack=f"{LOGS}/train/{{model}}/{{stage}}/{{head}}_pack{_i}.log",
            benchmark:
                f"{BENCH}/train/{{model}}/{{stage}}/{{head}}_pack{_i}.tsv"
            resources:
                # one GPU for the pack; host memory for K processes
                mem_mb=model_resource_x_attempt("train", "mem_mb", factor=len(_slots)),
                runtime=model_resource_x_attempt("train", "runtime"),
                gpu=1,
                cpus_per_gpu=lambda w, k=len(_slots): STUDY.resources(w.model, "train")["cpus_per_gpu"] * k,
                **gpu_model_resource("train"),
            conda:
                "../envs/train.yaml"
            script:
                "../workflow_scripts/entry/train_pack.py"
