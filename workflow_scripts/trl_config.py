"""What a cell hands TRL: its precision and attention kernel, the keyword arguments of
``trl.SFTConfig`` / ``DPOConfig`` (the stage's recipe, then what the grid fixes per cell),
its rows in the form the trainer trains, and the trainer itself; and where the trainer
reports its training curve (``report_to``: the study's ``tracking``, read at run time and
never part of the spec, unless the recipe sets it), with the environment its callbacks read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path

from .memory import CHECKPOINTING_KEYS

# report_to backend -> (the modules any one of which serves it, the pip extra that installs it)
TRACKERS = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "trackio": (("trackio",), "trackio"),
    "wandb": (("wandb",), "wandb"),
}


def choose_precision() -> dict:
    """bf16 mixed precision on a GPU that supports it, fp32 elsewhere; the user never sets this.

    Weights and optimizer states stay fp32 in both cases (``bf16`` is autocast): in pure bf16
    most updates at this study's small learning rates round away (one AdamW step at lr 8e-7
    changes 0.3% of SmolLM2-135M's bf16 weights), which would confound the ratio effect."""
    import torch

    if torch.cuda.is_available():
        return {
            "use_cpu": False,
            "bf16": bool(torch.cuda.is_bf16_supported()),
            "fp16": False,
            "device": torch.cuda.get_device_name(0),
        }
    return {"use_cpu": True, "bf16": False, "fp16": False, "device": "cpu"}


def attention_implementation(precision: dict) -> str:
    """PyTorch SDPA (its flash / memory-efficient kernels on a GPU). FlashAttention 2 wants
    16-bit weights, and the weights here stay fp32 under bf16 autocast: a recipe may still ask
    for it with ``attn_implementation: flash_attention_2``."""
    return "sdpa"


def as_prompt_completion(row: dict) -> dict:
    """A single-answer chat row -> conversational prompt/completion (the assistant turn is the
    completion). A row with several assistant turns is refused: as a prompt/completion pair all
    but its last answer would go unscored, where open-instruct trains every assistant turn."""
    messages = row["messages"]
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message of a training row must be the assistant's")
    if sum(m["role"] == "assistant" for m in messages) > 1:
        raise ValueError(
            "a training row has several assistant turns, and this chat template has no {% generation %} "
            "markers, so only the last one could be trained. Set models[].chat_template: chatml (or a Jinja "
            "template with generation markers) so that assistant_only_loss trains every assistant turn."
        )
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def sft_config_kwargs(spec: dict, output_dir: str, precision: dict, tracking: dict | None = None) -> dict:
    """Keyword arguments for trl.SFTConfig / DPOConfig: recipe first, then what the cell fixes.
    ``tracking`` is the study's (``config.tracking_settings``): it sets ``report_to`` (and the
    run's name and trackio project) where the recipe sets no ``report_to``."""
    kw = {
        # TRL turns checkpointing on by default (5x slower on a small model); train_cell sets
        # it from memory.memory_plan, which also reads the recipe's value
        "activation_checkpointing": False,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 10,
        "logging_first_step": True,  # the step-1 loss is the baseline of the divergence check
        "disable_tqdm": True,  # one log line per logging step reads better in a job log
        "dataloader_num_workers": 0,
    }
    if not precision["use_cpu"]:
        kw["optim"] = "adamw_torch_fused"  # one fused kernel per step on a GPU (recipe may override)
    recipe = dict(spec["recipe"])
    recipe.pop("attn_implementation", None)  # a model-loading option (train_cell), not a TRL argument
    for key in CHECKPOINTING_KEYS:  # decided by memory.memory_plan
        recipe.pop(key, None)
    kw.update(recipe)
    trackers = [] if "report_to" in recipe else report_to(spec, tracking)[0]
    if trackers:  # the study's tracking: the spec does not hold it
        kw["report_to"] = trackers
        kw.setdefault("run_name", spec["run_id"])
        if "trackio" in trackers:
            kw.setdefault("project", tracking.get("project") or tracking.get("study") or "huggingface")
    kw.update(
        {
            "output_dir": output_dir,
            "learning_rate": spec["learning_rate"],
            "per_device_train_batch_size": spec["per_device_train_batch_size"],
            "gradient_accumulation_steps": spec["gradient_accumulation_steps"],
            "seed": spec["seed"],
            "data_seed": spec["seed"],
            "use_cpu": precision["use_cpu"],
            "bf16": precision["bf16"],
            "fp16": precision["fp16"],
        }
    )
    if spec.get("max_steps"):
        kw["max_steps"] = spec["max_steps"]
    ckpt = spec.get("checkpoint") or {}
    if ckpt.get("every_steps"):  # resumable: a killed or preempted job continues from the last one
        kw.update(
            {
                "save_strategy": "steps",
                "save_steps": ckpt["every_steps"],
                "save_total_limit": ckpt.get("keep", 2),
                "save_only_model": False,
            }
        )
    return kw


def backends(value) -> list[str]:
    """A ``report_to`` value as a list of backends: ``none`` (or nothing) is []."""
    if value in (None, "none"):
        return []
    return [value] if isinstance(value, str) else [v for v in value if v != "none"]


def report_to(spec: dict, tracking: dict | None) -> tuple[list[str], str]:
    """The backends a cell reports its training curve to, and the config key that asks.

    A recipe's ``report_to`` wins: it is part of the cell's spec, so setting it retrains the
    cell. Otherwise the study's ``tracking.report_to`` (``config.tracking_settings``), which
    a training job reads when it starts: watching a curve changes nothing a cell computes."""
    if "report_to" in spec["recipe"]:
        return backends(spec["recipe"]["report_to"]), f"stages.{spec.get('stage')}.recipe.report_to"
    return backends((tracking or {}).get("report_to")), "tracking.report_to"


def check_trackers(spec: dict, tracking: dict | None) -> list[str]:
    """The cell's backends (:func:`report_to`), each one's package installed: otherwise a
    RuntimeError at the start of the cell, naming the key and the pip extra, rather than
    transformers' error once the model is loaded."""
    trackers, key = report_to(spec, tracking)
    for name in trackers:
        modules, extra = TRACKERS.get(name, ((), None))
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise RuntimeError(
                f"{key} asks for {name}, but {' or '.join(modules)} is not installed in the Python the "
                f"training job runs ({sys.executable}). Install the extra where the jobs run: "
                f"pip install -e '.[{extra}]' (docs/tracking.md), or set {key}: none."
            )
    return trackers


def tracking_env(
    trackers: list[str], out_dir, tracking: dict | None = None, attempt: str = "run", environ=os.environ
) -> dict:
    """The environment variables the reporting callbacks read, for a cell whose outputs are in
    ``out_dir``: TensorBoard's events (one folder per ``attempt``, the job's start time: a
    retrained or resumed cell's curve is a run of its own, not drawn over the last one) and
    W&B's runs in the cell's ``tracking/`` folder, W&B offline unless ``WANDB_MODE`` is set
    (compute nodes have no internet: ``wandb sync`` later), trackio in the study's folder
    (``TRACKIO_DIR`` unless set), local."""
    folder = Path(out_dir).resolve() / "tracking"
    tracking = tracking or {}
    if "all" in trackers:  # transformers' "all": every installed integration
        trackers = [t for t, (mods, _) in TRACKERS.items() if any(importlib.util.find_spec(m) for m in mods)]
    env = {}
    if "tensorboard" in trackers:  # transformers 5 reads this, not TrainingArguments.logging_dir
        env["TENSORBOARD_LOGGING_DIR"] = str(folder / "tensorboard" / attempt)
    if "wandb" in trackers:
        env["WANDB_DIR"] = str(folder)  # wandb adds wandb/offline-run-<time>-<id>/
        env["WANDB_MODE"] = environ.get("WANDB_MODE") or "offline"
        project = tracking.get("project") or environ.get("WANDB_PROJECT") or tracking.get("study")
        if project:
            env["WANDB_PROJECT"] = project
    if "trackio" in trackers:  # read when trackio is imported (the trainer's construction)
        env["TRACKIO_DIR"] = environ.get("TRACKIO_DIR") or tracking.get("trackio_dir") or str(folder / "trackio")
    return env


@contextlib.contextmanager
def environment(env: dict):
    """``env`` set in ``os.environ`` inside the block, the previous values restored after it."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_trainer(kind: str, model, tokenizer, rows: list[dict], kwargs: dict, callbacks: list):
    """TRL's trainer for a stage kind. DPO's reference model is a frozen copy of ``model``
    (the parent SFT cell), which is what TRL builds when ``ref_model`` is None."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    dataset = Dataset.from_list(rows)
    if kind == "sft":
        return SFTTrainer(
            model=model,
            args=SFTConfig(**kwargs),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    if kind == "dpo":
        return DPOTrainer(
            model=model,
            ref_model=None,
            args=DPOConfig(**kwargs),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    raise ValueError(f"unknown stage kind {kind!r}")
