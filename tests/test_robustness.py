"""A sweep survives a diverging cell: it is stopped, recorded, not scored, and marked."""

import json

import conftest
import pandas as pd
import pytest
from conftest import small_study, snakemake, write_config

from workflow_scripts.io import FAULT_ENV


@pytest.fixture(scope="module")
def diverging_study(tmp_path_factory):
    d = tmp_path_factory.mktemp("diverge")
    # ratio 5 at batch 4 is a learning rate of 20: far past the edge of stability
    study = small_study(ratios=(1e-3, 5.0), train_examples=96)
    study["retention"] = {"delete_weights_after_eval": True}
    cfg = write_config(study, d / "study.yaml")
    snakemake(d, cfg, "--cores", "2")
    return d


def test_weights_deleted_after_evaluation_are_not_retrained(diverging_study):
    runs = diverging_study / "results/runs/tiny-llama/sft"
    assert not list(runs.glob("*/model")), "temp() weights are removed once evaluated"
    assert len(list(runs.glob("*/run.json"))) == 2 and len(list(runs.glob("*/eval/tasks/*/results.json"))) == 2 * 4
    dry = snakemake(diverging_study, diverging_study / "study.yaml", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_a_task_added_after_the_weights_were_deleted_is_refused_not_retrained(diverging_study, tmp_path):
    """Evaluating a new task would need the deleted weights, so Snakemake would train the cells
    again: the run stops before any job, naming the cells, the task and the way out."""
    from test_builtin_tasks import write_benchmark

    study = conftest.load_yaml(diverging_study / "study.yaml")
    write_benchmark("arc_challenge", tmp_path / "arc")
    study["tasks"]["arc_challenge"] = {"category": "reasoning", "metric": "acc,none", "data_dir": str(tmp_path / "arc")}
    proc = snakemake(diverging_study, write_config(study, tmp_path / "added.yaml"), "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "rule train" not in out
    assert "retention.delete_weights_after_eval: 2 finished cell(s) have no weights" in out, out[-3000:]
    assert "task(s) ['arc_challenge']" in out and "results/runs/tiny-llama/sft/r1e-03_bs4_s0/run.json" in out


def test_diverged_cell_is_stopped_early_and_recorded(diverging_study):
    run = json.loads((diverging_study / "results/runs/tiny-llama/sft/r5e+00_bs4_s0/run.json").read_text())
    assert run["status"] == "diverged"
    assert run["diverged"]["step"] < 24 and run["optimizer_steps"] < 24
    assert "loss" in run["diverged"]["reason"]
    ok = json.loads((diverging_study / "results/runs/tiny-llama/sft/r1e-03_bs4_s0/run.json").read_text())
    assert ok["status"] == "ok" and ok["optimizer_steps"] == 24 and ok["diverged"] is None
    skipped = json.loads(
        (diverging_study / "results/runs/tiny-llama/sft/r5e+00_bs4_s0/eval/tasks/arith/results.json").read_text()
    )
    assert skipped["status"] == "skipped" and skipped["results"] == {}


def test_tables_carry_status_and_never_a_made_up_score(diverging_study):
    scores = pd.read_csv(diverging_study / "results/tables/scores.csv")
    bad = scores[scores["ratio"] == 5.0]
    assert len(bad) == 4 and (bad["status"] == "diverged").all() and bad["value"].isna().all()
    good = scores[(scores["ratio"] == 1e-3) & scores["primary"]]
    assert len(good) == 4 and (good["status"] == "ok").all() and good["value"].between(0, 1).all()
    pivot = pd.read_csv(diverging_study / "results/tables/pivot.csv")
    assert (pivot["cells"] == 1).all() and (pivot["excluded"] == 1).all()
    assert pivot["r=5e+00"].isna().all()
    runs = pd.read_csv(diverging_study / "results/tables/runs.csv")
    assert sorted(runs["status"]) == ["diverged", "ok"]
    for name in ("split", "heatmap", "loss"):
        assert (diverging_study / f"figures/{name}.pdf").stat().st_size > 1000


def test_killed_jobs_leave_no_final_file_reruns_complete_and_tables_are_deterministic(tmp_path):
    study = small_study(ratios=(1e-3,), train_examples=16)
    # two tasks (one generative, one multiple choice): each evaluation is its own job, and
    # the study runs four times here
    study["tasks"] = {k: v for k, v in study["tasks"].items() if k in ("arith", "compare")}
    cfg = write_config(study, tmp_path / "study.yaml")
    results = tmp_path / "results/runs/tiny-llama/sft/r1e-03_bs4_s0/eval/tasks/arith/results.json"
    scores = tmp_path / "results/tables/scores.csv"

    # 1. the evaluation job kills itself (SIGKILL) after writing its temporary results file
    proc = snakemake(tmp_path, cfg, "--cores", "2", check=False, env={FAULT_ENV: "results.json"})
    assert proc.returncode != 0
    assert not results.exists() and not scores.exists()
    # (each task's evaluation is its own job: whichever ran first was killed)
    assert list(results.parent.parent.glob("*/.results.json.*")), "the killed job had written a temporary file"

    # 2. the rerun evaluates; now the aggregation job is killed while writing scores.csv
    proc = snakemake(tmp_path, cfg, "--cores", "2", check=False, env={FAULT_ENV: "scores.csv"})
    assert proc.returncode != 0
    assert results.exists() and not list(results.parent.parent.glob("*/.results.json.*"))
    assert not scores.exists() and list(scores.parent.glob(".scores.csv.*"))

    # 3. a plain rerun completes everything
    snakemake(tmp_path, cfg, "--cores", "2")
    assert scores.exists() and not list(scores.parent.glob(".scores.csv.*"))
    table = pd.read_csv(scores)
    assert len(table[table["primary"]]) == 2 and table["value"].between(0, 1).all()

    # 4. determinism: the same study run again from nothing gives byte-identical tables
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    snakemake(fresh, cfg, "--cores", "2")
    for name in ("scores.csv", "pivot.csv", "pivot.tex", "loss.csv", "runs.csv"):
        assert (fresh / "results/tables" / name).read_bytes() == (tmp_path / "results/tables" / name).read_bytes(), name
