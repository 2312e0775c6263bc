"""The study's budget before anything runs (workflow_scripts/budget.py, `snakemake plan`) and a
finished cell's checkpoint clean-up (train.delete_checkpoints): numbers against hand counts,
the clean-up on fake cell folders. Seconds, no training."""

import json

import pytest
from conftest import REPO, load_yaml, snakemake, write_config

from workflow_scripts import budget
from workflow_scripts.budget import format_budget, study_budget
from workflow_scripts.config import load_study
from workflow_scripts.train import delete_checkpoints, last_checkpoint

P135M, P1_7B = 134_515_008, 1_711_376_384
DEMO_PARAMS = 566_656  # studies/demo.yaml's built tiny Llama (vocabulary 326), as model_shape counts it


def study_of(name, **changes):
    cfg = load_yaml(REPO / name)
    for stage, keys in changes.items():
        cfg["stages"][stage]["checkpoint"].update(keys)
    return load_study(cfg)


def group(b, stage):
    return next(g for g in b["groups"] if g["stage"] == stage)


def test_demo_budget_by_hand(tmp_path):
    cfg = load_yaml(REPO / "studies/demo.yaml")
    both = study_budget(load_study(cfg), tmp_path, jobs=4)
    # tiny-llama-xs: its own SFT grid of 3 cells at batch 32, no DPO (no group for it)
    assert [(g["model"], g["stage"], g["cells"]) for g in both["groups"]] == [
        ("tiny-llama", "sft", 6),
        ("tiny-llama-xs", "sft", 3),
        ("tiny-llama", "dpo", 2),
    ]
    assert both["groups"][1]["examples"] == 3 * 16_000 and both["cells"] == 11
    cfg["models"] = cfg["models"][:1]  # below: tiny-llama alone
    b = study_budget(load_study(cfg), tmp_path, jobs=4)
    sft, dpo = group(b, "sft"), group(b, "dpo")
    assert (b["cells"], sft["cells"], dpo["cells"]) == (8, 6, 2)
    # 16,000 examples per SFT cell (2,000 steps at 8, 500 at 32), 1,600 per DPO cell (200 at 8)
    assert (sft["examples"], dpo["examples"]) == (6 * 16_000, 2 * 1_600)
    # no data on disk: max_length 64 per example, both sequences of a DPO pair
    assert (sft["tokens_per_example"], dpo["tokens_per_example"]) == (64, 128)
    assert b["tokens"] == 96_000 * 64 + 3_200 * 128
    # parameters from the build settings: what the real build gives (model_shape of the built folder)
    assert budget.built_parameters(load_yaml(REPO / "studies/demo.yaml")["models"][0]["build"]) == DEMO_PARAMS
    assert sft["weights"] == 4 * DEMO_PARAMS and b["final_bytes"] == 8 * 4 * DEMO_PARAMS
    assert b["peak_bytes"] == b["final_bytes"] == b["undeleted_bytes"]  # the demo saves no checkpoint


def test_config_yaml_budget_by_hand(tmp_path):
    study = study_of("config.yaml")
    b = study_budget(study, tmp_path, jobs=50)
    sft, dpo = group(b, "sft"), group(b, "dpo")
    assert (b["cells"], sft["cells"], dpo["cells"]) == (42, 30, 12)
    # 2 epochs of the 50,000-row subset per SFT cell; 1 epoch of 20,000 pairs per DPO cell
    assert (sft["examples"], dpo["examples"]) == (30 * 2 * 50_000, 12 * 20_000)
    assert sft["tokens"] == 3_000_000 * 2048 and dpo["tokens"] == 240_000 * 2 * 2048
    # GPU-hours at benchmarks/RESULTS.md's 135M figure; DPO x 4/3 for the reference forward
    assert sft["gpu_h"] == pytest.approx(6.144e9 / 151_728 / 3600)
    assert dpo["gpu_h"] == pytest.approx(0.98304e9 / 151_728 / 3600 * 4 / 3)
    # model/ in float32; every cell keeps 2 checkpoints while it trains (every 500 steps: even
    # batch 128's 782 steps save two), 12 bytes a parameter each
    checkpoints = 2 * 12 * P135M
    assert sft["ckpts"] == dpo["ckpts"] == checkpoints
    assert b["final_bytes"] == 42 * 4 * P135M  # 22.6 GB: checkpoints deleted
    assert b["undeleted_bytes"] == 42 * (4 * P135M + checkpoints)  # 158 GB (issue #14: 130-160 GB)
    # 41 cells at once (the DPO parent finished before its DPO cells start)
    assert b["busy_cells"] == 41 and b["peak_bytes"] == 42 * 4 * P135M + 41 * checkpoints
    assert study_budget(study, tmp_path, jobs=8)["peak_bytes"] == 42 * 4 * P135M + 8 * checkpoints
    text = format_budget(b)
    assert "22.6 GB" in text and "158.2 GB" in text and "151,728 training tokens/s" in text


def test_smoltulu_1_7b_budget_by_hand(tmp_path):
    b = study_budget(study_of("studies/smoltulu-1.7b.yaml"), tmp_path, jobs=50)
    assert b["cells"] == 14
    # the whole tulu-3-sft-mixture (939,343 rows, its card), 2 epochs, 8 cells
    assert group(b, "sft")["examples"] == 8 * 2 * 939_343
    assert b["final_bytes"] == 14 * 4 * P1_7B  # 95.8 GB
    assert b["undeleted_bytes"] == 14 * (4 + 2 * 12) * P1_7B  # 671 GB: issue #14's "about 670 GB"
    assert group(b, "sft")["gpu_h"] == pytest.approx(8 * 2 * 939_343 * 2048 / 32_544 / 3600)


def test_keep_after_training_keeps_them_and_enters_the_spec_only_when_set(tmp_path):
    plain = study_of("config.yaml")
    kept = study_of("config.yaml", sft={"keep_after_training": True})
    assert "keep_after_training" not in plain.training_spec(plain.cells[0])["checkpoint"]
    assert kept.training_spec(kept.cells[0])["checkpoint"]["keep_after_training"] is True
    b = study_budget(kept, tmp_path, jobs=8)
    assert b["final_bytes"] == 42 * 4 * P135M + 30 * 2 * 12 * P135M
    # the DPO cells' checkpoints are the ones not yet counted: 8 of them at once
    assert b["peak_bytes"] == b["final_bytes"] + 8 * 2 * 12 * P135M
    assert "(kept)" in format_budget(b)


def test_a_stated_throughput_changes_the_hours_and_nothing_a_job_sees(tmp_path):
    cfg = load_yaml(REPO / "config.yaml")
    base = load_study(cfg)
    cfg["models"][0]["resources"]["throughput_tokens_per_s"] = 50_000
    faster = load_study(cfg)
    assert [faster.training_spec(c) for c in faster.cells] == [base.training_spec(c) for c in base.cells]
    assert faster.resources("smollm2-135m", "train") == base.resources("smollm2-135m", "train")
    assert group(study_budget(faster, tmp_path), "sft")["gpu_h"] == pytest.approx(6.144e9 / 50_000 / 3600)


def test_default_throughput_scales_the_nearest_anchor():
    assert budget.default_throughput(P135M) == 151_728 and budget.default_throughput(P1_7B) == 32_544
    assert budget.default_throughput(2 * P1_7B) == pytest.approx(32_544 / 2)


def test_tokens_per_example_are_measured_once_data_and_tokenizer_are_on_disk(tmp_path):
    from workflow_scripts.tiny_model import build_and_save

    cfg = load_yaml(REPO / "studies/demo.yaml")
    build_and_save(["a b c d e f"], tmp_path / "results/models/tiny-llama/base", cfg["models"][0]["build"])
    turn = budget.TURN_TOKENS
    sft = [{"messages": [{"role": "user", "content": "a b c"}, {"role": "assistant", "content": "d e"}]}] * 3
    sft.append({"messages": [{"role": "user", "content": "a " * 100}, {"role": "assistant", "content": "b"}]})
    pair = {
        "prompt": [{"role": "user", "content": "a b c"}],
        "chosen": [{"role": "assistant", "content": "d"}],
        "rejected": [{"role": "assistant", "content": "e f"}],
    }
    for name, rows in (("sft", sft), ("dpo", [pair] * 5)):
        (tmp_path / f"results/data/{name}_train.jsonl").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"results/data/{name}_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    b = study_budget(load_study(cfg), tmp_path, jobs=1)
    # three rows of 3 + 2 words and two turns; one cut at max_length 64
    assert group(b, "sft")["tokens_per_example"] == pytest.approx((3 * (3 + 2 + 2 * turn) + 64) / 4)
    assert group(b, "dpo")["tokens_per_example"] == 3 + 1 + 2 * turn + 3 + 2 + 2 * turn
    assert budget.stage_rows(load_study(cfg), "sft", tmp_path)[0] == 4
    assert budget.parameters(load_study(cfg), "tiny-llama", tmp_path)[1].startswith("read from")


def test_cli_and_the_plan_target_print_the_same_budget(tmp_path, capsys):
    assert budget.main(["--configfile", str(REPO / "studies/demo.yaml"), "-d", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Budget of study 'demo'") and "\ntotal " in printed
    config = write_config(load_yaml(REPO / "studies/demo.yaml"), tmp_path / "demo.yaml")
    proc = snakemake(tmp_path, config, "--cores", "1", "plan")
    assert (tmp_path / "results/plan.txt").read_text() == printed
    assert "Budget of study 'demo'" in proc.stdout + proc.stderr
    # not part of rule all: a dry run of the study does not list it
    dry = snakemake(tmp_path, config, "-n")
    assert "plan" not in [line.split()[0] for line in dry.stdout.splitlines() if line.strip()]


# --- checkpoint clean-up of a finished cell ---------------------------------------------------


def fake_cell(root, steps=(4, 8, 12), size=1000):
    """A cell folder as train_cell leaves it: model/, trainer/checkpoint-N/ (the newest written
    last, with trainer_state.json) and something else in trainer/ (a logger's files)."""
    (root / "model").mkdir(parents=True)
    (root / "model/model.safetensors").write_bytes(b"w" * 10)
    for step in steps:
        ckpt = root / f"trainer/checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "optimizer.pt").write_bytes(b"o" * size)
        (ckpt / "trainer_state.json").write_text("{}")
    (root / "trainer/runs").mkdir()
    (root / "trainer/runs/events").write_text("x")
    return root


SPEC = {"checkpoint": {"every_steps": 4, "keep": 3}}


def test_a_finished_cell_deletes_its_checkpoints_and_records_them(tmp_path):
    cell = fake_cell(tmp_path / "cell")
    record = delete_checkpoints(cell, SPEC, "ok")
    assert record == {
        "deleted": ["checkpoint-4", "checkpoint-8", "checkpoint-12"],
        "freed_bytes": 3 * (1000 + 2),
        "kept": None,
    }
    assert list((cell / "trainer").iterdir()) == [cell / "trainer/runs"]  # only checkpoints go
    assert (cell / "model/model.safetensors").exists() and last_checkpoint(cell / "trainer") is None


@pytest.mark.parametrize(
    "spec, status, reason",
    [
        ({"checkpoint": {**SPEC["checkpoint"], "keep_after_training": True}}, "ok", "checkpoint.keep_after_training"),
        (SPEC, "diverged", "status 'diverged'"),
    ],
)
def test_checkpoints_stay_when_asked_or_when_the_cell_did_not_finish(tmp_path, spec, status, reason):
    cell = fake_cell(tmp_path / "cell")
    assert delete_checkpoints(cell, spec, status) == {"deleted": [], "freed_bytes": 0, "kept": reason}
    assert last_checkpoint(cell / "trainer").name == "checkpoint-12"


def test_a_cell_without_checkpoints_has_nothing_to_delete(tmp_path):
    (tmp_path / "cell/model").mkdir(parents=True)
    assert delete_checkpoints(tmp_path / "cell", {"checkpoint": None}, "ok") == {
        "deleted": [],
        "freed_bytes": 0,
        "kept": None,
    }


def test_an_interrupted_clean_up_leaves_the_newest_checkpoint_whole(tmp_path, monkeypatch):
    """Oldest first, each renamed before removal: killed after the first, a rerun still resumes
    from the newest; the next clean-up finishes the half-removed one."""
    import workflow_scripts.train as train

    cell = fake_cell(tmp_path / "cell")
    real_rmtree, calls = train.shutil.rmtree, []

    def dies_on_the_second(path, *args, **kwargs):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(train.shutil, "rmtree", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        delete_checkpoints(cell, SPEC, "ok")
    assert calls == [".deleting-checkpoint-4", ".deleting-checkpoint-8"]
    assert last_checkpoint(cell / "trainer").name == "checkpoint-12"  # whole, and what a rerun resumes
    monkeypatch.setattr(train.shutil, "rmtree", real_rmtree)
    record = delete_checkpoints(cell, SPEC, "ok")
    assert record["deleted"] == [".deleting-checkpoint-8", "checkpoint-12"]
    assert sorted(p.name for p in (cell / "trainer").iterdir()) == ["runs"]
