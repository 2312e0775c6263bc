# Checks that refuse a study before its compute jobs, when running it would silently give
# wrong numbers (local rules: seconds to minutes on the login node).


# Would lm-eval cut any prompt of a built-in task (few-shot exemplars, chat template and
# all) to fit evaluation.max_length? Fails naming the task, its longest prompt and the
# max_length it needs; writes the measurement when everything fits. One job per (model,
# built-in task), so adding a task checks only it (workflow_scripts/prompt_fit.py; the task's
# evaluate jobs wait for it).
rule check_prompts:
    input:
        unpack(get_check_prompts_inputs),
    output:
        layout.PROMPT_CHECK,
    log:
        f"{layout.LOGS}/checks/prompts/{{model}}/{{task}}.log",
    benchmark:
        f"{layout.TIMINGS}/checks/prompts/{{model}}/{{task}}.tsv"
    wildcard_constraints:
        model=inputs.one_of(STUDY.models if BUILTIN_TASKS else []),
        task=inputs.one_of(BUILTIN_TASKS),
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
        tasks=check_param("tasks"),
        benchmark_dirs=check_param("benchmark_dirs"),
        evaluation=check_param("evaluation"),
    script:
        "../workflow_scripts/entry/check_prompts.py"
