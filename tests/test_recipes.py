"""Recipes are checked when the config is read: a wrong TRL key, value or combination fails
before any job, naming stages.<stage>.recipe.<key>, instead of in a GPU job on SLURM."""

import copy
import os
import tempfile

import pytest
from conftest import REPO, load_yaml, snakemake, write_config

from workflow_scripts import recipe_cache, recipes
from workflow_scripts.config import ConfigError, load_study
from workflow_scripts.recipes import RecipeError, check_recipe


def stage(recipe, **extra):
    """A stage as load_study hands it to the check (defaults merged)."""
    return {"recipe": recipe, "train_examples": 96, "micro_batch_size": 2, **extra}


SFT_OK = {"lr_scheduler_type": "cosine", "warmup_steps": 0.05, "max_length": 64, "assistant_only_loss": True}
DPO_OK = {"loss_type": ["sigmoid_norm"], "beta": 5.0, "max_length": 64}

# (stage, recipe change, the key named, words of the reason)
MISTAKES = [
    ("sft", {"warmup_stepz": 0.05}, "warmup_stepz", "did you mean warmup_steps?"),
    ("dpo", {"max_seq_length": 64}, "max_seq_length", "did you mean max_length?"),
    ("sft", {"lr_scheduler_type": "cosinus"}, "lr_scheduler_type", "'cosine_with_restarts'"),
    ("sft", {"packing": True}, "packing", "count sequences, not rows"),
]
COMBINATIONS = [
    ("sft", {"beta": 0.1}, "beta", "argument of trl.DPOConfig"),
    ("sft", {"max_length": "64"}, "max_length", "takes int or None"),
    ("sft", {"truncation_mode": "keep_middle"}, "truncation_mode", "['keep_end', 'keep_start']"),
    ("sft", {"padding_free": True}, "padding_free", "max_length: null"),
    ("sft", {"completion_only_loss": True, "assistant_only_loss": False}, "completion_only_loss", "every token"),
    ("sft", {"dataset_kwargs": {"skip_prepare_dataset": True}}, "dataset_kwargs", "untokenized"),
    (
        "sft",
        {"activation_checkpointing_kwargs": {"selective": True}},
        "activation_checkpointing_kwargs",
        "activation_checkpointing: true",
    ),
    ("sft", {"eval_strategy": "steps"}, "eval_strategy", "without one"),
    ("sft", {"lr_scheduler_type": "reduce_lr_on_plateau"}, "lr_scheduler_type", "requires an eval strategy"),
    ("sft", {"auto_find_batch_size": True}, "auto_find_batch_size", "effective batch size"),
    ("dpo", {"loss_type": ["sigmoid_nrom"]}, "loss_type", "did you mean sigmoid_norm?"),
    ("dpo", {"f_divergence_type": "js_divergence", "loss_type": ["apo_zero"]}, "f_divergence_type", "apo_zero"),
    ("dpo", {"loss_type": ["exo_pair"]}, "label_smoothing", "1e-3"),
    ("dpo", {"use_weighting": True, "loss_type": ["aot"]}, "use_weighting", "sort samples"),
    ("dpo", {"sync_ref_model": True, "precompute_ref_log_probs": True}, "sync_ref_model", "stale"),
    ("dpo", {"loss_weights": [1.0, 2.0]}, "loss_weights", "same length"),
]


@pytest.mark.parametrize(
    "stage_name,change,key,reason", MISTAKES + COMBINATIONS, ids=[f"{s}-{k}" for s, _, k, _ in MISTAKES + COMBINATIONS]
)
def test_check_refuses_naming_the_key(stage_name, change, key, reason):
    recipe = {**(SFT_OK if stage_name == "sft" else DPO_OK), **change}
    with pytest.raises(RecipeError) as e:
        check_recipe(stage_name, stage(recipe), cache=False)
    assert e.value.key == f"stages.{stage_name}.recipe.{key}"
    assert str(e.value).startswith(f"config error at stages.{stage_name}.recipe.{key}: ")
    assert reason in str(e.value)


@pytest.mark.parametrize("stage_name,change,key,reason", MISTAKES, ids=[k for _, _, k, _ in MISTAKES])
def test_load_study_refuses_the_demo_with_a_mistake(demo_config, stage_name, change, key, reason):
    demo_config["stages"][stage_name]["recipe"].update(change)
    with pytest.raises(ConfigError, match=f"config error at stages.{stage_name}.recipe.{key}: ") as e:
        load_study(demo_config, base_dir=REPO)
    assert reason in str(e.value)


def test_what_the_pipeline_accepts_passes():
    check_recipe(
        "sft",
        stage(
            {
                **SFT_OK,
                "attn_implementation": "sdpa",
                "activation_checkpointing": True,
                "activation_checkpointing_kwargs": {"selective": True},
            }
        ),
        cache=False,
    )
    check_recipe("sft", stage({**SFT_OK, "padding_free": True, "max_length": None}), cache=False)
    check_recipe("sft", stage({**SFT_OK, "optim": "sgd"}, checkpoint={"every_steps": 5, "keep": 1}), cache=False)
    check_recipe("dpo", stage({**DPO_OK, "loss_type": "sigmoid"}), cache=False)  # TRL wraps a single type
    check_recipe("dpo_1130", stage({"num_train_epochs": 1}, train_examples=None), cache=False)


@pytest.mark.parametrize("path", ["config.yaml", *sorted(p.name for p in (REPO / "studies").glob("*.yaml"))])
def test_shipped_studies_pass(path):
    load_study(load_yaml(REPO / path if path == "config.yaml" else REPO / "studies" / path), base_dir=REPO)


def test_check_leaves_nothing_behind(tmp_path, monkeypatch):
    # no files (cwd, temp folder), the same environment and accelerate device state: a
    # Snakemake or pytest process that trains after reading a config starts as before
    monkeypatch.chdir(tmp_path)
    check_recipe("sft", stage(SFT_OK), cache=False)  # trl imported, accelerate set up once
    from accelerate.state import PartialState

    PartialState._shared_state.clear()
    environ, temp = dict(os.environ), set(os.listdir(tempfile.gettempdir()))
    check_recipe("sft", stage({**SFT_OK, "warmup_steps": 3}), cache=False)
    assert dict(os.environ) == environ
    assert PartialState._shared_state == {}
    assert list(tmp_path.iterdir()) == []
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - temp if n.startswith("lrbs-recipe-check-")}


def test_a_recipe_that_passed_is_not_checked_again(tmp_path, monkeypatch):
    monkeypatch.setenv(recipe_cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(recipe_cache, "_passed_here", set())
    check_recipe("sft", stage(SFT_OK))
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    checked = []
    monkeypatch.setattr(recipes, "_check", lambda *a: checked.append(a) or True)
    recipe_cache._passed_here.clear()
    check_recipe("sft", stage(SFT_OK))  # the file says it passed: no trl, no build
    assert checked == []
    check_recipe("sft", stage({**SFT_OK, "max_length": 128}))  # another recipe is checked
    check_recipe("dpo", stage(DPO_OK))
    assert len(checked) == 2
    monkeypatch.undo()
    monkeypatch.setenv(recipe_cache.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(RecipeError):  # a refusal is never remembered
        check_recipe("sft", stage({**SFT_OK, "warmup_stepz": 1}))
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3


def test_snakemake_dry_run_fails_before_any_job(demo_config, tmp_path):
    cfg = copy.deepcopy(demo_config)
    cfg["stages"]["sft"]["recipe"]["warmup_stepz"] = 0.05
    proc = snakemake(tmp_path, write_config(cfg, tmp_path / "config.yaml"), "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config error at stages.sft.recipe.warmup_stepz" in out and "did you mean warmup_steps?" in out
    assert "Building DAG" not in out and "rule train" not in out
    assert not (tmp_path / "results").exists()
