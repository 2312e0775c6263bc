# Training and evaluation data, and the locally made base models (local rules: on a cluster
# they run on the login node, where the hub is reachable).


rule make_task_data:
    output:
        train=layout.TASK_TRAIN,
        test=layout.TASK_TEST,
    log:
        f"{layout.LOGS}/data/{{task}}.log",
    benchmark:
        f"{layout.TIMINGS}/data/{{task}}.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        generator=lambda w: STUDY.tasks[w.task]["synthetic"],
        seed=CFG["data"]["synthetic"]["seed"],
        n_train=CFG["data"]["synthetic"]["train_per_task"],
        n_test=CFG["data"]["synthetic"]["eval_per_task"],
    script:
        "../workflow_scripts/entry/make_task_data.py"


rule make_train_data:
    input:
        get_stage_data_inputs,
    output:
        data=layout.STAGE_DATA,
        source=layout.STAGE_SOURCE,
    log:
        f"{layout.LOGS}/data/{{stage}}_train.log",
    benchmark:
        f"{layout.TIMINGS}/data/{{stage}}_train.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        dataset=lambda w: CFG["stages"][w.stage]["dataset"],
        train_files=lambda w: {name: (STUDY.tasks[name]["synthetic"], path) for name, path in TRAIN_FILES.items()},
        seed=lambda w: CFG["stages"][w.stage]["dataset"].get("seed", 0),
    script:
        "../workflow_scripts/entry/make_train_data.py"


rule build_tiny_model:
    input:
        sft=lambda w: inputs.tiny_model_sft_data(STUDY),
    output:
        directory(layout.BASE_MODEL),
    log:
        f"{layout.LOGS}/models/{{model}}.log",
    benchmark:
        f"{layout.TIMINGS}/models/{{model}}.tsv"
    wildcard_constraints:
        model=inputs.one_of(STUDY.locally_made("build")),
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        build=lambda w: STUDY.models[w.model]["build"],
    script:
        "../workflow_scripts/entry/build_tiny_model.py"


rule materialize_gguf_model:
    output:
        directory(layout.BASE_MODEL),
    log:
        f"{layout.LOGS}/models/{{model}}.log",
    benchmark:
        f"{layout.TIMINGS}/models/{{model}}.tsv"
    wildcard_constraints:
        model=inputs.one_of(STUDY.locally_made("gguf")),
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        gguf=lambda w: STUDY.models[w.model]["gguf"],
    script:
        "../workflow_scripts/entry/materialize_gguf.py"
