"""Model size as an axis: each model's own grid and parent per stage (``models[].stages``), a
model that skips a stage, each model's parameter count (run.json, results/tables/models.csv),
and the SmolLM2 sizes study."""

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, load_yaml, small_study, snakemake, tiny_setup, with_dpo
from test_workflow import planned_jobs

from workflow_scripts import budget, inputs, layout
from workflow_scripts.config import ConfigError, load_study
from workflow_scripts.model_sizes import models_table

XS = {
    "name": "tiny-llama-xs",
    "build": {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 128,
        "seed": 0,
    },
}


def two_models(xs_stages=None, dpo=True):
    """The small study (ratios 1e-4, 1e-3 at batch 4) with a second model, optionally with its
    own stage settings, and a DPO stage on tiny-llama's r1e-03_bs4_s0."""
    cfg = small_study()
    if dpo:
        with_dpo(cfg)
    cfg["models"].append({**copy.deepcopy(XS), **({"stages": xs_stages} if xs_stages is not None else {})})
    return cfg


def ids(study, model, stage):
    return [c.name for c in study.cells if c.model == model and c.stage == stage]


def test_without_own_stages_every_model_shares_the_stages_grid_and_parent():
    study = load_study(two_models())
    assert ids(study, "tiny-llama-xs", "sft") == ids(study, "tiny-llama", "sft") == ["r1e-04_bs4_s0", "r1e-03_bs4_s0"]
    assert study.grid_of("tiny-llama-xs", "sft") == study.config["stages"]["sft"]["grid"]
    assert study.parent_spec("tiny-llama-xs", "dpo") == study.config["stages"]["dpo"]["parent"]
    assert study.parent_spec("tiny-llama", "sft") is None
    dpo = next(c for c in study.cells if c.model == "tiny-llama-xs" and c.stage == "dpo")
    assert study.parent_of(dpo) == "tiny-llama-xs/sft/r1e-03_bs4_s0"


def test_a_models_own_grid_replaces_the_stages_and_leaves_the_other_models_cells_alone():
    shared = load_study(two_models())
    own = {"sft": {"grid": {"learning_rates": [3e-3, 1e-2], "batch_sizes": [2, 8]}}, "dpo": False}
    study = load_study(two_models(own))
    assert ids(study, "tiny-llama-xs", "sft") == [
        "lr3e-03_bs2_s0",
        "lr3e-03_bs8_s0",
        "lr1e-02_bs2_s0",
        "lr1e-02_bs8_s0",
    ]
    assert ids(study, "tiny-llama-xs", "dpo") == [] and not study.trains("tiny-llama-xs", "dpo")
    assert study.grid_of("tiny-llama-xs", "dpo") is None and study.parent_spec("tiny-llama-xs", "dpo") is None
    # tiny-llama's cells, their order and specs: exactly what they were
    first = [c for c in shared.cells if c.model == "tiny-llama"]
    assert [c for c in study.cells if c.model == "tiny-llama"] == first
    assert [study.training_spec(c) for c in first] == [shared.training_spec(c) for c in first]
    spec = study.training_spec(study.cell("tiny-llama-xs/sft/lr1e-02_bs8_s0"))
    assert (spec["learning_rate"], spec["effective_batch_size"], spec["gradient_accumulation_steps"]) == (0.01, 8, 4)


def test_a_models_own_dpo_parent():
    own = {
        "sft": {"grid": {"ratios": [1e-4, 3e-4], "batch_sizes": [8]}},
        "dpo": {"parent": {"ratio": 3e-4, "batch_size": 8, "seed": 0}},
    }
    study = load_study(two_models(own))
    parents = {c.model: study.parent_of(c) for c in study.cells if c.stage == "dpo"}
    assert parents == {"tiny-llama": "tiny-llama/sft/r1e-03_bs4_s0", "tiny-llama-xs": "tiny-llama-xs/sft/r3e-04_bs8_s0"}
    dpo = study.cell("tiny-llama-xs/dpo/r1e-03_bs4_s0")
    assert study.training_spec(dpo)["parent_run_id"] == "tiny-llama-xs/sft/r3e-04_bs8_s0"
    assert inputs.train_inputs(study, dpo)["base"] == ["results/runs/tiny-llama-xs/sft/r3e-04_bs8_s0/model"]
    # a DPO stage without a parent of its own is fine when every model that trains it names one
    cfg = two_models(own)
    cfg["models"][0]["stages"] = {"dpo": {"parent": {"ratio": 1e-4, "batch_size": 4, "seed": 0}}}
    del cfg["stages"]["dpo"]["parent"]
    study = load_study(cfg)
    assert study.parent_of(study.cell("tiny-llama/dpo/r1e-03_bs4_s0")) == "tiny-llama/sft/r1e-04_bs4_s0"


@pytest.mark.parametrize(
    "own,key,says",
    [
        ({"stf": False}, "models[1].stages.stf", "'stf' is not a stage of this study (stages: sft, dpo)"),
        ({"dpo": True}, "models[1].stages.dpo", "give false (the model does not train in this stage)"),
        ({"sft": {"grid": {"ratios": [1e-4]}}}, "models[1].stages.sft.grid", "'batch_sizes' is a required"),
        (
            {"sft": {"grid": {"ratios": [1e-4], "learning_rates": [1e-3], "batch_sizes": [4]}}},
            "models[1].stages.sft.grid",
            "exactly one of 'ratios' or 'learning_rates'",
        ),
        ({"sft": {"grids": {}}}, "models[1].stages.sft", "Allowed keys here: grid, parent"),
        (
            {"sft": {"grid": {"ratios": [1e-4, 1e-4], "batch_sizes": [4]}}},
            "models[1].stages.sft.grid.ratios",
            "duplicate value(s)",
        ),
        (
            {"sft": {"grid": {"ratios": [1e-4], "batch_sizes": [3]}}},
            "models[1].stages.sft.grid.batch_sizes",
            "not a multiple of stages.sft.micro_batch_size (2)",
        ),
        (
            {"sft": {"parent": {"ratio": 1e-4, "batch_size": 4, "seed": 0}}},
            "models[1].stages.sft.parent",
            "only a DPO stage has a parent cell",
        ),
        (
            {"dpo": {"parent": {"ratio": 1e-4, "seed": 0}}},
            "models[1].stages.dpo.parent",
            "'batch_size' is a required",
        ),
        (
            {"dpo": {"parent": {"stage": "sft_x", "ratio": 1e-4, "batch_size": 4, "seed": 0}}},
            "models[1].stages.dpo.parent.stage",
            "'sft_x' is not an SFT stage",
        ),
        (
            {"dpo": {"parent": {"ratio": 3e-4, "batch_size": 4, "seed": 0}}},
            "models[1].stages.dpo.parent",
            "not in the grid of stage 'sft' for model 'tiny-llama-xs'",
        ),
        ({"sft": False}, "models[1].stages.dpo", "does not train in stage 'sft'"),
        ({"sft": False, "dpo": False}, "models[1].stages", "trains in no stage"),
    ],
)
def test_a_bad_model_stage_is_refused_naming_the_key_and_the_fix(own, key, says):
    with pytest.raises(ConfigError) as err:
        load_study(two_models(own))
    assert f"config error at {key}" in str(err.value) and says in str(err.value), str(err.value)


def test_a_dpo_stage_without_parent_names_the_models_that_need_one():
    cfg = two_models({"dpo": {"parent": {"ratio": 1e-4, "batch_size": 4, "seed": 0}}})
    del cfg["stages"]["dpo"]["parent"]
    with pytest.raises(
        ConfigError, match=r"at stages.dpo.parent: .*own models\[\]\.stages\.dpo\.parent: \['tiny-llama'\]"
    ):
        load_study(cfg)


def test_packs_and_budget_follow_each_models_grid():
    own = {"sft": {"grid": {"ratios": [1e-3], "batch_sizes": [2, 8]}}}
    cfg = two_models(own, dpo=False)
    cfg["stages"]["sft"]["cells_per_gpu"] = 2
    cfg["stages"]["sft"]["seeds"] = [0, 1]
    study = load_study(cfg)
    assert study.pack_slots("sft", "tiny-llama") == [[(4, 0), (4, 1)]]
    assert study.pack_slots("sft", "tiny-llama-xs") == [[(2, 0), (2, 1)], [(8, 0), (8, 1)]]
    assert study.pack_slots("sft") == [[(4, 0), (4, 1)], [(2, 0), (2, 1)], [(8, 0), (8, 1)]]
    assert study.pack_models("sft", [(8, 0), (8, 1)]) == ["tiny-llama-xs"]
    cells = inputs.pack_cells(study, "tiny-llama-xs", "sft", "r1e-03", [(8, 0), (8, 1)])
    assert [c.run_id for c in cells] == ["tiny-llama-xs/sft/r1e-03_bs8_s0", "tiny-llama-xs/sft/r1e-03_bs8_s1"]
    skip = load_study(two_models({"dpo": False}))
    b = budget.study_budget(skip, Path("/nonexistent"), jobs=2)
    assert [(g["model"], g["stage"], g["cells"]) for g in b["groups"]] == [
        ("tiny-llama", "sft", 2),
        ("tiny-llama-xs", "sft", 2),
        ("tiny-llama", "dpo", 1),
    ]


def test_the_demo_keeps_tiny_llamas_cells_and_adds_a_smaller_model():
    demo = load_study(load_yaml(REPO / "studies/demo.yaml"))
    assert list(demo.models) == ["tiny-llama", "tiny-llama-xs"]
    assert ids(demo, "tiny-llama-xs", "sft") == ["r1e-04_bs32_s0", "r3e-04_bs32_s0", "r1e-03_bs32_s0"]
    assert ids(demo, "tiny-llama-xs", "dpo") == []
    assert len(ids(demo, "tiny-llama", "sft")) == 6 and len(ids(demo, "tiny-llama", "dpo")) == 2
    xs, base = demo.models["tiny-llama-xs"]["build"], demo.models["tiny-llama"]["build"]
    assert budget.built_parameters(xs) < budget.built_parameters(base)


def write_run(root: Path, run_id: str, parameters=None) -> dict:
    path = root / layout.for_cell(layout.RUN_JSON, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_id, "spec": {"run_id": run_id}}
    if parameters is not None:
        record["parameters"] = parameters
    path.write_text(json.dumps(record))
    return {"run_id": run_id, "run_json": str(path)}


def test_models_table_from_run_json_then_config_then_unknown(tmp_path):
    models = [{"name": "a", "parameters": 5}, {"name": "b", "parameters": 7}, {"name": "c"}, {"name": "d"}]
    cells = [
        write_run(tmp_path, "a/sft/r1e-04_bs8_s0", 135),
        write_run(tmp_path, "a/dpo/r1e-05_bs8_s0", 135),
        write_run(tmp_path, "b/sft/r1e-04_bs8_s0"),  # trained before run.json recorded it
        write_run(tmp_path, "c/sft/r1e-04_bs8_s0"),
        write_run(tmp_path, "d/sft/r1e-04_bs8_s0", 1700),
    ]
    df = models_table(cells, models)
    assert list(df.columns) == ["model", "parameters", "source"]
    assert df["model"].tolist() == ["a", "b", "c", "d"]  # config order
    assert df["source"].tolist() == ["run.json", "config", "", "run.json"]  # run.json wins over config
    assert df["parameters"].tolist()[:2] == [135, 7] and df["parameters"].tolist()[3] == 1700
    assert pd.isna(df["parameters"][2])
    # the CSV rule aggregate writes: integers, empty when unknown, NaN when read back
    out = tmp_path / "models.csv"
    df.to_csv(out, index=False)
    assert out.read_text().splitlines() == [
        "model,parameters,source",
        "a,135,run.json",
        "b,7,config",
        "c,,",
        "d,1700,run.json",
    ]
    back = pd.read_csv(out)
    assert math.isnan(back["parameters"][2])
    cells.append(write_run(tmp_path, "a/sft/r1e-03_bs8_s0", 136))
    with pytest.raises(ValueError, match=r"model 'a': .*different parameter counts: 135 \(a/sft/r1e-04_bs8_s0\), 136"):
        models_table(cells, models)


def test_aggregate_writes_models_csv_beside_the_unchanged_tables(tmp_path):
    from test_tables import write_cell

    from workflow_scripts.aggregate import write_tables

    cfg = small_study(ratios=(1e-4, 1e-3), batch_sizes=(4,))
    cfg["models"][0]["parameters"] = 999
    study = load_study(cfg)
    cells = [write_cell(tmp_path, study, i, c) for i, c in enumerate(study.cells)]
    outputs = {k: str(tmp_path / "t" / Path(p).name) for k, p in layout.TABLES.items()}
    (tmp_path / "t").mkdir()
    write_tables(
        cells, study.tasks, "s", outputs, config=study.config, published_csv=REPO / "reference/smoltulu_results.csv"
    )
    assert Path(outputs["models"]).read_text() == "model,parameters,source\ntiny-llama,999,config\n"
    for key in ("scores", "runs", "cells_csv"):
        assert "parameters" not in pd.read_csv(outputs[key]).columns
    # a run.json that records the count wins
    for c in cells:
        run = json.loads(Path(c["run_json"]).read_text())
        Path(c["run_json"]).write_text(json.dumps({**run, "parameters": 1234}))
    write_tables(
        cells, study.tasks, "s", outputs, config=study.config, published_csv=REPO / "reference/smoltulu_results.csv"
    )
    assert Path(outputs["models"]).read_text() == "model,parameters,source\ntiny-llama,1234,run.json\n"


def test_training_records_the_loaded_models_parameter_count(tmp_path):
    from transformers import AutoModelForCausalLM

    from workflow_scripts.train import train_cell

    cfg = small_study(ratios=(1e-3,), batch_sizes=(4,), train_examples=8)
    made = tiny_setup(tmp_path, cfg, n_train=8, n_test=1)
    study = load_study(cfg)
    spec = study.training_spec(study.cells[0])
    record = train_cell(spec, str(made["base"]), str(made["sft"]), tmp_path / "run", threads=1)
    expected = AutoModelForCausalLM.from_pretrained(made["base"]).num_parameters()
    assert record["parameters"] == expected > 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["parameters"] == expected
    assert "parameters" not in spec  # not the contract: no cell retrains for it


def test_sizes_study_dag_builds_offline(tmp_path):
    """SmolLM2 135M, 360M and 1.7B, SFT only, each on its own grid: the whole DAG builds with
    no internet (nothing is fetched at DAG-build time)."""
    jobs = planned_jobs(snakemake(tmp_path, REPO / "studies/smollm2-sizes.yaml", "-n").stdout)
    counts = {
        rule: sum(r == rule for r, _ in jobs) for rule in ("prefetch_model", "check_prompts", "train", "evaluate")
    }
    assert counts == {"prefetch_model": 3, "check_prompts": 3 * 8, "train": 3 * 20, "evaluate": 3 * 20 * 8}
    trained = {(w["model"], w["stage"]) for r, w in jobs if r == "train"}
    assert trained == {("smollm2-135m", "sft"), ("smollm2-360m", "sft"), ("smollm2-1.7b", "sft")}
    cells = {w["cell"] for r, w in jobs if r == "train" and w["model"] == "smollm2-1.7b"}
    assert "r1e-07_bs8_s0" in cells and "r1e-05_bs32_s1" in cells
