"""Every path the workflow writes under ``results/`` and ``figures/``, defined once.

The rules use these templates as their inputs and outputs (``{model}``, ``{stage}``,
``{cell}``, ``{task}`` are Snakemake wildcards); Python fills them with :func:`fill` or
:func:`for_cell`. An output path is part of what a finished cell is (see
docs/architecture.md, "What reruns a finished cell"): changing one here makes Snakemake
look for files that a finished study does not have, so every cell would run again.
"""

from __future__ import annotations

from pathlib import Path

from .grid import split_run_id

RESULTS = "results"
RUNS = f"{RESULTS}/runs"
LOGS = f"{RESULTS}/logs"
TIMINGS = f"{RESULTS}/benchmarks"  # Snakemake's `benchmark:` files: each job's time and memory
TABLES_DIR = f"{RESULTS}/tables"
FROZEN = f"{RESULTS}/frozen"  # result sets frozen for a paper (workflow_scripts/freeze.py)
TRACKIO = f"{RESULTS}/tracking/trackio"  # trackio's database, one for the study (docs/tracking.md)
PLAN = f"{RESULTS}/plan.txt"  # the budget `snakemake plan` prints (workflow_scripts/budget.py)
SYNTHETIC = f"{RESULTS}/data/synthetic"
EVAL_DATA = f"{RESULTS}/data/benchmarks"  # built-in tasks' evaluation data, fetched on the login node

# one cell: results/runs/MODEL/STAGE/CELL (the run id is MODEL/STAGE/CELL)
CELL = "{model}/{stage}/{cell}"
CELL_DIR = f"{RUNS}/{CELL}"
# EVAL_RESULTS, EVAL_SAMPLES: a cell's evaluation on all tasks at once, as written before
# evaluation became per (cell, task); still read (workflow_scripts/evaluations.py), not written
CELL_MODEL, RUN_JSON, HISTORY, EVAL_RESULTS, EVAL_SAMPLES = (
    f"{CELL_DIR}/{name}" for name in ("model", "run.json", "log_history.json", "eval/results.json", "eval/samples")
)
# one evaluation per (cell, task): rule evaluate writes these (a task's samples are one JSONL
# per lm-eval task it runs: a group such as bbh has one per subtask)
EVAL_TASK_DIR = f"{CELL_DIR}/eval/tasks/{{task}}"
EVAL_TASK_RESULTS, EVAL_TASK_SAMPLES = (f"{EVAL_TASK_DIR}/{name}" for name in ("results.json", "samples"))
# every evaluation ever made, never deleted: lm-eval's own layout (EvaluationTracker), dated;
# before per-task evaluation, hard links of eval/results.json and eval/samples/ in <time>/
EVAL_ARCHIVE = f"{RESULTS}/archive/{CELL}/eval"
TRAIN_LOG = f"{LOGS}/train/{CELL}.log"

# data and models
STAGE_DATA, STAGE_SOURCE = (f"{RESULTS}/data/{{stage}}_train.{ext}" for ext in ("jsonl", "source.json"))
TASK_TRAIN, TASK_TEST = (f"{SYNTHETIC}/{{task}}/{split}.jsonl" for split in ("train", "test"))
TASK_EVAL_DATA = f"{EVAL_DATA}/{{task}}"
BASE_MODEL = f"{RESULTS}/models/{{model}}/base"
PREFETCH_RECORD = f"{RESULTS}/prefetch/models/{{model}}.json"
# one built-in task's prompts against evaluation.max_length for one model (rule check_prompts);
# before per-task evaluation the check was per model, results/checks/prompts/{model}.json
PROMPT_CHECK = f"{RESULTS}/checks/prompts/{{model}}/{{task}}.json"

# what rule all asks for: tables, statistics and figures
TABLES = {
    "scores": f"{TABLES_DIR}/scores.csv",
    "pivot_csv": f"{TABLES_DIR}/pivot.csv",
    "pivot_tex": f"{TABLES_DIR}/pivot.tex",
    "pivot_md": f"{TABLES_DIR}/pivot.md",
    "cells_csv": f"{TABLES_DIR}/cells.csv",
    "cells_tex": f"{TABLES_DIR}/cells.tex",
    "cells_md": f"{TABLES_DIR}/cells.md",
    "loss": f"{TABLES_DIR}/loss.csv",
    "runs": f"{TABLES_DIR}/runs.csv",
    "config": f"{TABLES_DIR}/study_config.yaml",
    "reference_csv": f"{TABLES_DIR}/reference.csv",
    "reference_tex": f"{TABLES_DIR}/reference.tex",
    "reference_md": f"{TABLES_DIR}/reference.md",
    "models": f"{TABLES_DIR}/models.csv",
}
ANALYSIS = {
    f"{stem}_{ext}": f"{TABLES_DIR}/{stem}.{ext}"
    for stem in ("comparison", "optima", "exclusions", "sizes", "slopes", "split", "invariance", "stability", "flips")
    for ext in ("csv", "tex", "md")
}
ANALYSIS["flipped_examples"] = f"{TABLES_DIR}/flipped_examples.jsonl"  # the items the flips table counts
ANALYSIS["summary"] = f"{TABLES_DIR}/analysis.md"
FIGURE_NAMES = ("optima", "sizes", "split", "forest", "heatmap", "iso_ratio", "loss", "reference", "stability")
FIGURES = {f"{name}_{ext}": f"figures/{name}.{ext}" for name in FIGURE_NAMES for ext in ("pdf", "png")}


def fill(template: str, **wildcards) -> str:
    """A template with its wildcards filled in."""
    return template.format(**wildcards)


def for_cell(template: str, run_id: str) -> str:
    """A per-cell template (``{model}/{stage}/{cell}``) filled in for one run id."""
    model, stage, cell = split_run_id(run_id)
    return template.format(model=model, stage=stage, cell=cell)


def cell_files(run_id: str, root: str | Path | None = None) -> dict:
    """The per-cell files the tables are built from, as strings (relative unless ``root``)."""
    files = {"run_json": RUN_JSON, "history_json": HISTORY, "eval_json": EVAL_RESULTS}
    out = {"run_id": run_id}
    for key, template in files.items():
        path = for_cell(template, run_id)
        out[key] = str(Path(root, path)) if root is not None else path
    return out
