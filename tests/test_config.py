"""Config validation: good configs load, bad ones fail naming the key and the fix."""

import pytest
from conftest import REPO, load_yaml, small_study, snakemake, write_config

from workflow_scripts.config import ConfigError, load_study


def test_demo_and_real_study_load():
    demo = load_study(load_yaml(REPO / "studies" / "demo.yaml"))
    # tiny-llama: 3 ratios x 2 batch sizes, then 2 DPO ratios; tiny-llama-xs: its own 3 x 1, no DPO
    assert len(demo.cells_of("sft")) == 6 + 3 and len(demo.cells_of("dpo")) == 2
    assert {t["category"] for t in demo.tasks.values()} == {"reasoning", "pattern"}
    real = load_study(load_yaml(REPO / "config.yaml"))
    assert len(real.cells_of("sft")) == 5 * 3 * 2 and len(real.cells_of("dpo")) == 3 * 2 * 2
    # the real grid spans Tulu 3 (3.9e-8) to SmolTulu SFT-1130 (1.125e-5)
    ratios = sorted({c.ratio for c in real.cells_of("sft")})
    assert ratios[0] == 3.9e-8 and ratios[-1] == 1.125e-5
    dpo = real.training_spec(real.cells_of("dpo")[0])
    assert dpo["parent_run_id"] == "smollm2-135m/sft/r1.125e-05_bs8_s0"
    assert dpo["recipe"]["loss_type"] == ["sigmoid_norm"] and dpo["recipe"]["beta"] == 5.0
    assert set(real.tasks) >= {
        "gsm8k",
        "arc_challenge",
        "arc_easy",
        "bbh",
        "hellaswag",
        "ifeval",
        "piqa",
        "leaderboard_mmlu_pro",
    }


def test_smoltulu_1_7b_study_has_the_papers_named_cells():
    study = load_study(load_yaml(REPO / "studies" / "smoltulu-1.7b.yaml"))
    ids = {c.run_id for c in study.cells}
    assert "smollm2-1.7b/sft/lr9e-05_bs8_s0" in ids and "smollm2-1.7b/sft/lr3.1e-06_bs32_s0" in ids  # SFT-1130, -1207
    assert "smollm2-1.7b/dpo_1130/lr8e-07_bs12_s0" in ids and "smollm2-1.7b/dpo_1207/lr5e-07_bs32_s0" in ids
    parents = {c.stage: study.parent_of(c) for c in study.cells if c.stage.startswith("dpo")}
    assert parents == {"dpo_1130": "smollm2-1.7b/sft/lr9e-05_bs8_s0", "dpo_1207": "smollm2-1.7b/sft/lr3.1e-06_bs32_s0"}
    assert study.resources("smollm2-1.7b", "train")["mem_mb"] > study.resources("smollm2-1.7b", "evaluate")["mem_mb"]


def test_string_ratio_from_yaml_is_the_number_meant(demo_config, tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string; the config must still mean 0.0001
    text = (REPO / "studies" / "demo.yaml").read_text().replace("ratios: [3e-5, 1e-4, 3e-4]", "ratios: [1e-4]")
    import yaml

    cfg = yaml.safe_load(text)
    assert cfg["stages"]["sft"]["grid"]["ratios"] == ["1e-4"]
    study = load_study(cfg)
    sft = [c for c in study.cells_of("sft") if c.model == "tiny-llama"]  # tiny-llama-xs: a grid of its own
    assert {c.ratio for c in sft} == {1e-4}
    assert {c.learning_rate for c in sft} == {8e-4, 3.2e-3}
    assert {c.ratio for c in study.cells_of("dpo")} == {1e-5, 1e-4}  # "ratios: [1e-5, 1e-4]" too


def test_training_spec_derives_accumulation_so_effective_batch_is_exact(demo_config):
    study = load_study(demo_config)
    for cell in study.cells:
        spec = study.training_spec(cell)
        assert (
            spec["per_device_train_batch_size"] * spec["gradient_accumulation_steps"] * spec["gpus"] == cell.batch_size
        )
        assert spec["max_steps"] * cell.batch_size == demo_config["stages"][cell.stage]["train_examples"]


def _set(cfg, dotted, value):
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    node[keys[-1]] = value
    return cfg


@pytest.mark.parametrize(
    "dotted,value,must_name",
    [
        ("stages.sft.grid.ratios", [1e-4, -3e-4], "stages.sft.grid.ratios[1]"),
        ("stages.sft.grid.ratios", ["fast"], "stages.sft.grid.ratios[0]"),
        ("stages.sft.grid.ratios", [], "stages.sft.grid.ratios"),
        ("stages.sft.grid.ratios", [1e-4, 1.0e-4], "stages.sft.grid.ratios"),
        ("stages.sft.grid.batch_sizes", [32, 48], "stages.sft.grid.batch_sizes"),  # micro 32 does not divide 48
        ("stages.sft.micro_batch_size", 5, "stages.sft.grid.batch_sizes"),
        ("stages.sft.seeds", [0, 1.5], "stages.sft.seeds[1]"),
        ("stages.sft.seeds", [0, 0], "stages.sft.seeds"),
        ("tasks.arith.category", "memorisation", "tasks.arith.category"),
        ("tasks.compare.metric", "exact_match,strict-match", "tasks.compare.metric"),
        ("stages.sft.recipe.learning_rate", 1e-3, "stages.sft.recipe.learning_rate"),
        ("models.0.build", None, "models[0].build"),
    ],
)
def test_bad_values_name_the_key(demo_config, dotted, value, must_name):
    cfg = _set(demo_config, dotted, value)
    with pytest.raises(ConfigError) as err:
        load_study(cfg)
    assert must_name in str(err.value), str(err.value)


def test_unknown_key_typo_is_named_with_allowed_keys(demo_config):
    grid = demo_config["stages"]["sft"]["grid"]
    grid["learning_rate"] = grid.pop("ratios")
    with pytest.raises(ConfigError) as err:
        load_study(demo_config)
    msg = str(err.value)
    assert "stages.sft.grid" in msg and "learning_rate" in msg and "learning_rates" in msg


def test_both_ratios_and_learning_rates_is_refused(demo_config):
    demo_config["stages"]["sft"]["grid"]["learning_rates"] = [1e-3]
    with pytest.raises(ConfigError, match="exactly one of 'ratios' or 'learning_rates'"):
        load_study(demo_config)


def test_missing_local_model_path_is_named(demo_config):
    demo_config["models"][0] = {"name": "mine", "id": "./no/such/model"}
    with pytest.raises(ConfigError, match=r"models\[0\]\.id.*does not exist"):
        load_study(demo_config)


def test_snakemake_stops_before_any_job_on_a_bad_config(tmp_path):
    cfg = small_study()
    cfg["stages"]["sft"]["grid"]["batch_sizes"] = [3]
    proc = snakemake(tmp_path, write_config(cfg, tmp_path / "bad.yaml"), "-n", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "stages.sft.grid.batch_sizes" in out and "micro_batch_size" in out
    assert "Job stats" not in out and not (tmp_path / "results").exists()


def test_task_without_category_is_named(demo_config):
    del demo_config["tasks"]["format"]["category"]
    with pytest.raises(ConfigError, match=r"tasks\.format.*'category' is a required property"):
        load_study(demo_config)


def test_empty_grid_is_refused(demo_config):
    demo_config["stages"]["sft"]["grid"]["batch_sizes"] = []
    with pytest.raises(ConfigError, match=r"stages\.sft\.grid\.batch_sizes"):
        load_study(demo_config)


def test_divergence_factor_must_exceed_one(demo_config):
    demo_config["stages"]["sft"]["divergence"] = {"max_loss_factor": 0.5}
    with pytest.raises(ConfigError, match=r"stages\.sft\.divergence\.max_loss_factor"):
        load_study(demo_config)


def test_grid_can_hold_steps_fixed_instead_of_examples(demo_config):
    sft = demo_config["stages"]["sft"]
    del sft["train_examples"]
    sft["train_steps"] = 300
    study = load_study(demo_config)
    assert {study.training_spec(c)["max_steps"] for c in study.cells_of("sft")} == {300}
    sft["train_examples"] = 1000
    with pytest.raises(ConfigError, match=r"stages\.sft\.train_steps.*not both"):
        load_study(demo_config)


def test_cache_dir_that_cannot_be_written_is_named(demo_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    demo_config["cache_dir"] = str(blocker / "hf-cache")
    with pytest.raises(ConfigError, match=r"cache_dir: cannot write to .*hf-cache"):
        load_study(demo_config)
    demo_config["cache_dir"] = str(tmp_path / "hf-cache")
    load_study(demo_config)
    assert (tmp_path / "hf-cache").is_dir()


# --- DPO stages: the parent SFT cell must exist ------------------------------------------


def test_dpo_parent_resolves_to_an_sft_cell_by_value():
    from conftest import with_dpo

    study = load_study(
        with_dpo(small_study(ratios=(1e-4, 1e-3)), parent={"learning_rate": 4e-3, "batch_size": 4, "seed": 0})
    )
    dpo = study.cells_of("dpo")
    assert [c.run_id for c in dpo] == ["tiny-llama/dpo/r1e-03_bs4_s0"]
    spec = study.training_spec(dpo[0])
    # named by learning rate, found in a grid written as ratios (4e-3 = 1e-3 x 4)
    assert spec["parent_run_id"] == "tiny-llama/sft/r1e-03_bs4_s0" and spec["stage_kind"] == "dpo"
    assert study.training_spec(study.cells_of("sft")[0])["parent_run_id"] is None


@pytest.mark.parametrize(
    "change,must_name,must_say",
    [
        (lambda c: c["stages"]["dpo"]["parent"].update(ratio=5e-4), "stages.dpo.parent", "not in the grid"),
        (lambda c: c["stages"]["dpo"]["parent"].update(seed=3), "stages.dpo.parent", "r1e-03_bs4_s0"),
        (lambda c: c["stages"]["dpo"].pop("parent"), "stages.dpo.parent", "add parent"),
        (
            lambda c: c["stages"]["dpo"]["parent"].update(stage="sft_long"),
            "stages.dpo.parent.stage",
            "not an SFT stage",
        ),
        (
            lambda c: c["stages"]["sft"].update(parent={"ratio": 1e-3, "batch_size": 4, "seed": 0}),
            "stages.sft.parent",
            "only a DPO stage",
        ),
        (lambda c: c["stages"].update(dop=c["stages"].pop("dpo")), "stages", "not a stage name"),
        (lambda c: c["stages"]["dpo"]["parent"].update(learning_rate=1e-3), "stages.dpo.parent", "exactly one of"),
        (
            lambda c: c["stages"]["dpo"]["recipe"].update(learning_rate=1e-6),
            "stages.dpo.recipe.learning_rate",
            "stages.dpo.grid",
        ),
    ],
)
def test_bad_dpo_stage_is_named(change, must_name, must_say):
    from conftest import with_dpo

    cfg = with_dpo(small_study(ratios=(1e-4, 1e-3)))
    change(cfg)
    with pytest.raises(ConfigError) as err:
        load_study(cfg)
    assert must_name in str(err.value) and must_say in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "task,must_name,must_say",
    [
        ({"gsm8k_typo": {"category": "reasoning", "metric": "acc,none"}}, "tasks.gsm8k_typo", "neither synthetic"),
        ({"gsm8k": {"category": "reasoning", "metric": "acc,none"}}, "tasks.gsm8k.metric", "exact_match,strict-match"),
        (
            {"bbh": {"category": "reasoning", "metric": "exact_match,none"}},
            "tasks.bbh.metric",
            "exact_match,get-answer",
        ),
        (
            {"piqa": {"category": "pattern", "metric": "acc,none", "data_dir": "/nonexistent/piqa"}},
            "tasks.piqa.data_dir",
            "does not exist",
        ),
        (
            {
                "arith": {
                    "category": "reasoning",
                    "metric": "exact_match,strict-match",
                    "synthetic": "arithmetic",
                    "data_dir": ".",
                }
            },
            "tasks.arith.data_dir",
            "synthetic task makes its own data",
        ),
    ],
)
def test_bad_builtin_task_is_named(task, must_name, must_say):
    cfg = small_study()
    cfg["tasks"].update(task)
    with pytest.raises(ConfigError) as err:
        load_study(cfg)
    assert must_name in str(err.value) and must_say in str(err.value), str(err.value)


def test_packing_and_multi_gpu_cells_exclude_each_other():
    cfg = small_study(batch_sizes=(4,))
    cfg["stages"]["sft"].update(cells_per_gpu=2, gpus=2)
    with pytest.raises(ConfigError, match="stages.sft.cells_per_gpu"):
        load_study(cfg)


def test_checkpointing_in_a_recipe_is_true_or_false():
    cfg = small_study()
    cfg["stages"]["sft"]["recipe"]["activation_checkpointing"] = "auto"
    with pytest.raises(
        ConfigError, match=r"stages\.sft\.recipe\.activation_checkpointing: 'auto' is not true or false"
    ):
        load_study(cfg)
    cfg["stages"]["sft"]["recipe"]["activation_checkpointing"] = True
    assert load_study(cfg).training_spec(load_study(cfg).cells[0])["recipe"]["activation_checkpointing"] is True


def test_orchestration_benchmark_grids_are_valid_studies():
    import importlib.util

    spec = importlib.util.spec_from_file_location("orchestration", REPO / "benchmarks" / "orchestration.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for n in (10, 100, 1000):
        assert len(load_study(bench.grid_config(n)).cells) == n
        # the floor it is compared with has the same number of cells
        cells = {}
        exec(bench.bare_snakefile(n).split("rule all")[0], cells)
        assert len(set(cells["CELLS"])) == n
