"""Compute jobs run offline: a prefetched hub model is found in the cache at the recorded
commit; a missing one stops the job at once, naming the model and the fetch command."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, small_study, snakemake, tiny_setup, write_config

HUB_ID = "HuggingFaceTB/SmolLM2-135M"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def plant_in_hub_cache(model_dir, hf_home, repo_id=HUB_ID, commit=COMMIT, branch="main"):
    """Lay a model folder out as huggingface_hub's cache does after a download."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / branch).write_text(commit)


def hub_study(tmp_path):
    cfg = small_study(ratios=(1e-3,))
    cfg["models"] = [{"name": "smollm2-135m", "id": HUB_ID, "revision": "main"}]
    cfg["cache_dir"] = str(tmp_path / "hf")
    return cfg


def run_train(tmp_path, cfg):
    """The real train entry point's logic in a fresh process with the hub off (env at import)."""
    code = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from workflow_scripts.prefetch import set_offline
set_offline()
from workflow_scripts.config import load_study
from workflow_scripts.train import train_cell
study = load_study(json.loads({json.dumps(json.dumps(cfg))}))
spec = study.training_spec(study.cells[0])
rec = train_cell(spec, {HUB_ID!r}, {str(tmp_path / "sft.jsonl")!r}, {str(tmp_path / "run")!r},
                 prefetched={str(tmp_path / "prefetch.json")!r})
print("HUB", json.dumps(rec["base_model_hub"]))
"""
    env = dict(os.environ, HF_HOME=cfg["cache_dir"])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def tiny_base(tmp_path):
    return tiny_setup(tmp_path, small_study(), n_train=20)["base"]


def test_prefetched_hub_model_trains_offline_at_the_recorded_commit(tmp_path, tiny_base):
    cfg = hub_study(tmp_path)
    plant_in_hub_cache(tiny_base, tmp_path / "hf")
    # the login node recorded which commit 'main' was when it fetched
    (tmp_path / "prefetch.json").write_text(json.dumps({"id": HUB_ID, "revision": "main", "commit": COMMIT}))
    proc = run_train(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hub = json.loads(proc.stdout.split("HUB ", 1)[1])
    assert hub == {"id": HUB_ID, "revision": "main", "commit": COMMIT}
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_missing_model_fails_at_once_naming_it_and_the_fetch_command(tmp_path, tiny_base):
    cfg = hub_study(tmp_path)
    (tmp_path / "prefetch.json").write_text(json.dumps({"id": HUB_ID, "revision": "main", "commit": COMMIT}))
    proc = run_train(tmp_path, cfg)
    assert proc.returncode != 0
    err = proc.stderr
    assert "MissingPrefetchError" in err and HUB_ID in err and COMMIT in err
    assert "snakemake prefetch" in err and "python -m workflow_scripts.prefetch" in err
    assert not (tmp_path / "run" / "model").exists()


def test_through_snakemake_the_train_job_runs_offline(tmp_path):
    """The real rule: the prefetch record exists but the cache is empty (e.g. another
    HF_HOME): the training job stops with the message, not a network timeout."""
    cfg = hub_study(tmp_path)
    path = write_config(cfg, tmp_path / "study.yaml")
    record = tmp_path / "results/prefetch/models/smollm2-135m.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"id": HUB_ID, "revision": "main", "commit": COMMIT}))
    target = "results/runs/smollm2-135m/sft/r1e-03_bs4_s0/run.json"
    # (a record written by hand has no Snakemake metadata: judge it by its time stamp only)
    plan = snakemake(tmp_path, path, "-n", target, "--rerun-triggers", "mtime").stdout
    assert "rule prefetch_model" not in plan and "rule train" in plan  # fetched: the login node's job is done
    proc = snakemake(tmp_path, path, "--cores", "1", target, "--rerun-triggers", "mtime", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "results/logs/train/smollm2-135m/sft/r1e-03_bs4_s0.log").read_text()
    assert "is not in the local cache" in log and "snakemake prefetch --cores 1" in log
