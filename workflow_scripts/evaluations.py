"""Which evaluation scores each (cell, task): the tables' inputs, and what makes a task re-evaluate.

Rule evaluate scores one task on one cell (``eval/tasks/{task}/``), so adding a task to a
finished study evaluates only that task. Its params are the task's definition and the
settings that change scores (:data:`SCORE_SETTINGS`); the settings that change only speed
(:data:`SPEED_SETTINGS`) reach the job through the config, so changing them re-evaluates
nothing.

Studies evaluated before this layout hold one evaluation of all tasks per cell
(``eval/results.json`` and ``eval/samples/``, read-only: they were ``protected()``). No rule
writes those any more; they keep scoring every task they still score correctly
(:func:`legacy_tasks`), so an upgrade re-evaluates nothing, and a task they do not cover
(a new one, or one whose settings changed) gets its own per-task evaluation beside them.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from . import layout
from .grid import split_run_id

# evaluation settings that change what lm-eval computes: a change re-evaluates every task
SCORE_SETTINGS = ("limit", "apply_chat_template", "max_length")
# ... and those that change only how fast: never a re-evaluation
SPEED_SETTINGS = ("batch_size", "max_batch_size", "backend")
# task keys that choose how a score is reported, not what lm-eval computes
REPORTING_KEYS = ("category", "metric")


def score_settings(evaluation: dict) -> dict:
    return {key: evaluation.get(key) for key in SCORE_SETTINGS}


def speed_settings(evaluation: dict) -> dict:
    return {key: evaluation[key] for key in SPEED_SETTINGS if key in evaluation}


def task_definition(spec: dict) -> dict:
    """What of a task's config decides its scores (a new category or metric re-evaluates nothing)."""
    return {key: value for key, value in spec.items() if key not in REPORTING_KEYS}


def _mtime(path) -> float:
    """A file's mtime; a missing one (data cleaned up after the study) is newer than nothing."""
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return float("-inf")


def _read(path) -> dict:
    return _read_version(str(path), os.stat(path).st_mtime_ns)


@cache
def _read_version(path: str, mtime_ns: int) -> dict:  # a cell's record is read once per DAG
    return json.loads(Path(path).read_text())


def legacy_tasks(results_json, run_json, tasks: dict, evaluation: dict, data: dict) -> set[str]:
    """The tasks an all-tasks evaluation of a cell (``eval/results.json``, written before
    per-task evaluation) still scores as the study now asks.

    A task counts when lm-eval's record holds it with its metric, the recorded ``limit``,
    ``max_length`` and the task's ``num_fewshot`` equal the study's, and the evaluation is newer
    than the cell's ``run.json`` and the task's data (``data[task]``: a path), as Snakemake's
    own triggers would have required. ``apply_chat_template`` is not in lm-eval's record: a study
    that changes it after the upgrade re-evaluates on purpose (docs/architecture.md). A cell
    that did not train to the end was not scored on any task, so its record covers all, as
    long as the cell has not trained again since.
    """
    if not os.path.exists(results_json):
        return set()
    made = _mtime(results_json)
    if _mtime(run_json) > made:  # the cell trained again since (a diverged one too)
        return set()
    results = _read(results_json)
    if results.get("status") == "skipped":
        return set(tasks)
    cfg = results.get("config") or {}
    model_args = cfg.get("model_args") if isinstance(cfg.get("model_args"), dict) else {}
    recorded_length = model_args.get("max_length", model_args.get("max_model_len"))
    if cfg.get("limit") != evaluation.get("limit") or recorded_length != evaluation.get("max_length"):
        return set()
    shots = results.get("n-shot") or {}
    out = set()
    for name, spec in tasks.items():
        scores = results.get("results", {}).get(name)
        if not scores or spec["metric"] not in scores or _mtime(data[name]) > made:
            continue
        if "num_fewshot" in spec and name in shots and shots[name] != spec["num_fewshot"]:
            continue
        out.add(name)
    return out


def cell_inputs(run_id: str, tasks: dict, evaluation: dict, data: dict, root=None) -> dict:
    """One cell's entry of the tables' inputs: ``run_id``, ``run_json``, ``history_json``, then
    ``eval_json`` (the all-tasks evaluation) where it still scores a task, and ``eval_tasks``
    ``{task: results.json}`` for the tasks evaluated one by one. A cell evaluated entirely
    before per-task evaluation gets exactly the entry it always had (no ``eval_tasks``), so the
    tables' rule sees no change. Paths are relative (:func:`rebase` puts them under a folder);
    files are looked up in ``root`` (default: the working directory, Snakemake's ``-d``)."""
    where = Path(root) if root is not None else Path()
    files = layout.cell_files(run_id)
    data = {t: where / p for t, p in data.items()}
    legacy = legacy_tasks(where / files["eval_json"], where / files["run_json"], tasks, evaluation, data)
    model, stage, cell = split_run_id(run_id)
    entry = {k: v for k, v in files.items() if k != "eval_json" or legacy}
    per_task = {
        t: layout.fill(layout.EVAL_TASK_RESULTS, model=model, stage=stage, cell=cell, task=t)
        for t in sorted(tasks)
        if t not in legacy
    }
    if per_task:
        entry["eval_tasks"] = per_task
    return entry


def rebase(entry: dict, root) -> dict:
    """A cell entry with every path under ``root``."""
    out = {}
    for key, value in entry.items():
        if key == "run_id":
            out[key] = value
        elif isinstance(value, dict):
            out[key] = {t: str(Path(root, p)) for t, p in value.items()}
        else:
            out[key] = str(Path(root, value))
    return out


def paths(entry: dict) -> list[str]:
    """Every file of a cell entry (the tables' rule's inputs)."""
    out = []
    for key, value in entry.items():
        if key != "run_id":
            out.extend(value.values() if isinstance(value, dict) else [value])
    return out


def results_files(entry: dict, tasks) -> dict[str, str]:
    """``{task: the results.json that scores it}`` for one cell entry."""
    per_task = entry.get("eval_tasks", {})
    return {t: per_task.get(t) or entry["eval_json"] for t in sorted(tasks)}


def samples_dir(results_json) -> Path:
    """The per-sample files beside an evaluation (``samples/{lm-eval task}.jsonl``), either layout."""
    return Path(results_json).parent / "samples"
