"""The demo study through real `sbatch` on a single-node SLURM cluster (tests/slurm_cluster.py),
with the project's own profile (slurm/config.yaml): only the status command and the first
status check's delay are set for the test cluster; the partition comes from a cluster file
outside the repository ($LRBS_CLUSTER), as a user keeps theirs.

The daemons run as root (slurm-wlm and munge are apt-installed on first use); Snakemake's head
process, and so every job it submits, runs as an ordinary user (tests/ordinary_user.py), as on
a real cluster, in folders that user owns. Without root the module skips, and without an
ordinary user that can reach the cluster the tests skip, except with LRBS_REQUIRE_SLURM=1 or
LRBS_REQUIRE_ORDINARY_USER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, small_study, write_config
from ordinary_user import ensure_user, run_as_user, snakemake_as_user, user_dir, user_path, user_python
from slurm_cluster import PARTITIONS, client_dirs, ensure_slurm, slurm_cluster

pytestmark = pytest.mark.slow

CPU_PARTITION, GPU_PARTITION = PARTITIONS  # the test cluster's; the default one is cpu
# The profile settings a test cluster may change; everything else is the project's profile.
TEST_PROFILE_OVERRIDES = {
    "slurm-status-command": "squeue",  # no slurmdbd here: sacct cannot work
    "slurm-init-seconds-before-status-checks": 2,  # first poll after 2 s, not 40 (MinJobAge is 600)
}
# Tables that depend only on the seeds and the code, not on where or when a job ran
# (runs.csv also holds wall times, hosts and devices).
DETERMINISTIC_TABLES = ("scores.csv", "cells.csv", "pivot.csv", "loss.csv")


# Module scope: the daemons (and the /etc/slurm/slurm.conf link) go away when this module is
# done; move it to conftest.py as a session fixture if other modules need the cluster too.
@pytest.fixture(scope="module")
def cluster():
    reason = ensure_slurm()
    if reason:
        if os.environ.get("LRBS_REQUIRE_SLURM") == "1":
            pytest.fail(f"LRBS_REQUIRE_SLURM=1 but no SLURM test cluster: {reason}")
        pytest.skip(f"no SLURM test cluster: {reason}")
    # in a folder of its own under /tmp that every user may read (not a pytest tmp_path)
    with slurm_cluster() as c:
        yield c


def user_name() -> str:
    return pwd.getpwuid(ensure_user()[0]).pw_name


def user_reaches(cluster, folder: Path) -> None:
    """Skip (fail with LRBS_REQUIRE_SLURM=1 or LRBS_REQUIRE_ORDINARY_USER=1) where the ordinary
    user's sinfo cannot read the cluster's slurm.conf or reach its munged."""
    proc = run_as_user(["sinfo", "-h", "-o", "%P"], cwd=folder, env=user_env(cluster.env), timeout=60)
    if proc.returncode == 0 and f"{CPU_PARTITION}*" in proc.stdout.split():
        return
    reason = f"the ordinary user's sinfo fails ({proc.returncode}): {proc.stderr.strip()[-1000:]}"
    if "1" in (os.environ.get("LRBS_REQUIRE_SLURM"), os.environ.get("LRBS_REQUIRE_ORDINARY_USER")):
        pytest.fail(f"LRBS_REQUIRE_SLURM=1 or LRBS_REQUIRE_ORDINARY_USER=1, but {reason}")
    pytest.skip(f"the test cluster is out of the ordinary user's reach: {reason}")


def cluster_profile(folder: Path) -> Path:
    """The project's slurm/ profile with the test cluster's status settings. It names no
    partition or account: those come from the user's cluster file, outside git."""
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    names = {"slurm_partition", "slurm_account", "qos", "constraint"}
    assert not names & set(profile.get("default-resources") or {}), "cluster names belong in slurm/cluster.yaml"
    profile.update(TEST_PROFILE_OVERRIDES)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def profile_args(folder: Path) -> list[str]:
    """Snakemake arguments: the test cluster's copy of the profile."""
    return ["--profile", str(cluster_profile(folder))]


def user_env(env: dict) -> dict:
    """A client environment of the cluster's (SLURM_CONF, ...) for the ordinary user: its PATH
    is the user's (its venv's Python first, which the jobs then run too) and SLURM's tools."""
    return {**env, "PATH": user_path(*client_dirs())}


def cluster_env(cluster, folder: Path, **names) -> dict:
    """The cluster's environment for the ordinary user, with $LRBS_CLUSTER naming a file of these
    cluster names (as a user keeps them, outside the repository, in a folder the user reads; the
    test cluster has no accounts)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cluster.yaml").write_text(yaml.safe_dump(names))
    return user_env({**cluster.env, "LRBS_CLUSTER": str(folder / "cluster.yaml")})


def submitted(stdout: str) -> dict[str, str]:
    """SLURM job id -> rule, from the plugin's "has been submitted with SLURM jobid" lines."""
    jobs = {}
    for m in re.finditer(r"submitted with SLURM jobid (\d+) \(log: [^)]*/rule_(\w+?)/", stdout):
        jobs[m.group(1)] = m.group(2)
    return jobs


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The same small study run by the ordinary user through the slurm profile and locally
    (--cores 2), at once, each in a folder the user owns.

    Its two cells share a ratio and cells_per_gpu is 2: they train as one pack, in one SLURM
    job, at the same time on one GPU; each is then evaluated in its own jobs, one per task
    (two tasks here: one generative, one multiple choice, as SLURM jobs add up)."""
    base = tmp_path_factory.mktemp("slurm_study")
    # the study, the profile and the cluster file: outside the repository, readable by the user
    site = user_dir(base, "site")
    user_reaches(cluster, site)
    study = small_study(ratios=(1e-3,), batch_sizes=(4, 8))
    study["tasks"] = {k: v for k, v in study["tasks"].items() if k in ("arith", "compare")}
    study["stages"]["sft"]["cells_per_gpu"] = 2
    cfg = write_config(study, site / "study.yaml")
    slurm_dir, local_dir = user_dir(base, "slurm"), user_dir(base, "local")
    # up to the tables (aggregate): statistics and plots add nothing to what is checked here
    until = ["--until", "aggregate"]
    args = [*profile_args(site / "profile"), *until]
    env = cluster_env(cluster, site / "cluster", partition=GPU_PARTITION)
    with ThreadPoolExecutor(2) as pool:
        local = pool.submit(snakemake_as_user, local_dir, cfg, "--cores", "2", *until)
        on_slurm = snakemake_as_user(slurm_dir, cfg, *args, env=env)
        local.result()
    log = on_slurm.stdout + on_slurm.stderr
    return {"slurm": slurm_dir, "local": local_dir, "log": log, "jobs": cluster.jobs(), "submitted": submitted(log)}


def run_jsons(workdir: Path) -> dict[str, dict]:
    return {
        str(p.parent.relative_to(workdir / "results" / "runs")): json.loads(p.read_text())
        for p in sorted((workdir / "results" / "runs").glob("*/*/*/run.json"))
    }


def test_train_and_evaluate_ran_as_slurm_jobs_on_the_gpu_partition(runs, cluster):
    # the default partition is cpu: a job on gpu got there through the profile
    assert f"{CPU_PARTITION}*" in cluster.run("sinfo", "-h", "-o", "%P").split()
    cells = run_jsons(runs["local"])
    assert len(cells) == 2
    by_rule: dict[str, list[dict]] = {}
    known = {j["JobId"]: j for j in runs["jobs"]}
    for job_id, rule in runs["submitted"].items():
        by_rule.setdefault(rule, []).append(known[job_id])
    # only the GPU rules went to SLURM: data, model building, tables and plots are localrules
    assert sorted(by_rule) == ["evaluate", "train_pack_sft_0"], runs["log"][-3000:]
    assert len(by_rule["evaluate"]) == 2 * len(cells) and len(by_rule["train_pack_sft_0"]) == 1
    for rule, jobs in by_rule.items():
        for job in jobs:
            assert job["JobState"] == "COMPLETED", job
            assert job["Partition"] == GPU_PARTITION, job
            assert job["Comment"].startswith(f"rule_{rule}_wildcards_"), job
            assert "gres:gpu:1" in job.get("TresPerJob", ""), job  # sbatch --gpus=1


def test_the_ordinary_user_ran_the_jobs_and_owns_their_outputs(runs):
    uid, _, _ = ensure_user()
    known = {j["JobId"]: j for j in runs["jobs"]}
    assert len(runs["submitted"]) == 5, runs["log"][-3000:]  # one pack of two cells, 2 x 2 evaluations
    for job_id in runs["submitted"]:
        job = known[job_id]
        assert job["UserId"] == f"{user_name()}({uid})", job  # SLURM ran the job as the user
        assert job["WorkDir"] == str(runs["slurm"]), job
    outputs = [
        *(runs["slurm"] / "results" / "runs").glob("*/*/*/run.json"),
        *(runs["slurm"] / "results" / "runs").glob("*/*/*/eval/tasks/*/results.json"),
    ]
    assert len(outputs) == 2 + 4, outputs
    for path in outputs:
        assert path.stat().st_uid == uid, (path, path.stat().st_uid)
    # the job ran the head's Python (the plugin's job command), the user's: root's is private
    pack_log = (runs["slurm"] / "results/logs/train/tiny-llama/sft/r1e-03_pack0.log").read_text()
    assert f"{user_python()} -m workflow_scripts.launch" in pack_log, pack_log[-2000:]


def test_training_jobs_saw_their_slurm_job_and_gpu(runs):
    train_ids = {i for i, rule in runs["submitted"].items() if rule.startswith("train")}
    cells = run_jsons(runs["slurm"])
    assert len(cells) == 2
    for run_id, run in cells.items():
        env = run["environment"]  # workflow_scripts/train.py: job_environment()
        assert env["SLURM_JOB_ID"] in train_ids, (run_id, env)
        assert env.get("SLURM_JOB_PARTITION") in (None, GPU_PARTITION), (run_id, env)
        # slurmd binds one of the node's four (fake) GPUs and sets the variable to its index
        assert env["CUDA_VISIBLE_DEVICES"] in {"0", "1", "2", "3"}, (run_id, env)
    # the local run's cells were no jobs of this cluster
    for run_id, run in run_jsons(runs["local"]).items():
        assert run["environment"]["SLURM_JOB_ID"] not in train_ids, run_id


def test_tables_equal_those_of_a_local_run(runs):
    # Same seeds, same CPU, one torch thread per job in both runs (threads: 1), and the fake
    # GPUs are invisible to torch, so training and scoring are the same float operations in
    # the same order: the tables must be equal exactly, not within a tolerance.
    for name in DETERMINISTIC_TABLES:
        on_slurm = pd.read_csv(runs["slurm"] / "results" / "tables" / name)
        local = pd.read_csv(runs["local"] / "results" / "tables" / name)
        assert len(on_slurm) > 0, name
        pd.testing.assert_frame_equal(on_slurm, local, check_exact=True, obj=name)


def overlapping(intervals: list[tuple[dt.datetime, dt.datetime]]) -> bool:
    """Whether all the intervals share a moment."""
    return max(start for start, _ in intervals) < min(end for _, end in intervals)


def test_cells_per_gpu_ran_two_cells_in_one_slurm_job_at_once(runs):
    cells = run_jsons(runs["slurm"])
    assert len(cells) == 2
    job_ids = {run["environment"]["SLURM_JOB_ID"] for run in cells.values()}
    assert len(job_ids) == 1, job_ids  # both cells in one SLURM job
    intervals = [
        (dt.datetime.fromisoformat(run["started"]), dt.datetime.fromisoformat(run["finished"]))
        for run in cells.values()
    ]
    assert overlapping(intervals), intervals  # and at the same time, not one after the other
    # each cell still has its own outputs and log
    for run_id in cells:
        assert (runs["slurm"] / "results/runs" / run_id / "model/model.safetensors").exists()
        assert "[train] done" in (runs["slurm"] / "results/logs/train" / f"{run_id}.log").read_text()


def test_a_partition_the_cluster_lacks_stops_the_run_before_any_sbatch(cluster, tmp_path):
    folder = user_dir(tmp_path)
    user_reaches(cluster, folder)
    cfg = write_config(small_study(ratios=(1e-3,)), folder / "study.yaml")
    env = cluster_env(cluster, folder / "site", partition="gpu-a100")
    before = {job["JobId"] for job in cluster.jobs()}
    proc = snakemake_as_user(folder, cfg, *profile_args(folder / "profile"), check=False, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "partition 'gpu-a100' does not exist on this cluster" in out and f"{GPU_PARTITION}" in out, out[-2000:]
    assert submitted(out) == {} and {job["JobId"] for job in cluster.jobs()} == before, out[-2000:]  # no sbatch
