import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


@pytest.fixture
def demo_config():
    return copy.deepcopy(load_yaml(REPO / "studies" / "demo.yaml"))


def small_study(ratios=(1e-4, 1e-3), batch_sizes=(4,), seeds=(0,), train_examples=96):
    """The demo study shrunk to seconds per job (same code paths, fewer steps and items)."""
    cfg = load_yaml(REPO / "studies" / "demo.yaml")
    cfg["study"] = "test-small"
    # one model (the demo's first), no analysis section: what the tests have always trained,
    # and a config an older checkout (tests/test_upgrade.py's BASE) accepts
    cfg["models"] = cfg["models"][:1]
    cfg.pop("analysis", None)
    cfg["data"]["synthetic"].update({"train_per_task": 60, "eval_per_task": 12})
    cfg["models"][0]["build"].update({"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2})
    cfg["stages"].pop("dpo", None)  # SFT only; with_dpo() adds a DPO stage where a test needs one
    sft = cfg["stages"]["sft"]
    sft["grid"] = {"ratios": list(ratios), "batch_sizes": list(batch_sizes)}
    sft["seeds"] = list(seeds)
    sft["micro_batch_size"] = 2
    sft["train_examples"] = train_examples
    sft["recipe"]["logging_steps"] = 4
    cfg["evaluation"]["batch_size"] = 16
    return cfg


def with_dpo(cfg, parent=None, ratios=(1e-3,), batch_sizes=(4,), train_examples=32):
    """Add a small DPO stage (Tulu 3's length-normalised DPO) on top of one SFT cell."""
    sft = cfg["stages"]["sft"]
    parent = parent or {
        "ratio": sft["grid"]["ratios"][-1],
        "batch_size": sft["grid"]["batch_sizes"][0],
        "seed": sft["seeds"][0],
    }
    cfg["stages"]["dpo"] = {
        "parent": parent,
        "grid": {"ratios": list(ratios), "batch_sizes": list(batch_sizes)},
        "seeds": [0],
        "micro_batch_size": 2,
        "train_examples": train_examples,
        "dataset": {"source": "synthetic", "seed": 0},
        "recipe": {
            "loss_type": ["sigmoid_norm"],
            "beta": 5.0,
            "lr_scheduler_type": "linear",
            "warmup_steps": 0.1,
            "max_length": 64,
            "logging_steps": 2,
        },
    }
    return cfg


def tiny_setup(folder, cfg, n_train=40, n_test=2):
    """What the data rules make for a study, without Snakemake: seeded task files, the SFT
    mix and a tiny base model built from it. Returns paths and the SFT row count."""
    from workflow_scripts import synthetic
    from workflow_scripts.tiny_model import build_from_sft_file

    folder = Path(folder)
    train_files, test_files = {}, {}
    for name, task in cfg["tasks"].items():
        train, test = folder / f"{name}_train.jsonl", folder / f"{name}_test.jsonl"
        synthetic.write_task(task["synthetic"], 7, n_train, n_test, train, test)
        train_files[name], test_files[name] = (task["synthetic"], train), str(test)
    rows = synthetic.build_sft_set(train_files, folder / "sft.jsonl", seed=0)
    build_from_sft_file(folder / "sft.jsonl", folder / "base", cfg["models"][0]["build"])
    return {
        "train_files": train_files,
        "test_files": test_files,
        "sft": folder / "sft.jsonl",
        "base": folder / "base",
        "sft_rows": rows,
    }


def write_config(cfg, path):
    path = Path(path)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snakemake(workdir, configfile, *args, check=True, timeout=1200, env=None):
    """Run the repository's workflow in ``workdir`` (outputs land there, not in the repo)."""
    env = dict(os.environ, PYTHONHASHSEED="0", **(env or {}))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc
