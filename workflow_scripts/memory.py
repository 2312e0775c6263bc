"""GPU memory per cell: an estimate of what a cell needs, activation checkpointing only when
it would not fit otherwise, and the check that a pack of cells fits on its GPU.

Decided once, before a cell starts: by the launcher for a pack or a multi-GPU cell
(:func:`plan_memory`), by the cell itself otherwise (:func:`memory_plan`); ``train_cell``
passes the result to TRL.
"""

from __future__ import annotations

import functools
import os
import subprocess

from .model_source import resolve_base_model


@functools.lru_cache(maxsize=16)  # the cells of a pack share their base model
def model_shape(base_model: str) -> dict:
    """Parameters, hidden size and layers of a model folder (built on the meta device: no
    weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_model)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "hidden": config.hidden_size,
        "layers": config.num_hidden_layers,
        "vocab": config.vocab_size,
    }


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
    activations = (
        4 * tokens * shape["hidden"] * shape["layers"] + per_layer if checkpointing else per_layer * shape["layers"]
    )
    return int(state + activations + 8 * tokens * shape["vocab"])


def choose_checkpointing(spec: dict, shape: dict, budget_bytes: int) -> dict:
    """Activation checkpointing only when memory needs it: it recomputes every layer's
    forward in the backward pass (about a third more compute), so it is on only when the
    cell would not fit in ``budget_bytes`` (its share of the GPU's free memory) without it."""
    gib = 2**30
    without = estimated_gpu_bytes(spec, shape)
    if without <= 0.9 * budget_bytes:
        return {
            "enabled": False,
            "estimate_gib": round(without / gib, 2),
            "budget_gib": round(budget_bytes / gib, 2),
            "reason": "fits without activation checkpointing",
        }
    with_ckpt = estimated_gpu_bytes(spec, shape, checkpointing=True)
    reason = "does not fit without activation checkpointing"
    if with_ckpt > 0.9 * budget_bytes:
        reason += (
            " and may not fit with it either: lower micro_batch_size, recipe.max_length or "
            "stages.<stage>.cells_per_gpu, or use a larger GPU"
        )
    return {
        "enabled": True,
        "estimate_gib": round(with_ckpt / gib, 2),
        "without_gib": round(without / gib, 2),
        "budget_gib": round(budget_bytes / gib, 2),
        "reason": reason,
    }


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
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", visible],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return int(out.stdout.split()[0]) * 2**20  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return torch.cuda.mem_get_info(torch.cuda.current_device())[0]


def plan_memory(jobs: list[dict]) -> str:
    """Before any cell starts, once for all of them: each cell's activation checkpointing for
    its share of the GPU's free memory (``job["memory"]``), then fail if the cells cannot fit
    even so. The cells of a pack share one GPU; a multi-GPU cell (one job) has one per process."""
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
    msg = (
        f"{len(jobs)} cell(s) need ~{need / 2**30:.1f} GiB (estimate, activation checkpointing "
        f"{sum(j['memory']['enabled'] for j in jobs)} of {len(jobs)}); GPU has {free / 2**30:.1f} GiB free"
    )
    if need > 0.95 * free:
        raise RuntimeError(
            f"{msg}. Lower stages.<stage>.cells_per_gpu (now {len(jobs)}) or micro_batch_size, or use a larger GPU."
        )
    return msg
