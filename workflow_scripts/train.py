"""Train one grid cell with TRL: SFTTrainer for an sft stage, DPOTrainer for a dpo stage.

``train_cell(spec, ...)`` takes the dict made by ``spec.training_spec`` (the rule's
params), so everything that defines a cell arrives in one place and is written back out to
``run.json`` unchanged, beside what the run measured.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path

from . import chat_template
from .callbacks import checkpoint_fault_callback, divergence_callback, progress_callback
from .io import atomic_write_json, read_jsonl
from .memory import free_gpu_bytes, memory_plan
from .model_source import resolve_base_model
from .provenance import git_commit, package_versions, sha256_file
from .trl_config import (
    as_prompt_completion,
    attention_implementation,
    check_trackers,
    choose_precision,
    environment,
    make_trainer,
    sft_config_kwargs,
    tracking_env,
)


def job_environment() -> dict:
    """Where the job ran: host, SLURM job and the GPUs it was given."""
    keys = (
        "SLURM_JOB_ID",
        "SLURM_JOB_PARTITION",
        "SLURM_ARRAY_TASK_ID",
        "CUDA_VISIBLE_DEVICES",
        "LOCAL_RANK",
        "WORLD_SIZE",
    )
    return {"hostname": socket.gethostname(), **{k: os.environ.get(k) for k in keys}}


def check_parent(base_model: str | Path, spec: dict) -> None:
    """A DPO cell trains only on top of a parent SFT cell that finished: a diverged parent's
    weights are saved too, and a DPO grid on them would look like a result."""
    parent = spec.get("parent_run_id")
    if not parent:
        return
    run_json = Path(base_model).parent / "run.json"
    status = json.loads(run_json.read_text()).get("status", "ok") if run_json.exists() else "missing"
    if status != "ok":
        raise RuntimeError(
            f"DPO cell {spec['run_id']} refuses its parent SFT cell {parent}: the parent's run.json status is "
            f"{status!r} ({run_json}), not 'ok'. Name a parent cell that trained to the end in "
            f"stages.{spec['stage']}.parent."
        )


def last_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest complete checkpoint-N folder (Trainer writes trainer_state.json last)."""
    found = [p for p in Path(trainer_dir).glob("checkpoint-*") if _step(p) >= 0 and (p / "trainer_state.json").exists()]
    return max(found, key=_step, default=None)


def delete_checkpoints(out_dir: str | Path, spec: dict, status: str) -> dict:
    """Delete a finished cell's trainer checkpoints (``trainer/checkpoint-N/``: fp32 weights
    and AdamW state, 12 bytes a parameter each); returns run.json's record of it.

    Only a cell that trained to the end (``ok``): its ``model/`` is the result, and a DPO stage
    starts from its parent's ``model/`` (and reads its ``run.json``), never from ``trainer/``.
    A diverged cell keeps them (to resume or inspect it), and so does every cell of a stage
    that sets ``checkpoint.keep_after_training``. Oldest first, each renamed before it is
    removed: an interrupted clean-up leaves the newest checkpoint whole for as long as it
    can and never a half-deleted folder that a rerun would resume from."""
    if status != "ok" or (spec.get("checkpoint") or {}).get("keep_after_training"):
        reason = "checkpoint.keep_after_training" if status == "ok" else f"status {status!r}"
        return {"deleted": [], "freed_bytes": 0, "kept": reason}
    trainer_dir = Path(out_dir) / "trainer"
    found = [*trainer_dir.glob(".deleting-checkpoint-*"), *trainer_dir.glob("checkpoint-*")]
    found = sorted((p for p in found if p.is_dir()), key=lambda p: (p.name[0] != ".", _step(p)))
    freed = sum(f.stat().st_size for p in found for f in p.rglob("*") if f.is_file() and not f.is_symlink())
    for path in found:
        doomed = path if path.name.startswith(".") else path.with_name(f".deleting-{path.name}")
        os.replace(path, doomed)
        shutil.rmtree(doomed)
    return {"deleted": [p.name for p in found], "freed_bytes": freed, "kept": None}


def _step(path: Path) -> int:
    """The step N of a ``checkpoint-N`` folder (-1 for any other name)."""
    tail = path.name.split("-")[-1]
    return int(tail) if tail.isdigit() else -1


def train_cell(
    spec: dict,
    base_model: str,
    train_file: str,
    out_dir: str | Path,
    *,
    threads: int = 1,
    data_source: str | Path | None = None,
    prefetched: str | Path | None = None,
    memory: dict | None = None,
    tracking: dict | None = None,
) -> dict:
    """Train ``base_model`` on ``train_file`` with the cell's settings.

    ``train_file`` is JSONL of chat ``messages`` (SFT) or ``prompt``/``chosen``/``rejected``
    conversations (DPO, whose ``base_model`` is the parent SFT cell's model).
    ``data_source`` is the JSON record of where that file came from (dataset id, revision,
    fingerprint); it is copied into ``run.json``. ``prefetched`` is the login node's record of
    a hub base model (the commit to load from the cache). ``memory`` is the launcher's plan
    for a cell that shares a GPU or spans several (``memory.plan_memory``); without it the
    cell plans for the free memory of its own GPU. ``tracking`` is the study's
    (``config.tracking_settings``): where the training curve is reported, not part of the spec.

    Writes ``out_dir/model`` (model + tokenizer), ``out_dir/log_history.json`` and
    ``out_dir/run.json``; returns the run record.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback

    started = dt.datetime.now(dt.UTC)
    t0 = time.time()
    torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    precision = choose_precision()
    kind = spec.get("stage_kind", "sft")
    check_parent(base_model, spec)
    trackers = check_trackers(spec, tracking)  # a missing tracker package fails here, not in the Trainer
    load_from, hub_model = resolve_base_model(base_model, spec, prefetched)
    tokenizer = AutoTokenizer.from_pretrained(load_from)
    attention = spec["recipe"].get("attn_implementation") or attention_implementation(precision)
    # fp32 master weights; bf16 only as autocast (choose_precision)
    model = AutoModelForCausalLM.from_pretrained(load_from, dtype=torch.float32, attn_implementation=attention)
    parameters = model.num_parameters()  # as loaded, before training: results/tables/models.csv
    # the template the cell trains with, saved with its tokenizer (so evaluation uses it too),
    # and the end of a turn as EOS of tokenizer and generation config
    template = chat_template.apply(
        tokenizer,
        model,
        chat_template.from_spec(spec.get("chat_template")),
        key=f"models[].chat_template (model {spec.get('model')!r})",
    )
    print(
        f"[train] chat template {template['chat_template']} (sha256 {template['sha256'][:12]}), "
        f"EOS {template['eos_token']!r}",
        flush=True,
    )
    rows = read_jsonl(train_file)
    kwargs = sft_config_kwargs(spec, str(out_dir / "trainer"), precision, tracking)
    if memory is None:
        memory = memory_plan(spec, load_from, None if precision["use_cpu"] else free_gpu_bytes())
    kwargs["activation_checkpointing"] = memory["enabled"]
    print(
        f"[train] activation checkpointing {'on' if memory['enabled'] else 'off'}: {memory['reason']}"
        + (f" (~{memory['estimate_gib']} GiB of {memory['budget_gib']} GiB)" if "budget_gib" in memory else ""),
        flush=True,
    )
    if kind == "sft" and kwargs.get("assistant_only_loss") and "{% generation" not in (tokenizer.chat_template or ""):
        # e.g. SmolLM2's template: no {% generation %} tags, so TRL cannot mask the prompt;
        # the same loss is TRL's completion-only loss on prompt/completion conversations
        rows = [as_prompt_completion(r) for r in rows]
        kwargs["assistant_only_loss"] = False
        kwargs["completion_only_loss"] = True
        print(
            "[train] chat template has no generation tags: training on prompt/completion pairs "
            "with completion-only loss (same tokens as assistant-only loss)",
            flush=True,
        )
    divergence = divergence_callback(spec["divergence"]["max_loss_factor"])
    # the reporting callbacks read their folders when built (TensorBoard, trackio) and when
    # training begins (W&B)
    env = tracking_env(trackers, out_dir, tracking, attempt=started.strftime("%Y%m%dT%H%M%SZ"))
    if trackers:
        print(f"[train] reporting to {', '.join(trackers)}: {env}", flush=True)
    with environment(env):
        trainer = make_trainer(
            kind, model, tokenizer, rows, kwargs, [progress_callback(), divergence, checkpoint_fault_callback()]
        )
    trainer.remove_callback(PrinterCallback)  # replaced by the progress line
    args = trainer.args
    world = max(1, args.world_size)
    print(
        f"[train] {spec['run_id']}: lr={spec['learning_rate']:g} effective_bs={spec['effective_batch_size']} "
        f"(micro {args.per_device_train_batch_size} x accum {args.gradient_accumulation_steps} x {world} proc) "
        f"steps={args.max_steps} device={precision['device']} bf16={precision['bf16']}",
        flush=True,
    )
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    if effective != spec["effective_batch_size"]:  # e.g. launched on more processes than planned
        raise RuntimeError(f"effective batch size {effective} != requested {spec['effective_batch_size']}")
    resume = last_checkpoint(out_dir / "trainer") if kwargs.get("save_strategy") == "steps" else None
    if resume:
        print(
            f"[train] resuming from {resume} (step {resume.name.split('-')[-1]}): "
            "weights, optimizer, scheduler, RNG and data position restored",
            flush=True,
        )
    with environment(env):
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    steps = trainer.state.global_step
    # weights go to a hidden folder first and are renamed into place: a job killed while
    # saving leaves no folder that looks like a finished model
    model_dir, partial = out_dir / "model", out_dir / ".model.partial"
    main_process = trainer.is_world_process_zero()  # with DDP, one process writes the outputs
    if main_process:
        shutil.rmtree(partial, ignore_errors=True)
    trainer.save_model(str(partial))  # every process calls it; only the main one writes
    if not main_process:
        return {"run_id": spec["run_id"], "rank": int(os.environ.get("RANK", 0))}
    tokenizer.save_pretrained(str(partial))
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(partial, model_dir)
    history = trainer.state.log_history
    atomic_write_json(out_dir / "log_history.json", history)
    trl_config = {"class": type(args).__name__, **json.loads(args.to_json_string())}
    losses = [h["loss"] if math.isfinite(h["loss"]) else str(h["loss"]) for h in history if "loss" in h]
    record = {
        "run_id": spec["run_id"],
        "spec": spec,
        "base_model": str(base_model),
        "base_model_hub": hub_model,
        "parameters": parameters,
        "train_file": str(train_file),
        "train_file_sha256": sha256_file(train_file),
        "train_rows": len(rows),
        "data_source": json.loads(Path(data_source).read_text()) if data_source else None,
        "loss_on": "preference pairs"
        if kind == "dpo"
        else (
            "completion"
            if kwargs.get("completion_only_loss")
            else ("assistant turns" if kwargs.get("assistant_only_loss") else "all tokens")
        ),
        "optimizer_steps": steps,
        "resumed_from_step": int(resume.name.split("-")[-1]) if resume else None,
        "examples_seen": steps * effective,
        "precision": precision,
        "threads": threads,
        "attn_implementation": attention,
        "weights_dtype": "float32",
        "activation_checkpointing": memory,
        "processes": world,
        "train_runtime_s": round(result.metrics.get("train_runtime", time.time() - t0), 3),
        "wall_s": round(time.time() - t0, 3),
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "started": started.isoformat(),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "chat_template": template,
        # the keys the pipeline set, and every field of the TRL config as it was resolved
        # (gradient clipping, Adam betas and epsilon, loss settings, ...): what was trained
        "sft_config": {k: v for k, v in trl_config.items() if k in sft_config_kwargs(spec, "", precision, tracking)},
        "trl_config": trl_config,
        "tracking": {"report_to": trackers, "environment": env},  # where the curve went (not the spec)
        "environment": job_environment(),
        "versions": package_versions(),
        "git": git_commit(),
        "status": "diverged" if divergence.diverged else "ok",
        "diverged": divergence.diverged,
    }
    # checkpoints go before run.json is written: a job killed in between reruns (and resumes
    # from the newest checkpoint while it is still whole) instead of leaving them undeleted
    record["checkpoints"] = delete_checkpoints(out_dir, spec, record["status"])
    if record["checkpoints"]["deleted"]:
        print(
            f"[train] deleted {len(record['checkpoints']['deleted'])} trainer checkpoint(s), "
            f"{record['checkpoints']['freed_bytes'] / 1e9:.2f} GB (keep them: checkpoint.keep_after_training)",
            flush=True,
        )
    atomic_write_json(out_dir / "run.json", record)
    print(f"[train] done in {record['wall_s']:.1f}s, loss {record['first_loss']} -> {record['final_loss']}", flush=True)
    return record
