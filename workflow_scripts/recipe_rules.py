"""Recipes TRL accepts as a config but that fail or mislead later: step 4 of
:func:`workflow_scripts.recipes.check_recipe`.

:func:`combinations` refuses, with TRL's reason, what TRL or transformers refuse only in the
trainer's ``__init__`` or at the first step and the recipe alone decides;
:func:`check_optimizer` refuses an optimizer whose package is missing (Trainer finds out only
when training starts); :func:`policy` refuses settings that would make a grid cell mean
something else (``packing``, ``auto_find_batch_size``).
"""

from __future__ import annotations

import difflib

from .memory import CHECKPOINTING_KEYS
from .recipe_fields import RecipeError, error_text

# TRL 1.16's DPOTrainer._compute_loss: any other loss type fails at the first training step.
DPO_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)
# ... its f-divergences (others fail at the first step), and the loss types that take a
# non-default one (others are refused in DPOTrainer.__init__).
F_DIVERGENCE_TYPES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
F_DIVERGENCE_LOSS_TYPES = ("sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop", "sft")


def policy(where: str, recipe: dict) -> None:
    """Settings TRL accepts that would make a grid cell mean something else."""
    if recipe.get("packing"):
        raise RecipeError(
            f"{where}.packing",
            "packing joins several training rows into one sequence, so an 'example' would become a packed "
            "sequence: train_examples, the examples_seen of run.json and the grid's per-cell example budget "
            "would count sequences, not rows, and the learning-rate/batch-size comparison needs an example "
            "to be one row. Remove packing (padding_free: true also saves the padding, without joining rows).",
        )
    if recipe.get("auto_find_batch_size"):
        raise RecipeError(
            f"{where}.auto_find_batch_size",
            "auto_find_batch_size halves the per-device batch after an out-of-memory error, so a cell "
            "would train at another effective batch size than its grid cell names. Remove it; "
            "lower micro_batch_size (accumulation keeps the effective batch) or let activation "
            "checkpointing turn on.",
        )


def combinations(where: str, kind: str, recipe: dict, args) -> None:
    """What TRL 1.16 / transformers 5 refuse only in the trainer's ``__init__`` or at the first
    step, decided by the recipe alone in this pipeline: its training rows are chat
    ``messages`` (SFT) or ``prompt``/``chosen``/``rejected`` (DPO), text only, no eval set,
    no PEFT, collator or formatting function, activation checkpointing from memory.memory_plan.
    ``args`` is the built config (its defaults count too)."""
    if args.eval_strategy != "no":
        raise RecipeError(
            f"{where}.eval_strategy",
            f"{args.eval_strategy.value!r} needs an eval set, and the "
            "pipeline trains without one (Trainer refuses it when it starts); evaluation is the "
            "evaluate rule's. Remove eval_strategy.",
        )
    if args.save_strategy == "best":
        raise RecipeError(
            f"{where}.save_strategy",
            "'best' saves on an evaluation metric, and the pipeline "
            "trains without an eval set. Remove it; resumable checkpoints are "
            f"{where.rsplit('.', 1)[0]}.checkpoint.",
        )
    if args.use_liger_kernel and (args.liger_kernel_config or {}).get("fused_linear_cross_entropy"):
        raise RecipeError(
            f"{where}.liger_kernel_config",
            "TRL's trainers refuse fused_linear_cross_entropy "
            "when they start: it replaces the model's forward, which they patch with a fused LM "
            "head. Remove it from liger_kernel_config.",
        )
    if kind == "sft":
        if args.padding_free and not args.packing and args.max_length is not None:
            set_by = "" if "max_length" in recipe else ", TRL's default"
            raise RecipeError(
                f"{where}.padding_free",
                "SFTTrainer refuses padding_free: true without packing "
                f"while max_length is set ({args.max_length}{set_by}) when it starts: padding-free "
                "batches are not truncated. Set max_length: null (rows already short enough) or "
                "remove padding_free.",
            )
        if args.completion_only_loss and not args.assistant_only_loss:
            raise RecipeError(
                f"{where}.completion_only_loss",
                "completion-only loss needs prompt/completion rows, "
                "and this pipeline's SFT rows are chat messages: TRL would silently train on every "
                "token. Set assistant_only_loss: true instead (without generation markers in the "
                "chat template the pipeline trains it as completion-only loss).",
            )
        if (args.dataset_kwargs or {}).get("skip_prepare_dataset"):
            raise RecipeError(
                f"{where}.dataset_kwargs",
                "skip_prepare_dataset: true hands SFTTrainer the raw chat "
                "rows untokenized, and its collator fails at the first batch. Remove it.",
            )
        ckpt_kwargs = args.gradient_checkpointing_kwargs or {}
        if ckpt_kwargs.get("selective"):
            key = next(
                (k for k in ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs") if k in recipe),
                "activation_checkpointing_kwargs",
            )
            if ckpt_kwargs.get("use_reentrant"):
                raise RecipeError(
                    f"{where}.{key}",
                    "SFTTrainer refuses selective: true with use_reentrant: true "
                    "when it starts (selective checkpointing is non-reentrant). Remove use_reentrant.",
                )
            if not any(recipe.get(k) is True for k in CHECKPOINTING_KEYS):
                raise RecipeError(
                    f"{where}.{key}",
                    "selective: true needs activation checkpointing on, and the "
                    "pipeline turns it on only for a cell that would not fit in GPU memory: "
                    "SFTTrainer would refuse every other cell when it starts. Add "
                    "activation_checkpointing: true, or remove selective.",
                )
    if kind == "dpo":
        losses = list(args.loss_type)
        unknown = [t for t in losses if t not in DPO_LOSS_TYPES]
        if unknown:
            close = difflib.get_close_matches(unknown[0], DPO_LOSS_TYPES, n=1, cutoff=0.6)
            raise RecipeError(
                f"{where}.loss_type",
                f"{unknown[0]!r} is not a DPO loss type of TRL, and DPOTrainer "
                "fails on it at the first step"
                + (f"; did you mean {close[0]}?" if close else f". Use {list(DPO_LOSS_TYPES)}."),
            )
        if args.f_divergence_type not in F_DIVERGENCE_TYPES:
            raise RecipeError(
                f"{where}.f_divergence_type",
                f"{args.f_divergence_type!r} is not one of "
                f"{list(F_DIVERGENCE_TYPES)}; DPOTrainer fails on it at the first step.",
            )
        if args.f_divergence_type != "reverse_kl" and not set(losses) <= set(F_DIVERGENCE_LOSS_TYPES):
            raise RecipeError(
                f"{where}.f_divergence_type",
                f"DPOTrainer refuses {args.f_divergence_type!r} with "
                f"loss_type {losses} when it starts: only {list(F_DIVERGENCE_LOSS_TYPES)} take a "
                "non-default f-divergence. Remove f_divergence_type.",
            )
        if args.use_weighting and {"aot", "aot_unpaired"} & set(losses):
            raise RecipeError(
                f"{where}.use_weighting",
                "DPOTrainer refuses WPO weighting with the 'aot' and "
                "'aot_unpaired' losses when it starts (they sort samples). Remove use_weighting.",
            )
        if "exo_pair" in losses and args.label_smoothing == 0.0:
            raise RecipeError(
                f"{where}.label_smoothing",
                "DPOTrainer refuses loss_type 'exo_pair' with "
                "label_smoothing 0 when it starts; the EXO paper recommends 1e-3.",
            )
        if args.sync_ref_model and args.precompute_ref_log_probs:
            raise RecipeError(
                f"{where}.sync_ref_model",
                "DPOTrainer refuses sync_ref_model together with "
                "precompute_ref_log_probs when it starts: precomputed reference log-probs go "
                "stale when the reference model is synchronised. Remove one of them.",
            )


def check_optimizer(where: str, args) -> None:
    """The optimizer's package is installed (Trainer finds out only when training starts)."""
    from transformers import Trainer

    try:
        Trainer.get_optimizer_cls_and_kwargs(args)
    except ImportError as e:
        raise RecipeError(f"{where}.optim", f"{args.optim.value!r} cannot be used here: {error_text(e)}") from None
    except ValueError as e:  # also what some say when their package is missing
        if "install" in str(e).lower():
            raise RecipeError(f"{where}.optim", f"{args.optim.value!r} cannot be used here: {error_text(e)}") from None
