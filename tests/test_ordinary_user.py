"""The harness that runs the workflow as an ordinary user (tests/ordinary_user.py): it really
drops root, the repository's study plans as that user, and Snakemake's protected() refuses a
rerun for the user where root would overwrite silently (why the harness exists, issue #14).
Then the small study, run by that user end to end: a task added, the evaluation batch size and
limit changed, two jobs training one cell at once; nothing refused, nothing re-run by accident."""

import copy
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import small_study, write_config
from ordinary_user import (
    IS_ROOT,
    ensure_user,
    popen_as_user,
    run_as_user,
    snakemake_as_user,
    user_dir,
    user_python,
)
from test_builtin_tasks import write_benchmark
from test_workflow import planned_jobs

from workflow_scripts.config import load_study
from workflow_scripts.spec import study_cell_job

# A workflow of one rule whose output is protected(): changed params rerun it
PROTECTED = """\
rule make:
    output:
        protected("out.txt"),
    params:
        value=config["value"],
    shell:
        "echo {params.value} > {output}"
"""


def test_the_harness_drops_root(tmp_path):
    uid, _, _ = ensure_user()
    folder = user_dir(tmp_path)
    # as root: a file of root's in the user's folder; else any root-owned file (only tested)
    target = folder / "roots.txt" if IS_ROOT else "/etc/passwd"
    if IS_ROOT:
        target.write_text("root\n")
    proc = run_as_user(["sh", "-c", 'id -u; test -w "$1" && echo writable || echo read-only', "sh", target], cwd=folder)
    assert proc.stdout.split() == [str(uid), "read-only"] and uid != 0, proc
    if IS_ROOT:
        append = run_as_user(["sh", "-c", 'echo user >> "$1"', "sh", target], cwd=folder)
        assert append.returncode != 0 and "Permission denied" in append.stderr, append
        assert target.read_text() == "root\n"


def test_the_small_study_plans_as_the_user(tmp_path):
    folder = user_dir(tmp_path)
    config = write_config(small_study(), folder / "config.yaml")
    proc = snakemake_as_user(folder, config, "-n")
    assert proc.returncode == 0
    assert "rule train" in proc.stdout and "rule evaluate" in proc.stdout, proc.stdout[-3000:]


def _make(folder, v):
    return ["-m", "snakemake", "-s", folder / "Snakefile", "-d", folder, "--cores", "1", "--config", f"value={v}"]


def test_protected_output_refuses_a_rerun_for_the_user(tmp_path):
    folder = user_dir(tmp_path)
    (folder / "Snakefile").write_text(PROTECTED)
    first = run_as_user([user_python(), *_make(folder, 1)], cwd=folder)
    assert first.returncode == 0, first.stderr[-4000:]
    out = folder / "out.txt"
    assert out.read_text() == "1\n" and not out.stat().st_mode & 0o222  # protected: read-only
    rerun = run_as_user([user_python(), *_make(folder, 2)], cwd=folder)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode != 0, log[-4000:]
    assert "ProtectedOutputException" in log or "Write-protected output files" in log, log[-4000:]
    assert out.read_text() == "1\n"
    if IS_ROOT:  # the same rerun as root: no refusal, the protected file is replaced
        mine = tmp_path / "as_root"
        mine.mkdir()
        (mine / "Snakefile").write_text(PROTECTED)
        env = dict(os.environ, PYTHONHASHSEED="0")
        for v in (1, 2):
            run = subprocess.run([sys.executable, *map(str, _make(mine, v))], capture_output=True, text=True, env=env)
            assert run.returncode == 0, run.stderr[-4000:]
        assert (mine / "out.txt").read_text() == "2\n"


# ---------------------------------------------------------------- a study, as an ordinary user


@pytest.fixture(scope="module")
def user_study(tmp_path_factory):
    """The small study (one cell) run to the end by the ordinary user: (folder, config)."""
    folder = user_dir(tmp_path_factory.mktemp("study"))
    cfg = small_study(ratios=(1e-3,), train_examples=16)
    # two tasks (one generative, one multiple choice): every evaluation is a job of its own
    cfg["tasks"] = {k: v for k, v in cfg["tasks"].items() if k in ("arith", "compare")}
    cfg["data"]["synthetic"].update({"train_per_task": 20, "eval_per_task": 4})
    config = write_config(cfg, folder / "config.yaml")
    snakemake_as_user(folder, config, "--cores", "2")
    return folder, cfg


def _run(folder, cfg, name):
    """The study with config ``cfg`` (written as ``name``), run by the user; its jobs."""
    proc = snakemake_as_user(folder, write_config(cfg, folder / name), "--cores", "2")
    return planned_jobs(proc.stdout + proc.stderr)


def _archive(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in (folder / "results/archive").rglob("*.json*")}


def test_an_ordinary_user_adds_a_task_changes_batch_size_and_limit_and_is_never_refused(user_study):
    """Issue #14: adding a benchmark evaluates only it on each cell; a new evaluation batch
    size re-evaluates nothing; a new limit re-evaluates every task, and nothing refuses the
    run (no protected() output is in the way); every evaluation stays in the archive."""
    folder, cfg = user_study
    tasks = sorted(cfg["tasks"])
    first = _archive(folder)
    assert len(first) == 2 * len(tasks)  # results_<time>.json + samples_<task>_<time>.jsonl per task

    cfg = copy.deepcopy(cfg)
    write_benchmark("arc_challenge", folder / "arc")
    cfg["tasks"]["arc_challenge"] = {"category": "reasoning", "metric": "acc,none", "data_dir": str(folder / "arc")}
    jobs = _run(folder, cfg, "added.yaml")
    assert [w["task"] for r, w in jobs if r == "evaluate"] == ["arc_challenge"]
    assert not {"train", "make_train_data"} & {r for r, _ in jobs}
    scores = pd.read_csv(folder / "results/tables/scores.csv")
    assert set(scores["task"]) == {*tasks, "arc_challenge"}
    # written with the user's umask (022 here), as a collaborator in the group needs to read them
    for p in ("results/tables/scores.csv", "results/runs/tiny-llama/sft/r1e-03_bs4_s0/run.json"):
        assert (folder / p).stat().st_mode & 0o777 == 0o644, p

    cfg["evaluation"]["batch_size"] = 3
    jobs = _run(folder, cfg, "batch.yaml")
    assert not [w for r, w in jobs if r in ("evaluate", "train")], jobs

    cfg["evaluation"]["limit"] = 2
    jobs = _run(folder, cfg, "limit.yaml")
    assert sorted(w["task"] for r, w in jobs if r == "evaluate") == sorted([*tasks, "arc_challenge"])
    scores = pd.read_csv(folder / "results/tables/scores.csv")
    assert (scores[scores["primary"]]["n_samples"] == 2).all()
    archive = _archive(folder)
    assert len(archive) == 2 * (2 * len(tasks) + 2)  # the first evaluations, arc's, and each task's again
    assert {k: archive[k] for k in first} == first  # the first evaluations, as they were


def test_two_jobs_training_one_cell_as_the_user_one_trains_and_the_other_waits_then_skips(user_study):
    """A restarted head process submits a cell whose old job still runs: the second job waits
    on the cell's lock (files of the user's, flock), then finds the cell finished."""
    folder, cfg = user_study
    cfg = copy.deepcopy(cfg)
    cfg["stages"]["sft"]["grid"]["ratios"] = [3e-4]  # a cell not trained yet; data and base model exist
    study = load_study(cfg)
    job = study_cell_job(study, study.cells[0], threads=1)
    spec_file = folder / "job.json"
    spec_file.write_text(json.dumps(job, default=str))
    code = "import json, sys\nfrom workflow_scripts.launch import train_one\n"
    code += "train_one(json.load(open(sys.argv[1])), '.launch')"
    procs = [popen_as_user([user_python(), "-c", code, spec_file], cwd=folder) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    logs = [o + e for o, e in outs]
    waited = [log for log in logs if "is being trained by another job" in log]
    assert len(waited) == 1, logs
    assert "was finished by the job that held it" in waited[0] and "not trained again" in waited[0]
    run = json.loads((folder / job["out_dir"] / "run.json").read_text())
    assert run["status"] == "ok" and run["spec"]["run_id"] == study.cells[0].run_id
