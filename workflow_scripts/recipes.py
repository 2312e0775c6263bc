"""A stage's TRL recipe, checked when the config is read instead of in a GPU job.

``stages.<stage>.recipe`` is passed to ``trl.SFTConfig`` (an ``sft`` stage) or
``trl.DPOConfig`` (a ``dpo`` stage) by ``trl_config.sft_config_kwargs``. Without this check a typo
(``warmup_stepz``), an option of the other trainer (``max_seq_length`` in a DPO recipe) or a
bad value (``lr_scheduler_type: cosinus``) passes the config check and fails inside a
SLURM job, which is then retried. :func:`check_recipe` refuses them before any job:

1. every key is a field of the stage kind's TRL config class, or one the pipeline pops
   before building it (``PIPELINE_KEYS``); a wrong key is refused with the closest name;
2. values of a plain type (bool, int, float, str, dict, list) have it, and values with a
   fixed set of choices are one of them (1 and 2: :mod:`workflow_scripts.recipe_fields`);
3. the config object is built, with the recipe and the values the pipeline sets per cell
   (``trl_config.sft_config_kwargs``, on the CPU, placeholders for the grid's numbers), so
   ``__post_init__`` checks the values (scheduler, optimizer, strategies, ...);
4. combinations that TRL or transformers refuse only later, in the trainer's ``__init__`` or
   at the first step, and that the recipe alone decides, are refused with TRL's reason; so
   are recipes that would make a grid cell mean something else (``packing``,
   ``auto_find_batch_size``). Both: :mod:`workflow_scripts.recipe_rules`.

Importing TRL costs seconds (torch, transformers), and Snakemake reads the config on every
invocation, so ``trl`` is imported only inside the check, a stage is checked once (not per
cell), and a recipe that passed is remembered (:mod:`workflow_scripts.recipe_cache`: in this
process, and in a file under the user's cache keyed by a hash of everything the verdict
depends on). Refusals are never remembered.

Errors are :class:`RecipeError` (a ``ValueError``) with a message naming
``stages.<stage>.recipe.<key>``; the config checks (``config_checks.py``) raise them as
``ConfigError``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

from . import recipe_cache
from .grid import stage_kind
from .memory import CHECKPOINTING_KEYS
from .recipe_fields import PIPELINE_KEYS, RecipeError, check_fields, error_text
from .recipe_rules import check_optimizer, combinations, policy

CONFIG_CLASSES = {"sft": "SFTConfig", "dpo": "DPOConfig"}

# Placeholders for what the grid sets per cell (their own checks are the schema's and
# config_checks.check_semantics'); only their types and presence matter to the TRL config.
PLACEHOLDER_CELL = {
    "learning_rate": 1e-5,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "seed": 0,
}
CPU = {"use_cpu": True, "bf16": False, "fp16": False}


def check_recipe(stage_name: str, stage: dict, *, cache: bool = True) -> None:
    """Refuse ``stage["recipe"]`` if TRL would refuse it when the stage's cells train.

    ``stage`` is the stage's config (defaults merged): the recipe, and ``train_examples``,
    ``train_steps`` and ``checkpoint``, which decide the keyword arguments the pipeline adds.
    With ``cache``, a recipe that passed before with the same libraries and code is not
    checked again (no ``trl`` import)."""
    kind = stage_kind(stage_name)
    recipe = dict(stage.get("recipe") or {})
    kwargs = _pipeline_kwargs(stage, recipe, output_dir="<temporary>")
    fingerprint = recipe_cache.fingerprint(kind, recipe, kwargs) if cache else None
    if fingerprint and recipe_cache.passed(fingerprint):
        return
    if not _check(stage_name, kind, recipe, stage):
        return  # trl is not installed here: the job checks it
    if fingerprint:
        recipe_cache.remember(fingerprint, {"stage_kind": kind, "recipe": recipe})


# ---- the check ----------------------------------------------------------------------------


def _check(stage_name: str, kind: str, recipe: dict, stage: dict) -> bool:
    """Raise RecipeError for the first problem; False when trl cannot be imported here."""
    where = f"stages.{stage_name}.recipe"
    value = recipe.get("attn_implementation")
    if "attn_implementation" in recipe and not isinstance(value, str):
        raise RecipeError(
            f"{where}.attn_implementation",
            f"{value!r} is not a string; give an attention "
            "implementation of transformers, e.g. sdpa, eager or flash_attention_2.",
        )
    with _quiet():
        try:
            import trl
        except ImportError as e:
            print(
                f"[config] recipes not checked: trl cannot be imported here ({e}); a wrong recipe key "
                "or value fails when its cell trains.",
                file=sys.stderr,
            )
            return False
        cls = getattr(trl, CONFIG_CLASSES[kind])
        other = getattr(trl, CONFIG_CLASSES["dpo" if kind == "sft" else "sft"])
        trl_recipe = {k: v for k, v in recipe.items() if k not in PIPELINE_KEYS}
        check_fields(where, kind, cls, other, trl_recipe, trl.__version__)
        policy(where, trl_recipe)
        with tempfile.TemporaryDirectory(prefix="lrbs-recipe-check-") as tmp:
            # the config only records output_dir (nothing is written); the folder goes anyway
            args = _build(where, cls, stage, recipe, os.path.join(tmp, "trainer"))
            combinations(where, kind, recipe, args)
            if "optim" in trl_recipe:
                check_optimizer(where, args)
    return True


def _pipeline_kwargs(stage: dict, recipe: dict, output_dir: str) -> dict:
    """What train.train_cell passes to the TRL config for a cell of this stage, on the CPU,
    with placeholders for the grid's numbers."""
    from .trl_config import sft_config_kwargs

    spec = {
        "recipe": recipe,
        **PLACEHOLDER_CELL,
        "checkpoint": stage.get("checkpoint"),
        "max_steps": 10 if (stage.get("train_examples") or stage.get("train_steps")) else None,
    }
    kwargs = sft_config_kwargs(spec, output_dir, CPU)
    forced = [recipe[k] for k in CHECKPOINTING_KEYS if k in recipe]
    kwargs["activation_checkpointing"] = bool(forced[0]) if forced else False  # memory.memory_plan's choice
    return kwargs


def _build(where: str, cls, stage: dict, recipe: dict, output_dir: str):
    """The TRL config object; a refusal names the recipe key(s) it comes from."""
    kwargs = _pipeline_kwargs(stage, recipe, output_dir)
    try:
        return cls(**kwargs)
    except Exception as e:  # noqa: BLE001 - any refusal of the config is a recipe error
        error = e
    trl_recipe = {k: v for k, v in recipe.items() if k not in PIPELINE_KEYS}
    bare = _pipeline_kwargs(stage, {}, output_dir)
    for key, value in trl_recipe.items():  # the key that fails on its own
        try:
            cls(**{**bare, key: value})
        except Exception as e:  # noqa: BLE001
            raise RecipeError(
                f"{where}.{key}", f"trl.{cls.__name__} refuses {key}: {value!r}: {error_text(e)}"
            ) from None
    named = [k for k in trl_recipe if re.search(rf"\b{re.escape(k)}\b", str(error))] or list(trl_recipe)
    raise RecipeError(
        f"{where}.{named[0]}",
        f"trl.{cls.__name__} refuses the recipe's {', '.join(named)} together: {error_text(error)}",
    ) from None


# ---- quiet, side-effect free --------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """No warnings or log lines from the libraries, and no trace left in this process: the
    environment and accelerate's device state (every TrainingArguments sets one up) are put
    back as they were, so a Snakemake or pytest process that trains later starts as before."""
    import logging
    import warnings

    environ = dict(os.environ)
    states = {name: dict(state) for name, state in _accelerate_states().items()}
    levels = {name: logging.getLogger(name).level for name in ("transformers", "trl", "accelerate", "torch")}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in levels:
                logging.getLogger(name).setLevel(logging.ERROR)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for k in set(os.environ) - set(environ):
            del os.environ[k]
        os.environ.update({k: v for k, v in environ.items() if os.environ.get(k) != v})
        for name, state in _accelerate_states().items():  # empty if accelerate came in with trl
            state.clear()
            state.update(states.get(name, {}))


def _accelerate_states() -> dict:
    """accelerate's process-wide device state (shared by all instances), once imported."""
    module = sys.modules.get("accelerate.state")
    if module is None:
        return {}
    return {"partial": module.PartialState._shared_state, "accelerator": module.AcceleratorState._shared_state}
