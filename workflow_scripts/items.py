"""Per-item scores from lm-eval's sample files: what the item-level bootstrap resamples."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .lmeval_tasks import split_metric


def sample_files(task: str, spec: dict) -> list[str]:
    """lm-eval task names whose sample files hold ``task``'s items (bbh: its 27 subtasks)."""
    if spec.get("synthetic"):
        return [task]
    from .builtin_tasks import builtin_leaves

    return builtin_leaves(task)


def load_items(cells: list[dict], tasks: dict) -> pd.DataFrame:
    """Rows (run_id, task, doc_id, score) for the primary metric of every scored cell.

    ``cells`` are dicts with ``run_id`` and ``eval_json``; the samples live beside the
    results in ``eval/samples/{task}.jsonl``. Skipped (diverged) cells contribute nothing.
    """
    rows = []
    for c in cells:
        samples_dir = Path(c["eval_json"]).parent / "samples"
        for task, spec in sorted(tasks.items()):
            metric, filt = split_metric(spec["metric"])
            for leaf in sample_files(task, spec):  # a group's items are its subtasks' items
                path = samples_dir / f"{leaf}.jsonl"
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
