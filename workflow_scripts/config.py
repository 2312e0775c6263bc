"""Read, check and complete a study config before any rule runs.

``load_study(config)`` is called by ``rules/common.smk`` on Snakemake's ``config`` dict.
Errors raise :class:`ConfigError` whose message names the key, the value and the fix.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from . import chat_template
from .grid import Cell, expand_grid, make_cell, stage_kind
from .memory import CHECKPOINTING_KEYS
from .model_source import is_hub_model, is_local_path
from .numbers import canonical, coerce_scientific
from .recipes import RecipeError, check_recipe

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"

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

DEFAULTS = {
    "threads": 1,
    "data": {"synthetic": {"seed": 1234, "train_per_task": 12000, "eval_per_task": 200}},
    "retention": {"delete_weights_after_eval": False},
    "evaluation": {"batch_size": 64, "limit": None, "apply_chat_template": True, "max_length": None,
                   "backend": "hf", "max_batch_size": 64},
}
# What one SLURM job of a model asks for (per model: a 1.7B cell needs more than a 135M one).
# mem_mb and runtime (minutes) grow with the attempt when a job is retried.
RESOURCE_DEFAULTS = {
    "train": {"mem_mb": 16000, "runtime": 240, "cpus_per_gpu": 4, "gpu_model": ""},
    "evaluate": {"mem_mb": 16000, "runtime": 120, "cpus_per_gpu": 4, "gpu_model": ""},
}
STAGE_DEFAULTS = {"gpus": 1, "cells_per_gpu": 1, "recipe": {}, "divergence": {"max_loss_factor": 3.0}}


class ConfigError(ValueError):
    """A study config that cannot run; the message says which key and how to fix it."""


def _merge_defaults(cfg: dict, defaults: dict) -> dict:
    out = copy.deepcopy(defaults)
    for k, v in cfg.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_defaults(v, out[k])
        else:
            out[k] = v
    return out


def _key(path) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "(top level)"


def _schema_error_message(err: jsonschema.ValidationError) -> str:
    key = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        return f"config error at {key}: {err.message}. Allowed keys here: {', '.join(allowed)}."
    if err.validator == "oneOf" and key.endswith("grid"):
        return (f"config error at {key}: give exactly one of 'ratios' or 'learning_rates' "
                "(together with 'batch_sizes').")
    if err.validator == "oneOf" and ".models" in f".{key}":
        return f"config error at {key}: give exactly one of 'id' (hub id or local path), 'build' or 'gguf'."
    if err.validator == "propertyNames" or (key == "stages" and err.validator == "pattern"):
        return (f"config error at stages: {err.instance!r} is not a stage name; name stages sft or dpo, "
                "optionally with a suffix for several of a kind (sft, dpo, dpo_1130).")
    if err.validator == "oneOf" and key.endswith("parent"):
        return (f"config error at {key}: name the parent SFT cell by exactly one of 'ratio' or "
                "'learning_rate', plus 'batch_size' and 'seed'.")
    if err.validator == "enum":
        return f"config error at {key}: {err.instance!r} is not one of {err.validator_value}."
    if err.validator in ("exclusiveMinimum", "minimum"):
        return f"config error at {key}: {err.instance!r} must be > {err.validator_value}" + (
            "" if err.validator == "exclusiveMinimum" else f" or = {err.validator_value}") + "."
    if err.validator == "type":
        hint = ""
        if isinstance(err.instance, str):
            hint = " (write numbers without quotes, e.g. 1e-4 or 0.0001)"
        return f"config error at {key}: {err.instance!r} is not of type {err.validator_value}{hint}."
    return f"config error at {key}: {err.message}."


def validate_schema(cfg: dict) -> None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # the deepest error under a oneOf is usually the helpful one
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_schema_error_message(best))


@dataclass
class Study:
    config: dict
    cells: list[Cell]
    tasks: dict
    models: dict
    base_dir: Path = field(default_factory=Path)

    def cells_of(self, stage: str) -> list[Cell]:
        return [c for c in self.cells if c.stage == stage]

    def cell(self, run_id: str) -> Cell:
        if getattr(self, "_by_id", None) is None:  # built once: Snakemake asks once per job
            self._by_id = {c.run_id: c for c in self.cells}
        try:
            return self._by_id[run_id]
        except KeyError:
            raise KeyError(f"run id {run_id!r} is not in the grid of study {self.config['study']!r}") from None

    def parent_of(self, cell: Cell) -> str | None:
        """Run id of the SFT cell a DPO cell starts from (None for an SFT cell)."""
        stage = self.config["stages"][cell.stage]
        if "parent" not in stage:
            return None
        return find_parent(self.cells, cell.model, stage["parent"], f"stages.{cell.stage}.parent").run_id

    def resources(self, model: str, job: str) -> dict:
        """SLURM resources of a model's ``train`` or ``evaluate`` job (config or defaults)."""
        return self.models[model]["resources"][job]

    def packed_stages(self) -> list[str]:
        """Stages whose cells train several to a GPU (``cells_per_gpu`` > 1)."""
        return [s for s, st in self.config["stages"].items() if st["cells_per_gpu"] > 1]

    def pack_slots(self, stage: str) -> list[list[tuple[int, int]]]:
        """The (batch size, seed) slots of one pack, in order, for a packed stage.

        A pack is K cells of one model, stage and ratio (or learning rate): adding a ratio
        adds packs and never reshuffles existing ones."""
        st = self.config["stages"][stage]
        slots = [(bs, seed) for bs in st["grid"]["batch_sizes"] for seed in st["seeds"]]
        k = st["cells_per_gpu"]
        return [slots[i:i + k] for i in range(0, len(slots), k)]

    def locally_made(self, kind: str) -> list[str]:
        """Names of the models whose base weights a rule makes: 'build', 'gguf', or 'hub'
        (fetched from the hub on the login node)."""
        if kind == "hub":
            return [name for name, m in self.models.items() if is_hub_model(m)]
        return [name for name, m in self.models.items() if kind in m]

    @property
    def synthetic_tasks(self) -> dict:
        return {name: t for name, t in self.tasks.items() if t.get("synthetic")}

    def training_spec(self, cell: Cell) -> dict:
        """Everything that defines how one cell trains (the rule's params and run.json)."""
        stage = self.config["stages"][cell.stage]
        gpus = stage["gpus"]
        micro = min(stage["micro_batch_size"], cell.batch_size // gpus) or 1
        accumulation = cell.batch_size // (micro * gpus)
        model = self.models[cell.model]
        spec = {
            "run_id": cell.run_id,
            "model": cell.model,
            "model_id": model.get("id"),
            "model_revision": model.get("revision"),
            "stage": cell.stage,
            "stage_kind": stage_kind(cell.stage),
            "parent_run_id": self.parent_of(cell),
            "learning_rate": cell.learning_rate,
            "effective_batch_size": cell.batch_size,
            "ratio": cell.ratio,
            "grid_kind": cell.grid_kind,
            "seed": cell.seed,
            "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": accumulation,
            "gpus": gpus,
            "train_examples": stage.get("train_examples"),
            "dataset": stage["dataset"],
            "recipe": stage["recipe"],
            "divergence": stage["divergence"],
            "checkpoint": stage.get("checkpoint"),
        }
        # only a model that names a template has the key: the spec of every cell trained
        # before chat_template existed stays what it recorded (no retraining)
        template = chat_template.spec_entry(model, self.base_dir)
        if template is not None:
            spec["chat_template"] = template
        if stage.get("train_examples"):
            spec["max_steps"] = math.ceil(stage["train_examples"] / cell.batch_size)
        elif stage.get("train_steps"):
            spec["max_steps"] = stage["train_steps"]
        return spec


def find_parent(cells: list[Cell], model: str, parent: dict, key: str) -> Cell:
    """The SFT cell named by a DPO stage's ``parent`` (ratio or learning rate, batch size, seed)."""
    pstage = parent.get("stage", "sft")
    bs, seed = int(parent["batch_size"]), int(parent["seed"])
    kw = {"ratio": parent["ratio"]} if "ratio" in parent else {"learning_rate": parent["learning_rate"]}
    wanted = make_cell(model, pstage, bs, seed, **kw)
    pool = [c for c in cells if c.model == model and c.stage == pstage]
    for c in pool:  # match by value, whichever way either grid was written
        if (c.learning_rate, c.batch_size, c.seed) == (wanted.learning_rate, wanted.batch_size, wanted.seed):
            return c
    have = ", ".join(c.name for c in pool[:8]) + (" ..." if len(pool) > 8 else "")
    raise ConfigError(
        f"config error at {key}: the parent cell {wanted.name} (learning rate {wanted.learning_rate:g}, "
        f"batch size {bs}, seed {seed}) is not in the grid of stage {pstage!r} for model {model!r}. "
        f"Name one of its cells ({have or 'none'}), or add it to stages.{pstage}.grid.")


def check_writable_dir(path: Path, key: str) -> None:
    """Create ``path`` if needed and prove a file can be written there (root ignores modes)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"config error at {key}: cannot write to {str(path)!r} ({e.strerror or e}). "
                          "Give a folder you can write to.") from None


def _semantic_checks(cfg: dict, base_dir: Path) -> None:
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
                "Fix the path, or give a hub id such as HuggingFaceTB/SmolLM2-135M.")
        try:
            chat_template.resolve(m, base_dir, key=f"models[{i}].chat_template")
        except chat_template.ChatTemplateError as e:
            raise ConfigError(str(e)) from None
        if mid and chat_template.choice_of(m) == chat_template.TOKENIZER \
                and chat_template.known_to_lack_template(str(base_dir / mid) if is_local_path(mid) else mid,
                                                         m.get("revision")):
            raise ConfigError(f"config error at models[{i}].chat_template: the tokenizer of {mid!r} has no chat "
                              "template (a base model). Set chat_template: chatml for SmolLM2-style models, or a "
                              "Jinja file.")
        if "build" in m and chat_template.choice_of(m) != chat_template.TOKENIZER:
            raise ConfigError(f"config error at models[{i}].chat_template: a built tiny model has its own "
                              "word-level template and tokens; remove chat_template.")

    for stage_name, stage in cfg["stages"].items():
        where = f"stages.{stage_name}"
        kind = stage_kind(stage_name)
        if kind == "sft" and "parent" in stage:
            raise ConfigError(f"config error at {where}.parent: only a DPO stage has a parent cell; "
                              f"remove it, or name the stage dpo.")
        if kind == "dpo":
            if "parent" not in stage:
                raise ConfigError(f"config error at {where}.parent: a DPO stage trains on top of one SFT cell; "
                                  "add parent: {ratio: ..., batch_size: ..., seed: ...} naming it.")
            pstage = stage["parent"].get("stage", "sft")
            if pstage not in cfg["stages"] or stage_kind(pstage) != "sft":
                sfts = [n for n in cfg["stages"] if stage_kind(n) == "sft"]
                raise ConfigError(f"config error at {where}.parent.stage: {pstage!r} is not an SFT stage of "
                                  f"this study (SFT stages: {sfts or 'none'}). Add it, or name one of these.")
        grid = stage["grid"]
        for key in ("ratios", "learning_rates", "batch_sizes"):
            values = [canonical(v) for v in grid.get(key, [])]
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ConfigError(f"config error at {where}.grid.{key}: duplicate value(s) {dup}; "
                                  "each grid cell must appear once.")
        dup_seeds = sorted({s for s in stage["seeds"] if stage["seeds"].count(s) > 1})
        if dup_seeds:
            raise ConfigError(f"config error at {where}.seeds: duplicate seed(s) {dup_seeds}.")
        gpus = stage.get("gpus", 1)
        if stage.get("cells_per_gpu", 1) > 1 and gpus > 1:
            raise ConfigError(f"config error at {where}.cells_per_gpu: packing several cells on one GPU and "
                              f"training one cell on several GPUs ({where}.gpus = {gpus}) exclude each other; "
                              "set one of them to 1.")
        micro = stage["micro_batch_size"]
        for bs in grid["batch_sizes"]:
            per_device = min(micro, bs // gpus) if bs >= gpus else 0
            if per_device == 0 or bs % (per_device * gpus):
                raise ConfigError(
                    f"config error at {where}.grid.batch_sizes: effective batch size {bs} is not a "
                    f"multiple of {where}.micro_batch_size ({micro}) x {where}.gpus ({gpus}). "
                    "Choose batch sizes that micro_batch_size x gpus divides, or a smaller micro_batch_size.")
        for key, owner in GRID_OWNED_RECIPE_KEYS.items():
            if key in stage.get("recipe", {}):
                owner = owner.format(where=where)
                raise ConfigError(f"config error at {where}.recipe.{key}: this is set per cell by {owner}; "
                                  "remove it from the recipe.")
        for key in CHECKPOINTING_KEYS:
            value = stage.get("recipe", {}).get(key)
            if key in stage.get("recipe", {}) and not isinstance(value, bool):
                raise ConfigError(f"config error at {where}.recipe.{key}: {value!r} is not true or false. "
                                  "Set true or false to force it, or leave the key out: the pipeline then "
                                  "turns it on only when a cell would not fit in GPU memory.")
        try:  # every key a TRL argument, the values and combinations TRL accepts (once per stage)
            check_recipe(stage_name, stage)
        except RecipeError as e:
            raise ConfigError(str(e)) from None
        ds = stage["dataset"]
        if ds["source"] == "hub" and not ds.get("id"):
            example = "allenai/tulu-3-sft-mixture" if kind == "sft" else "allenai/llama-3.1-tulu-3-8b-preference-mixture"
            raise ConfigError(f"config error at {where}.dataset.id: a hub dataset needs an id, e.g. {example}.")
        if ds["source"] == "synthetic" and not any(t.get("synthetic") for t in cfg["tasks"].values()):
            raise ConfigError(f"config error at {where}.dataset.source: 'synthetic' training data is drawn "
                              "from the synthetic tasks, but no task sets 'synthetic:'.")
        if stage.get("train_examples") and stage.get("train_steps"):
            raise ConfigError(f"config error at {where}.train_steps: set train_examples (examples fixed, "
                              "steps vary with batch size) or train_steps (steps fixed), not both.")
        if not (stage.get("train_examples") or stage.get("train_steps")) \
                and "num_train_epochs" not in stage.get("recipe", {}):
            raise ConfigError(f"config error at {where}.train_examples: set train_examples (examples per "
                              f"cell), train_steps (steps per cell) or {where}.recipe.num_train_epochs.")

    from .builtin_tasks import BUILTINS, builtin_metrics

    for name, task in cfg["tasks"].items():
        gen = task.get("synthetic")
        if gen and task["metric"] not in SYNTHETIC_METRICS[gen]:
            raise ConfigError(
                f"config error at tasks.{name}.metric: {task['metric']!r} is not reported by the "
                f"synthetic {gen!r} task; use one of {SYNTHETIC_METRICS[gen]}.")
        if gen and task.get("data_dir"):
            raise ConfigError(f"config error at tasks.{name}.data_dir: a synthetic task makes its own data; "
                              "remove data_dir, or remove synthetic to run lm-eval's built-in task on it.")
        if not gen:
            if name not in BUILTINS:
                raise ConfigError(
                    f"config error at tasks.{name}: {name!r} is neither synthetic (set synthetic: ...) nor "
                    f"one of the lm-eval built-in tasks this pipeline runs on local files: {sorted(BUILTINS)}.")
            if task["metric"] not in builtin_metrics(name):
                raise ConfigError(
                    f"config error at tasks.{name}.metric: lm-eval's {name!r} does not report "
                    f"{task['metric']!r}; use one of {list(builtin_metrics(name))}.")
            if task.get("data_dir") and not (base_dir / os.path.expanduser(task["data_dir"])).is_dir():
                raise ConfigError(f"config error at tasks.{name}.data_dir: {task['data_dir']!r} does not exist. "
                                  "Fix the path, or remove data_dir to fetch the benchmark on the login node.")


def load_study(config: dict, base_dir: str | os.PathLike = ".") -> Study:
    """Validate ``config`` (Snakemake's config dict) and expand its grid."""
    if not config:
        raise ConfigError("config error: the config is empty. Run with --configfile config.yaml "
                          "or --configfile studies/demo.yaml.")
    base_dir = Path(base_dir)
    cfg = coerce_scientific(config)
    validate_schema(cfg)
    cfg = _merge_defaults(cfg, DEFAULTS)
    for name in list(cfg["stages"]):
        cfg["stages"][name] = _merge_defaults(cfg["stages"][name], STAGE_DEFAULTS)
    _semantic_checks(cfg, base_dir)

    for m in cfg["models"]:
        m["resources"] = _merge_defaults(m.get("resources", {}), RESOURCE_DEFAULTS)
    models = {m["name"]: m for m in cfg["models"]}
    cells: list[Cell] = []
    for stage_name, stage in cfg["stages"].items():
        for m in cfg["models"]:
            cells.extend(expand_grid(m["name"], stage_name, stage["grid"], stage["seeds"]))
    ids = [c.run_id for c in cells]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"config error at stages: the grid names the same cell twice: {dup}.")
    from .reference import published_models

    known = set(ids)
    for name, rid in cfg.get("reference", {}).items():
        if name not in published_models():
            raise ConfigError(f"config error at reference.{name}: not a model of the published table "
                              f"reference/smoltulu_results.csv; use one of {published_models()}.")
        if rid not in known:
            raise ConfigError(f"config error at reference.{name}: {rid!r} is not a cell of this study; "
                              "give a run id MODEL/STAGE/CELL of its grid, e.g. "
                              f"{next(iter(known))}.")
    for stage_name, stage in cfg["stages"].items():
        if "parent" in stage:  # every model's DPO cells need their parent in that model's SFT grid
            for m in cfg["models"]:
                find_parent(cells, m["name"], stage["parent"], f"stages.{stage_name}.parent")
    return Study(config=cfg, cells=cells, tasks=cfg["tasks"], models=models, base_dir=base_dir)
