"""One job per cell at a time (issue #14, "restarts are safe"): a second job for a cell that
another job is training waits for it, naming it, and then skips the cell if the other job
finished it or trains it if that job died; a killed holder never leaves a stale lock. No
training here: a small Python process takes the lock as ``launch`` does and sleeps."""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

from conftest import REPO

from workflow_scripts import cell_lock
from workflow_scripts.cell_lock import LOCK_NAME, claim

FAST = {"poll_s": 0.02, "notice_s": 0.1}

# the other job: takes the cell's lock as launch.train_one does, says so, then waits for a
# file; `finish` writes the outputs train.train_cell writes last (model/, log_history, run.json)
HOLDER = """
import json, sys, time
from pathlib import Path
from workflow_scripts.cell_lock import claim
job, go = json.loads(sys.argv[1]), Path(sys.argv[2])
with claim([job]) as todo:
    print("held" if todo else "skipped", flush=True)
    while not go.exists():
        time.sleep(0.02)
    if go.read_text() == "finish":
        out = Path(job["out_dir"])
        (out / "model").mkdir()
        (out / "log_history.json").write_text("[]")
        (out / "run.json").write_text(json.dumps({"spec": job["spec"], "status": "ok"}))
"""


def job_for(tmp_path, name="r1e-03_bs4_s0", **spec):
    rid = f"tiny-llama/sft/{name}"
    return {"spec": {"run_id": rid, "learning_rate": 1e-3, **spec}, "out_dir": str(tmp_path / rid)}


def start_holder(job, go, slurm_job_id="4242"):
    env = dict(os.environ, PYTHONPATH=str(REPO), SLURM_JOB_ID=slurm_job_id)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, json.dumps(job), str(go)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def after(seconds, action):
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_a_second_job_waits_for_the_holder_then_skips_the_cell_it_finished(tmp_path):
    job, go = job_for(tmp_path), tmp_path / "go"
    holder = start_holder(job, go)
    lines = []
    after(0.5, lambda: go.write_text("finish"))
    t0 = time.monotonic()
    with claim([job], say=lines.append, **FAST) as todo:
        assert todo == {}  # finished by the other job: nothing to train
    assert time.monotonic() - t0 >= 0.4 and holder.wait(5) == 0
    waiting = [line for line in lines if "is being trained by another job" in line]
    assert len(waiting) >= 2  # a progress line while it waits, not only one
    assert "cell tiny-llama/sft/r1e-03_bs4_s0" in waiting[0]
    assert f"pid {holder.pid}" in waiting[0] and "SLURM job 4242" in waiting[0] and "since 20" in waiting[0]
    assert os.uname().nodename in waiting[0] and LOCK_NAME in waiting[0]
    assert "was finished by the job that held it" in lines[-1] and "not trained again" in lines[-1]
    assert "SLURM job 4242" in lines[-1]


def test_a_killed_holder_frees_the_lock_and_the_waiting_job_trains_the_cell(tmp_path):
    job, go = job_for(tmp_path), tmp_path / "go"
    holder = start_holder(job, go)
    lines = []
    after(0.4, lambda: os.kill(holder.pid, signal.SIGKILL))
    with claim([job], say=lines.append, **FAST) as todo:
        assert list(todo) == [0] and todo[0] is not None  # this job holds the lock now
        record = json.loads((tmp_path / job["spec"]["run_id"] / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["cell"] == job["spec"]["run_id"]
    assert holder.wait(5) == -signal.SIGKILL
    assert "ended without finishing it; this job trains it" in lines[-1] and f"pid {holder.pid}" in lines[-1]


def test_a_free_cell_is_claimed_at_once_and_released_with_the_block(tmp_path):
    job, go = job_for(tmp_path), tmp_path / "go"
    lines = []
    with claim([job], say=lines.append, **FAST) as todo:
        assert list(todo) == [0]
    assert lines == []  # nobody to wait for, nothing to say
    holder = start_holder(job, go)  # the lock is free again for the next job
    go.write_text("stop")
    assert holder.wait(5) == 0


def test_a_cell_finished_with_the_same_spec_is_skipped_and_another_spec_is_trained(tmp_path):
    job = job_for(tmp_path)
    out = tmp_path / job["spec"]["run_id"]
    (out / "model").mkdir(parents=True)
    (out / "log_history.json").write_text("[]")
    (out / "run.json").write_text(json.dumps({"spec": job["spec"], "status": "diverged"}))
    lines = []
    with claim([job], say=lines.append, **FAST) as todo:
        assert todo == {}
    assert lines == [
        "[lock] cell tiny-llama/sft/r1e-03_bs4_s0 was finished already: run.json status 'diverged'; not trained again"
    ]
    changed = job_for(tmp_path, learning_rate=2e-3)  # same folder, the spec changed since
    with claim([changed], say=lines.append, **FAST) as todo:
        assert list(todo) == [0]
    (out / "model").rmdir()  # a run.json without its model is no finished cell
    with claim([job], say=lines.append, **FAST) as todo:
        assert list(todo) == [0]


def test_a_pack_waits_only_for_its_busy_cell_and_trains_the_rest(tmp_path):
    jobs = [job_for(tmp_path, "r1e-03_bs4_s0"), job_for(tmp_path, "r1e-03_bs8_s0")]
    go = tmp_path / "go"
    holder = start_holder(jobs[1], go)
    lines = []
    after(0.3, lambda: go.write_text("finish"))
    with claim(jobs, say=lines.append, **FAST) as todo:
        assert list(todo) == [0]  # cell 1 was finished by the other job while this one waited
    assert holder.wait(5) == 0
    assert all("r1e-03_bs8_s0" in line for line in lines)


def test_a_cell_process_that_inherited_the_lock_keeps_it_after_the_launcher_let_go(tmp_path):
    """As run_cells passes each cell's lock to the cell's process (DDP ranks, pack cells)."""
    job = job_for(tmp_path)
    with claim([job], **FAST) as todo:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], pass_fds=(todo[0],))
    try:
        lines = []
        after(0.3, lambda: child.kill())
        with claim([job], say=lines.append, **FAST) as todo:
            assert list(todo) == [0]
        assert lines and "is being trained by another job" in lines[0]  # it waited for the child
    finally:
        child.kill()
        child.wait()


def test_a_filesystem_without_flock_trains_unguarded_with_a_warning(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(cell_lock.fcntl, "flock", no_locks)
    job, lines = job_for(tmp_path), []
    with claim([job], say=lines.append, **FAST) as todo:
        assert todo == {0: None}
    assert "WARNING" in lines[0] and "tiny-llama/sft/r1e-03_bs4_s0" in lines[0] and "NFS" in lines[0]


def test_the_cells_finished_with_todays_spec_are_listed_for_cleanup_metadata(tmp_path):
    """After a head died, these outputs are kept with `snakemake --cleanup-metadata`, where
    `--rerun-incomplete` would delete and retrain them."""
    from conftest import small_study

    from workflow_scripts.config import load_study

    study = load_study(small_study(ratios=(1e-4, 1e-3, 3e-3)))
    done, other, half = study.cells
    for cell, spec in ((done, study.training_spec(done)), (other, {**study.training_spec(other), "seed": 9})):
        d = tmp_path / "results/runs" / cell.run_id
        (d / "model").mkdir(parents=True)
        (d / "log_history.json").write_text("[]")
        (d / "run.json").write_text(json.dumps({"status": "ok", "spec": spec}))
    (tmp_path / "results/runs" / half.run_id / "model").mkdir(parents=True)  # killed before run.json
    rid = done.run_id
    want = [f"results/runs/{rid}/model", f"results/runs/{rid}/run.json", f"results/runs/{rid}/log_history.json"]
    assert cell_lock.finished_outputs(study, tmp_path) == want
