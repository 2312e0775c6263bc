"""What a cell hands TRL: its precision and attention kernel, the keyword arguments of
``trl.SFTConfig`` / ``DPOConfig`` (the stage's recipe, then what the grid fixes per cell),
its rows in the form the trainer trains, and the trainer itself."""

from __future__ import annotations

from .memory import CHECKPOINTING_KEYS


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


def sft_config_kwargs(spec: dict, output_dir: str, precision: dict) -> dict:
    """Keyword arguments for trl.SFTConfig / DPOConfig: recipe first, then what the cell fixes."""
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
