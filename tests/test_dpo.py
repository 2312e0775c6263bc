"""The DPO stage: real TRL DPOTrainer steps on top of a real SFT cell, and the DAG that
chains SFT cell -> DPO cells -> evaluations -> the same tables (stage = dpo)."""

import json
import math

import pandas as pd
import pytest
import torch
from conftest import small_study, snakemake, tiny_setup, with_dpo, write_config
from safetensors.torch import load_file

from workflow_scripts import synthetic
from workflow_scripts.config import load_study
from workflow_scripts.data import preference_row
from workflow_scripts.io import read_jsonl, write_jsonl
from workflow_scripts.train import train_cell

STUDY_TASKS = {"arith", "sequence"}  # the tasks of the module's finished study (study_dir)


def test_synthetic_preference_pairs_reject_a_wrong_answer():
    for gen in ("arithmetic", "compare", "sequence", "format", "choose"):
        docs = synthetic.generate_splits(gen, 3, 30, 1)["train"]
        import random

        for row in synthetic.preference_pairs(gen, docs, random.Random(0)):
            assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
            assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
        if gen == "format":  # the rejected response fails the IFEval-style check, the chosen one passes
            pairs = synthetic.preference_pairs(gen, docs, random.Random(0))
            for d, row in zip(docs, pairs):
                assert synthetic.check_format(d, row["chosen"][0]["content"])
                assert not synthetic.check_format(d, row["rejected"][0]["content"])


def test_hub_preference_rows_become_explicit_prompt_pairs():
    # the Tulu 3 preference mixture's shape: full conversations in chosen and rejected
    user = {"role": "user", "content": "2+2?"}
    row = {
        "id": "x",
        "chosen": [user, {"role": "assistant", "content": "4"}],
        "rejected": [user, {"role": "assistant", "content": "5"}],
    }
    assert preference_row(row) == {
        "prompt": [user],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }
    row["rejected"][0] = {"role": "user", "content": "3+3?"}
    with pytest.raises(ValueError, match="share the prompt"):
        preference_row(row)


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("dpo")
    cfg = with_dpo(small_study(ratios=(1e-3,), train_examples=48), ratios=(2e-3,), train_examples=48)
    study = load_study(cfg)
    made = tiny_setup(d, cfg, n_train=40, n_test=10)
    synthetic.build_preference_set(made["train_files"], d / "dpo_all.jsonl", seed=0)
    # 8 pairs seen 6 times each: a tiny model cannot generalise from 12 steps, but it must
    # learn the pairs it is trained on
    write_jsonl(read_jsonl(d / "dpo_all.jsonl")[:8], d / "dpo.jsonl")
    sft_cell, dpo_cell = study.cells_of("sft")[0], study.cells_of("dpo")[0]
    train_cell(study.training_spec(sft_cell), str(d / "base"), str(d / "sft.jsonl"), d / "sft", threads=1)
    spec = study.training_spec(dpo_cell)
    record = train_cell(spec, str(d / "sft" / "model"), str(d / "dpo.jsonl"), d / "dpo", threads=1)
    return {"dir": d, "record": record, "spec": spec}


def test_dpo_trains_on_top_of_its_parent_with_tulu3_loss(dpo_run):
    rec, d = dpo_run["record"], dpo_run["dir"]
    assert rec["spec"]["parent_run_id"] == "tiny-llama/sft/r1e-03_bs4_s0"
    assert rec["loss_on"] == "preference pairs" and rec["status"] == "ok"
    assert rec["sft_config"]["loss_type"] == ["sigmoid_norm"] and rec["sft_config"]["beta"] == 5.0
    assert rec["optimizer_steps"] == 12 and rec["examples_seen"] == 48
    # the policy starts as the reference (a frozen copy of the parent): the first DPO loss is
    # exactly -log sigmoid(0) = log 2; then the pairs are learned
    assert rec["first_loss"] == pytest.approx(math.log(2), abs=1e-4)
    history = json.loads((d / "dpo" / "log_history.json").read_text())
    logs = [h for h in history if "rewards/margins" in h]
    assert logs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)
    assert logs[-1]["rewards/margins"] > 1.0 and logs[-1]["rewards/accuracies"] == 1.0
    assert rec["final_loss"] < 0.5 * rec["first_loss"]
    parent = load_file(d / "sft" / "model" / "model.safetensors")
    child = load_file(d / "dpo" / "model" / "model.safetensors")
    assert parent.keys() == child.keys()
    assert any(not torch.equal(parent[k], child[k]) for k in parent)


def test_dag_chains_sft_parent_dpo_cells_and_evaluations(tmp_path):
    from test_workflow import planned_jobs

    cfg = write_config(with_dpo(small_study(ratios=(1e-4, 1e-3)), ratios=(1e-5, 1e-3)), tmp_path / "s.yaml")
    out = snakemake(
        tmp_path, cfg, "-n", "results/runs/tiny-llama/dpo/r1e-05_bs4_s0/eval/tasks/arith/results.json"
    ).stdout
    jobs = planned_jobs(out)
    trained = sorted(w["stage"] + "/" + w["cell"] for r, w in jobs if r == "train")
    # one DPO cell needs only its parent SFT cell, not the rest of the SFT grid
    assert trained == ["dpo/r1e-05_bs4_s0", "sft/r1e-03_bs4_s0"]
    assert sorted(w.get("stage") for r, w in jobs if r == "make_train_data") == ["dpo", "sft"]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dpo_study")
    cfg = with_dpo(small_study(ratios=(1e-3,), train_examples=48), ratios=(1e-5, 2e-3), train_examples=48)
    # two tasks, a generative reasoning one and a multiple-choice pattern one: each (cell, task)
    # evaluation is a job of its own
    cfg["tasks"] = {k: v for k, v in cfg["tasks"].items() if k in STUDY_TASKS}
    snakemake(d, write_config(cfg, d / "study.yaml"), "--cores", "2")
    return d


def test_dpo_results_land_in_the_same_tables(study_dir):
    scores = pd.read_csv(study_dir / "results/tables/scores.csv")
    prim = scores[scores["primary"]]
    assert set(prim["stage"]) == {"sft", "dpo"}
    dpo = prim[prim["stage"] == "dpo"]
    assert sorted(dpo["ratio"].unique()) == [1e-5, 2e-3] and set(dpo["task"]) == STUDY_TASKS
    assert (dpo["parent"] == "tiny-llama/sft/r1e-03_bs4_s0").all()
    assert dpo["value"].between(0, 1).all() and (dpo["status"] == "ok").all()
    cells = pd.read_csv(study_dir / "results/tables/cells.csv")
    assert len(cells) == 3 and set(cells["stage"]) == {"sft", "dpo"}
    run = json.loads((study_dir / "results/runs/tiny-llama/dpo/r2e-03_bs4_s0/run.json").read_text())
    assert run["base_model"] == "results/runs/tiny-llama/sft/r1e-03_bs4_s0/model"
    assert run["data_source"]["source"] == "synthetic" and run["data_source"]["subset_rows"] == len(STUDY_TASKS) * 60
    pivot = pd.read_csv(study_dir / "results/tables/pivot.csv")
    assert set(pivot["stage"]) == {"sft", "dpo"}
