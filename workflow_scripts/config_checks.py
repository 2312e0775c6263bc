"""The checks a study config must pass beyond its schema, before any rule runs: names,
grids, batch sizes, recipes, datasets, tasks and metrics, paths. Each failure is a
:class:`ConfigError` naming the key and the fix."""

from __future__ import annotations

import os
from pathlib import Path

from . import chat_template
from .builtin_tasks import BUILTINS, builtin_metrics
from .config_schema import ConfigError
from .grid import stage_kind
from .memory import CHECKPOINTING_KEYS
from .model_source import is_local_path
from .numbers import canonical
from .recipes import RecipeError, check_recipe
from .spec import split_batch
from .units import check_analysis

# Metrics each synthetic generator's lm-eval task reports (see lmeval_tasks.py).
SYNTHETIC_METRICS = {
    "arithmetic": ["exact_match,strict-match", "exact_match,flexible-extract"],
    "compare": ["acc,none", "acc_norm,none"],
    "sequence": ["acc,none", "acc_norm,none"],
    "format": ["prompt_level_strict_acc,none"],
}

# Set per cell by the grid and the pipeline; a recipe that sets them is an error.
GRID_OWNED_RECIPE_KEYS = {
    "learning_rate": "{where}.grid (ratios or learning_rates)",
    "per_device_train_batch_size": "{where}.micro_batch_size",
    "gradient_accumulation_steps": "{where}.grid.batch_sizes (accumulation is derived)",
    "seed": "{where}.seeds",
    "data_seed": "{where}.seeds",
    "output_dir": "nothing: the pipeline sets results/runs/<run id>/",
    "max_steps": "{where}.train_examples or {where}.train_steps",
    "use_cpu": "nothing: the device is chosen at run time",
    "bf16": "nothing: bf16 is used on GPUs that support it, fp32 on CPU",
    "fp16": "nothing: bf16 is used on GPUs that support it, fp32 on CPU",
}


def check_writable_dir(path: Path, key: str) -> None:
    """Create ``path`` if needed and prove a file can be written there (root ignores modes)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"config error at {key}: cannot write to {str(path)!r} ({e.strerror or e}). Give a folder you can write to."
        ) from None


def check_semantics(cfg: dict, base_dir: Path) -> None:
    if cfg.get("cache_dir"):
        check_writable_dir(base_dir / os.path.expanduser(cfg["cache_dir"]), "cache_dir")
    names = [m["name"] for m in cfg["models"]]
    for name in set(names):
        if names.count(name) > 1:
            raise ConfigError(f"config error at models: the name {name!r} is used twice; model names must be unique.")
    for i, m in enumerate(cfg["models"]):
        mid = m.get("id")
        if mid and is_local_path(mid) and not (base_dir / os.path.expanduser(mid)).exists():
            raise ConfigError(
                f"config error at models[{i}].id: local model directory {mid!r} does not exist. "
                "Fix the path, or give a hub id such as HuggingFaceTB/SmolLM2-135M."
            )
        try:
            chat_template.resolve(m, base_dir, key=f"models[{i}].chat_template")
        except chat_template.ChatTemplateError as e:
            raise ConfigError(str(e)) from None
        if (
            mid
            and chat_template.choice_of(m) == chat_template.TOKENIZER
            and chat_template.known_to_lack_template(
                str(base_dir / mid) if is_local_path(mid) else mid, m.get("revision")
            )
        ):
            raise ConfigError(
                f"config error at models[{i}].chat_template: the tokenizer of {mid!r} has no chat "
                "template (a base model). Set chat_template: chatml for SmolLM2-style models, or a "
                "Jinja file."
            )
        if "build" in m and chat_template.choice_of(m) != chat_template.TOKENIZER:
            raise ConfigError(
                f"config error at models[{i}].chat_template: a built tiny model has its own "
                "word-level template and tokens; remove chat_template."
            )

    for stage_name, stage in cfg["stages"].items():
        where = f"stages.{stage_name}"
        kind = stage_kind(stage_name)
        if kind == "sft" and "parent" in stage:
            raise ConfigError(
                f"config error at {where}.parent: only a DPO stage has a parent cell; remove it, or name the stage dpo."
            )
        own_parents = [m for m in cfg["models"] if "parent" in (_own(m, stage_name) or {})]
        if kind == "dpo":
            lacking = [m["name"] for m in cfg["models"] if _own(m, stage_name) is not False and m not in own_parents]
            if "parent" not in stage and lacking:
                raise ConfigError(
                    f"config error at {where}.parent: a DPO stage trains on top of one SFT cell; "
                    "add parent: {ratio: ..., batch_size: ..., seed: ...} naming it"
                    f" (models without their own models[].stages.{stage_name}.parent: {lacking})."
                )
            if "parent" in stage:
                _check_parent_stage(cfg, stage["parent"], f"{where}.parent")
        _check_grid(stage, stage["grid"], where, f"{where}.grid")
        dup_seeds = sorted({s for s in stage["seeds"] if stage["seeds"].count(s) > 1})
        if dup_seeds:
            raise ConfigError(f"config error at {where}.seeds: duplicate seed(s) {dup_seeds}.")
        gpus = stage.get("gpus", 1)
        if stage.get("cells_per_gpu", 1) > 1 and gpus > 1:
            raise ConfigError(
                f"config error at {where}.cells_per_gpu: packing several cells on one GPU and "
                f"training one cell on several GPUs ({where}.gpus = {gpus}) exclude each other; "
                "set one of them to 1."
            )
        for key, owner in GRID_OWNED_RECIPE_KEYS.items():
            if key in stage.get("recipe", {}):
                owner = owner.format(where=where)
                raise ConfigError(
                    f"config error at {where}.recipe.{key}: this is set per cell by {owner}; remove it from the recipe."
                )
        for key in CHECKPOINTING_KEYS:
            value = stage.get("recipe", {}).get(key)
            if key in stage.get("recipe", {}) and not isinstance(value, bool):
                raise ConfigError(
                    f"config error at {where}.recipe.{key}: {value!r} is not true or false. "
                    "Set true or false to force it, or leave the key out: the pipeline then "
                    "turns it on only when a cell would not fit in GPU memory."
                )
        try:  # every key a TRL argument, the values and combinations TRL accepts (once per stage)
            check_recipe(stage_name, stage)
        except RecipeError as e:
            raise ConfigError(str(e)) from None
        ds = stage["dataset"]
        if ds["source"] == "hub" and not ds.get("id"):
            example = (
                "allenai/tulu-3-sft-mixture" if kind == "sft" else "allenai/llama-3.1-tulu-3-8b-preference-mixture"
            )
            raise ConfigError(f"config error at {where}.dataset.id: a hub dataset needs an id, e.g. {example}.")
        if ds["source"] == "synthetic" and not any(t.get("synthetic") for t in cfg["tasks"].values()):
            raise ConfigError(
                f"config error at {where}.dataset.source: 'synthetic' training data is drawn "
                "from the synthetic tasks, but no task sets 'synthetic:'."
            )
        if stage.get("train_examples") and stage.get("train_steps"):
            raise ConfigError(
                f"config error at {where}.train_steps: set train_examples (examples fixed, "
                "steps vary with batch size) or train_steps (steps fixed), not both."
            )
        if not (stage.get("train_examples") or stage.get("train_steps")) and "num_train_epochs" not in stage.get(
            "recipe", {}
        ):
            raise ConfigError(
                f"config error at {where}.train_examples: set train_examples (examples per "
                f"cell), train_steps (steps per cell) or {where}.recipe.num_train_epochs."
            )

    check_model_stages(cfg)
    check_analysis(cfg["tasks"], cfg.get("analysis"))  # analysis.task_groups and .primary

    for name, task in cfg["tasks"].items():
        gen = task.get("synthetic")
        if gen and task["metric"] not in SYNTHETIC_METRICS[gen]:
            raise ConfigError(
                f"config error at tasks.{name}.metric: {task['metric']!r} is not reported by the "
                f"synthetic {gen!r} task; use one of {SYNTHETIC_METRICS[gen]}."
            )
        if gen and task.get("data_dir"):
            raise ConfigError(
                f"config error at tasks.{name}.data_dir: a synthetic task makes its own data; "
                "remove data_dir, or remove synthetic to run lm-eval's built-in task on it."
            )
        if not gen:
            if name not in BUILTINS:
                raise ConfigError(
                    f"config error at tasks.{name}: {name!r} is neither synthetic (set synthetic: ...) nor "
                    f"one of the lm-eval built-in tasks this pipeline runs on local files: {sorted(BUILTINS)}."
                )
            if task["metric"] not in builtin_metrics(name):
                raise ConfigError(
                    f"config error at tasks.{name}.metric: lm-eval's {name!r} does not report "
                    f"{task['metric']!r}; use one of {list(builtin_metrics(name))}."
                )
            if task.get("data_dir") and not (base_dir / os.path.expanduser(task["data_dir"])).is_dir():
                raise ConfigError(
                    f"config error at tasks.{name}.data_dir: {task['data_dir']!r} does not exist. "
                    "Fix the path, or remove data_dir to fetch the benchmark on the login node."
                )


def _own(model: dict, stage: str):
    """A model's own settings for a stage (``models[].stages.<stage>``): {}, an object or False."""
    return (model.get("stages") or {}).get(stage, {})


def _check_grid(stage: dict, grid: dict, where: str, key: str) -> None:
    """A grid (a stage's, or a model's own for the stage ``where``): no value twice, every
    batch size a multiple of the stage's micro-batch x GPUs."""
    for name in ("ratios", "learning_rates", "batch_sizes"):
        values = [canonical(v) for v in grid.get(name, [])]
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise ConfigError(
                f"config error at {key}.{name}: duplicate value(s) {dup}; each grid cell must appear once."
            )
    micro, gpus = stage["micro_batch_size"], stage.get("gpus", 1)
    for bs in grid["batch_sizes"]:
        try:
            split_batch(micro, bs, gpus)
        except ValueError:
            raise ConfigError(
                f"config error at {key}.batch_sizes: effective batch size {bs} is not a "
                f"multiple of {where}.micro_batch_size ({micro}) x {where}.gpus ({gpus}). "
                "Choose batch sizes that micro_batch_size x gpus divides, or a smaller micro_batch_size."
            ) from None


def _check_parent_stage(cfg: dict, parent: dict, key: str) -> str:
    """The SFT stage a ``parent`` names (default sft), which must be one of the study's."""
    pstage = parent.get("stage", "sft")
    if pstage not in cfg["stages"] or stage_kind(pstage) != "sft":
        sfts = [n for n in cfg["stages"] if stage_kind(n) == "sft"]
        raise ConfigError(
            f"config error at {key}.stage: {pstage!r} is not an SFT stage of "
            f"this study (SFT stages: {sfts or 'none'}). Add it, or name one of these."
        )
    return pstage


def check_model_stages(cfg: dict) -> None:
    """Each model's own stage settings (``models[].stages``): stages of the study, a grid
    that passes the stage's checks, a parent only in a DPO stage and in an SFT stage the
    model trains in, and at least one stage the model trains in."""
    stages = cfg["stages"]
    for i, m in enumerate(cfg["models"]):
        own = m.get("stages") or {}
        for stage_name, settings in own.items():
            key = f"models[{i}].stages.{stage_name}"
            if stage_name not in stages:
                raise ConfigError(
                    f"config error at {key}: {stage_name!r} is not a stage of this study (stages: "
                    f"{', '.join(stages)}); name one of them, or remove the key."
                )
            if settings is False:
                continue
            if "grid" in settings:
                _check_grid(stages[stage_name], settings["grid"], f"stages.{stage_name}", f"{key}.grid")
            if "parent" in settings:
                if stage_kind(stage_name) != "dpo":
                    raise ConfigError(f"config error at {key}.parent: only a DPO stage has a parent cell; remove it.")
                _check_parent_stage(cfg, settings["parent"], f"{key}.parent")
        if all(own.get(s, {}) is False for s in stages):
            raise ConfigError(
                f"config error at models[{i}].stages: model {m['name']!r} trains in no stage (every "
                "stage is false); let it train in one, or remove the model."
            )
        for stage_name, stage in stages.items():
            settings = own.get(stage_name, {})
            if stage_kind(stage_name) != "dpo" or settings is False:
                continue
            parent = settings.get("parent", stage.get("parent")) or {}
            pstage = parent.get("stage", "sft")
            if own.get(pstage, {}) is False:
                raise ConfigError(
                    f"config error at models[{i}].stages.{stage_name}: model {m['name']!r} does not train "
                    f"in stage {pstage!r} (models[{i}].stages.{pstage}: false), where its {stage_name} "
                    f"cells' parent would be; set models[{i}].stages.{stage_name}: false too, or let it "
                    f"train in {pstage}."
                )
