# One TRL training job per grid cell: SFTTrainer for sft stages, DPOTrainer for dpo stages
# (on top of the parent SFT cell's model).


rule train:
    input:
        unpack(get_train_inputs),
        data=layout.STAGE_DATA,
        source=layout.STAGE_SOURCE,
    output:
        model=trained_model_output(layout.CELL_MODEL),
        run=layout.RUN_JSON,
        history=layout.HISTORY,
    log:
        layout.TRAIN_LOG,
    benchmark:
        f"{layout.TIMINGS}/train/{layout.CELL}.tsv"
    wildcard_constraints:
        stage=inputs.unpacked_stages(STUDY),
    conda:
        "../envs/train.yaml"
    threads: THREADS
    resources:
        **cluster_resources("train", gpu=train_gpus()),
    # two params, as before: Snakemake reruns a job whose recorded params differ, so their
    # shape stays what already-trained cells recorded
    params:
        spec=get_training_spec,
        base_model=get_base_model_ref,
    script:
        "../workflow_scripts/entry/train.py"


# Packs: with stages.<stage>.cells_per_gpu = K, K cells of one ratio (its batch sizes x seeds,
# in order) train at the same time on one GPU in one job; each keeps its own outputs. One
# rule per slot pattern of a packed stage (the head wildcard is the ratio: r1e-04), for the
# models whose grid has it (models[].stages.<stage>.grid: a model may have its own).
for _stage in STUDY.packed_stages():
    for _i, _slots in enumerate(STUDY.pack_slots(_stage)):
        _names = [cell_name("{head}", bs, seed) for bs, seed in _slots]
        _models = STUDY.pack_models(_stage, _slots)

        rule:
            name:
                f"train_pack_{_stage}_{_i}"
            input:
                unpack(lambda w, s=_slots: get_pack_inputs(w, s)),
                data=layout.STAGE_DATA,
                source=layout.STAGE_SOURCE,
            output:
                models=[trained_model_output(layout.CELL_MODEL.replace("{cell}", n)) for n in _names],
                runs=[layout.RUN_JSON.replace("{cell}", n) for n in _names],
                histories=[layout.HISTORY.replace("{cell}", n) for n in _names],
            log:
                pack=f"{layout.LOGS}/train/{{model}}/{{stage}}/{{head}}_pack{_i}.log",
            benchmark:
                f"{layout.TIMINGS}/train/{{model}}/{{stage}}/{{head}}_pack{_i}.tsv"
            wildcard_constraints:
                model=inputs.one_of(_models),
                stage=re.escape(_stage),
                head=HEAD_PATTERN,
            conda:
                "../envs/train.yaml"
            threads: THREADS * len(_slots)
            resources:
                # one GPU for the pack; host memory and CPUs for K processes
                **cluster_resources("train", gpu=1, cells=len(_slots)),
            params:
                jobs=lambda w, s=_slots: get_pack_jobs(w, s),
            script:
                "../workflow_scripts/entry/train_pack.py"
