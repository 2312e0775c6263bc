"""Tables from per-cell files: values as run.json recorded them (workflow_scripts.aggregate)."""

import json
from pathlib import Path

import pytest

from conftest import small_study
from workflow_scripts.aggregate import score_rows
from workflow_scripts.config import load_study
from workflow_scripts.grid import parse_run_id
from workflow_scripts.layout import cell_files
from workflow_scripts.lmeval_tasks import stderr_key

RATIOS = (1e-4 / 3, 1e-3)


def spec_of(cell) -> dict:
    """The cell's record under run.json's "spec", with the keys train.py writes there
    (spec.training_spec) that the tables read."""
    return {"run_id": cell.run_id, "model": cell.model, "stage": cell.stage, "stage_kind": "sft",
            "parent_run_id": None, "learning_rate": cell.learning_rate, "effective_batch_size": cell.batch_size,
            "ratio": cell.ratio, "grid_kind": cell.grid_kind, "seed": cell.seed, "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": cell.batch_size // 2, "gpus": 1}


def write_cell(root: Path, study, i: int, cell, spec: dict | None = None) -> dict:
    """run.json, log_history.json and eval/results.json of one finished cell, with scores
    whose decimals do not end (k / 7, k / 11)."""
    files = cell_files(cell.run_id, root)
    steps = 96 // cell.batch_size
    run = {"run_id": cell.run_id, "spec": spec_of(cell) if spec is None else spec, "status": "ok",
           "optimizer_steps": steps, "examples_seen": 96, "first_loss": 3 + 1 / 7, "final_loss": 1 + i / 11,
           "git": {"commit": "0" * 40}, "train_file_sha256": "1" * 64}
    history = [{"step": s, "loss": 3 / (s + i + 7)} for s in range(4, steps + 1, 4)] + [{"train_runtime": 1.5}]
    results = {"results": {}, "configs": {}}
    for j, (task, t) in enumerate(sorted(study.tasks.items())):
        results["results"][task] = {t["metric"]: (i + j + 1) / 7, stderr_key(t["metric"]): (j + 1) / 77,
                                    "sample_len": 12}
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
            parsed.model, parsed.stage, parsed.learning_rate, parsed.batch_size, parsed.ratio, parsed.seed)
    with pytest.raises(ValueError, match="records the cell"):
        score_rows(cell.run_id, {"status": "ok", "spec": spec_of(study.cells[1])}, results, study.tasks)
