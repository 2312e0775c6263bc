# Config validation and the thin adapters from wildcards to the tested lookups of
# workflow_scripts/ (inputs.py: the inputs of the rules; layout.py: every path; grid.py: run ids
# and wildcard patterns; spec.py: what a cell computes). Logic does not live here.
import sys

sys.path.insert(0, workflow.basedir)  # import workflow_scripts without installing it

from snakemake.utils import min_version

from workflow_scripts import evaluations, inputs, layout
from workflow_scripts.chat_template import spec_entry as chat_template_spec
from workflow_scripts.cluster import cluster_names
from workflow_scripts.config import load_study
from workflow_scripts.grid import CELL_PATTERN, HEAD_PATTERN, MODEL_PATTERN, STAGE_PATTERN, cell_name, join_run_id
from workflow_scripts.model_source import base_model_ref

min_version("9.0")


# Fails here, before any job, with a message naming the bad key.
STUDY = load_study(config)
CFG = STUDY.config
THREADS = CFG["threads"]
# The user's partition, account, QoS, constraint (slurm/cluster.yaml or $LRBS_CLUSTER, not in
# git), checked against the cluster before any job: workflow_scripts/cluster.py.
CLUSTER = cluster_names(workflow.basedir)


wildcard_constraints:
    model=MODEL_PATTERN,
    stage=STAGE_PATTERN,
    cell=CELL_PATTERN,
    task=r"[A-Za-z0-9_]+",


localrules:
    all,
    make_task_data,
    make_train_data,
    build_tiny_model,
    materialize_gguf_model,
    prefetch_model,
    prefetch_benchmark,
    prefetch,
    check_prompts,
    aggregate,
    statistics,
    plots,


def get_cell(wildcards):
    return STUDY.cell(join_run_id(wildcards.model, wildcards.stage, wildcards.cell))


# constants (computed once): Snakemake calls a function once per job, most of a large dry run
TRAIN_FILES = inputs.synthetic_train_files(STUDY)
BUILTIN_TASKS = inputs.builtin_task_names(STUDY)
# which evaluation scores each (cell, task): per-task files, or a cell's all-tasks evaluation
# of an earlier version where it still holds (workflow_scripts/evaluations.py)
AGGREGATE_CELLS = inputs.aggregate_cells(STUDY)
inputs.check_weights_for_evaluations(STUDY, AGGREGATE_CELLS)  # never retrain to evaluate
SAMPLE_DIRS = inputs.sample_dirs(AGGREGATE_CELLS, STUDY.tasks)
EVALUATE_JOBS = inputs.evaluate_jobs(STUDY)


def get_prompt_check(wildcards):
    """A built-in task's evaluate job waits for the task's passed prompt-length check for the
    model (checks.smk); a synthetic task's has no such input. Not ancient(): the check runs
    again only when something that changes the scores changed (inputs.check_prompts_params),
    and Snakemake skips a job's own params check below a job that must run (an ancient input
    would then hide a changed score setting)."""
    if EVALUATE_JOBS[wildcards.task]["prompt_check"]:
        return layout.fill(layout.PROMPT_CHECK, model=wildcards.model, task=wildcards.task)
    return []


def get_check_prompts_inputs(wildcards):
    return inputs.check_prompts_inputs(STUDY, wildcards.model, wildcards.task)


def check_param(key):
    """One of a check_prompts job's params: its task's definition and data, the settings."""
    return lambda wildcards: EVALUATE_JOBS[wildcards.task]["check_params"][key]


def get_stage_data_inputs(wildcards):
    return inputs.stage_data_inputs(STUDY, wildcards.stage)


def get_train_inputs(wildcards):
    return inputs.train_inputs(STUDY, get_cell(wildcards))


def get_training_spec(wildcards):
    return STUDY.training_spec(get_cell(wildcards))


def get_base_model_ref(wildcards):
    return base_model_ref(STUDY, get_cell(wildcards))


def get_pack_cells(wildcards, slots):
    return inputs.pack_cells(STUDY, wildcards.model, wildcards.stage, wildcards.head, slots)


def get_pack_inputs(wildcards, slots):
    """A pack's cells share model and stage, so they share the base (or parent) model."""
    return inputs.train_inputs(STUDY, get_pack_cells(wildcards, slots)[0])


def get_pack_jobs(wildcards, slots):
    return inputs.pack_jobs(STUDY, get_pack_cells(wildcards, slots), THREADS)


def get_prefetch_targets(wildcards):
    return inputs.prefetch_targets(STUDY)


def get_aggregate_inputs(wildcards):
    return [path for c in AGGREGATE_CELLS for path in evaluations.paths(c)]


def get_sample_dirs(wildcards):
    return SAMPLE_DIRS


def get_task_data(wildcards):
    return EVALUATE_JOBS[wildcards.task]["inputs"]


def evaluate_inputs():
    """An evaluate job's task data and prompt check. Without built-in tasks (every task
    synthetic): the test split's template and no check, not two functions called per job
    (8,000 calls in a 1,000-cell, 4-task dry run; the same files either way)."""
    if BUILTIN_TASKS:
        return {"data": get_task_data, "prompts": get_prompt_check}
    return {"data": layout.TASK_TEST}


def get_evaluate_params(wildcards):
    """An evaluate job's params: its task's definition, its data and the score settings
    (one function, not three: Snakemake calls each per job)."""
    return EVALUATE_JOBS[wildcards.task]["params"]


def cluster_resources(job, gpu, cells=1):
    """What a train or evaluate job asks SLURM for (sbatch --gpus=[MODEL:]N --cpus-per-gpu --mem
    -t, and -p -A --qos -C from the user's cluster file), per model from the study config (a 1.7B cell needs more than a 135M one), for a job
    of ``cells`` cells (a pack: host memory and CPUs for K processes on one GPU). mem_mb grows
    with the attempt of a retried job (a job killed for memory gets more); runtime does not: a
    retried cell resumes from its last checkpoint, and a partition refuses a time limit over
    its maximum. Each value is a constant when every model asks the same: Snakemake calls a
    function once per job, which is most of a 1,000-cell dry run."""
    out = {
        "mem_mb": model_resource(job, "mem_mb", cells, per_attempt=True),
        "runtime": model_resource(job, "runtime"),
        "gpu": gpu,
        "cpus_per_gpu": model_resource(job, "cpus_per_gpu", cells),
        **CLUSTER,
    }
    if any(STUDY.resources(m, job)["gpu_model"] for m in STUDY.models):  # else not even a constant
        out["gpu_model"] = model_resource(job, "gpu_model")
    return out


def model_resource(job, key, factor=1, per_attempt=False):
    """One model's resource ``key`` for a job kind, times ``factor`` (and the attempt)."""
    values = {STUDY.resources(m, job)[key] * factor for m in STUDY.models}
    if len(values) == 1:
        value = values.pop()
        return (lambda w, attempt: value * attempt) if per_attempt else value
    if per_attempt:
        return lambda w, attempt: STUDY.resources(w.model, job)[key] * factor * attempt
    return lambda w: STUDY.resources(w.model, job)[key] * factor


def train_gpus():
    """GPUs per training job (stages.<stage>.gpus); a constant when all stages agree."""
    values = {st["gpus"] for st in CFG["stages"].values()}
    if len(values) == 1:
        return values.pop()
    return lambda w: CFG["stages"][w.stage]["gpus"]


def trained_model_output(path):
    """Trained weights are temp() when the study deletes them after evaluation."""
    out = directory(path)
    return temp(out) if CFG["retention"]["delete_weights_after_eval"] else out


def reported(paths: dict, category: str, caption=None):
    """Wrap outputs for `snakemake --report`: PNG figures and CSV/YAML tables, with captions."""
    out = {}
    for key, path in paths.items():
        if path.endswith((".png", ".csv", ".yaml", ".md")):
            cap = caption or f"../report/{key.rsplit('_', 1)[0]}.rst"
            path = report(path, caption=cap, category=category)
        out[key] = path
    return out


def get_final_outputs():
    return [*layout.TABLES.values(), *layout.ANALYSIS.values(), *layout.FIGURES.values()]
