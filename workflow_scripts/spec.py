"""What one cell computes: its training spec, and the job that trains it.

The spec (:func:`training_spec`) is at once rule train's params (Snakemake reruns a job
whose recorded params differ), the record in the cell's ``run.json`` and the launcher's
input. It is a contract: a key added, renamed or re-valued here retrains every finished
cell of every study. tests/golden/specs.json pins it for the shipped studies
(tests/test_contract.py); docs/architecture.md lists what may change it.
"""

from __future__ import annotations

import math

from . import chat_template, layout
from .grid import Cell, stage_kind
from .model_source import base_model_ref, prefetch_inputs


def split_batch(micro_batch_size: int, batch_size: int, gpus: int) -> tuple[int, int]:
    """(per-device batch, gradient accumulation steps) for an effective batch of
    ``batch_size`` over ``gpus`` processes, at most ``micro_batch_size`` per device; their
    product with ``gpus`` is exactly ``batch_size``. ValueError when no such split exists."""
    per_device = min(micro_batch_size, batch_size // gpus)
    if per_device < 1 or batch_size % (per_device * gpus):
        raise ValueError(
            f"effective batch size {batch_size} is not a multiple of micro_batch_size "
            f"({micro_batch_size}) x gpus ({gpus})"
        )
    return per_device, batch_size // (per_device * gpus)


def training_spec(study, cell: Cell) -> dict:
    """Everything that defines how one cell of ``study`` (a config.Study) trains."""
    stage = study.config["stages"][cell.stage]
    gpus = stage["gpus"]
    micro, accumulation = split_batch(stage["micro_batch_size"], cell.batch_size, gpus)
    model = study.models[cell.model]
    spec = {
        "run_id": cell.run_id,
        "model": cell.model,
        "model_id": model.get("id"),
        "model_revision": model.get("revision"),
        "stage": cell.stage,
        "stage_kind": stage_kind(cell.stage),
        "parent_run_id": study.parent_of(cell),
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
    template = chat_template.spec_entry(model, study.base_dir)
    if template is not None:
        spec["chat_template"] = template
    if stage.get("train_examples"):
        spec["max_steps"] = math.ceil(stage["train_examples"] / cell.batch_size)
    elif stage.get("train_steps"):
        spec["max_steps"] = stage["train_steps"]
    return spec


def cell_job(
    spec: dict,
    base_model: str,
    train_file: str,
    out_dir: str,
    *,
    threads: int = 1,
    data_source: str | None = None,
    prefetched: str | None = None,
    log: str | None = None,
) -> dict:
    """Everything ``train.train_cell`` needs for one cell, as plain JSON (what
    ``python -m workflow_scripts.launch JOB.json`` trains)."""
    return {
        "spec": spec,
        "base_model": str(base_model),
        "train_file": str(train_file),
        "out_dir": str(out_dir),
        "threads": threads,
        "data_source": data_source,
        "prefetched": prefetched,
        "log": log,
    }


def study_cell_job(study, cell: Cell, threads: int) -> dict:
    """The job of one cell of ``study``, with the paths rule train gives a single cell
    (the cells of a pack are trained from these)."""
    rid = cell.run_id
    prefetched = prefetch_inputs(study, cell)
    return cell_job(
        training_spec(study, cell),
        base_model_ref(study, cell),
        layout.fill(layout.STAGE_DATA, stage=cell.stage),
        layout.for_cell(layout.CELL_DIR, rid),
        threads=threads,
        data_source=layout.fill(layout.STAGE_SOURCE, stage=cell.stage),
        prefetched=prefetched[0] if prefetched else None,
        log=layout.for_cell(layout.TRAIN_LOG, rid),
    )
