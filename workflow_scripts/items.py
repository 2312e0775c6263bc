"""Per-item scores from lm-eval's sample files: what the item-level bootstrap resamples."""

from __future__ import annotations

import json

import pandas as pd

from .evaluations import results_files, samples_dir
from .lmeval_tasks import split_metric


def sample_files(task: str, spec: dict) -> list[str]:
    """lm-eval task names whose sample files hold ``task``'s items (bbh: its 27 subtasks)."""
    if spec.get("synthetic"):
        return [task]
    from .builtin_tasks import builtin_leaves

    return builtin_leaves(task)


def chance(sample: dict) -> float:
    """An item's score by chance: 1 / choices when lm-eval scored it by choosing among
    continuations (each argument is a (context, continuation) pair), 0 when it generated."""
    args = sample.get("arguments") or []
    if len(args) > 1 and all(isinstance(a, (list, tuple)) and len(a) == 2 and isinstance(a[1], str) for a in args):
        return 1.0 / len(args)
    return 0.0


def task_samples(cell: dict, tasks: dict, task: str):
    """(doc_id, sample) for every sample of ``task``'s primary metric (its lm-eval filter) in
    one cell (a tables' cell entry), in file order; a group's doc ids name the subtask
    (``"leaf/3"``). A missing sample file gives nothing."""
    spec = tasks[task]
    folder = samples_dir(results_files(cell, tasks)[task])
    metric, filt = split_metric(spec["metric"])
    for leaf in sample_files(task, spec):  # a group's items are its subtasks' items
        path = folder / f"{leaf}.jsonl"
        if not path.exists():
            continue
        with open(path) as f:
            for line in f:
                s = json.loads(line)
                if s.get("filter", "none") != filt or metric not in s:
                    continue
                yield (int(s["doc_id"]) if leaf == task else f"{leaf}/{int(s['doc_id'])}"), s


def load_items(cells: list[dict], tasks: dict) -> pd.DataFrame:
    """Rows (run_id, task, doc_id, score, chance) for the primary metric of every scored cell.

    ``cells`` are the tables' cell entries (:func:`workflow_scripts.evaluations.cell_inputs`);
    the samples live beside each task's results in ``samples/{lm-eval task}.jsonl``. Skipped
    (diverged) cells contribute nothing. ``chance`` is the item's score by chance
    (:func:`chance`), what :func:`workflow_scripts.optima.impute_excluded` scores an
    excluded cell at.
    """
    rows = []
    for c in cells:
        for task in sorted(tasks):
            metric, _ = split_metric(tasks[task]["metric"])
            for doc, s in task_samples(c, tasks, task):
                rows.append(
                    {"run_id": c["run_id"], "task": task, "doc_id": doc, "score": float(s[metric]), "chance": chance(s)}
                )
    return pd.DataFrame(rows, columns=["run_id", "task", "doc_id", "score", "chance"])
