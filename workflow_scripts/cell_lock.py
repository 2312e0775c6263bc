"""One job per cell at a time: an exclusive lock on ``<out_dir>/.train.lock``.

When the Snakemake head process dies (SIGKILL, a closed terminal's SIGHUP, a login node
reboot) its SLURM jobs keep running, and the restarted head submits every cell whose
outputs are missing again, including the cells those jobs are still training. Two jobs
would then train into one ``trainer/`` folder. The launching process of a cell (``launch.
train_one``, or ``launch.run_cells`` for each cell of a pack and for a DDP cell) therefore
holds ``fcntl.flock(LOCK_EX)`` on the cell's lock file from before training until its job
ends; the file records who holds it (cell, host, pid, SLURM job id, since when).

**A second job waits; it does not refuse.** What Snakemake 9.27 does with a job's outputs
decides this. Inside every job, before the script runs, ``Job.prepare`` removes the job's
existing outputs and its log (``remove_existing_output``); when a job fails, both the job
and the head remove whatever outputs exist (``Job.postprocess(error=True)`` ->
``Job.cleanup``, "Removing output files of failed job ... since they might be corrupted",
unless ``--keep-incomplete``), and ``retries`` then submits it again. A second job that
refused (exited non-zero) would delete whatever of ``model/``, ``run.json`` and
``log_history.json`` the first job had written by then (it writes them at its very end,
still holding the lock), each retry would delete them again before refusing again, and after
the retries the cell would count as failed and not be evaluated in this run. A waiting job
never fails because of the lock: it prints a line naming the holder every minute, and once
the lock is free it skips a cell that ``run.json`` says was trained to the end with the same
spec (``model/`` and ``log_history.json`` present; the job succeeds, and Snakemake records
the outputs as complete), or trains it itself, resuming from the newest checkpoint the other
job left. Waiting costs the second job's GPU allocation for as long as the first job runs;
that is the price of never losing finished work.

``flock`` locks belong to the open file: the kernel frees them when the last process holding
the file descriptor ends, however it ends (SIGKILL included), so a dead job never leaves a
stale lock. The lock file itself is never deleted (a deleted and re-created lock file would
let two processes lock two different files). The process ``run_cells`` starts for a cell
(a pack's cell, or torchrun/accelerate for a DDP cell) inherits the cell's descriptor, so the
lock also outlives a launcher killed before that process ends (not on NFS, where the kernel
emulates ``flock`` with POSIX locks, which children do not inherit).
Where ``flock`` fails (NFSv3 without a running lock daemon, Lustre mounted ``noflock``) the
cell trains unguarded, with a warning; where it locks per node only (NFS ``nolock`` or
``local_lock``, Lustre ``localflock``) jobs on two nodes are not kept apart: docs/slurm.md,
"Running for days".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import layout

LOCK_NAME = ".train.lock"
POLL_S = 5.0  # how often a waiting job tries the lock again
NOTICE_S = 60.0  # how often it says who it waits for
# errors of a filesystem that cannot lock at all (as opposed to a lock held by someone else)
NO_LOCKING = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}


def holder_record(run_id: str) -> dict:
    """Who takes the lock: written into the lock file for the job that waits for it."""
    return {
        "cell": run_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def read_holder(path: str | Path) -> dict | None:
    """The record in a lock file, or None (no file, or a holder still writing it)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe(holder: dict | None) -> str:
    if not holder:
        return "holder unknown (the lock file holds no record yet)"
    job = holder.get("slurm_job_id")
    return (
        f"host {holder.get('host')}, pid {holder.get('pid')}, "
        f"{f'SLURM job {job}' if job else 'not a SLURM job'}, since {holder.get('since')}"
    )


def finished(job: dict) -> dict | None:
    """The ``run.json`` record of a cell trained to the end with this job's spec (with the
    model and loss history beside it, as ``train.train_cell`` writes them last), else None."""
    out = Path(job["out_dir"])
    record = read_holder(out / "run.json")  # any JSON object file
    if not record or record.get("spec") != json.loads(json.dumps(job["spec"])):
        return None
    if not (out / "model").is_dir() or not (out / "log_history.json").is_file():
        return None
    return record


def acquire(
    out_dir: str | Path,
    run_id: str,
    *,
    poll_s: float = POLL_S,
    notice_s: float = NOTICE_S,
    say: Callable[[str], None] = print,
) -> tuple[int | None, dict | None]:
    """Lock ``out_dir/.train.lock``, waiting while another process holds it.

    Returns the locked file descriptor (None where the filesystem cannot lock) and the record
    of the holder this process waited for (None if it had not to wait)."""
    path = Path(out_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited unless passed on
    t0, holder, next_notice = time.monotonic(), None, 0.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = read_holder(path) or holder
            now = time.monotonic()
            if now >= next_notice:
                waited = (now - t0) / 60
                say(
                    f"[lock] cell {run_id} is being trained by another job: {describe(holder)} (lock {path}). "
                    f"Waiting for it to end ({waited:.0f} min so far); then this job skips the cell if that "
                    "job finished it, or trains it from its last checkpoint."
                )
                next_notice = now + notice_s
            time.sleep(poll_s)
        except OSError as e:
            if e.errno not in NO_LOCKING:
                os.close(fd)
                raise
            os.close(fd)
            say(
                f"[lock] WARNING: cell {run_id}: cannot lock {path} ({e.strerror}): this filesystem has no "
                "working flock (NFSv3 without a running lock daemon, Lustre mounted noflock). Training "
                "without the guard against a second job on this cell (docs/slurm.md, 'Running for days')."
            )
            return None, None
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder_record(run_id)) + "\n").encode(), 0)
    return fd, holder


@contextlib.contextmanager
def claim(
    jobs: list[dict],
    *,
    poll_s: float = POLL_S,
    notice_s: float = NOTICE_S,
    say: Callable[[str], None] | None = None,
) -> Iterator[dict[int, int | None]]:
    """Hold the lock of every cell in ``jobs`` (``spec.cell_job`` descriptions) and yield the
    cells still to train: their index in ``jobs`` -> the lock's file descriptor (to pass to
    the cell's processes; None where the filesystem cannot lock). A cell that another job
    finished, or that is already finished with the same spec, is left out with one line.

    Locks are taken in the order of their folders, so two jobs that share cells (a pack and a
    single cell after ``cells_per_gpu`` changed) cannot wait for each other; they are released
    when the block ends, or with the process."""
    say = say or (lambda line: print(line, flush=True))
    held: dict[int, int | None] = {}
    try:
        for i in sorted(range(len(jobs)), key=lambda i: str(jobs[i]["out_dir"])):
            rid = jobs[i]["spec"]["run_id"]
            held[i], holder = acquire(jobs[i]["out_dir"], rid, poll_s=poll_s, notice_s=notice_s, say=say)
            record = finished(jobs[i])
            if record:
                who = f"by the job that held it ({describe(holder)})" if holder else "already"
                say(
                    f"[lock] cell {rid} was finished {who}: run.json status {record.get('status')!r}; not trained again"
                )
            elif holder:
                say(
                    f"[lock] cell {rid}: the other job ({describe(holder)}) ended without finishing it; "
                    "this job trains it (from its last checkpoint, if one was saved)"
                )
            if record:
                fd = held.pop(i)
                if fd is not None:
                    os.close(fd)
        yield {i: held[i] for i in sorted(held)}
    finally:
        for fd in held.values():
            if fd is not None:
                os.close(fd)  # not LOCK_UN: a cell's process that inherited the lock keeps it


def finished_outputs(study, workdir: str | Path = ".") -> list[str]:
    """The outputs of every cell of ``study`` that trained to the end with the spec it would
    train with now (``finished``), relative to ``workdir``. After a head died, Snakemake marks
    the outputs of cells that finished while no head watched them incomplete; ``snakemake
    --cleanup-metadata`` on these keeps them, where ``--rerun-incomplete`` would delete and
    retrain them (docs/slurm.md, "Running for days")."""
    out = []
    for cell in study.cells:
        cell_dir = layout.for_cell(layout.CELL_DIR, cell.run_id)
        if finished({"spec": study.training_spec(cell), "out_dir": Path(workdir) / cell_dir}):
            out += [layout.for_cell(t, cell.run_id) for t in (layout.CELL_MODEL, layout.RUN_JSON, layout.HISTORY)]
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    import yaml

    from .config import load_study

    parser = argparse.ArgumentParser(description="Outputs of the cells that finished (for --cleanup-metadata).")
    parser.add_argument("--configfile", default="config.yaml", help="the study config (default config.yaml)")
    parser.add_argument("-d", "--directory", default=".", help="the working directory (where results/ is)")
    args = parser.parse_args(argv)
    study = load_study(yaml.safe_load(Path(args.configfile).read_text()), base_dir=args.directory)
    print("\n".join(finished_outputs(study, args.directory)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
