"""Cells as processes: one cell on N devices (DDP, effective batch kept exact) and a pack of
cells training at the same time."""

import contextlib
import datetime as dt
import json

import pytest
from conftest import small_study, tiny_setup

from workflow_scripts.config import load_study
from workflow_scripts.launch import run_cells, train_one
from workflow_scripts.memory import choose_checkpointing, estimated_gpu_bytes
from workflow_scripts.spec import cell_job


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("launch")
    tiny_setup(d, small_study())
    return d


def test_a_two_process_cell_keeps_the_effective_batch_exact(base, tmp_path):
    cfg = small_study(ratios=(1e-3,), train_examples=48)
    cfg["stages"]["sft"]["gpus"] = 2  # on this CPU machine: two DDP processes over gloo
    study = load_study(cfg)
    spec = study.training_spec(study.cells[0])
    assert (spec["per_device_train_batch_size"], spec["gradient_accumulation_steps"]) == (2, 1)  # 2 x 1 x 2 = 4
    # as the train rule does: train_one in a job whose stdout is redirected to its log file
    log = tmp_path / "cell.log"
    with open(log, "w") as f, contextlib.redirect_stdout(f):
        train_one(cell_job(spec, base / "base", base / "sft.jsonl", tmp_path / "run"), tmp_path / ".launch")
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["processes"] == 2 and run["environment"]["WORLD_SIZE"] == "2"
    assert run["optimizer_steps"] == 12 and run["examples_seen"] == 48
    assert run["final_loss"] < run["first_loss"]
    text = log.read_text()  # the DDP processes' output reached the job's log
    assert text.count("[train] done") == 1  # one process writes the outputs and reports


def pack_jobs(study, base, out):
    """One job per cell of ``study``, on the module's tiny base model, each with its own log."""
    return [
        cell_job(
            study.training_spec(c), base / "base", base / "sft.jsonl", out / c.name, log=str(out / f"{c.name}.log")
        )
        for c in study.cells
    ]


def test_a_pack_trains_its_cells_at_the_same_time_each_with_its_own_outputs(base, tmp_path):
    cfg = small_study(ratios=(1e-3,), batch_sizes=(4, 8), train_examples=48)
    cfg["stages"]["sft"]["cells_per_gpu"] = 2
    study = load_study(cfg)
    jobs = pack_jobs(study, base, tmp_path)
    run_cells(jobs, tmp_path / ".pack")
    runs = [json.loads((tmp_path / c.name / "run.json").read_text()) for c in study.cells]
    spans = [(dt.datetime.fromisoformat(r["started"]), dt.datetime.fromisoformat(r["finished"])) for r in runs]
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # overlapping, not one after the other
    assert [r["examples_seen"] for r in runs] == [48, 48] and [r["optimizer_steps"] for r in runs] == [12, 6]
    for i, c in enumerate(study.cells):
        assert (tmp_path / c.name / "model/model.safetensors").exists()
        assert "[train] done" in (tmp_path / f"{c.name}.log").read_text()
        # the launcher planned each cell's memory once; the cell trained with that plan
        planned = json.loads((tmp_path / ".pack" / f"cell{i}.json").read_text())["memory"]
        assert planned == runs[i]["activation_checkpointing"] == {"enabled": False, "reason": "no GPU"}


def test_a_failing_cell_fails_the_pack_after_the_others_finish(base, tmp_path):
    cfg = small_study(ratios=(1e-3,), batch_sizes=(4, 8), train_examples=48)
    study = load_study(cfg)
    jobs = pack_jobs(study, base, tmp_path)
    jobs[1]["base_model"] = str(tmp_path / "no-such-model")
    with pytest.raises(RuntimeError, match=r"1 of 2 cells failed: tiny-llama/sft/r1e-03_bs8_s0"):
        run_cells(jobs, tmp_path / ".pack")
    assert (tmp_path / study.cells[0].name / "run.json").exists()


def test_memory_estimate_scales_with_model_batch_and_dpo():
    shape = {"params": 134_515_008, "hidden": 576, "layers": 30, "vocab": 49152}  # SmolLM2-135M
    spec = {"per_device_train_batch_size": 4, "recipe": {"max_length": 2048}, "stage_kind": "sft"}
    one = estimated_gpu_bytes(spec, shape)
    assert 4 * 2**30 < one < 12 * 2**30
    assert estimated_gpu_bytes({**spec, "per_device_train_batch_size": 8}, shape) > one
    assert estimated_gpu_bytes({**spec, "stage_kind": "dpo"}, shape) > one


SMOLLM2_1_7B = {"params": 1_711_376_384, "hidden": 2048, "layers": 24, "vocab": 49152}


def test_activation_checkpointing_only_when_memory_needs_it():
    gib = 2**30
    spec = {"per_device_train_batch_size": 8, "recipe": {"max_length": 2048}, "stage_kind": "sft"}
    without = estimated_gpu_bytes(spec, SMOLLM2_1_7B)
    with_ckpt = estimated_gpu_bytes(spec, SMOLLM2_1_7B, checkpointing=True)
    assert 50 * gib < without < 65 * gib  # 27 GB of fp32 weights + grads + Adam, 27 GB of activations
    assert with_ckpt < without - 20 * gib
    h200 = choose_checkpointing(spec, SMOLLM2_1_7B, 139 * gib)  # alone on an H200: fits, recompute nothing
    assert h200["enabled"] is False and h200["reason"] == "fits without activation checkpointing"
    l40 = choose_checkpointing(spec, SMOLLM2_1_7B, 48 * gib)  # on a 48 GB GPU it fits only with checkpointing
    assert l40["enabled"] is True and "may not fit" not in l40["reason"]
    assert l40["estimate_gib"] == round(with_ckpt / gib, 2)
    small = choose_checkpointing(spec, SMOLLM2_1_7B, 16 * gib)  # too small either way: says what to lower
    assert small["enabled"] is True and "lower micro_batch_size" in small["reason"]


def test_a_pack_plans_its_memory_once_for_each_cells_share(tmp_path, monkeypatch):
    import workflow_scripts.memory as memory

    monkeypatch.setattr(memory, "free_gpu_bytes", lambda: 139 * 2**30)  # an empty H200
    monkeypatch.setattr(memory, "model_shape", lambda model_dir: SMOLLM2_1_7B)
    spec = {
        "per_device_train_batch_size": 8,
        "recipe": {"max_length": 2048},
        "stage_kind": "sft",
        "model_id": "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    }

    def pack(k):
        return [cell_job(spec, tmp_path / "sft-parent", "train.jsonl", tmp_path / str(i)) for i in range(k)]

    gib = 2**30
    without = estimated_gpu_bytes(spec, SMOLLM2_1_7B)
    with_ckpt = estimated_gpu_bytes(spec, SMOLLM2_1_7B, checkpointing=True)
    two, three, four = pack(2), pack(3), pack(4)
    # half an H200 each: no checkpointing, and the pack check counts full activations
    assert f"2 cell(s) need ~{2 * without / gib:.1f} GiB" in memory.plan_memory(two)
    assert [j["memory"]["enabled"] for j in two] == [False, False]
    # a third each: only with it, and the check counts the checkpointed estimate
    assert (
        f"3 cell(s) need ~{3 * with_ckpt / gib:.1f} GiB (estimate, activation checkpointing 3 of 3)"
        in memory.plan_memory(three)
    )
    assert {j["memory"]["budget_gib"] for j in three} == {round(139 / 3, 2)}
    with pytest.raises(RuntimeError, match=r"cells_per_gpu \(now 4\)"):  # a quarter: not even with it
        memory.plan_memory(four)
    forced = [
        cell_job(
            {**spec, "recipe": {"max_length": 2048, "activation_checkpointing": True}},
            tmp_path / "sft-parent",
            "train.jsonl",
            tmp_path / "x",
        )
    ]
    memory.plan_memory(forced)
    assert forced[0]["memory"] == {"enabled": True, "reason": "recipe.activation_checkpointing"}


def test_a_cell_trains_with_the_memory_plan_its_launcher_made(base, tmp_path, monkeypatch):
    import workflow_scripts.launch as launch
    import workflow_scripts.train as train

    def refuse(*args, **kwargs):
        raise AssertionError("the cell planned its memory again instead of using the launcher's plan")

    monkeypatch.setattr(train, "memory_plan", refuse)
    study = load_study(small_study(ratios=(1e-3,), train_examples=16))
    job = cell_job(study.training_spec(study.cells[0]), base / "base", base / "sft.jsonl", tmp_path / "run")
    job["memory"] = {"enabled": False, "reason": "planned by the launcher"}
    (tmp_path / "cell.json").write_text(json.dumps(job))
    assert launch.main([str(tmp_path / "cell.json")]) == 0  # what each process of a pack or DDP cell runs
    assert json.loads((tmp_path / "run/run.json").read_text())["activation_checkpointing"] == job["memory"]


def test_without_a_gpu_the_recipe_still_decides():
    from workflow_scripts.memory import memory_plan

    assert memory_plan({"recipe": {"gradient_checkpointing": True}}, "unused", None) == {
        "enabled": True,
        "reason": "recipe.gradient_checkpointing",
    }
    assert memory_plan({"recipe": {"activation_checkpointing": False}}, "unused", 10**12)["enabled"] is False
    assert memory_plan({"recipe": {}}, "unused", None) == {"enabled": False, "reason": "no GPU"}
