"""Where a cell's base model comes from, decided here only.

A model of the study is one of: a hub id (fetched on the login node by rule prefetch_model,
read offline from the cache by the compute jobs), a local folder (``id: ./path``), a tiny
model built from a config (``build:``) or a GGUF file materialised into a folder (``gguf:``).
A DPO cell starts from its parent SFT cell's model instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import layout
from .prefetch import cached_model


def is_local_path(model_id: str) -> bool:
    """A model id that names a folder on this machine rather than a hub repository."""
    return os.path.isabs(model_id) or model_id.startswith(("./", "../", "~"))


def made_locally(model: dict) -> bool:
    """Whether a rule of the workflow makes the model's base folder (build or gguf)."""
    return "build" in model or "gguf" in model


def is_hub_model(model: dict) -> bool:
    """Whether the model is fetched from the hub (rule prefetch_model) rather than found or made."""
    return bool(model.get("id")) and not is_local_path(model["id"])


def base_model_ref(study, cell) -> str:
    """What a cell of ``study`` (a config.Study) trains on top of, as rule train passes it:
    the parent SFT cell's model folder (a DPO cell), the built or materialised base folder,
    or the model's hub id or local path."""
    parent = study.parent_of(cell)
    if parent:
        return layout.for_cell(layout.CELL_MODEL, parent)
    model = study.models[cell.model]
    return layout.fill(layout.BASE_MODEL, model=cell.model) if made_locally(model) else model["id"]


def base_model_inputs(study, cell) -> list[str]:
    """The base model as an input of the cell's job, when the workflow makes it (a parent
    cell's model, a built or materialised base); a hub or local model is not ours."""
    ref = base_model_ref(study, cell)
    return [ref] if study.parent_of(cell) or made_locally(study.models[cell.model]) else []


def prefetch_inputs(study, cell) -> list[str]:
    """The login node's record of a hub base model (SFT cells of hub models only)."""
    if study.parent_of(cell) or not is_hub_model(study.models[cell.model]):
        return []
    return [layout.fill(layout.PREFETCH_RECORD, model=cell.model)]


def resolve_base_model(base_model: str, spec: dict, prefetched: str | Path | None = None) -> tuple[str, dict | None]:
    """The folder to load the base model from, and (for a hub model) what was loaded.

    A hub model is read from the local cache only, at the commit the login-node prefetch
    recorded (so every cell of a study trains from the same weights even if a branch moves);
    a missing one stops the job at once with the command that fetches it. A parent cell or
    a locally made model is a folder and is loaded as it is.
    """
    if str(base_model) != str(spec.get("model_id")) or is_local_path(base_model) or Path(base_model).exists():
        return str(base_model), None
    record = json.loads(Path(prefetched).read_text()) if prefetched else {}
    revision = record.get("commit") or spec.get("model_revision")
    path = cached_model(spec["model_id"], revision)
    return path, {"id": spec["model_id"], "revision": spec.get("model_revision"), "commit": Path(path).name}
