"""Training curves on request (issue #14 item 8): ``tracking.report_to`` reaches the trainer at
run time, never through a cell's spec or a rule's params, so turning it on or off retrains
nothing; a recipe's ``report_to`` (part of the spec) wins; logs land in the cell's folder, W&B
offline; a missing backend package stops the cell at its start, naming the key and the extra."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
from conftest import small_study, snakemake, tiny_setup, write_config

from workflow_scripts import layout
from workflow_scripts.config import ConfigError, load_study, tracking_settings, with_tracking
from workflow_scripts.launch import run_cells
from workflow_scripts.spec import cell_job, study_cell_job
from workflow_scripts.train import train_cell
from workflow_scripts.trl_config import (
    check_trackers,
    environment,
    report_to,
    sft_config_kwargs,
    tracking_env,
)

CPU = {"use_cpu": True, "bf16": False, "fp16": False}


def study_with(tracking=None, recipe=None, **grid):
    cfg = small_study(**grid)
    if tracking is not None:
        cfg["tracking"] = tracking
    cfg["stages"]["sft"]["recipe"].update(recipe or {})
    return cfg


def spec_and_tracking(tracking=None, recipe=None):
    """The first cell's spec, its recipe extended by ``recipe`` (as the spec of a study with that
    recipe: without the recipe check's TRL import), and the study's tracking settings."""
    cfg = study_with(tracking)
    study = load_study(cfg)
    spec = study.training_spec(study.cells[0])
    return {**spec, "recipe": {**spec["recipe"], **(recipe or {})}}, tracking_settings(cfg)


# --- what TRL gets ------------------------------------------------------------------------


def test_report_to_none_is_the_default_and_sets_nothing_else():
    spec, tracking = spec_and_tracking()
    assert tracking["report_to"] == [] and tracking["project"] is None and tracking["study"] == "test-small"
    kw = sft_config_kwargs(spec, "out", CPU, tracking)
    assert kw["report_to"] == "none" and "run_name" not in kw and "project" not in kw
    assert kw == sft_config_kwargs(spec, "out", CPU)  # exactly what a cell got before tracking existed
    assert tracking_env([], "out", tracking) == {}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("tensorboard", ["tensorboard"]),
        ("wandb", ["wandb"]),
        ("trackio", ["trackio"]),
        (["tensorboard", "wandb"], None),
    ],
)
def test_each_backend_reaches_trl_with_the_cells_run_id_as_run_name(value, expected):
    spec, tracking = spec_and_tracking({"report_to": value})
    kw = sft_config_kwargs(spec, "out", CPU, tracking)
    assert kw["report_to"] == (expected or value)
    assert kw["run_name"] == spec["run_id"] == "tiny-llama/sft/r1e-04_bs4_s0"
    # trackio's project: the study's name unless tracking.project names one
    assert kw.get("project") == ("test-small" if value == "trackio" else None)
    assert sft_config_kwargs(spec, "out", CPU, {**tracking, "project": "p"}).get("project") == (
        "p" if value == "trackio" else None
    )


def test_a_recipes_report_to_wins_and_is_part_of_the_spec():
    study = load_study(study_with(recipe={"report_to": "none"}))
    assert study.training_spec(study.cells[0])["recipe"]["report_to"] == "none"  # in the spec: it retrains
    spec, tracking = spec_and_tracking({"report_to": "tensorboard"}, recipe={"report_to": "none"})
    assert report_to(spec, tracking) == ([], "stages.sft.recipe.report_to")
    assert sft_config_kwargs(spec, "out", CPU, tracking)["report_to"] == "none"

    spec, tracking = spec_and_tracking(recipe={"report_to": "tensorboard", "run_name": "mine"})
    assert report_to(spec, tracking) == (["tensorboard"], "stages.sft.recipe.report_to")
    kw = sft_config_kwargs(spec, "out", CPU, tracking)
    assert kw["report_to"] == "tensorboard" and kw["run_name"] == "mine"
    # its logs still go to the cell's folder
    assert tracking_env(["tensorboard"], "cell", tracking, attempt="t0") == {
        "TENSORBOARD_LOGGING_DIR": str(Path("cell").resolve() / "tracking" / "tensorboard" / "t0")
    }


def test_tracking_changes_no_spec_and_no_rule_params():
    """The spec is rule train's params, the cell jobs rule train_pack's, the study's config rule
    aggregate's: equal with or without tracking, so Snakemake sees nothing to rerun, not even
    the tables. The entry scripts add it to the jobs at run time."""
    plain = load_study(study_with())
    for value in ("tensorboard", ["wandb", "trackio"]):
        cfg = study_with({"report_to": value, "project": "curves"})
        tracked = load_study(cfg)
        assert tracked.config == plain.config and "tracking" in cfg  # the caller's config is left as it was
        for a, b in zip(plain.cells, tracked.cells):
            assert plain.training_spec(a) == tracked.training_spec(b)
            assert study_cell_job(plain, a, 1) == study_cell_job(tracked, b, 1)
        job = study_cell_job(tracked, tracked.cells[0], 1)
        assert with_tracking(job, cfg) == {**job, "tracking": tracking_settings(cfg)}
        assert "tracking" not in job and "tracking" not in json.dumps(tracked.training_spec(tracked.cells[0]))


def test_logs_land_in_the_cells_folder_and_wandb_runs_offline(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_PROJECT", "TRACKIO_DIR"):
        monkeypatch.delenv(var, raising=False)
    tracking = tracking_settings({"study": "s", "tracking": {"report_to": ["tensorboard", "wandb", "trackio"]}})
    cell = tmp_path / "results/runs/m/sft/c"
    env = tracking_env(tracking["report_to"], cell, tracking, attempt="20260101T000000Z")
    assert env == {
        "TENSORBOARD_LOGGING_DIR": str(cell / "tracking" / "tensorboard" / "20260101T000000Z"),
        "WANDB_DIR": str(cell / "tracking"),
        "WANDB_MODE": "offline",
        "WANDB_PROJECT": "s",
        "TRACKIO_DIR": str(Path(layout.RESULTS).resolve() / "tracking" / "trackio"),
    }
    # the user's own W&B mode and project, and trackio folder, are kept; tracking.project wins
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_PROJECT", "theirs")
    monkeypatch.setenv("TRACKIO_DIR", "/elsewhere")
    env = tracking_env(["wandb", "trackio"], cell, tracking)
    assert (env["WANDB_MODE"], env["WANDB_PROJECT"], env["TRACKIO_DIR"]) == ("online", "theirs", "/elsewhere")
    assert tracking_env(["wandb"], cell, {**tracking, "project": "curves"})["WANDB_PROJECT"] == "curves"


def test_environment_is_restored_after_the_block(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    with environment({"WANDB_MODE": "offline", "WANDB_DIR": "/x"}):
        assert os.environ["WANDB_MODE"] == "offline" and os.environ["WANDB_DIR"] == "/x"
    assert os.environ["WANDB_MODE"] == "disabled" and "WANDB_DIR" not in os.environ


@pytest.mark.parametrize(
    "backend, modules",
    [("tensorboard", {"tensorboard", "tensorboardX"}), ("wandb", {"wandb"}), ("trackio", {"trackio"})],
)
def test_a_missing_package_stops_the_cell_at_its_start_naming_key_and_extra(monkeypatch, tmp_path, backend, modules):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))
    spec, tracking = spec_and_tracking({"report_to": backend})
    with pytest.raises(
        RuntimeError, match=rf"tracking\.report_to asks for {backend}.*pip install -e '\.\[{backend}\]'"
    ):
        check_trackers(spec, tracking)
    # train_cell refuses before it loads anything (the base model here does not exist)
    with pytest.raises(RuntimeError, match=r"tracking\.report_to"):
        train_cell(
            spec, str(tmp_path / "no-model"), str(tmp_path / "no-data.jsonl"), tmp_path / "run", tracking=tracking
        )
    # a recipe's report_to is checked the same way, naming the recipe's key
    spec, tracking = spec_and_tracking(recipe={"report_to": [backend]})
    with pytest.raises(RuntimeError, match=rf"stages\.sft\.recipe\.report_to asks for {backend}"):
        check_trackers(spec, tracking)
    # tensorboardX serves TensorBoard too (transformers falls back to it)
    if backend == "tensorboard":
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorboardX" else None)
        assert check_trackers(*spec_and_tracking({"report_to": backend})) == ["tensorboard"]


# --- the config -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["none", "tensorboard", "trackio", "wandb", ["tensorboard", "wandb"]])
def test_tracking_validates(value):
    load_study(study_with({"report_to": value, "project": "curves"}))


@pytest.mark.parametrize(
    "tracking, message",
    [
        ({"report_to": "tensorbord"}, r"tracking\.report_to: 'tensorbord' is not one of \['none', 'tensorboard'"),
        ({"report_to": ["wandb", "none"]}, r"tracking\.report_to\[1\]: 'none' is not one of"),
        ({"report_to": []}, r"tracking\.report_to: \[\] should be non-empty"),
        ({"report": "wandb"}, r"config error at tracking: .*Allowed keys here: project, report_to"),
        ({"project": ""}, r"tracking\.project"),
    ],
)
def test_a_bad_tracking_value_names_the_key(tracking, message):
    with pytest.raises(ConfigError, match=message):
        load_study(study_with(tracking))


def run_started(cell: Path) -> str:
    """The folder name of a cell's TensorBoard events: the time its job started (run.json)."""
    import datetime as dt

    return dt.datetime.fromisoformat(json.loads((cell / "run.json").read_text())["started"]).strftime("%Y%m%dT%H%M%SZ")


# --- end to end -----------------------------------------------------------------------------


def test_tensorboard_event_files_appear_and_turning_tracking_off_retrains_nothing(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = study_with({"report_to": "tensorboard"}, ratios=(1e-3,), train_examples=16)
    cfg["data"]["synthetic"].update({"train_per_task": 20, "eval_per_task": 4})
    run_id = load_study(cfg).cells[0].run_id
    target = layout.for_cell(layout.RUN_JSON, run_id)
    snakemake(tmp_path, write_config(cfg, tmp_path / "study.yaml"), "--cores", "2", target)

    cell = tmp_path / Path(target).parent
    events = sorted((cell / "tracking").rglob("events.out.tfevents.*"))  # tensorboard/<job's start time>/
    assert len(events) == 1 and events[0].parent.parent == cell / "tracking" / "tensorboard", events
    assert events[0].parent.name == run_started(cell)
    curve = EventAccumulator(str(events[0].parent))
    curve.Reload()
    losses = [e.value for e in curve.Scalars("train/loss")]
    run = json.loads((cell / "run.json").read_text())
    assert losses and losses[0] == pytest.approx(run["first_loss"], rel=1e-5)
    assert run["tracking"]["report_to"] == ["tensorboard"] and run["trl_config"]["report_to"] == ["tensorboard"]
    assert "tracking" not in run["spec"]

    cfg["tracking"] = {"report_to": "none"}
    proc = snakemake(tmp_path, write_config(cfg, tmp_path / "study.yaml"), "-n", target)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_a_packs_cells_get_the_tracking_in_their_own_processes(tmp_path):
    """rule train_pack's route: the entry script adds tracking to each cell's job, the launcher
    hands it to each cell's process in its job file."""
    cfg = study_with({"report_to": "tensorboard"}, ratios=(1e-3,), batch_sizes=(4, 8), train_examples=16)
    cfg["stages"]["sft"]["cells_per_gpu"] = 2
    study = load_study(cfg)
    base = tiny_setup(tmp_path / "data", cfg, n_train=20)
    jobs = [
        with_tracking(cell_job(study.training_spec(c), base["base"], base["sft"], tmp_path / c.name), cfg)
        for c in study.cells
    ]
    run_cells(jobs, tmp_path / ".pack")
    for i, c in enumerate(study.cells):
        handed = json.loads((tmp_path / ".pack" / f"cell{i}.json").read_text())["tracking"]
        assert handed == tracking_settings(cfg) and handed["report_to"] == ["tensorboard"]
        assert list((tmp_path / c.name / "tracking" / "tensorboard").glob("*/events.out.tfevents.*")), c.name
