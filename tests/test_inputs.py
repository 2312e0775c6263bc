"""What each rule reads and writes, from the lookups rules/common.smk adapts (workflow_scripts
inputs.py, layout.py, model_source.py, spec.py), tested without Snakemake."""

import pytest
import yaml
from conftest import REPO, small_study

from workflow_scripts import inputs, layout
from workflow_scripts.config import load_study
from workflow_scripts.model_source import base_model_ref
from workflow_scripts.spec import cell_job, split_batch, study_cell_job


def study_of(configfile):
    return load_study(yaml.safe_load((REPO / configfile).read_text()), base_dir=REPO)


def test_a_batch_splits_into_micro_batches_and_accumulation_exactly():
    assert split_batch(8, 32, 1) == (8, 4)
    assert split_batch(8, 4, 1) == (4, 1)  # a batch under the micro batch is one step
    assert split_batch(4, 32, 2) == (4, 4)  # 4 per device x 2 GPUs x 4 steps
    for micro, bs, gpus in [(8, 12, 1), (4, 3, 2), (8, 1, 2)]:
        with pytest.raises(ValueError, match="not a multiple"):
            split_batch(micro, bs, gpus)


def test_cell_paths_are_the_rules_templates_filled_in():
    rid = "tiny-llama/sft/r1e-04_bs8_s0"
    assert layout.for_cell(layout.RUN_JSON, rid) == f"results/runs/{rid}/run.json"
    assert layout.cell_files(rid, "/x")["eval_json"] == f"/x/results/runs/{rid}/eval/results.json"
    with pytest.raises(ValueError, match="not a run id"):
        layout.for_cell(layout.RUN_JSON, "tiny-llama/sft/bs8")


def test_where_each_cell_trains_from():
    demo = study_of("studies/demo.yaml")
    sft, dpo = demo.cells_of("sft")[0], demo.cells_of("dpo")[0]
    assert inputs.train_inputs(demo, sft) == {"base": ["results/models/tiny-llama/base"], "prefetch": []}
    parent = f"results/runs/{demo.parent_of(dpo)}/model"
    assert inputs.train_inputs(demo, dpo) == {"base": [parent], "prefetch": []}
    real = study_of("config.yaml")  # a hub model: the login node's record, no base folder
    cell = real.cells_of("sft")[0]
    assert inputs.train_inputs(real, cell) == {"base": [], "prefetch": ["results/prefetch/models/smollm2-135m.json"]}
    assert base_model_ref(real, cell) == "HuggingFaceTB/SmolLM2-135M"


def test_a_packed_cell_gets_the_job_rule_train_gives_a_single_cell():
    cfg = small_study(ratios=(1e-4,), batch_sizes=(4, 8), seeds=(0, 1))
    cfg["stages"]["sft"]["cells_per_gpu"] = 4
    study = load_study(cfg)
    [slots] = study.pack_slots("sft")
    cells = inputs.pack_cells(study, "tiny-llama", "sft", "r1e-04", slots)
    assert [c.name for c in cells] == ["r1e-04_bs4_s0", "r1e-04_bs4_s1", "r1e-04_bs8_s0", "r1e-04_bs8_s1"]
    jobs = inputs.pack_jobs(study, cells, threads=2)
    for cell, job in zip(cells, jobs):
        # what entry/train.py builds from rule train's params, inputs and outputs
        single = cell_job(
            study.training_spec(cell),
            base_model_ref(study, cell),
            "results/data/sft_train.jsonl",
            f"results/runs/{cell.run_id}",
            threads=2,
            data_source="results/data/sft_train.source.json",
            prefetched=None,
            log=f"results/logs/train/{cell.run_id}.log",
        )
        assert job == single == study_cell_job(study, cell, 2)


def test_evaluation_data_and_prefetch_targets_of_the_real_study():
    real = study_of("config.yaml")
    fetched = inputs.fetched_eval_data(real)
    assert fetched and set(fetched) == set(inputs.builtin_task_names(real))
    assert inputs.eval_data_dirs(real)["gsm8k"] == "results/data/benchmarks/gsm8k"
    targets = inputs.prefetch_targets(real)
    assert "results/prefetch/models/smollm2-135m.json" in targets
    assert "results/data/sft_train.source.json" in targets and "results/data/benchmarks/gsm8k" in targets
    demo = study_of("studies/demo.yaml")
    assert inputs.builtin_task_names(demo) == [] and inputs.prefetch_targets(demo) == []
    assert inputs.one_of([]) == inputs.NEVER and inputs.one_of(["a.b"]) == r"a\.b"
