"""Checkpoint and resume: a training job killed after its first checkpoint continues from
it when rerun, and ends with the same weights as a run that was never interrupted."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, small_study, snakemake, tiny_setup, write_config
from safetensors.torch import load_file

from workflow_scripts.callbacks import FAULT_KILL_AFTER_CHECKPOINT
from workflow_scripts.config import load_study
from workflow_scripts.train import train_cell

# CPU, fp32, same seed: resuming restores weights, optimizer, scheduler, RNG and the data
# position exactly, so the only difference allowed is float summation order (none seen).
TOLERANCE = 1e-6


def resumable_study():
    cfg = small_study(ratios=(1e-3,), train_examples=48)  # 12 optimizer steps at batch 4
    cfg["stages"]["sft"]["checkpoint"] = {"every_steps": 4, "keep": 2}
    return cfg


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    cfg = resumable_study()
    tiny_setup(d, cfg)
    study = load_study(cfg)
    return {"dir": d, "spec": study.training_spec(study.cells[0]), "cfg": cfg}


def test_killed_run_resumes_and_matches_an_uninterrupted_one(prepared):
    d, spec = prepared["dir"], prepared["spec"]
    straight = train_cell(spec, str(d / "base"), str(d / "sft.jsonl"), d / "straight")
    assert straight["resumed_from_step"] is None
    # finished: its checkpoints are gone (model/ is the result), and run.json says so
    assert straight["checkpoints"]["deleted"] == ["checkpoint-8", "checkpoint-12"]
    assert straight["checkpoints"]["freed_bytes"] > 0 and not list((d / "straight/trainer").glob("checkpoint-*"))
    # the killed run keeps them once it finishes, to show what `keep` left
    spec = {**spec, "checkpoint": {**spec["checkpoint"], "keep_after_training": True}}

    code = (
        f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from workflow_scripts.train import train_cell; "
        f"train_cell(json.loads({json.dumps(json.dumps(spec))}), {str(d / 'base')!r}, "
        f"{str(d / 'sft.jsonl')!r}, {str(d / 'killed')!r})"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, **{FAULT_KILL_AFTER_CHECKPOINT: "1"}),
    )
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILL right after checkpoint-4
    assert (d / "killed/trainer/checkpoint-4").is_dir()
    assert not (d / "killed/model").exists() and not (d / "killed/run.json").exists()

    resumed = train_cell(spec, str(d / "base"), str(d / "sft.jsonl"), d / "killed")
    assert resumed["resumed_from_step"] == 4 and resumed["optimizer_steps"] == 12
    a = load_file(d / "straight/model/model.safetensors")
    b = load_file(d / "killed/model/model.safetensors")
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= TOLERANCE, f"resumed weights differ by {worst}"
    # the loss curve continues where it stopped; keep=2 leaves the last two checkpoints
    assert [h["loss"] for h in json.loads((d / "killed/log_history.json").read_text()) if "loss" in h] == pytest.approx(
        [h["loss"] for h in json.loads((d / "straight/log_history.json").read_text()) if "loss" in h]
    )
    assert sorted(p.name for p in (d / "killed/trainer").glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-8"]


def test_snakemake_rerun_of_a_killed_training_job_resumes(tmp_path):
    cfg = write_config(resumable_study(), tmp_path / "study.yaml")
    target = "results/runs/tiny-llama/sft/r1e-03_bs4_s0/run.json"
    killed = snakemake(tmp_path, cfg, "--cores", "1", target, check=False, env={FAULT_KILL_AFTER_CHECKPOINT: "1"})
    assert killed.returncode != 0
    cell = tmp_path / "results/runs/tiny-llama/sft/r1e-03_bs4_s0"
    assert (cell / "trainer/checkpoint-4").is_dir() and not (cell / "run.json").exists()
    snakemake(tmp_path, cfg, "--cores", "1", target)
    run = json.loads((cell / "run.json").read_text())
    assert run["resumed_from_step"] == 4 and run["optimizer_steps"] == 12 and run["status"] == "ok"
    assert (cell / "model/model.safetensors").exists() and (cell / "log_history.json").exists()
    # trained to the end: no trainer checkpoint is left, and run.json names what went
    assert not list((cell / "trainer").glob("*checkpoint-*")) and run["checkpoints"]["deleted"]
    log = (tmp_path / "results/logs/train/tiny-llama/sft/r1e-03_bs4_s0.log").read_text()
    assert "resuming from" in log and "checkpoint-4 (step 4)" in log
