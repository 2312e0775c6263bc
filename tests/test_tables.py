"""Tables from per-cell files: values as run.json recorded them, every CSV float at full
precision, column names and order pinned, and freeze.verify of sets frozen at the old
six-digit precision (workflow_scripts.aggregate, workflow_scripts.freeze)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import small_study

from workflow_scripts.aggregate import score_rows, write_tables
from workflow_scripts.analysis import write_analysis
from workflow_scripts.config import load_study
from workflow_scripts.freeze import STATISTICS_NAMES, TABLE_NAMES, at_legacy_precision, freeze, verify
from workflow_scripts.grid import parse_run_id
from workflow_scripts.layout import cell_files
from workflow_scripts.lmeval_tasks import stderr_key
from workflow_scripts.numbers import canonical

# 1e-4 / 3 is canonical at 12 digits: six digits (the old "%.6g") cannot hold it
RATIOS = (1e-4 / 3, 1e-3)
CELL_COLUMNS = ["model", "stage", "run_id", "learning_rate", "batch_size", "ratio", "seed"]
COLUMNS = {  # what users' scripts read: names and order never change
    "scores": CELL_COLUMNS
    + [
        "parent",
        "optimizer_steps",
        "examples_seen",
        "status",
        "task",
        "category",
        "metric",
        "metric_name",
        "primary",
        "value",
        "stderr",
        "n_samples",
    ],
    "cells_csv": CELL_COLUMNS + ["parent", "status", "arith", "compare", "format", "sequence"],
    "pivot_csv": [
        "model",
        "stage",
        "category",
        "task",
        "metric",
        "r=3.33333333333e-05",
        "r=1e-03",
        "cells",
        "excluded",
    ],
    "loss": CELL_COLUMNS + ["step", "examples_seen", "loss"],
    "runs": CELL_COLUMNS
    + [
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "gpus",
        "optimizer_steps",
        "examples_seen",
        "first_loss",
        "final_loss",
        "status",
        "git_commit",
    ],
}


def spec_of(cell) -> dict:
    """The cell's record under run.json's "spec", with the keys train.py writes there
    (spec.training_spec) that the tables read."""
    return {
        "run_id": cell.run_id,
        "model": cell.model,
        "stage": cell.stage,
        "stage_kind": "sft",
        "parent_run_id": None,
        "learning_rate": cell.learning_rate,
        "effective_batch_size": cell.batch_size,
        "ratio": cell.ratio,
        "grid_kind": cell.grid_kind,
        "seed": cell.seed,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": cell.batch_size // 2,
        "gpus": 1,
    }


def write_cell(root: Path, study, i: int, cell, spec: dict | None = None) -> dict:
    """run.json, log_history.json and eval/results.json of one finished cell, with scores
    whose decimals do not end (k / 7, k / 11)."""
    files = cell_files(cell.run_id, root)
    steps = 96 // cell.batch_size
    run = {
        "run_id": cell.run_id,
        "spec": spec_of(cell) if spec is None else spec,
        "status": "ok",
        "optimizer_steps": steps,
        "examples_seen": 96,
        "first_loss": 3 + 1 / 7,
        "final_loss": 1 + i / 11,
        "git": {"commit": "0" * 40},
        "train_file_sha256": "1" * 64,
    }
    history = [{"step": s, "loss": 3 / (s + i + 7)} for s in range(4, steps + 1, 4)] + [{"train_runtime": 1.5}]
    results = {"results": {}, "configs": {}}
    for j, (task, t) in enumerate(sorted(study.tasks.items())):
        results["results"][task] = {
            t["metric"]: (i + j + 1) / 7,
            stderr_key(t["metric"]): (j + 1) / 77,
            "sample_len": 12,
        }
        results["configs"][task] = {"task": task, "metadata": {"version": 1}}
    for key, data in (("run_json", run), ("history_json", history), ("eval_json", results)):
        Path(files[key]).parent.mkdir(parents=True, exist_ok=True)
        Path(files[key]).write_text(json.dumps(data))
    return files


@pytest.fixture
def study_root(tmp_path):
    study = load_study(small_study(ratios=RATIOS, batch_sizes=(4, 8)))
    cells = [write_cell(tmp_path, study, i, c) for i, c in enumerate(study.cells)]
    return study, tmp_path, cells


def tables(study, cells, folder: Path, float_format=None) -> dict:
    """The aggregate tables (as rule aggregate writes them) and the statistics of those
    tables (as rule statistics does), in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {k: str(folder / n) for k, n in TABLE_NAMES.items()}
    frames = write_tables(
        cells, study.tasks, study.config["study"], outputs, config=study.config, float_format=float_format
    )
    statistics = {k: str(folder / n) for k, n in STATISTICS_NAMES.items()}
    write_analysis(
        outputs["scores"],
        cells,
        study.tasks,
        statistics,
        study.config["study"],
        models_csv=outputs["models"],
        runs_csv=outputs["runs"],
    )
    return {"frames": frames, "paths": outputs}


def test_tables_read_run_json_and_keep_every_float(study_root):
    study, root, cells = study_root
    out = tables(study, cells, root / "results" / "tables")
    for key, columns in COLUMNS.items():
        assert list(pd.read_csv(out["paths"][key]).columns) == columns, key
    scores = pd.read_csv(out["paths"]["scores"])
    made = out["frames"]["scores"]
    for col in ("learning_rate", "ratio", "value", "stderr"):  # every float reads back as itself
        assert np.array_equal(scores[col].to_numpy(float), made[col].to_numpy(float), equal_nan=True), col
    assert not at_legacy_precision(out["paths"]["scores"])
    for path in (out["paths"]["runs"], out["paths"]["loss"], out["paths"]["cells_csv"], out["paths"]["pivot_csv"]):
        assert not at_legacy_precision(path), path
    by_run = {c.run_id: c for c in study.cells}
    for _, row in pd.read_csv(out["paths"]["runs"]).iterrows():
        cell = by_run[row["run_id"]]
        assert (row["learning_rate"], row["batch_size"], row["ratio"], row["seed"]) == (
            cell.learning_rate,
            cell.batch_size,
            cell.ratio,
            cell.seed,
        )  # exactly, not approx
    assert sorted(scores["ratio"].unique()) == sorted(canonical(r) for r in RATIOS)  # the grid's own floats
    assert (pd.read_csv(out["paths"]["loss"])["examples_seen"] % 4 == 0).all()


def test_the_tables_take_what_run_json_recorded(study_root, tmp_path):
    """The columns come from run.json's spec; an old run.json without those fields falls back
    on the run id, field by field; a run.json of another cell is refused."""
    study, root, _ = study_root
    cell = study.cells[0]
    results = json.loads(Path(cell_files(cell.run_id, root)["eval_json"]).read_text())
    recorded = {**spec_of(cell), "model": "recorded-model", "seed": 7}  # visibly not from the id
    rows = score_rows(cell.run_id, {"status": "ok", "spec": recorded}, results, study.tasks)
    assert {(r["model"], r["seed"]) for r in rows} == {("recorded-model", 7)}
    old = {k: v for k, v in spec_of(cell).items() if k not in ("ratio", "learning_rate", "effective_batch_size")}
    for run in ({"status": "ok"}, {"status": "ok", "spec": {}}, {"status": "ok", "spec": old}):
        row = score_rows(cell.run_id, run, results, study.tasks)[0]
        parsed = parse_run_id(cell.run_id)
        assert (row["model"], row["stage"], row["learning_rate"], row["batch_size"], row["ratio"], row["seed"]) == (
            parsed.model,
            parsed.stage,
            parsed.learning_rate,
            parsed.batch_size,
            parsed.ratio,
            parsed.seed,
        )
    with pytest.raises(ValueError, match="records the cell"):
        score_rows(cell.run_id, {"status": "ok", "spec": spec_of(study.cells[1])}, results, study.tasks)


def test_a_set_frozen_at_six_digits_still_verifies_and_a_change_is_caught(study_root):
    study, root, cells = study_root
    # the tables as aggregate wrote them before full precision
    old = tables(study, cells, root / "results" / "tables", float_format="%.6g")
    full = tables(study, cells, root / "full")
    assert Path(old["paths"]["scores"]).read_bytes() != Path(full["paths"]["scores"]).read_bytes()
    assert all(at_legacy_precision(p) for p in old["paths"].values() if p.endswith(".csv"))
    freeze("old-precision", study, root)
    assert verify("old-precision", root) == []

    raw = Path(cells[0]["eval_json"])
    data = json.loads(raw.read_text())
    data["results"]["compare"]["acc,none"] = 0.5  # was 2/7 (cell 0, compare is task 1)
    raw.write_text(json.dumps(data))
    problems = verify("old-precision", root)
    assert f"scores.csv: {cells[0]['run_id']} / compare / acc,none: frozen 0.285714 != now 0.5" in problems
    assert "cells.csv: regenerated table differs from results/frozen/old-precision/tables/cells.csv" in problems


def test_a_set_frozen_at_full_precision_catches_a_change_in_the_ninth_digit(study_root):
    study, root, cells = study_root
    tables(study, cells, root / "results" / "tables")
    freeze("full", study, root)
    assert verify("full", root) == []
    raw = Path(cells[0]["eval_json"])
    data = json.loads(raw.read_text())
    data["results"]["compare"]["acc,none"] = 2 / 7 + 1e-9  # the same at six digits
    raw.write_text(json.dumps(data))
    problems = verify("full", root)
    assert any(
        p.startswith(f"scores.csv: {cells[0]['run_id']} / compare / acc,none: frozen 0.2857142857142857")
        for p in problems
    ), problems
    assert "scores.csv: regenerated table differs from results/frozen/full/tables/scores.csv" in problems
