"""Read, check and complete a study config before any rule runs.

``load_study(config)`` is called by ``rules/common.smk`` on Snakemake's ``config`` dict.
Errors raise :class:`ConfigError` whose message names the key, the value and the fix.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import layout, spec
from .config_checks import check_semantics
from .config_schema import ConfigError, validate_schema
from .grid import Cell, expand_grid, make_cell
from .model_source import is_hub_model
from .numbers import coerce_scientific
from .trl_config import backends

DEFAULTS = {
    "threads": 1,
    "data": {"synthetic": {"seed": 1234, "train_per_task": 12000, "eval_per_task": 200}},
    "retention": {"delete_weights_after_eval": False},
    "evaluation": {
        "batch_size": 64,
        "limit": None,
        "apply_chat_template": True,
        "max_length": None,
        "backend": "hf",
        "max_batch_size": 64,
    },
}
# What one SLURM job of a model asks for (per model: a 1.7B cell needs more than a 135M one).
# mem_mb and runtime (minutes) grow with the attempt when a job is retried.
RESOURCE_DEFAULTS = {
    "train": {"mem_mb": 16000, "runtime": 240, "cpus_per_gpu": 4, "gpu_model": ""},
    "evaluate": {"mem_mb": 16000, "runtime": 120, "cpus_per_gpu": 4, "gpu_model": ""},
}
# `tracking` is read when a training job starts (tracking_settings), from Snakemake's config:
# never part of a cell's spec, a rule's params or Study.config (rule aggregate's params), so
# turning it on or off reruns nothing (docs/tracking.md). Hence not in DEFAULTS either.
TRACKING_DEFAULTS = {"report_to": "none", "project": None}
STAGE_DEFAULTS = {"gpus": 1, "cells_per_gpu": 1, "recipe": {}, "divergence": {"max_loss_factor": 3.0}}


def _merge_defaults(cfg: dict, defaults: dict) -> dict:
    out = copy.deepcopy(defaults)
    for k, v in cfg.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_defaults(v, out[k])
        else:
            out[k] = v
    return out


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

    def grid_of(self, model: str, stage: str) -> dict | None:
        """The grid a model trains in a stage: its own (``models[].stages.<stage>.grid``) or
        the stage's; None when the model does not train in that stage."""
        return grid_for(self.config, self.models[model], stage)

    def parent_spec(self, model: str, stage: str) -> dict | None:
        """The ``parent`` (ratio or learning rate, batch size, seed) a model's cells of a DPO
        stage start from: the model's own or the stage's; None for an SFT stage."""
        return parent_for(self.config, self.models[model], stage)

    def trains(self, model: str, stage: str) -> bool:
        """Whether the model has cells in the stage (``models[].stages.<stage>: false``: not)."""
        return self.grid_of(model, stage) is not None

    def parent_of(self, cell: Cell) -> str | None:
        """Run id of the SFT cell a DPO cell starts from (None for an SFT cell)."""
        parent = self.parent_spec(cell.model, cell.stage)
        if parent is None:
            return None
        return find_parent(self.cells, cell.model, parent, parent_key(self.config, cell.model, cell.stage)).run_id

    def resources(self, model: str, job: str) -> dict:
        """SLURM resources of a model's ``train`` or ``evaluate`` job (config or defaults)."""
        return self.models[model]["resources"][job]

    def packed_stages(self) -> list[str]:
        """Stages whose cells train several to a GPU (``cells_per_gpu`` > 1)."""
        return [s for s, st in self.config["stages"].items() if st["cells_per_gpu"] > 1]

    def pack_slots(self, stage: str, model: str | None = None) -> list[list[tuple[int, int]]]:
        """The (batch size, seed) slots of one pack, in order, for a packed stage: a model's
        (``model``), or every distinct slot list of the models training the stage, in order.

        A pack is K cells of one model, stage and ratio (or learning rate): adding a ratio
        adds packs and never reshuffles existing ones."""
        if model is None:
            out = []
            for m in self.models:
                out += [s for s in self.pack_slots(stage, m) if s not in out]
            return out
        st, grid = self.config["stages"][stage], self.grid_of(model, stage)
        if grid is None:
            return []
        slots = [(bs, seed) for bs in grid["batch_sizes"] for seed in st["seeds"]]
        k = st["cells_per_gpu"]
        return [slots[i : i + k] for i in range(0, len(slots), k)]

    def pack_models(self, stage: str, slots: list[tuple[int, int]]) -> list[str]:
        """The models of a packed stage one of whose packs has these slots."""
        return [m for m in self.models if slots in self.pack_slots(stage, m)]

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
        """Everything that defines how one cell trains (workflow_scripts/spec.py)."""
        return spec.training_spec(self, cell)


def _own(model: dict, stage: str):
    """A model's own settings for a stage (``models[].stages.<stage>``): {}, an object or False."""
    return (model.get("stages") or {}).get(stage, {})


def grid_for(config: dict, model: dict, stage: str) -> dict | None:
    """A model's grid in a stage (its own, else the stage's); None when it skips the stage."""
    own = _own(model, stage)
    return None if own is False else own.get("grid", config["stages"][stage]["grid"])


def parent_for(config: dict, model: dict, stage: str) -> dict | None:
    """A model's parent cell spec in a DPO stage (its own, else the stage's); None otherwise."""
    own = _own(model, stage)
    return None if own is False else own.get("parent", config["stages"][stage].get("parent"))


def parent_key(config: dict, model: str, stage: str) -> str:
    """The config key that names a model's parent in a stage (for error messages)."""
    for i, m in enumerate(config["models"]):
        if m["name"] == model and "parent" in (_own(m, stage) or {}):
            return f"models[{i}].stages.{stage}.parent"
    return f"stages.{stage}.parent"


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
        f"Name one of its cells ({have or 'none'}), or add it to stages.{pstage}.grid "
        f"(or to the model's own models[].stages.{pstage}.grid)."
    )


def tracking_settings(config: dict) -> dict:
    """The study's ``tracking`` with its defaults, from Snakemake's config as a training job
    reads it: ``report_to`` as a list (``none``: []), the W&B / trackio ``project`` (None:
    the study's name), the study's name and trackio's folder (absolute: jobs start elsewhere)."""
    tracking = {**TRACKING_DEFAULTS, **(config.get("tracking") or {})}
    return {
        "report_to": backends(tracking["report_to"]),
        "project": tracking["project"],
        "study": config.get("study"),
        "trackio_dir": str(Path(layout.TRACKIO).resolve()),
    }


def with_tracking(job: dict, config: dict) -> dict:
    """A cell's job (``spec.cell_job``) with the study's tracking: the training entry scripts
    add it at run time, so it is in no rule's params and no finished cell reruns for it."""
    return {**job, "tracking": tracking_settings(config)}


def load_study(config: dict, base_dir: str | os.PathLike = ".") -> Study:
    """Validate ``config`` (Snakemake's config dict) and expand its grid."""
    if not config:
        raise ConfigError(
            "config error: the config is empty. Run with --configfile config.yaml or --configfile studies/demo.yaml."
        )
    base_dir = Path(base_dir)
    cfg = coerce_scientific(config)
    validate_schema(cfg)
    cfg.pop("tracking", None)  # how a run is watched, not what it computes: tracking_settings
    cfg = _merge_defaults(cfg, DEFAULTS)
    for name in list(cfg["stages"]):
        cfg["stages"][name] = _merge_defaults(cfg["stages"][name], STAGE_DEFAULTS)
    check_semantics(cfg, base_dir)

    for m in cfg["models"]:
        m["resources"] = _merge_defaults(m.get("resources", {}), RESOURCE_DEFAULTS)
    models = {m["name"]: m for m in cfg["models"]}
    cells: list[Cell] = []
    for stage_name, stage in cfg["stages"].items():
        for m in cfg["models"]:
            grid = grid_for(cfg, m, stage_name)
            if grid is not None:  # models[].stages.<stage>: false trains no cell there
                cells.extend(expand_grid(m["name"], stage_name, grid, stage["seeds"]))
    ids = [c.run_id for c in cells]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"config error at stages: the grid names the same cell twice: {dup}.")
    from .reference import published_models

    known = set(ids)
    for name, rid in cfg.get("reference", {}).items():
        if name not in published_models():
            raise ConfigError(
                f"config error at reference.{name}: not a model of the published table "
                f"reference/smoltulu_results.csv; use one of {published_models()}."
            )
        if rid not in known:
            raise ConfigError(
                f"config error at reference.{name}: {rid!r} is not a cell of this study; "
                "give a run id MODEL/STAGE/CELL of its grid, e.g. "
                f"{next(iter(known))}."
            )
    for stage_name in cfg["stages"]:
        for m in cfg["models"]:  # every model's DPO cells need their parent in that model's SFT grid
            parent = parent_for(cfg, m, stage_name)
            if parent is not None:
                find_parent(cells, m["name"], parent, parent_key(cfg, m["name"], stage_name))
    return Study(config=cfg, cells=cells, tasks=cfg["tasks"], models=models, base_dir=base_dir)
