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


def load_items(cells: list[dict], tasks: dict) -> pd.DataFrame:
    """Rows (run_id, task, doc_id, score) for the primary metric of every scored cell.

    ``cells`` are the tables' cell entries (:func:`workflow_scripts.evaluations.cell_inputs`);
    the samples live beside each task's results in ``samples/{lm-eval task}.jsonl``. Skipped
    (diverged) cells contribute nothing.
    """
    rows = []
    for c in cells:
        files = results_files(c, tasks)
        for task, spec in sorted(tasks.items()):
            folder = samples_dir(files[task])
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
                        doc = int(s["doc_id"]) if leaf == task else f"{leaf}/{int(s['doc_id'])}"
                        rows.append({"run_id": c["run_id"], "task": task, "doc_id": doc, "score": float(s[metric])})
    return pd.DataFrame(rows, columns=["run_id", "task", "doc_id", "score"])
