"""A sweep survives a diverging cell: it is stopped, recorded, not scored, and marked."""

import json

import pandas as pd
import pytest

from conftest import small_study, snakemake, write_config


@pytest.fixture(scope="module")
def diverging_study(tmp_path_factory):
    d = tmp_path_factory.mktemp("diverge")
    # ratio 5 at batch 4 is a learning rate of 20: far past the edge of stability
    cfg = write_config(small_study(ratios=(1e-3, 5.0), train_examples=96), d / "study.yaml")
    snakemake(d, cfg, "--cores", "2")
    return d


def test_diverged_cell_is_stopped_early_and_recorded(diverging_study):
    run = json.loads((diverging_study / "results/runs/tiny-llama/sft/r5e+00_bs4_s0/run.json").read_text())
    assert run["status"] == "diverged"
    assert run["diverged"]["step"] < 24 and run["optimizer_steps"] < 24
    assert "loss" in run["diverged"]["reason"]
    ok = json.loads((diverging_study / "results/runs/tiny-llama/sft/r1e-03_bs4_s0/run.json").read_text())
    assert ok["status"] == "ok" and ok["optimizer_steps"] == 24 and ok["diverged"] is None
    skipped = json.loads((diverging_study / "results/runs/tiny-llama/sft/r5e+00_bs4_s0/eval/results.json").read_text())
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
