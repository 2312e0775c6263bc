"""What each rule reads, for a study: the lookups behind the ``get_*`` adapters of
rules/common.smk, as plain functions of a ``config.Study`` (tested directly).

Paths come from :mod:`workflow_scripts.layout`, run ids from :mod:`workflow_scripts.grid`,
where a base model comes from from :mod:`workflow_scripts.model_source`.
"""

from __future__ import annotations

import os
import re

from . import evaluations, layout
from .config_schema import ConfigError
from .grid import Cell, cell_name, join_run_id, stage_kind
from .model_source import base_model_inputs, made_locally, prefetch_inputs
from .spec import study_cell_job

NEVER = "(?!)"  # a wildcard constraint no value matches: the rule makes nothing in this study


def one_of(names) -> str:
    """A wildcard constraint matching exactly these names (or nothing)."""
    names = list(names)
    return "|".join(re.escape(n) for n in names) if names else NEVER


# ------------------------------------------------------------------ tasks and their data


def synthetic_train_files(study) -> dict[str, str]:
    return {name: layout.fill(layout.TASK_TRAIN, task=name) for name in study.synthetic_tasks}


def synthetic_test_files(study) -> dict[str, str]:
    return {name: layout.fill(layout.TASK_TEST, task=name) for name in study.synthetic_tasks}


def builtin_task_names(study) -> list[str]:
    """The study's lm-eval built-in tasks (the others are synthetic)."""
    return [name for name, t in study.tasks.items() if not t.get("synthetic")]


def fetched_eval_data(study) -> list[str]:
    """Built-in tasks whose data the login node fetches (the others name their own data_dir)."""
    return [name for name in builtin_task_names(study) if not study.tasks[name].get("data_dir")]


def eval_data_dirs(study) -> dict[str, str]:
    """Where each built-in task's evaluation data is read from."""
    return {
        name: study.tasks[name].get("data_dir") or layout.fill(layout.TASK_EVAL_DATA, task=name)
        for name in builtin_task_names(study)
    }


def eval_data_inputs(study) -> list[str]:
    return [layout.fill(layout.TASK_EVAL_DATA, task=name) for name in fetched_eval_data(study)]


def task_data(study) -> dict[str, str]:
    """Where each task's evaluation items are: a synthetic test split or a built-in data folder."""
    return {**synthetic_test_files(study), **eval_data_dirs(study)}


def evaluate_jobs(study) -> dict[str, dict]:
    """Per task, what one evaluate job (cell, task) reads and is defined by: ``inputs`` (the
    task's data, where a rule makes it), ``prompt_check`` (a built-in task's: the model's
    passed prompt-length check of the task, rules/checks.smk, with its ``check_params``; none
    for a synthetic task) and ``params`` (the task's definition, its data and the settings
    that change scores: :mod:`workflow_scripts.evaluations`)."""
    made = set(synthetic_test_files(study)) | set(fetched_eval_data(study))
    builtin = set(builtin_task_names(study))
    data = task_data(study)
    scoring = evaluations.score_settings(study.config["evaluation"])
    return {
        name: {
            "inputs": [data[name]] if name in made else [],
            "prompt_check": name in builtin,
            "check_params": check_prompts_params(study, name) if name in builtin else None,
            "params": {
                "task": {name: evaluations.task_definition(spec)},
                "data": {name: data[name]},
                "scoring": scoring,
            },
        }
        for name, spec in study.tasks.items()
    }


def stage_data_inputs(study, stage: str) -> list[str]:
    """What a stage's training file is made from: the synthetic tasks' train splits (a hub
    dataset is fetched by the rule itself)."""
    ds = study.config["stages"][stage]["dataset"]
    return list(synthetic_train_files(study).values()) if ds["source"] == "synthetic" else []


def tiny_model_sft_data(study) -> str:
    """The tokenizer of a built model is trained on the text of the first SFT stage."""
    stage = next(s for s in study.config["stages"] if stage_kind(s) == "sft")
    return layout.fill(layout.STAGE_DATA, stage=stage)


# ------------------------------------------------------------------ models


def check_prompts_inputs(study, model: str, task: str) -> dict[str, list[str]]:
    """What the prompt check of one built-in task reads: the model's tokenizer (a built or
    materialised base folder, or the hub model's prefetch record) and the task's prefetched data."""
    m = study.models[model]
    return {
        "base": [layout.fill(layout.BASE_MODEL, model=model)] if made_locally(m) else [],
        "prefetch": [layout.fill(layout.PREFETCH_RECORD, model=model)] if model in study.locally_made("hub") else [],
        "benchmarks": [layout.fill(layout.TASK_EVAL_DATA, task=task)] if task in fetched_eval_data(study) else [],
    }


def check_prompts_params(study, task: str) -> dict:
    """What a check of one task's prompts measures with, besides the model: the task's
    definition and data, and the evaluation settings that shape a prompt or its budget. Each
    also changes scores, so a check that runs again re-evaluates the task (evaluate's input)
    exactly when a re-evaluation is due; settings of speed alone (the backend) are not here."""
    evaluation = study.config["evaluation"]
    return {
        "tasks": {task: evaluations.task_definition(study.tasks[task])},
        "benchmark_dirs": {task: eval_data_dirs(study)[task]},
        "evaluation": {k: evaluation[k] for k in ("max_length", "apply_chat_template", "limit")},
    }


def prefetch_targets(study) -> list[str]:
    """Everything the login node fetches: hub models, hub training sets, evaluation data."""
    out = [layout.fill(layout.PREFETCH_RECORD, model=m) for m in study.locally_made("hub")]
    out += [
        layout.fill(layout.STAGE_SOURCE, stage=s)
        for s, st in study.config["stages"].items()
        if st["dataset"]["source"] == "hub"
    ]
    return out + eval_data_inputs(study)


# ------------------------------------------------------------------ cells and packs


def train_inputs(study, cell: Cell) -> dict[str, list[str]]:
    """Rule train's base (or parent) model and hub prefetch record, in one call per job."""
    return {"base": base_model_inputs(study, cell), "prefetch": prefetch_inputs(study, cell)}


def unpacked_stages(study) -> str:
    """Stages trained one cell per job by rule train (the others by train_pack_* rules)."""
    packed = study.packed_stages()
    return one_of(s for s in study.config["stages"] if s not in packed)


def pack_cells(study, model: str, stage: str, head: str, slots) -> list[Cell]:
    """The cells of one pack: a model, stage and ratio (``head``), one per (batch size, seed) slot."""
    return [study.cell(join_run_id(model, stage, cell_name(head, bs, seed))) for bs, seed in slots]


def pack_jobs(study, cells: list[Cell], threads: int) -> list[dict]:
    """One launch job per cell of a pack: the job rule train would give each cell alone."""
    return [study_cell_job(study, cell, threads) for cell in cells]


def aggregate_cells(study, root=None) -> list[dict]:
    """Every cell's run record, loss history and evaluations (the tables' inputs), as
    :func:`workflow_scripts.evaluations.cell_inputs` finds them in ``root`` (default: the
    working directory); paths relative to it."""
    data, evaluation = task_data(study), study.config["evaluation"]
    return [evaluations.cell_inputs(c.run_id, study.tasks, evaluation, data, root) for c in study.cells]


def check_weights_for_evaluations(study, cells: list[dict]) -> None:
    """Refuse, before any job, to evaluate a task on a finished cell whose weights
    ``retention.delete_weights_after_eval`` deleted: Snakemake would train the cell again to
    make them. Files are looked up in the working directory (Snakemake's ``-d``)."""
    if not study.config["retention"]["delete_weights_after_eval"]:
        return
    todo = {}
    for c in cells:
        missing = [t for t, path in c.get("eval_tasks", {}).items() if not os.path.exists(path)]
        if missing and os.path.exists(c["run_json"]):
            if not os.path.exists(layout.for_cell(layout.CELL_MODEL, c["run_id"])):
                todo[c["run_id"]] = missing
    if todo:
        tasks = sorted({t for ts in todo.values() for t in ts})
        first = next(iter(todo))
        raise ConfigError(
            f"retention.delete_weights_after_eval: {len(todo)} finished cell(s) have no weights any more "
            f"(e.g. {first}) and would be trained again to evaluate task(s) {tasks}. Remove those tasks "
            "from `tasks`, or, to train the cells again on purpose, delete their run.json: "
            + ", ".join(layout.for_cell(layout.RUN_JSON, rid) for rid in list(todo)[:5])
            + (" ..." if len(todo) > 5 else "")
        )


def sample_dirs(cells: list[dict], tasks) -> list[str]:
    """The per-sample folders beside the evaluations of :func:`aggregate_cells` (each once)."""
    dirs = (str(evaluations.samples_dir(f)) for c in cells for f in evaluations.results_files(c, tasks).values())
    return list(dict.fromkeys(dirs))  # in the cells' order, as before per-task evaluation
