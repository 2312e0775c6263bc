"""Where a cell's files live under results/: one definition for the rules, aggregation and
freezing (the rules' output paths in rules/train.smk and rules/evaluate.smk must agree)."""

from __future__ import annotations

from pathlib import Path

RUNS = "results/runs"


def cell_files(run_id: str, root: str | Path | None = None) -> dict:
    """The per-cell files the tables are built from, as strings (relative unless ``root``)."""
    d = Path(root, RUNS, run_id) if root is not None else Path(RUNS, run_id)
    return {"run_id": run_id, "run_json": str(d / "run.json"), "history_json": str(d / "log_history.json"),
            "eval_json": str(d / "eval" / "results.json")}
