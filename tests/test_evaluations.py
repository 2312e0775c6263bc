"""Which evaluation scores each (cell, task) (workflow_scripts/evaluations.py): a cell's
all-tasks evaluation from before per-task jobs keeps scoring exactly the tasks it still scores
as the study asks; every other task gets its own evaluate job, defined by what changes scores
and nothing else."""

import json
import os
import time

import pytest
from conftest import small_study

from workflow_scripts import evaluations, inputs, layout
from workflow_scripts.config import load_study

RID = "tiny-llama/sft/r1e-03_bs4_s0"
TASKS = {
    "arith": {"synthetic": "arithmetic", "category": "reasoning", "metric": "exact_match,strict-match"},
    "gsm8k": {"category": "reasoning", "metric": "exact_match,strict-match", "num_fewshot": 5},
}
EVALUATION = {"limit": None, "apply_chat_template": True, "max_length": None, "batch_size": 64}


def legacy_cell(root, results=None, **config):
    """A cell evaluated before per-task jobs: run.json, then eval/results.json (newer), then
    the tasks' data (older than both)."""
    files = {k: root / v for k, v in layout.cell_files(RID).items() if k != "run_id"}
    data = {"arith": root / "data/arith.jsonl", "gsm8k": root / "data/gsm8k"}
    data["arith"].parent.mkdir(parents=True)
    data["arith"].write_text("{}\n")
    data["gsm8k"].mkdir()
    files["run_json"].parent.mkdir(parents=True)
    files["run_json"].write_text(json.dumps({"status": "ok"}))
    files["eval_json"].parent.mkdir(parents=True)
    if results is None:
        results = {
            "results": {t: {s["metric"]: 0.5} for t, s in TASKS.items()},
            "n-shot": {"arith": 0, "gsm8k": 5},
            "config": {"limit": None, "model_args": {"pretrained": "x", "dtype": "float32"}, **config},
        }
    files["eval_json"].write_text(json.dumps(results))
    past = time.time() - 100
    for p in (*data.values(), files["run_json"]):
        os.utime(p, (past, past))
    os.utime(files["eval_json"], (past + 50, past + 50))
    return files, {t: str(p) for t, p in data.items()}


def covered(files, data, tasks=TASKS, evaluation=EVALUATION):
    return evaluations.legacy_tasks(files["eval_json"], files["run_json"], tasks, evaluation, data)


def test_a_legacy_evaluation_scores_every_task_it_holds_with_the_studys_settings(tmp_path):
    files, data = legacy_cell(tmp_path)
    assert covered(files, data) == {"arith", "gsm8k"}
    # speed settings are not part of it
    assert covered(files, data, evaluation={**EVALUATION, "batch_size": 8, "backend": "vllm"}) == {"arith", "gsm8k"}
    # a task it never scored
    assert covered(files, data, tasks={**TASKS, "new": TASKS["arith"]}) == {"arith", "gsm8k"}


@pytest.mark.parametrize(
    "change, left",
    [
        ({"evaluation": {**EVALUATION, "limit": 10}}, set()),
        ({"evaluation": {**EVALUATION, "max_length": 2048}}, set()),
        ({"tasks": {**TASKS, "gsm8k": {**TASKS["gsm8k"], "num_fewshot": 8}}}, {"arith"}),
        ({"tasks": {**TASKS, "arith": {**TASKS["arith"], "metric": "acc,none"}}}, {"gsm8k"}),
    ],
    ids=["limit", "max_length", "num_fewshot", "a metric it did not compute"],
)
def test_a_changed_score_setting_leaves_the_legacy_evaluation_behind(tmp_path, change, left):
    files, data = legacy_cell(tmp_path)
    assert covered(files, data, **change) == left


def test_a_legacy_evaluation_older_than_its_cell_or_data_scores_nothing_of_them(tmp_path):
    files, data = legacy_cell(tmp_path)
    os.utime(data["arith"])  # regenerated after the evaluation
    assert covered(files, data) == {"gsm8k"}
    os.utime(files["run_json"])  # the cell retrained
    assert covered(files, data) == set()


def test_a_cell_not_scored_because_it_diverged_covers_every_task(tmp_path):
    files, data = legacy_cell(tmp_path, results={"status": "skipped", "results": {}})
    assert covered(files, data, tasks={**TASKS, "new": TASKS["arith"]}) == {"arith", "gsm8k", "new"}
    os.utime(files["run_json"])  # trained again since (a new spec): the skip says nothing of it
    assert covered(files, data) == set()


def test_the_tables_inputs_of_a_fully_legacy_cell_are_exactly_what_they_were(tmp_path):
    """So that rule aggregate (params: every cell's entry) sees no change after the upgrade."""
    files, data = legacy_cell(tmp_path)
    rel = {t: os.path.relpath(p, tmp_path) for t, p in data.items()}
    entry = evaluations.cell_inputs(RID, TASKS, EVALUATION, rel, root=tmp_path)
    assert entry == layout.cell_files(RID)
    assert evaluations.results_files(entry, TASKS) == {t: layout.for_cell(layout.EVAL_RESULTS, RID) for t in TASKS}
    # a task added: its own evaluation, the legacy file keeps the others
    entry = evaluations.cell_inputs(RID, {**TASKS, "ifeval": TASKS["gsm8k"]}, EVALUATION, rel, root=tmp_path)
    assert entry["eval_json"] == layout.for_cell(layout.EVAL_RESULTS, RID)
    assert entry["eval_tasks"] == {"ifeval": f"results/runs/{RID}/eval/tasks/ifeval/results.json"}
    assert (
        evaluations.paths(evaluations.rebase(entry, "/r"))[-1]
        == f"/r/results/runs/{RID}/eval/tasks/ifeval/results.json"
    )
    # nothing evaluated yet (a new study): every task its own job, no legacy file named
    entry = evaluations.cell_inputs(RID, TASKS, EVALUATION, rel, root=tmp_path / "elsewhere")
    assert "eval_json" not in entry and set(entry["eval_tasks"]) == set(TASKS)


def test_sample_folders_follow_the_cells_each_once():
    legacy = {**layout.cell_files(RID)}
    per_task = {k: v for k, v in layout.cell_files("m/sft/r1e-03_bs4_s1").items() if k != "eval_json"}
    per_task["eval_tasks"] = {t: f"results/runs/m/sft/r1e-03_bs4_s1/eval/tasks/{t}/results.json" for t in TASKS}
    assert inputs.sample_dirs([legacy, per_task], TASKS) == [
        f"results/runs/{RID}/eval/samples",
        "results/runs/m/sft/r1e-03_bs4_s1/eval/tasks/arith/samples",
        "results/runs/m/sft/r1e-03_bs4_s1/eval/tasks/gsm8k/samples",
    ]


def test_an_evaluate_job_is_defined_by_its_task_and_the_score_settings_only():
    cfg = small_study()
    base = inputs.evaluate_jobs(load_study(cfg))
    assert base["arith"]["params"] == {
        "task": {"arith": {"synthetic": "arithmetic"}},  # no category, no metric
        "data": {"arith": "results/data/synthetic/arith/test.jsonl"},
        "scoring": {"limit": None, "apply_chat_template": True, "max_length": None},
    }
    assert base["arith"]["inputs"] == ["results/data/synthetic/arith/test.jsonl"]
    assert base["arith"]["prompt_check"] is False

    def jobs(**evaluation):
        c = small_study()
        c["evaluation"].update(evaluation)
        return inputs.evaluate_jobs(load_study(c))

    assert jobs(batch_size=1, max_batch_size=8, backend="vllm") == base
    assert jobs(limit=3)["arith"]["params"]["scoring"]["limit"] == 3
    recat = small_study()
    recat["tasks"]["arith"].update(category="pattern")
    assert inputs.evaluate_jobs(load_study(recat)) == base
