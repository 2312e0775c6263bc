"""Run training cells as processes: one cell on N GPUs (``accelerate launch``, DDP), or a
pack of K cells side by side on one GPU (``cells_per_gpu: K``).

A 135M cell at a small batch leaves an H200 mostly idle; K cells sharing it train at
several times the total throughput. A pack is one SLURM job; every cell in it still
writes its own outputs (model, run.json with start and end times, log), so Snakemake
knows which cells exist. Each cell is a job description (a dict, see :func:`cell_job`)
that ``python -m workflow_scripts.launch JOB.json`` trains.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cell_job(spec: dict, base_model: str, train_file: str, out_dir: str, *, threads: int = 1,
             data_source: str | None = None, prefetched: str | None = None, log: str | None = None) -> dict:
    """Everything ``train_cell`` needs for one cell, as plain JSON."""
    return {"spec": spec, "base_model": str(base_model), "train_file": str(train_file), "out_dir": str(out_dir),
            "threads": threads, "data_source": data_source, "prefetched": prefetched, "log": log}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(job_file: Path, gpus: int, cpu: bool) -> list[str]:
    """The command that trains the cell in ``job_file``: plain python, or accelerate (DDP)."""
    if gpus <= 1:
        return [sys.executable, "-m", "workflow_scripts.launch", str(job_file)]
    # one process per GPU (DDP); accumulation was derived for N processes (Study.training_spec)
    port = str(_free_port())
    if cpu:  # no GPU (the tests): the same DDP processes over gloo, started by torchrun, which
        # accelerate launch itself uses for --multi_gpu (its --cpu starts a single process)
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(gpus),
                "--master_port", port, "-m", "workflow_scripts.launch", str(job_file)]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus),
            "--num_machines", "1", "--main_process_port", port, "-m", "workflow_scripts.launch", str(job_file)]


@functools.lru_cache(maxsize=16)  # the cells of a pack share their base model
def model_shape(base_model: str) -> dict:
    """Parameters, hidden size and layers of a model folder (built on the meta device: no
    weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_model)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {"params": sum(p.numel() for p in model.parameters()), "hidden": config.hidden_size,
            "layers": config.num_hidden_layers, "vocab": config.vocab_size}


def estimated_gpu_bytes(spec: dict, shape: dict, checkpointing: bool = False) -> int:
    """An estimate of one cell's GPU memory: weights, gradients and AdamW's two moments at 4
    bytes each, a DPO reference copy, activations (~34 bytes x tokens x hidden per layer at
    16 bit: Korthikanti et al. 2022, flash attention; with activation checkpointing only each
    layer's input, fp32 under autocast, plus one layer's full set) and fp32 logits with their
    gradient (8 bytes x tokens x vocabulary; TRL's chunked LM head needs less)."""
    dpo = spec.get("stage_kind") == "dpo"
    n = shape["params"]
    state = 16 * n + (4 * n if dpo else 0)
    tokens = int(spec["per_device_train_batch_size"]) * int(spec.get("recipe", {}).get("max_length") or 1024)
    tokens *= 2 if dpo else 1  # chosen and rejected
    per_layer = 34 * tokens * shape["hidden"]
    activations = (4 * tokens * shape["hidden"] * shape["layers"] + per_layer if checkpointing
                   else per_layer * shape["layers"])
    return int(state + activations + 8 * tokens * shape["vocab"])


def choose_checkpointing(spec: dict, shape: dict, budget_bytes: int) -> dict:
    """Activation checkpointing only when memory needs it: it recomputes every layer's
    forward in the backward pass (about a third more compute), so it is on only when the
    cell would not fit in ``budget_bytes`` (its share of the GPU's free memory) without it."""
    gib = 2**30
    without = estimated_gpu_bytes(spec, shape)
    if without <= 0.9 * budget_bytes:
        return {"enabled": False, "estimate_gib": round(without / gib, 2), "budget_gib": round(budget_bytes / gib, 2),
                "reason": "fits without activation checkpointing"}
    with_ckpt = estimated_gpu_bytes(spec, shape, checkpointing=True)
    reason = "does not fit without activation checkpointing"
    if with_ckpt > 0.9 * budget_bytes:
        reason += (" and may not fit with it either: lower micro_batch_size, recipe.max_length or "
                   "stages.<stage>.cells_per_gpu, or use a larger GPU")
    return {"enabled": True, "estimate_gib": round(with_ckpt / gib, 2), "without_gib": round(without / gib, 2),
            "budget_gib": round(budget_bytes / gib, 2), "reason": reason}


# The recipe keys that force activation checkpointing (transformers 5's name, and the old one)
CHECKPOINTING_KEYS = ("activation_checkpointing", "gradient_checkpointing")


def memory_plan(spec: dict, model_dir: str | None, budget_bytes: int | None) -> dict:
    """Whether a cell checkpoints activations: the recipe's true/false when it sets one, else
    only when the cell would not fit in ``budget_bytes`` without it (None: no GPU). The one
    place that decides: train_cell passes the result to TRL."""
    recipe = spec.get("recipe", {})
    for key in CHECKPOINTING_KEYS:
        if key in recipe:  # a bool: the config check refuses anything else
            return {"enabled": bool(recipe[key]), "reason": f"recipe.{key}"}
    if budget_bytes is None:
        return {"enabled": False, "reason": "no GPU"}
    return choose_checkpointing(spec, model_shape(model_dir), budget_bytes)


def free_gpu_bytes() -> int | None:
    """Free memory of the first GPU this process sees (None without one). Asked of
    ``nvidia-smi`` when it is there, so that a launcher that only plans does not hold a CUDA
    context (about 0.5 GiB) on the GPU its cells train on."""
    import torch

    if not torch.cuda.is_available():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits",
                              "-i", visible], capture_output=True, text=True, timeout=30, check=True)
        return int(out.stdout.split()[0]) * 2**20  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return torch.cuda.mem_get_info(torch.cuda.current_device())[0]


def plan_memory(jobs: list[dict]) -> str:
    """Before any cell starts, once for all of them: each cell's activation checkpointing for
    its share of the GPU's free memory (``job["memory"]``), then fail if the cells cannot fit
    even so. The cells of a pack share one GPU; a multi-GPU cell (one job) has one per process."""
    from .train import resolve_base_model

    free = free_gpu_bytes()
    if free is None:
        for job in jobs:
            job["memory"] = memory_plan(job["spec"], None, None)
        return "no GPU: memory plan and check skipped"
    share, need = free // len(jobs), 0
    for job in jobs:
        model_dir, _ = resolve_base_model(job["base_model"], job["spec"], job.get("prefetched"))
        job["memory"] = memory_plan(job["spec"], model_dir, share)
        need += estimated_gpu_bytes(job["spec"], model_shape(model_dir), checkpointing=job["memory"]["enabled"])
    msg = (f"{len(jobs)} cell(s) need ~{need / 2**30:.1f} GiB (estimate, activation checkpointing "
           f"{sum(j['memory']['enabled'] for j in jobs)} of {len(jobs)}); GPU has {free / 2**30:.1f} GiB free")
    if need > 0.95 * free:
        raise RuntimeError(f"{msg}. Lower stages.<stage>.cells_per_gpu (now {len(jobs)}) or "
                           "micro_batch_size, or use a larger GPU.")
    return msg


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
    """
    import torch

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cpu = not torch.cuda.is_available()
    print(f"[pack] {plan_memory(jobs)}", flush=True)
    procs = []
    for i, job in enumerate(jobs):
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
        procs.append((job, subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT if sink else None,
                                            env=env, cwd=os.getcwd()), log))
    failed = []
    for job, proc, log in procs:
        rc = proc.wait()
        if log:
            log.close()
        print(f"[pack] {job['spec']['run_id']}: exit {rc}", flush=True)
        if rc != 0:
            failed.append(f"{job['spec']['run_id']} (exit {rc}, log {job.get('log')})")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} cells failed: {'; '.join(failed)}")


def train_one(job: dict, work_dir: str | Path) -> None:
    """One cell: in this process, or, when it asks for several GPUs, as DDP processes whose
    output joins this job's log."""
    if int(job["spec"].get("gpus", 1)) > 1:
        run_cells([{**job, "log": None}], work_dir)
        return
    from .train import train_cell

    train_cell(job["spec"], job["base_model"], job["train_file"], job["out_dir"], threads=job["threads"],
               data_source=job["data_source"], prefetched=job["prefetched"])


def main(argv: list[str] | None = None) -> int:
    from .train import train_cell

    job = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    t0 = time.time()
    train_cell(job["spec"], job["base_model"], job["train_file"], job["out_dir"], threads=job["threads"],
               data_source=job["data_source"], prefetched=job["prefetched"],
               memory=job.get("memory"))  # one process of a cell: the launcher planned its memory
    print(f"[launch] {job['spec']['run_id']} finished in {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
