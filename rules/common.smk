# Config validation, the grid table and the small get_* input functions every rule uses.
import functools
import re
import sys

sys.path.insert(0, workflow.basedir)  # import workflow_scripts without installing it

from snakemake.utils import min_version

from workflow_scripts.chat_template import spec_entry as chat_template_spec
from workflow_scripts.config import load_study
from workflow_scripts.grid import STAGE_PATTERN, stage_kind
from workflow_scripts.launch import cell_job
from workflow_scripts.layout import RUNS as RUNS_DIR, cell_files
from types import SimpleNamespace

min_version("9.0")


# Fails here, before any job, with a message naming the bad key.
STUDY = load_study(config)
CFG = STUDY.config
THREADS = CFG["threads"]

RESULTS = "results"
RUNS = RUNS_DIR  # results/runs: workflow_scripts/layout.py
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
SYNTH = f"{RESULTS}/data/synthetic"
BENCH_DATA = f"{RESULTS}/data/benchmarks"


def unpacked_stages():
    """Stages trained one cell per job by rule train (the others by train_pack_* rules)."""
    names = [s for s in CFG["stages"] if s not in STUDY.packed_stages()]
    return "|".join(re.escape(s) for s in names) if names else "(?!)"


wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    stage=STAGE_PATTERN,
    cell=r"(r|lr)[0-9.]+e[+-]\d+_bs\d+_s\d+",
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


def run_id(wildcards):
    return f"{wildcards.model}/{wildcards.stage}/{wildcards.cell}"


def get_cell(wildcards):
    return STUDY.cell(run_id(wildcards))


def get_synthetic_train_files():
    return {name: f"{SYNTH}/{name}/train.jsonl" for name in STUDY.synthetic_tasks}


def get_test_files():
    return {name: f"{SYNTH}/{name}/test.jsonl" for name in STUDY.synthetic_tasks}


def builtin_tasks():
    return [name for name, t in STUDY.tasks.items() if not t.get("synthetic")]


def fetched_benchmarks():
    """Built-in tasks whose data the login node fetches (the others name their own data_dir)."""
    return [name for name in builtin_tasks() if not STUDY.tasks[name].get("data_dir")]


def get_benchmark_dirs():
    return {name: STUDY.tasks[name].get("data_dir") or f"{BENCH_DATA}/{name}" for name in builtin_tasks()}


def get_benchmark_inputs(wildcards):
    return [f"{BENCH_DATA}/{name}" for name in fetched_benchmarks()]


PROMPT_CHECK = f"{RESULTS}/checks/prompts/{{model}}.json"


def prompt_check_input():
    """The extra input of the evaluate jobs: the model's passed prompt-length check (checks.smk),
    only in a study with built-in tasks; nothing at all (no input, no function call per job)
    in a synthetic-only study, whose finished jobs therefore stay finished. ancient(): a
    check that runs again (new template, new data) gates evaluations still to come, and
    does not make finished evaluations out of date."""
    return {"prompts": ancient(PROMPT_CHECK)} if builtin_tasks() else {}


def get_check_prompts_inputs(wildcards):
    """What the prompt check reads: the model's tokenizer (a built or materialised base
    folder, or the hub model's prefetch record) and the built-in tasks' prefetched data."""
    model = STUDY.models[wildcards.model]
    return {
        "base": [f"{RESULTS}/models/{wildcards.model}/base"] if made_locally(model) else [],
        "prefetch": [f"{RESULTS}/prefetch/models/{wildcards.model}.json"]
        if wildcards.model in STUDY.locally_made("hub") else [],
        "benchmarks": get_benchmark_inputs(wildcards),
    }


def chat_template_entry(model):
    """Name and sha256 of a model's chat template (None: the tokenizer's own)."""
    return chat_template_spec(model, STUDY.base_dir)


def get_stage_data(wildcards):
    return {
        "data": f"{RESULTS}/data/{wildcards.stage}_train.jsonl",
        "source": f"{RESULTS}/data/{wildcards.stage}_train.source.json",
    }


def get_stage_data_inputs(wildcards):
    ds = CFG["stages"][wildcards.stage]["dataset"]
    return list(get_synthetic_train_files().values()) if ds["source"] == "synthetic" else []


def made_locally(model):
    return "build" in model or "gguf" in model


def get_parent(wildcards):
    """Run id of the SFT cell a DPO cell trains on (None for SFT cells)."""
    return STUDY.parent_of(get_cell(wildcards))


def get_base_model_input(wildcards):
    """What a cell trains on top of, when the DAG makes it: a DPO cell's parent SFT model, or
    a built or materialised base model (a hub or local model is not ours)."""
    parent = get_parent(wildcards)
    if parent:
        return [f"{RUNS}/{parent}/model"]
    model = STUDY.models[wildcards.model]
    return [f"{RESULTS}/models/{wildcards.model}/base"] if made_locally(model) else []


def get_base_model_ref(wildcards):
    parent = get_parent(wildcards)
    if parent:
        return f"{RUNS}/{parent}/model"
    model = STUDY.models[wildcards.model]
    return f"{RESULTS}/models/{wildcards.model}/base" if made_locally(model) else model["id"]


def get_train_base_inputs(wildcards):
    """base and prefetch inputs of rule train in one call (one input function per job, not two)."""
    return {"base": get_base_model_input(wildcards), "prefetch": get_prefetch_input(wildcards)}


def get_prefetch_input(wildcards):
    """The login node's record of a hub base model (SFT cells of hub models only)."""
    if get_parent(wildcards) or wildcards.model not in STUDY.locally_made("hub"):
        return []
    return [f"{RESULTS}/prefetch/models/{wildcards.model}.json"]


def pack_run_ids(wildcards, slots):
    return [f"{wildcards.model}/{wildcards.stage}/{wildcards.head}_bs{bs}_s{seed}" for bs, seed in slots]


def get_pack_base_input(wildcards, slots):
    """A pack's cells share model and stage, so they share the base (or parent) model."""
    cell = STUDY.cell(pack_run_ids(wildcards, slots)[0])
    return get_base_model_input(SimpleNamespace(model=cell.model, stage=cell.stage, cell=cell.name))


def get_pack_prefetch_input(wildcards, slots):
    cell = STUDY.cell(pack_run_ids(wildcards, slots)[0])
    return get_prefetch_input(SimpleNamespace(model=cell.model, stage=cell.stage, cell=cell.name))


def get_pack_jobs(wildcards, slots):
    """One launch job per cell of the pack (workflow_scripts/launch.py: cell_job)."""
    jobs = []
    for rid in pack_run_ids(wildcards, slots):
        cell = STUDY.cell(rid)
        w = SimpleNamespace(model=cell.model, stage=cell.stage, cell=cell.name)
        data = get_stage_data(w)
        prefetched = get_prefetch_input(w)
        jobs.append(cell_job(STUDY.training_spec(cell), get_base_model_ref(w), data["data"], f"{RUNS}/{rid}",
                             threads=THREADS, data_source=data["source"],
                             prefetched=prefetched[0] if prefetched else None,
                             log=f"{LOGS}/train/{rid}.log"))
    return jobs


def get_prefetch_targets(wildcards):
    """Everything the login node fetches: hub models, hub training sets, benchmark data."""
    out = [f"{RESULTS}/prefetch/models/{m}.json" for m in STUDY.locally_made("hub")]
    out += [f"{RESULTS}/data/{s}_train.source.json" for s, st in CFG["stages"].items()
            if st["dataset"]["source"] == "hub"]
    return out + get_benchmark_inputs(wildcards)


def model_names(kind):
    """A wildcard regex matching only the models a given rule makes (never-matching if none)."""
    names = STUDY.locally_made(kind)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def get_tiny_model_sft_data(wildcards):
    """The tokenizer of a built model is trained on the text of the first SFT stage."""
    stage = next(s for s in CFG["stages"] if stage_kind(s) == "sft")
    return f"{RESULTS}/data/{stage}_train.jsonl"


@functools.cache
def get_aggregate_cells():
    return [cell_files(c.run_id) for c in STUDY.cells]


def get_aggregate_inputs(wildcards):
    return [path for c in get_aggregate_cells() for key, path in c.items() if key != "run_id"]


def get_sample_dirs(wildcards):
    return [f"{RUNS}/{c.run_id}/eval/samples" for c in STUDY.cells]


TABLES = {
    "scores": f"{RESULTS}/tables/scores.csv",
    "pivot_csv": f"{RESULTS}/tables/pivot.csv",
    "pivot_tex": f"{RESULTS}/tables/pivot.tex",
    "pivot_md": f"{RESULTS}/tables/pivot.md",
    "cells_csv": f"{RESULTS}/tables/cells.csv",
    "cells_tex": f"{RESULTS}/tables/cells.tex",
    "cells_md": f"{RESULTS}/tables/cells.md",
    "loss": f"{RESULTS}/tables/loss.csv",
    "runs": f"{RESULTS}/tables/runs.csv",
    "config": f"{RESULTS}/tables/study_config.yaml",
    "reference_csv": f"{RESULTS}/tables/reference.csv",
    "reference_tex": f"{RESULTS}/tables/reference.tex",
    "reference_md": f"{RESULTS}/tables/reference.md",
}
ANALYSIS = {
    f"{stem}_{ext}": f"{RESULTS}/tables/{stem}.{ext}"
    for stem in ("slopes", "split", "invariance")
    for ext in ("csv", "tex", "md")
}
ANALYSIS["summary"] = f"{RESULTS}/tables/analysis.md"
FIGURES = {
    f"{name}_{ext}": f"figures/{name}.{ext}"
    for name in ("split", "forest", "heatmap", "iso_ratio", "loss", "reference")
    for ext in ("pdf", "png")
}


def model_resource(job, key):
    """A model's SLURM resource for a job kind: a constant when every model asks the same
    (Snakemake evaluates a function once per job, which is most of a 1,000-cell dry run)."""
    values = {STUDY.resources(m, job)[key] for m in STUDY.models}
    if len(values) == 1:
        return values.pop()
    return lambda w: STUDY.resources(w.model, job)[key]


def gpu_model_resource(job):
    """{"gpu_model": ...} when some model names one (sbatch --gpus=MODEL:N), else nothing:
    every resource costs Snakemake a function call per job, even an empty one."""
    if not any(STUDY.resources(m, job)["gpu_model"] for m in STUDY.models):
        return {}
    return {"gpu_model": model_resource(job, "gpu_model")}


def model_resource_x_attempt(job, key, factor=1):
    """mem_mb / runtime: grows with the attempt of a retried job."""
    values = {STUDY.resources(m, job)[key] for m in STUDY.models}
    if len(values) == 1:
        value = values.pop() * factor
        return lambda w, attempt: value * attempt
    return lambda w, attempt: STUDY.resources(w.model, job)[key] * factor * attempt


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
    return list(TABLES.values()) + list(ANALYSIS.values()) + list(FIGURES.values())
