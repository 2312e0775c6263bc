# Checks that refuse a study before its compute jobs, when running it would silently give
# wrong numbers (local rules: seconds to minutes on the login node).


# Would lm-eval cut any built-in task's prompt (few-shot exemplars, chat template and all)
# to fit evaluation.max_length? Fails naming the task, its longest prompt and the
# max_length it needs; writes the per-task measurement when everything fits.
# (workflow_scripts/prompt_fit.py; rule evaluate waits for it in studies with built-in tasks)
rule check_prompts:
    input:
        unpack(get_check_prompts_inputs),
    output:
        layout.PROMPT_CHECK,
    log:
        f"{layout.LOGS}/checks/prompts_{{model}}.log",
    benchmark:
        f"{layout.TIMINGS}/checks/prompts_{{model}}.tsv"
    wildcard_constraints:
        model=inputs.one_of(STUDY.models if BUILTIN_TASKS else []),
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        # what the measurement depends on (not the model's SLURM resources)
        model=lambda w: {k: v for k, v in STUDY.models[w.model].items() if k != "resources"},
        # name and sha256 of the model's chat template: editing a template file checks again
        template=lambda w: chat_template_spec(STUDY.models[w.model], STUDY.base_dir),
        tasks={name: STUDY.tasks[name] for name in BUILTIN_TASKS},
        benchmark_dirs=EVAL_DATA_DIRS,
        evaluation={k: CFG["evaluation"][k] for k in ("max_length", "apply_chat_template", "limit", "backend")},
    script:
        "../workflow_scripts/entry/check_prompts.py"
