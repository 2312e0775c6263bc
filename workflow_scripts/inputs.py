"""What each rule reads, for a study: the lookups behind the ``get_*`` adapters of
rules/common.smk, as plain functions of a ``config.Study`` (tested directly).

Paths come from :mod:`workflow_scripts.layout`, run ids from :mod:`workflow_scripts.grid`,
where a base model comes from from :mod:`workflow_scripts.model_source`.
"""

from __future__ import annotations

import re

from . import layout
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


def check_prompts_inputs(study, model: str) -> dict[str, list[str]]:
    """What the prompt check reads: the model's tokenizer (a built or materialised base
    folder, or the hub model's prefetch record) and the built-in tasks' prefetched data."""
    m = study.models[model]
    return {
        "base": [layout.fill(layout.BASE_MODEL, model=model)] if made_locally(m) else [],
        "prefetch": [layout.fill(layout.PREFETCH_RECORD, model=model)] if model in study.locally_made("hub") else [],
        "benchmarks": eval_data_inputs(study),
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


def aggregate_cells(study) -> list[dict]:
    """Every cell's run record, loss history and evaluation (the tables' inputs)."""
    return [layout.cell_files(c.run_id) for c in study.cells]


def sample_dirs(study) -> list[str]:
    return [layout.for_cell(layout.EVAL_SAMPLES, c.run_id) for c in study.cells]
