"""Run training cells as processes: one cell on N GPUs (``accelerate launch``, DDP), or a
pack of K cells side by side on one GPU (``cells_per_gpu: K``). The launching process holds
each cell's lock (``cell_lock``) while it trains: one job per cell at a time.

A 135M cell at a small batch leaves an H200 mostly idle; K cells sharing it train at
several times the total throughput. A pack is one SLURM job; every cell in it still
writes its own outputs (model, run.json with start and end times, log), so Snakemake
knows which cells exist. Each cell is a job description (``spec.cell_job``) that
``python -m workflow_scripts.launch JOB.json`` trains.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .cell_lock import claim
from .memory import plan_memory

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(job_file: Path, gpus: int, cpu: bool) -> list[str]:
    """The command that trains the cell in ``job_file``: plain python, or accelerate (DDP)."""
    if gpus <= 1:
        return [sys.executable, "-m", "workflow_scripts.launch", str(job_file)]
    # one process per GPU (DDP); accumulation was derived for N processes (spec.training_spec)
    port = str(_free_port())
    if cpu:  # no GPU (the tests): the same DDP processes over gloo, started by torchrun, which
        # accelerate launch itself uses for --multi_gpu (its --cpu starts a single process)
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(gpus),
            "--master_port",
            port,
            "-m",
            "workflow_scripts.launch",
            str(job_file),
        ]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(gpus),
        "--num_machines",
        "1",
        "--main_process_port",
        port,
        "-m",
        "workflow_scripts.launch",
        str(job_file),
    ]


def _file_or_none(stream):
    """``stream`` if a child process can write to it (it has a file descriptor), else None."""
    try:
        stream.fileno()
        return stream
    except (AttributeError, OSError, ValueError):
        return None


def run_cells(jobs: list[dict], work_dir: str | Path) -> None:
    """Train ``jobs`` concurrently, one process (group) each; raise if any cell failed.

    Every cell's own log gets its process's output. A failing cell does not stop the others:
    they run to the end, and cells with checkpoints resume from them when the pack reruns.
    Each cell's lock (``cell_lock.claim``) is held from before its log is opened until its
    processes end; a cell another job trains is waited for, and skipped if that job finished it.
    """
    with claim(jobs) as todo:
        _run_claimed(jobs, todo, Path(work_dir))


def _run_claimed(jobs: list[dict], todo: dict[int, int | None], work_dir: Path) -> None:
    import torch

    if not todo:
        print(f"[pack] all {len(jobs)} cell(s) finished already: nothing to train", flush=True)
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    cpu = not torch.cuda.is_available()
    print(f"[pack] {plan_memory([jobs[i] for i in todo])}", flush=True)
    procs = []
    for i, lock_fd in todo.items():
        job = jobs[i]
        job_file = work_dir / f"cell{i}.json"
        job_file.write_text(json.dumps(job))
        log = open(job["log"], "w") if job.get("log") else None
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        cmd = command(job_file, int(job["spec"].get("gpus", 1)), cpu)
        print(f"[pack] start {job['spec']['run_id']}: {' '.join(cmd)}", flush=True)
        # no log of its own: the cell's output goes where this process's output goes (the
        # job log that entry/_bootstrap.logged redirected sys.stdout to), not to fd 1
        sink = log or _file_or_none(sys.stdout)
        sys.stdout.flush()
        procs.append(
            (
                job,
                subprocess.Popen(
                    cmd,
                    stdout=sink,
                    stderr=subprocess.STDOUT if sink else None,
                    env=env,
                    cwd=os.getcwd(),
                    pass_fds=() if lock_fd is None else (lock_fd,),  # the cell's process holds its lock too
                ),
                log,
            )
        )
    failed = []
    for job, proc, log in procs:
        rc = proc.wait()
        if log:
            log.close()
        print(f"[pack] {job['spec']['run_id']}: exit {rc}", flush=True)
        if rc != 0:
            failed.append(f"{job['spec']['run_id']} (exit {rc}, log {job.get('log')})")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(todo)} cells failed: {'; '.join(failed)}")


def train_job(job: dict, **extra) -> dict:
    """``train.train_cell`` on a job description (``spec.cell_job``), in this process."""
    from .train import train_cell

    keys = ("threads", "data_source", "prefetched")
    return train_cell(
        job["spec"],
        job["base_model"],
        job["train_file"],
        job["out_dir"],
        **{k: job[k] for k in keys},
        tracking=job.get("tracking"),  # the study's tracking, added at run time (config.with_tracking)
        **extra,
    )


def train_one(job: dict, work_dir: str | Path) -> None:
    """One cell: in this process, or, when it asks for several GPUs, as DDP processes whose
    output joins this job's log."""
    if int(job["spec"].get("gpus", 1)) > 1:
        run_cells([{**job, "log": None}], work_dir)  # takes the cell's lock
        return
    with claim([job]) as todo:  # the cell's lock; a cell another job finished is not retrained
        if todo:
            train_job(job)


def main(argv: list[str] | None = None) -> int:
    job = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    t0 = time.time()
    train_job(job, memory=job.get("memory"))  # one process of a cell: the launcher planned its memory
    print(f"[launch] {job['spec']['run_id']} finished in {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
